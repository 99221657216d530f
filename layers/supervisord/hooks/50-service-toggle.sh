#!/bin/sh
# The seed's "dynamic service toggle": COMPOSER_DISABLE_SERVICES (and
# COMPOSER_ENABLE_SERVICES) name supervisord programs, separated by commas or
# spaces, that should (not) start with the container. The generated
# /etc/composer/supervisord.conf includes /run/composer/supervisord.d/*.conf
# after its own sections; supervisord reads an included section with the
# same name as an existing one into that section, later values winning, so a
# two-line [program:x] autostart=... override here is all it takes.
# Unknown names are reported and ignored (a section for a program that does
# not exist would make supervisord refuse to start: it has no command).
set -eu
# shellcheck source=../../base/files/hooklib.sh
. "${COMPOSER_HOOKLIB:-${COMPOSER_ROOT:-}/usr/local/lib/composer/hooklib.sh}"

conf=$root/etc/composer/supervisord.conf
dir=$root/run/composer/supervisord.d
out=$dir/50-service-toggle.conf

mkdir -p "$dir"
# Rewritten at every start: a toggle from an earlier run must not stick.
rm -f "$out"

disable=${COMPOSER_DISABLE_SERVICES:-}
enable=${COMPOSER_ENABLE_SERVICES:-}
[ -n "$disable$enable" ] || exit 0

if [ ! -f "$conf" ]; then
    log "no $conf; nothing to toggle"
    exit 0
fi

# program NAME: true when the config has a [program:NAME] section.
program() {
    grep -q -F -x "[program:$1]" "$conf"
}

tmp=$(mktemp "$dir/.toggle.XXXXXX")
# toggle LIST VALUE: one override section per known program in LIST.
toggle() {
    for name in $(printf '%s' "$1" | tr ',' ' '); do
        case $name in
            *[!A-Za-z0-9_.-]*) log "ignoring invalid program name: $name"; continue ;;
        esac
        if program "$name"; then
            printf '[program:%s]\nautostart=%s\n\n' "$name" "$2" >> "$tmp"
            log "$name: autostart=$2"
        else
            log "ignoring unknown program: $name"
        fi
    done
}
set -f  # the lists are names, not globs
toggle "$enable" true
toggle "$disable" false  # disabling wins over enabling
set +f
chmod 0644 "$tmp"
mv -f "$tmp" "$out"

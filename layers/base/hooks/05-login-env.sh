#!/bin/sh
# Hand the image's environment (PATH with /opt/venv/bin, CUDA_HOME, LANG, ...) to
# login shells: SSH sessions and `su -` start from a clean environment, not from
# the image config. finalize lists the variable names in /etc/composer/env.names;
# this writes their values as seen by PID 1 to a file /etc/profile.d and zsh source.
# Only those names are written, so a secret passed as an environment variable never
# lands in the (world-readable) file.
set -eu
# shellcheck source=../../base/files/hooklib.sh
. "${COMPOSER_HOOKLIB:-${COMPOSER_ROOT:-}/usr/local/lib/composer/hooklib.sh}"

names=$root/etc/composer/env.names
out=$root/run/composer/login-env.sh
[ -f "$names" ] || exit 0
mkdir -p "$root/run/composer"

tmp=$(mktemp "$out.XXXXXX")
while IFS= read -r name; do
    case $name in
        ''|*[!A-Za-z0-9_]*|[0-9]*) continue ;;  # not a variable name: never written
    esac
    if [ "$name" = PATH ]; then
        value=$image_path  # hooklib set the hooks' own PATH
    else
        value=$(printenv "$name") || continue
    fi
    # Single-quoted for sh: every ' becomes '\'' so the value stays data.
    quoted=$(printf '%s' "$value" | sed "s/'/'\\\\''/g")
    printf "export %s='%s'\n" "$name" "$quoted" >> "$tmp"
done < "$names"
chmod 0644 "$tmp"
mv -f "$tmp" "$out"

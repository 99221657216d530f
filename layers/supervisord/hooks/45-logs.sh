#!/bin/sh
# Service logs are root's and the supervisord socket group's (its members, such as
# devuser, read them; devuser's tmux Logs window tails them), never everyone's: a
# service may log a token, a path or a user's command. Files from an earlier run (the
# /var/log volume) get mode 0640 and the group; each program's log is made that way
# before supervisord opens it (it appends and keeps the mode). supervisord itself runs
# with umask 027 (composer-entrypoint sets it), so a log it makes later (after a
# rotation) is not readable by others either; its programs get umask 027 too, so
# what a service writes is not everyone's. Only files root owns and that have one link are changed, never through
# a symlink.
set -eu
# shellcheck source=../../base/files/hooklib.sh
. "${COMPOSER_HOOKLIB:-${COMPOSER_ROOT:-}/usr/local/lib/composer/hooklib.sh}"

conf=$root/etc/composer/supervisord.conf
options=$root/etc/composer/options/supervisord.json
logs=$root/var/log
dir=$root/run/composer/supervisord.d
out=$dir/45-logs.conf
[ -f "$conf" ] || exit 0

group=root
if [ -f "$options" ]; then
    group=$(jq -r '.group // "root"' "$options")
fi
getent group "$group" > /dev/null 2>&1 || group=root

# private FILE: root:group 0640, made when missing; refused through a link.
private() {
    if [ -L "$1" ] || { [ -e "$1" ] && [ ! -f "$1" ]; }; then
        log "left alone (not a plain file): $1"
        return 0
    fi
    if [ ! -e "$1" ]; then
        (umask 027 && : > "$1")
    fi
    [ "$(stat -c '%u %h' "$1")" = "0 1" ] || { log "left alone (not root's, or linked): $1"; return 0; }
    chgrp "$group" "$1" && chmod 0640 "$1"
}

mkdir -p "$logs/supervisor" "$dir"
chgrp "$group" "$logs/supervisor" && chmod 0750 "$logs/supervisor"
private "$logs/supervisord.log"
for file in "$logs"/*.log "$logs"/supervisor/* $(sed -n 's#^stdout_logfile=#'"$root"'#p' "$conf"); do
    case $file in "$logs/*.log"|"$logs/supervisor/*") continue ;; esac
    private "$file"
done

tmp=$(mktemp "$dir/.logs.XXXXXX")
sed -n 's/^\[program:\(.*\)\]$/[program:\1]\numask=027\n/p' "$conf" > "$tmp"
chmod 0644 "$tmp"
mv -f -T "$tmp" "$out"

#!/bin/sh
# Make every configured user's home, workspace and extra directories (volume
# mount points such as ~/.claude/skills arrive root-owned or missing), and the
# runtime and log directories services expect. Users come from
# /etc/composer/users.json, written by the users module.
set -eu
# shellcheck source=../../base/files/hooklib.sh
. "${COMPOSER_HOOKLIB:-${COMPOSER_ROOT:-}/usr/local/lib/composer/hooklib.sh}"

users=$root/etc/composer/users.json

# /var/log may be an empty volume (supervisord refuses to start without its
# childlogdir /var/log/supervisor); /run may be a fresh tmpfs.
mkdir -p "$root/var/log/supervisor" "$root/run/composer"
chmod 0755 "$root/run/composer"

[ -f "$users" ] || exit 0

# A directory of the user's: made with the home's mode, and tightened when it lets others
# write or (beyond that mode) read — a volume root a provisioner made 0777 included.
# chmod acts on the folder entered (its own working folder), never through a path the user
# could swap for a symlink between the check and the chmod; only a folder of the user's or
# root's (a volume root as mounted; 40-permissions gives it to the user next).
own_dir() {  # uid gid home rel mode
    mkdir_owned "$1" "$2" "$3" "$4" "$5" || return 1
    (
        cd "$3/$4" 2> /dev/null &&
            [ "$(pwd -P)" = "$(cd "$3" && pwd -P)/$4" ] &&
            case $(stat -c %u .) in "$1" | 0) ;; *) false ;; esac &&
            chmod "$5" .
    ) || { log "not tightening $3/$4: not a folder of the user's"; return 1; }
}

jq -r '.[] | [.name, .uid, .gid, .workspace, .home_mode] | @tsv' "$users" |
while IFS="$(printf '\t')" read -r name uid gid workspace mode; do
    if ! user_entry "$name" > /dev/null; then
        log "skipping $name: no such user"
        continue
    fi
    home=$root/home/$name
    if [ ! -d "$home" ]; then
        mkdir -p "$home"
        chown -h "$uid:$gid" "$home"
    fi
    mkdir_owned "$uid" "$gid" "$home" .config 0700 || true
    if [ "$workspace" = "true" ]; then
        own_dir "$uid" "$gid" "$home" workspace "$mode" || true
    fi
    jq -r --arg n "$name" '.[] | select(.name == $n) | .dirs[]' "$users" |
    while IFS= read -r rel; do
        own_dir "$uid" "$gid" "$home" "$rel" "$mode" || true
    done
done

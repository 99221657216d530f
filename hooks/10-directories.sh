#!/bin/sh
# Make every configured user's home, workspace and extra directories (volume
# mount points such as ~/.claude/skills arrive root-owned or missing), and the
# runtime and log directories services expect. Users come from
# /etc/composer/users.json, written by the users module.
set -eu
# shellcheck source=../layers/base/files/hooklib.sh
. "${COMPOSER_HOOKLIB:-${COMPOSER_ROOT:-}/usr/local/lib/composer/hooklib.sh}"

users=$root/etc/composer/users.json

# /var/log may be an empty volume (supervisord refuses to start without its
# childlogdir /var/log/supervisor); /run may be a fresh tmpfs.
mkdir -p "$root/var/log/supervisor" "$root/run/composer"
chmod 0755 "$root/run/composer"

[ -f "$users" ] || exit 0

jq -r '.[] | [.name, .uid, .gid, .workspace] | @tsv' "$users" |
while IFS="$(printf '\t')" read -r name uid gid workspace; do
    if ! user_entry "$name" > /dev/null; then
        log "skipping $name: no such user"
        continue
    fi
    home=$root/home/$name
    if [ ! -d "$home" ]; then
        mkdir -p "$home"
        chown -h "$uid:$gid" "$home"
    fi
    mkdir_owned "$uid" "$gid" "$home" .config || true
    if [ "$workspace" = "true" ]; then
        mkdir_owned "$uid" "$gid" "$home" workspace || true
    fi
    jq -r --arg n "$name" '.[] | select(.name == $n) | .dirs[]' "$users" |
    while IFS= read -r rel; do
        mkdir_owned "$uid" "$gid" "$home" "$rel" || true
    done
done

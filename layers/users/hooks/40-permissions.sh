#!/bin/sh
# Give every configured user their home back: anything under it not owned by
# the user (volumes mounted as root, files root wrote at build or start) is
# chowned, and the home gets its configured mode (0700 for the isolated AI
# users). Users come from /etc/composer/users.json (users module).
set -eu
# shellcheck source=../../base/files/hooklib.sh
. "${COMPOSER_HOOKLIB:-${COMPOSER_ROOT:-}/usr/local/lib/composer/hooklib.sh}"

users=$root/etc/composer/users.json
[ -f "$users" ] || exit 0

jq -r '.[] | [.name, .uid, .gid, .home_mode] | @tsv' "$users" |
while IFS="$(printf '\t')" read -r name uid gid mode; do
    home=$root/home/$name
    if ! user_entry "$name" > /dev/null || [ ! -d "$home" ] || [ -L "$home" ]; then
        log "skipping $name: no such user or home"
        continue
    fi
    # Only what is wrong is touched (a big model cache is not rewritten at
    # every start); -h changes a symlink itself, never its target. A file of
    # someone else's with more than one link may be a hard link to a file
    # outside the home (/etc/shadow): it is left alone and reported.
    find "$home" \( ! -user "$uid" -o ! -group "$gid" \) \
        \( -type d -o -type l -o -links 1 \) -exec chown -h "$uid:$gid" {} + || true
    find "$home" ! -type d ! -type l -links +1 \( ! -user "$uid" -o ! -group "$gid" \) -print |
    while IFS= read -r file; do
        log "left alone, a hard link that is not $name's: $file"
    done
    chmod "$mode" "$home" || log "could not set the mode of $home"
done

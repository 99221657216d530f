#!/bin/sh
# The management API runs as devuser and cannot read root's secrets mount:
# copy MANAGEMENT_API_TOKEN (file or env) to a file only devuser can read,
# which the server reads once at start. Without the secret the file is
# removed, and the API is open (as in the seed) except that it says so in its log.
set -eu
# shellcheck source=../layers/base/files/hooklib.sh
. "${COMPOSER_HOOKLIB:-${COMPOSER_ROOT:-}/usr/local/lib/composer/hooklib.sh}"

user=devuser
dir=$root/run/composer/management-api

rm -f "$dir/token"
token=$(read_secret MANAGEMENT_API_TOKEN) || exit 0
if ! lookup_user "$user"; then
    log "no user $user; token not installed"
    exit 0
fi
mkdir -p "$root/run/composer"
mkdir_owned "$uid" "$gid" "$root/run/composer" management-api 0700
# An existing folder keeps its owner in mkdir_owned: make sure it is the user's.
chmod 0700 "$dir"
chown "$uid:$gid" "$dir"
printf '%s\n' "$token" | write_owned "$uid" "$gid" "$dir/token"
log "API token installed for $user"

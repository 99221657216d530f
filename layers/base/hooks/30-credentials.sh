#!/bin/sh
# Hand each secret to the user it is meant for, as the modules' [[credentials]] say
# (/etc/composer/credentials.json, written at finalize): a user, a file (relative to
# the user's home, or under /run/composer/), a format and the secret names. Secrets
# come from files in /run/secrets (COMPOSER_SECRETS_DIR) or, failing that,
# environment variables.
#   json: {field: value, ...}, built by jq from its environment, so quotes,
#         backslashes, newlines and any unicode stay data and no value passes
#         through a command line; written only when every non-optional secret is set.
#   raw:  the value itself; `generate` makes a random one at first start when the
#         secret is absent (kept while the file exists).
# Files are 0600 and owned by the user, in a folder of the user's that is 0700.
# An entry that cannot be written (no such user, a home the user broke, a planted
# symlink) is logged and skipped: one user can never stop the devpod from starting.
set -eu
# shellcheck source=../../base/files/hooklib.sh
. "${COMPOSER_HOOKLIB:-${COMPOSER_ROOT:-}/usr/local/lib/composer/hooklib.sh}"

creds=$root/etc/composer/credentials.json
[ -f "$creds" ] || exit 0

field() {  # INDEX NAME: one field of entry INDEX, as text
    jq -r --argjson i "$1" --arg f "$2" '.[$i][$f] // empty | if type == "array" then join(" ") else tostring end' "$creds"
}

# folder_of FILE: make (if needed) and print the folder FILE goes in, owned by the
# user ($uid:$gid from lookup_user) with mode 0700; fails on anything suspicious.
folder_of() {
    _rel=$(dirname "$1")
    case $1 in
        /run/composer/*)
            mkdir -p "$root/run/composer"
            _rel=${_rel#/run/composer}
            _base=$root/run/composer
            ;;
        *)
            [ -d "$home" ] && [ ! -L "$home" ] || { log "no home $home"; return 1; }
            _base=$home
            ;;
    esac
    _rel=${_rel#/}
    [ "$_rel" != . ] && [ -n "$_rel" ] || { printf '%s\n' "$_base"; return 0; }
    mkdir_owned "$uid" "$gid" "$_base" "$_rel" 0700 || return 1
    _dir=$_base/$_rel
    [ -d "$_dir" ] && [ ! -L "$_dir" ] || { log "$_dir is not a folder"; return 1; }
    # A folder left from an earlier start (or another image) is made the user's alone.
    chown -h "$uid:$gid" "$_dir" && chmod 0700 "$_dir" || return 1
    printf '%s\n' "$_dir"
}

# json_value INDEX: the JSON document of a json entry on stdout; fails when a
# required secret is not set.
json_value() {
    _doc='{}'
    for _field in $(jq -r --argjson i "$1" '.[$i].secrets | keys[]' "$creds"); do
        _secret=$(jq -r --argjson i "$1" --arg f "$_field" '.[$i].secrets[$f]' "$creds")
        if COMPOSER_CRED_VALUE=$(read_secret "$_secret"); then
            export COMPOSER_CRED_VALUE
            _doc=$(printf '%s' "$_doc" | jq -c --arg f "$_field" '. + {($f): env.COMPOSER_CRED_VALUE}')
            unset COMPOSER_CRED_VALUE
        elif ! jq -e --argjson i "$1" --arg f "$_field" '.[$i].optional | index($f)' "$creds" > /dev/null; then
            return 1
        fi
    done
    printf '%s\n' "$_doc" | jq .
}

write_entry() {  # INDEX
    user=$(field "$1" user)
    file=$(field "$1" file)
    format=$(field "$1" format)
    value=
    case $format in
        json) value=$(json_value "$1") || return 0 ;;  # a required secret is not set
        raw)
            secret=$(field "$1" secret)
            value=$(read_secret "$secret") || [ "$(field "$1" generate)" = true ] || return 0
            if [ "${#value}" -gt 4096 ]; then  # not a token any reader would take
                log "$secret is longer than 4096 bytes; ignored"
                value=
                [ "$(field "$1" generate)" = true ] || return 0
            fi
            ;;
        *) log "unknown format $format for $file"; return 1 ;;
    esac
    if ! lookup_user "$user"; then
        log "skipping $file: no user $user"
        return 0
    fi
    dir=$(folder_of "$file") || { log "skipping $file of $user"; return 0; }
    target=$dir/$(basename "$file")
    if [ -z "$value" ]; then  # raw, no secret: generate one, once
        if [ -f "$target" ] && [ ! -L "$target" ] && [ -s "$target" ]; then
            return 0
        fi
        value=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
        log "generated $file for $user (no $secret)"
    fi
    printf '%s\n' "$value" | write_owned "$uid" "$gid" "$target" || return 1
    log "wrote $file for $user"
}

count=$(jq 'length' "$creds")
i=0
while [ "$i" -lt "$count" ]; do
    write_entry "$i" || log "could not write credential $i; skipped"
    i=$((i + 1))
done

# Shared helpers for composer's start-up hooks (/etc/composer/hooks.d/*).
# Sourced, not run. POSIX sh. Every path goes through $root so tests can run a
# hook against a temporary tree (COMPOSER_ROOT=/tmp/x); secrets are read from
# $secrets_dir (COMPOSER_SECRETS_DIR, default /run/secrets) or the environment.

# Hooks run as root: programs come from root's own folders only, never from a
# folder users may write to that the image's PATH names (a venv of a group's).
# The image's PATH stays in image_path (05-login-env hands it to login shells).
# shellcheck disable=SC2034 # used by the hooks
image_path=${PATH:-}
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

root=${COMPOSER_ROOT:-}
secrets_dir=${COMPOSER_SECRETS_DIR:-$root/run/secrets}
hook_name=$(basename "$0")

log() { printf '%s: %s\n' "$hook_name" "$*" >&2; }

# read_secret NAME: print the secret's value (file first, then the env var of
# the same name), without trailing newlines. Fails when neither is set or the
# value is empty. The value only ever travels through pipes and variables,
# never through a command line (argv is world-readable in /proc).
read_secret() {
    _file=$secrets_dir/$1
    if [ -f "$_file" ]; then
        _val=$(cat "$_file")
    else
        _val=$(printenv "$1" || true)
    fi
    [ -n "$_val" ] || return 1
    printf '%s' "$_val"
}

# user_entry NAME: print "uid gid home" from $root/etc/passwd (the container's
# own file, so a test tree works too); fails when the user does not exist.
user_entry() {
    [ -f "$root/etc/passwd" ] || return 1
    _entry=$(awk -F: -v u="$1" '$1 == u { print $3, $4, $6; found = 1 } END { exit !found }' \
        "$root/etc/passwd") || return 1
    printf '%s\n' "$_entry"
}

# lookup_user NAME: set uid, gid and home (under $root) for NAME from
# user_entry; fails, setting nothing, when the user does not exist.
lookup_user() {
    _entry=$(user_entry "$1") || return 1
    # shellcheck disable=SC2086 # "uid gid home" split into three fields on purpose
    set -- $_entry
    # shellcheck disable=SC2034 # set for the calling hook
    uid=$1 gid=$2 home=$root$3
}

# mkdir_owned UID GID BASE REL [MODE]: make BASE/REL one component at a time,
# each new component owned by UID:GID. A component that is a symlink stops it:
# hooks run as root inside users' homes and must not follow a link a user
# planted there to somewhere else.
mkdir_owned() {
    _uid=$1 _gid=$2 _path=$3 _rel=$4 _mode=${5:-0755}
    _old_ifs=$IFS
    IFS=/
    set -f
    for _part in $_rel; do
        [ -n "$_part" ] || continue
        _path=$_path/$_part
        if [ -L "$_path" ]; then
            IFS=$_old_ifs
            set +f
            log "refusing symlink $_path"
            return 1
        fi
        if [ ! -d "$_path" ]; then
            mkdir -m "$_mode" "$_path" || { IFS=$_old_ifs; set +f; return 1; }
            chown -h "$_uid:$_gid" "$_path"
        fi
    done
    IFS=$_old_ifs
    set +f
}

# write_owned UID GID PATH: write stdin to PATH, mode 0600, owned by UID:GID.
# Written to a fresh temporary file beside it and renamed over it (mv -T), so
# whatever a user left at PATH -- a symlink, a hard link to another file, a
# folder -- is replaced or refused, never followed or written through.
write_owned() {
    _dir=$(dirname "$3")
    if [ -L "$_dir" ] || [ ! -d "$_dir" ]; then
        log "refusing to write into $_dir"
        return 1
    fi
    if [ -d "$3" ] && [ ! -L "$3" ]; then
        log "refusing to write $3: it is a folder"
        return 1
    fi
    _tmp=$(umask 077 && mktemp "$_dir/.composer.XXXXXX")
    if ! cat > "$_tmp"; then
        rm -f "$_tmp"
        return 1
    fi
    chmod 0600 "$_tmp"
    chown -h "$1:$2" "$_tmp"
    if ! mv -f -T "$_tmp" "$3"; then
        rm -f "$_tmp"
        return 1
    fi
}

# shellcheck shell=sh
# composer-lib.sh: functions for module build scripts (`. "$COMPOSER_LIB"`). POSIX sh;
# options are read with jq, which the base module installs. Values stay data: they
# come out on stdout, one per line, never evaluated.

# composer_opt NAME: option NAME (a string as it is, anything else as JSON).
composer_opt() {
    jq -r --arg n "$1" '.[$n] | if type == "string" then . else tojson end' "$COMPOSER_OPTIONS"
}

# composer_opt_lines NAME: each item of array option NAME (or each key of a table), one a line.
composer_opt_lines() {
    jq -r --arg n "$1" '.[$n] | if type == "object" then keys[] else .[] end' "$COMPOSER_OPTIONS"
}

# composer_home USER: USER's home folder; fails, naming this module, when there is no such user.
composer_home() {
    _entry=$(getent passwd "$1") || {
        echo "$COMPOSER_MODULE: user '$1' does not exist; list the users module (with that user) before $COMPOSER_MODULE" >&2
        return 1
    }
    printf '%s\n' "$_entry" | cut -d: -f6
}

# composer_owner USER: "USER:GROUP" with USER's primary group, for chown.
composer_owner() {
    printf '%s:%s\n' "$1" "$(id -gn "$1")"
}

# shellcheck shell=sh disable=SC2034 # variables for the sourcing script
# Shared by xvnc-start and xfce4-start (sourced). Reads the module's options
# from /etc/composer/options/vnc-desktop.json and defines run_as, which execs a command as
# the configured user with a login-like environment.
conf=${COMPOSER_VNC_CONF:-/etc/composer/options/vnc-desktop.json}
user=$(jq -r '.user' "$conf")
display=$(jq -r '.display' "$conf")
entry=$(getent passwd "$user") || { echo "vnc-desktop: no user $user" >&2; exit 1; }
gid=$(printf '%s' "$entry" | cut -d: -f4)
home=$(printf '%s' "$entry" | cut -d: -f6)
shell=$(printf '%s' "$entry" | cut -d: -f7)

run_as() {
    if [ "$(id -u)" = 0 ]; then
        exec setpriv --reuid="$user" --regid="$gid" --init-groups \
            env HOME="$home" USER="$user" LOGNAME="$user" SHELL="$shell" "$@"
    fi
    exec env HOME="$home" USER="$user" LOGNAME="$user" SHELL="$shell" "$@"
}

# shellcheck shell=sh disable=SC2034 # variables for the sourcing script
# Shared by xvnc-start and xfce4-start (sourced). Reads the module's options
# from /etc/composer/options/vnc-desktop.json and defines become_user, which runs the calling
# script again as the configured user. Both scripts do all their file work as
# that user: root only reads the options (and, in xvnc-start, takes the
# display's names in /tmp back for the user) and drops its privileges.
conf=${COMPOSER_VNC_CONF:-/etc/composer/options/vnc-desktop.json}
user=$(jq -r '.user' "$conf")
display=$(jq -r '.display' "$conf")
entry=$(getent passwd "$user") || { echo "vnc-desktop: no user $user" >&2; exit 1; }
uid=$(printf '%s' "$entry" | cut -d: -f3)
gid=$(printf '%s' "$entry" | cut -d: -f4)
home=$(printf '%s' "$entry" | cut -d: -f6)
shell=$(printf '%s' "$entry" | cut -d: -f7)

# The session's runtime directory: the 25-desktop hook makes it at start,
# private to the user, under root's /run (never under the shared /tmp).
runtime=/run/user/$uid
# The X clients' cookie file, where Xlib looks without XAUTHORITY: the
# user's other shells (SSH, tmux) reach the display with it too.
xauthority=$home/.Xauthority
# The server's own cookie file: only this display's cookie (Xvnc accepts
# every cookie in its -auth file, and ~/.Xauthority may hold others).
server_auth=$runtime/Xvnc$display.auth
login_env=/run/composer/login-env.sh

# become_user [ARGS]: as root, exec the calling script again as the user from
# a clean environment (a secret passed to the container as a variable is not
# the desktop's business); as the user, load the image's environment that the
# 05-login-env hook recorded (PATH, LANG, TZ, ...).
become_user() {
    if [ "$(id -u)" != "$uid" ]; then
        if [ "$(id -u)" != 0 ]; then
            echo "$0: run me as root or as $user" >&2
            exit 1
        fi
        exec setpriv --reuid="$uid" --regid="$gid" --init-groups \
            env -i HOME="$home" USER="$user" LOGNAME="$user" SHELL="$shell" \
            PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            COMPOSER_VNC_CONF="$conf" "$0" "$@"
    fi
    if [ -r "$login_env" ]; then
        # shellcheck source=/dev/null
        . "$login_env"
    fi
    HOME=$home USER=$user LOGNAME=$user SHELL=$shell
    export HOME USER LOGNAME SHELL
}

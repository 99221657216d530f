#!/bin/sh
# vnc-desktop's start-up state: the system dbus needs /run/dbus (and no pid
# file left from an earlier run) and a machine id of this container; X needs
# root-owned sticky /tmp/.X11-unix and /tmp/.ICE-unix and no display locks or
# sockets left from an earlier run, whoever left them (no X server, and no
# process of any user, runs before the hooks); the session needs a private
# runtime directory /run/user/<uid>, emptied at every start.
# The VNC password comes from a secret or, the first time without one, is
# generated: 8 random characters (VNC authentication uses only 8), the
# plaintext left for the user in ~/.vnc/password.txt, mode 0600. Options
# from /etc/composer/options/vnc-desktop.json.
set -eu
# shellcheck source=../../base/files/hooklib.sh
. "${COMPOSER_HOOKLIB:-${COMPOSER_ROOT:-}/usr/local/lib/composer/hooklib.sh}"

conf=$root/etc/composer/options/vnc-desktop.json
vncpasswd=${COMPOSER_VNCPASSWD:-vncpasswd}

mkdir -p "$root/run/dbus"
chmod 0755 "$root/run/dbus"
rm -f "$root/run/dbus/pid" "$root/run/dbus/system_bus_socket"
if [ ! -s "$root/etc/machine-id" ] && command -v dbus-uuidgen > /dev/null; then
    dbus-uuidgen > "$root/etc/machine-id"
fi

# The X and ICE (session manager) socket folders. /tmp is everyone's and may
# keep what a user left there in an earlier run (a symlink to /etc, or a
# folder of their own to catch the session's sockets): anything there that is
# not a directory of ours goes, and ours is made with mkdir, never chmod'ed
# through a path a user could have swapped (once ours, the sticky /tmp keeps
# it ours).
for dir in "$root/tmp/.X11-unix" "$root/tmp/.ICE-unix"; do
    if [ -L "$dir" ] || [ ! -d "$dir" ] || [ ! -O "$dir" ]; then
        rm -rf "$dir"
        mkdir -m 1777 "$dir"
    fi
    if [ "$(stat -c %a "$dir")" != 1777 ]; then
        chmod 1777 "$dir"
    fi
done
rm -f "$root"/tmp/.X*-lock "$root"/tmp/.X11-unix/X*

[ -f "$conf" ] || exit 0
user=$(jq -r '.user' "$conf")
secret=$(jq -r '.password_secret' "$conf")
if ! lookup_user "$user"; then
    log "no user $user; no VNC password set"
    exit 0
fi
# /run/user and all above it are root's: nobody else can plant a link here.
# Nothing of the user runs before the hooks, so last run's directory goes.
run_user=$root/run/user
if [ -L "$run_user" ]; then
    rm -f "$run_user"
fi
mkdir -p "$run_user"
chmod 0755 "$run_user"
rm -rf "${run_user:?}/$uid"
mkdir -m 0700 "$run_user/$uid"
chown -h "$uid:$gid" "$run_user/$uid"

vnc=$home/.vnc
[ -d "$home" ] && mkdir_owned "$uid" "$gid" "$home" .vnc 0700 || exit 0

if password=$(read_secret "$secret"); then
    if [ "${#password}" -gt 8 ]; then
        log "$secret is longer than 8 characters; VNC uses only the first 8"
    fi
    printf '%s\n' "$password" | "$vncpasswd" -f | write_owned "$uid" "$gid" "$vnc/passwd"
    # A generated password from an earlier start is no longer the password.
    rm -f "$vnc/password.txt"
    log "VNC password set from $secret"
elif [ -s "$vnc/passwd" ] && [ ! -L "$vnc/passwd" ] &&
    [ -s "$vnc/password.txt" ] && [ ! -L "$vnc/password.txt" ]; then
    log "keeping the VNC password generated earlier (~$user/.vnc/password.txt)"
else
    password=$(LC_ALL=C tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 8)
    printf '%s\n' "$password" | write_owned "$uid" "$gid" "$vnc/password.txt"
    printf '%s\n' "$password" | "$vncpasswd" -f | write_owned "$uid" "$gid" "$vnc/passwd"
    log "generated a VNC password: see ~$user/.vnc/password.txt"
fi

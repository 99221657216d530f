#!/bin/sh
# Start-up state for the desktop: the system dbus needs /run/dbus (and no pid
# file left from an earlier run) and a machine id of this container; X needs
# a root-owned sticky /tmp/.X11-unix and no display locks left from an earlier
# run (no X server runs before the hooks). The VNC password comes from a
# secret or, the first time without one, is generated: 8 random characters
# (VNC authentication uses only 8), the plaintext left for the user in
# ~/.vnc/password.txt, mode 0600. Options from /etc/composer/options/vnc-desktop.json.
set -eu
# shellcheck source=../layers/base/files/hooklib.sh
. "${COMPOSER_HOOKLIB:-${COMPOSER_ROOT:-}/usr/local/lib/composer/hooklib.sh}"

conf=$root/etc/composer/options/vnc-desktop.json
vncpasswd=${COMPOSER_VNCPASSWD:-vncpasswd}

mkdir -p "$root/run/dbus"
chmod 0755 "$root/run/dbus"
rm -f "$root/run/dbus/pid" "$root/run/dbus/system_bus_socket"
if [ ! -s "$root/etc/machine-id" ] && command -v dbus-uuidgen > /dev/null; then
    dbus-uuidgen > "$root/etc/machine-id"
fi

mkdir -p "$root/tmp/.X11-unix"
chmod 1777 "$root/tmp/.X11-unix"
rm -f "$root"/tmp/.X*-lock "$root"/tmp/.X11-unix/X*

[ -f "$conf" ] || exit 0
user=$(jq -r '.user' "$conf")
secret=$(jq -r '.password_secret' "$conf")
if ! lookup_user "$user"; then
    log "no user $user; no VNC password set"
    exit 0
fi
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
elif [ -s "$vnc/passwd" ] && [ -s "$vnc/password.txt" ]; then
    log "keeping the VNC password generated earlier (~$user/.vnc/password.txt)"
else
    password=$(LC_ALL=C tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 8)
    printf '%s\n' "$password" | write_owned "$uid" "$gid" "$vnc/password.txt"
    printf '%s\n' "$password" | "$vncpasswd" -f | write_owned "$uid" "$gid" "$vnc/passwd"
    log "generated a VNC password: see ~$user/.vnc/password.txt"
fi

#!/bin/sh
# Record the options for the service wrappers and the start hook, and take
# out every screen locker / screensaver: on a VNC desktop a lock screen only
# locks the user out (the account has no password to unlock it with).
set -eu

mkdir -p /etc/composer
jq '{display, geometry, depth, port, user, password_secret}' /run/composer/options.json \
    > /etc/composer/vnc.json
chmod 0644 /etc/composer/vnc.json

lockers="xfce4-screensaver light-locker xscreensaver"
for pkg in $lockers; do
    case $COMPOSER_FAMILY in
        debian)
            if dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
                DEBIAN_FRONTEND=noninteractive apt-get purge -y "$pkg"
            fi
            ;;
        arch)
            if pacman -Q "$pkg" > /dev/null 2>&1; then
                pacman -Rns --noconfirm "$pkg"
            fi
            ;;
    esac
done
# Should one come back as a dependency later, its autostart entry stays hidden.
mkdir -p /etc/xdg/autostart
for entry in xfce4-screensaver light-locker xscreensaver; do
    printf '[Desktop Entry]\nType=Application\nName=%s\nHidden=true\n' "$entry" \
        > "/etc/xdg/autostart/$entry.desktop"
done

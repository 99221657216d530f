#!/bin/sh
# Take out every screen locker / screensaver: on a VNC desktop a lock screen only locks
# the user out (the account has no password to unlock it with).
set -eu
lockers="xfce4-screensaver light-locker xscreensaver"
# shellcheck disable=SC2086 # a fixed list of names
composer-remove $lockers
# Should one come back as a dependency later, its autostart entry stays hidden.
mkdir -p /etc/xdg/autostart
for entry in $lockers; do
    printf '[Desktop Entry]\nType=Application\nName=%s\nHidden=true\n' "$entry" \
        > "/etc/xdg/autostart/$entry.desktop"
done

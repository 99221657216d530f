#!/bin/sh
# System accounts that packages of several modules create (dbus: messagebus, pulled in
# by the desktop and by GUI apps alike). Made here, in the base every module builds on,
# they get one id everywhere: modules built side by side (restack layering) then agree
# on /etc/passwd and on the group of files such as dbus-daemon-launch-helper, and the
# packages' own scripts find the account and leave it as it is.
set -eu
. "$COMPOSER_LIB"
composer_opt_lines system_accounts | while IFS= read -r name; do
    getent group "$name" > /dev/null || groupadd --system "$name"
    getent passwd "$name" > /dev/null || useradd --system --gid "$name" --home-dir /nonexistent \
        --no-create-home --shell /usr/sbin/nologin "$name"
done

#!/bin/sh
# Make the generated /etc/composer/supervisord.conf the one config everything
# finds: supervisorctl (as root or as a socket-group member) looks at
# /etc/supervisord.conf before the package's own /etc/supervisor/supervisord.conf,
# and Arch's package installs /etc/supervisord.conf itself. The link dangles
# until the finalize step writes the config.
set -eu
. "$COMPOSER_LIB"

group=$(composer_opt group)
getent group "$group" > /dev/null 2>&1 || groupadd --system "$group"

mkdir -p /etc/composer
rm -f /etc/supervisord.conf
ln -s /etc/composer/supervisord.conf /etc/supervisord.conf

# Debian's own config would run a second, differently configured control
# socket if anyone started supervisord without -c; keep one source of truth.
if [ -f /etc/supervisor/supervisord.conf ]; then
    rm -f /etc/supervisor/supervisord.conf
    ln -s /etc/composer/supervisord.conf /etc/supervisor/supervisord.conf
fi
mkdir -p /var/log/supervisor

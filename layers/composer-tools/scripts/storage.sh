#!/bin/sh
# storage.conf for builds inside the container: the image's storage lives on a volume
# at /var/lib/containers (an overlay root cannot carry another overlay).
set -eu
driver=$COMPOSER_OPT_STORAGE_DRIVER
conf=/etc/containers/storage.conf
mkdir -p /etc/containers /var/lib/containers/storage
{
    echo '[storage]'
    echo "driver = \"$driver\""
    echo 'graphroot = "/var/lib/containers/storage"'
    echo 'runroot = "/run/containers/storage"'
    if [ "$driver" = overlay ]; then
        echo '[storage.options.overlay]'
        echo 'mount_program = "/usr/bin/fuse-overlayfs"'
        echo 'mountopt = "nodev"'
    fi
} > "$conf"
chmod 0644 "$conf"

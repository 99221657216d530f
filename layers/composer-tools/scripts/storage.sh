#!/bin/sh
# storage.conf for builds inside the container: the storage lives on a volume at
# /var/lib/containers, since the container's own overlay root cannot carry another overlay.
set -eu
driver=$COMPOSER_OPT_STORAGE_DRIVER
conf=/etc/containers/storage.conf
mkdir -p /etc/containers /var/lib/containers/storage
{
    echo '[storage]'
    if [ "$driver" = fuse-overlayfs ]; then echo 'driver = "overlay"'; else echo "driver = \"$driver\""; fi
    echo 'graphroot = "/var/lib/containers/storage"'
    echo 'runroot = "/run/containers/storage"'
    if [ "$driver" = fuse-overlayfs ]; then
        echo '[storage.options.overlay]'
        echo 'mount_program = "/usr/bin/fuse-overlayfs"'
        echo 'mountopt = "nodev"'
    fi
} > "$conf"
chmod 0644 "$conf"

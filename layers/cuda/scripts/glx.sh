#!/bin/sh
# Keep Mesa's libGL selected: the toolkit's glx-diversions switch the glx
# alternative to NVIDIA's libraries, which only the container runtime provides.
set -eu
[ "$(jq -r '.mesa_glx' "$COMPOSER_OPTIONS")" = true ] || exit 0
if update-alternatives --list glx 2>/dev/null | grep -qx /usr/lib/mesa-diverted; then
    update-alternatives --set glx /usr/lib/mesa-diverted
fi

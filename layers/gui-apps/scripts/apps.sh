#!/bin/sh
# Install the chosen applications with the family's package manager. composer
# mounts the package caches and cleans up after the step, so no clean here.
set -eu
set -f
opts=/run/composer/options.json
pkgs=""
for app in $(jq -r '.apps[]' "$opts"); do
    case "$COMPOSER_FAMILY:$app" in
        debian:qgis) pkgs="$pkgs qgis python3-qgis" ;;
        debian:kicad) pkgs="$pkgs kicad kicad-symbols kicad-footprints" ;;
        debian:firefox) pkgs="$pkgs firefox-esr" ;;
        debian:chromium) pkgs="$pkgs chromium fonts-liberation" ;;
        arch:qgis) pkgs="$pkgs qgis python-gdal" ;;
        arch:kicad) pkgs="$pkgs kicad kicad-library" ;;
        *:*) pkgs="$pkgs $app" ;;
    esac
done
[ -n "$pkgs" ] || exit 0
echo "gui-apps: installing$pkgs"
case "$COMPOSER_FAMILY" in
    debian)
        apt-get update -q
        # With the cuda module's glx-diversions present, Mesa's libGL only appears
        # once Mesa is installed, and the glx alternative then stays on NVIDIA's
        # (absent) libraries: qgis' postinst (crssync) fails on libGL.so.1. Install
        # Mesa's GL first and select it, before any application configures.
        if update-alternatives --list glx >/dev/null 2>&1; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libgl1 libglx-mesa0
            if update-alternatives --list glx | grep -qx /usr/lib/mesa-diverted; then
                update-alternatives --set glx /usr/lib/mesa-diverted
            fi
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs
        ;;
    arch) pacman -Sy --noconfirm --needed $pkgs ;;
esac

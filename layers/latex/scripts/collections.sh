#!/bin/sh
# Install the chosen TeX Live collections with the family's package manager. composer
# mounts the package caches and cleans up after the step, so no clean here.
set -eu
set -f
opts=/run/composer/options.json
pkgs=""
for c in $(jq -r '.collections[]' "$opts"); do
    case "$COMPOSER_FAMILY:$c" in
        debian:biber) pkgs="$pkgs biber" ;;
        debian:*) pkgs="$pkgs texlive-$c" ;;
        arch:biber) pkgs="$pkgs biber" ;;
        arch:fonts-recommended) pkgs="$pkgs texlive-fontsrecommended" ;;
        arch:latex-recommended) pkgs="$pkgs texlive-latexrecommended" ;;
        arch:latex-extra) pkgs="$pkgs texlive-latexextra" ;;
        arch:bibtex-extra) pkgs="$pkgs texlive-bibtexextra" ;;
        arch:lang-european) pkgs="$pkgs texlive-langeuropean" ;;
        arch:*) pkgs="$pkgs texlive-$c" ;;
    esac
done
if [ -n "$pkgs" ]; then
    echo "latex: installing$pkgs"
    case "$COMPOSER_FAMILY" in
        debian)
            apt-get update -q
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $pkgs
            ;;
        arch) pacman -Sy --noconfirm --needed $pkgs ;;
    esac
fi
# Regenerated caches make the layer differ between builds without need.
rm -rf /var/lib/texmf/luatex-cache /root/.texlive* 2>/dev/null || true
pdflatex --version | head -n 1

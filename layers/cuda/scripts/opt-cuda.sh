#!/bin/sh
# Debian spreads the toolkit over /usr (nvcc in /usr/bin, libraries in the
# multiarch dir, headers in /usr/include); give it the /opt/cuda layout that
# CUDA_HOME users (CMake, torch extensions, the seed's PATH) expect.
set -eu
cuda=/opt/cuda
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
toolkit=/usr/lib/nvidia-cuda-toolkit
mkdir -p "$cuda/bin" "$cuda/lib64"

# bin: the toolkit's commands in /usr/bin. Not the files of $toolkit/bin: nvcc
# looks for crt/ and nvcc.profile beside the path it was started by, and that
# folder's gcc/g++ wrappers must not shadow the system compiler on PATH;
# /usr/bin/nvcc is Debian's wrapper that runs the real one from $toolkit/bin.
pkgs=$(dpkg-query -W -f '${Package} ${source:Package}\n' | awk '$2 == "nvidia-cuda-toolkit" || $2 == "nvidia-cuda-gdb" || $1 ~ /^nvidia-cuda-/ {print $1}')
for pkg in $pkgs; do
    dpkg -L "$pkg" | grep -E '^/usr/bin/[^/]+$' || true
done | sort -u | while IFS= read -r exe; do
    [ -x "$exe" ] && [ ! -d "$exe" ] && ln -sf "$exe" "$cuda/bin/$(basename "$exe")"
done

# lib64: the CUDA libraries of every installed package built from the toolkit's sources.
dpkg-query -W -f '${Package} ${source:Package}\n' \
    | awk '$2 ~ /^nvidia-cuda-toolkit$|^nvidia-cuda|^nvidia-cudnn|^cuda/ || $1 ~ /^lib(cu|nv|npp)/ {print $1}' \
    | while IFS= read -r pkg; do dpkg -L "$pkg"; done \
    | grep -E "^/usr/lib/$multiarch/lib(cu|nv|npp|accinj|OpenCL)[^/]*\.(so|a)[.0-9]*$" \
    | grep -v libnvidia- | sort -u | while IFS= read -r lib; do
        ln -sf "$lib" "$cuda/lib64/$(basename "$lib")"
    done

ln -sfn /usr/include "$cuda/include"
for dir in nvvm libdevice extras share; do
    [ -e "$toolkit/$dir" ] && ln -sfn "$toolkit/$dir" "$cuda/$dir"
done
printf '%s\n' "$cuda/lib64" > /etc/ld.so.conf.d/composer-cuda.conf
ldconfig
echo "cuda: /opt/cuda/bin has $(ls "$cuda/bin" | wc -l) tools, lib64 $(ls "$cuda/lib64" | wc -l) libraries"
"$cuda/bin/nvcc" --version | tail -n 2

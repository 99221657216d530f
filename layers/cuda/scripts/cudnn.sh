#!/bin/sh
# cuDNN from PyPI's nvidia-cudnn wheel (the Debian package downloads from NVIDIA
# at install time). Into the shared venv, so torch's own cuDNN is reused.
set -eu
opts=$COMPOSER_OPTIONS
[ "$(jq -r '.cudnn' "$opts")" = pip ] || exit 0
venv=$(jq -r '.cudnn_venv' "$opts")
spec=$(jq -r '.cudnn_package' "$opts")
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --no-cache-dir "$spec"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
dir="$site/nvidia/cudnn"
mkdir -p /opt/cuda/lib64
for lib in "$dir"/lib/libcudnn*.so*; do
    ln -sf "$lib" "/opt/cuda/lib64/$(basename "$lib")"
    # The wheel ships only the versioned names; the linker looks for libcudnn*.so.
    case "$lib" in *.so.[0-9]*) ln -sf "$lib" "/opt/cuda/lib64/$(basename "$lib" | sed 's/\.so\..*/.so/')" ;; esac
done
# /opt/cuda/include is /usr/include; /usr/local/include is on every compiler's path.
for header in "$dir"/include/*.h; do
    ln -sf "$header" "/usr/local/include/$(basename "$header")"
done
ldconfig
echo "cuda: cuDNN $("$venv/bin/pip" show "${spec%%[<>=!~]*}" | sed -n 's/^Version: //p') linked into /opt/cuda/lib64"

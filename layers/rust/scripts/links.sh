#!/bin/sh
# Debian renames two binaries to avoid clashes; give them their usual names.
set -eu
ln -sf /usr/bin/batcat /usr/local/bin/bat
ln -sf /usr/bin/fdfind /usr/local/bin/fd
# lld provides wasm-ld through the versioned LLVM package; check it is on PATH.
command -v wasm-ld >/dev/null || ln -sf "$(ls /usr/bin/wasm-ld-* | sort -V | tail -n 1)" /usr/local/bin/wasm-ld
rustc --version
cargo --version

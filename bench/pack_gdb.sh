#!/usr/bin/env bash
# Packs Debian's gdb-minimal and the shared libraries it loads (all but glibc's and the C++
# runtime, which the device image has in newer versions) into the ignored .gpu/gdb.tgz, for
# `bash bench/h200_s32_session.sh stack` (the device image has no debugger). Run in the
# checkout's root after ../shared/gpu/prepare; about 11 MB.
set -euo pipefail
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download -qq gdb-minimal 2>/dev/null)
dpkg -x "$work"/gdb-minimal_*.deb "$work/root"
mkdir -p "$work/pack/lib"
cp "$work/root/usr/bin/gdb" "$work/pack/"
ldd "$work/root/usr/bin/gdb" | awk '/=>/ {print $3}' |
  grep -v -E '/(libc|libm|libpthread|libdl|librt|libgcc_s|libstdc\+\+)\.so' |
  while read -r lib; do cp -L "$lib" "$work/pack/lib/"; done
mkdir -p .gpu
tar -czf .gpu/gdb.tgz -C "$work/pack" .
echo "packed $(du -h .gpu/gdb.tgz | cut -f1) into .gpu/gdb.tgz"

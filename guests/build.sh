#!/bin/sh
# Rebuilds every guest's bytes from its source: `sh guests/build.sh` (needs nasm, from
# Debian's package of that name). The .bin files are committed, so nothing else needs it.
set -e
cd "$(dirname "$0")"
for src in *.asm; do
  nasm -f bin -I ./ -o "${src%.asm}.bin" "$src"
done

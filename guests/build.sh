#!/bin/sh
# Rebuilds every guest's bytes from its source: `sh guests/build.sh` (needs nasm, and
# binutils' ld for the ELF test kernel, from Debian's packages of those names). The
# built files are committed, so nothing else needs them.
set -e
cd "$(dirname "$0")"
for src in *.asm; do
  [ "$src" = test_kernel.asm ] && continue
  nasm -f bin -I ./ -o "${src%.asm}.bin" "$src"
done
# The test kernel, as a bzImage and as an ELF vmlinux.
nasm -f bin -o test_kernel.bzImage test_kernel.asm
nasm -f elf64 -DELF -o /tmp/vcpu_test_kernel.o test_kernel.asm
ld -n -static -Ttext=0x100000 -e startup_64 -o test_kernel.elf /tmp/vcpu_test_kernel.o
rm -f /tmp/vcpu_test_kernel.o
# arm64 guests (GNU as syntax), with Debian's binutils-aarch64-linux-gnu.
if command -v aarch64-linux-gnu-as >/dev/null; then
  for src in aarch64/*.S; do
    aarch64-linux-gnu-as -o /tmp/vcpu_guest.o "$src"
    aarch64-linux-gnu-ld -Ttext=0x1000 -o /tmp/vcpu_guest.elf /tmp/vcpu_guest.o
    aarch64-linux-gnu-objcopy -O binary /tmp/vcpu_guest.elf "${src%.S}.bin"
  done
  rm -f /tmp/vcpu_guest.o /tmp/vcpu_guest.elf
fi
# The virtio test guest, a freestanding C "kernel" (needs gcc).
gcc -ffreestanding -fno-pic -fno-pie -no-pie -nostdlib -static -O2 -mgeneral-regs-only -mno-red-zone \
  -fno-stack-protector -fno-asynchronous-unwind-tables -fcf-protection=none -fno-builtin \
  -Wl,-T,virtio/kernel.ld -Wl,-z,max-page-size=4096 -Wl,--build-id=none -Wl,--no-warn-rwx-segments \
  -o virtio/virtio_test.elf virtio/virtio_test.c

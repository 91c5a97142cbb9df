// Spins forever without an exit: only a kick gets the vcpu out. arm64, at 0x1000.
    .text
    .global _start
_start:
    b    _start

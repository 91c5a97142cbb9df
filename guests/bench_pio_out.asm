; Benchmark: one port write per loop, forever (the host stops after N exits).
bits 64
org 0x1000
again:
    out 0x10, al
    jmp again

; Benchmark: one port read per loop, forever.
bits 64
org 0x1000
again:
    in al, 0x10
    jmp again

; Benchmark: hypercall 1 (argument 0 = loop count) per loop, forever.
bits 64
org 0x1000
%include "hypercall.inc"
    xor ebx, ebx
again:
    inc rbx
    VCPU_HYPERCALL 1
    jmp again

; A hostile guest: hypercall 2 (LOG(ptr, len)) naming a buffer of 2^38 bytes at 0x1000,
; far more than its memory. The host's `readBuffer` must refuse it (EFAULT), not try to
; allocate it. Then hlt. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
%include "hypercall.inc"
    mov rbx, 0x1000
    mov rcx, 1 << 38
    VCPU_HYPERCALL 2
    hlt

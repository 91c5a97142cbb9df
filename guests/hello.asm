; The demo guest: prints a greeting on port 0x3f8 (string I/O), asks the host through
; hypercall 1 (SUM: pointer, count) to add up eight 64-bit numbers in its memory,
; writes the 64-bit answer to port 0x3f9 (two 32-bit outs: low, high), then hlt.
; 64-bit, loaded at 0x1000.
bits 64
org 0x1000
%include "hypercall.inc"
    cld
    lea rsi, [rel greeting]
    mov ecx, greeting_len
    mov dx, 0x3f8
    rep outsb
    lea rbx, [rel numbers]
    mov ecx, 8
    VCPU_HYPERCALL 1
    mov dx, 0x3f9
    out dx, eax
    shr rax, 32
    out dx, eax
    hlt
greeting: db "Hello from a 64-bit guest on /dev/kvm!", 10
greeting_len equ $ - greeting
align 8
numbers: dq 1, 1, 2, 3, 5, 8, 13, 21

; A hypercall with four arguments: id 7 (1, 2, 3, 4); the host's result arrives in rax.
; Then hlt. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
%include "hypercall.inc"
    mov rbx, 1
    mov rcx, 2
    mov rsi, 3
    mov rdi, 4
    VCPU_HYPERCALL 7
    hlt

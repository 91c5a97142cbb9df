; Calls two host functions through the hypercall ABI, passing buffers by address:
;   1 UPPER(ptr, len): the host upper-cases the guest's string in place; rax = len
;   2 LOG(ptr, len):   the host prints the string; rax = 0
; then hlt. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
%include "hypercall.inc"
    lea rbx, [rel text]
    mov ecx, text_len
    VCPU_HYPERCALL 1
    lea rbx, [rel text]
    mov ecx, text_len
    VCPU_HYPERCALL 2
    hlt
text: db "hello from guest memory"
text_len equ $ - text

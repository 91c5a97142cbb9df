; Adds 1 to the 64-bit counter at 0x5000 rcx times with `lock inc` (rcx set by the
; host), then writes 1 to port 0x44. Every vcpu of an SMP test runs it.
; 64-bit, loaded at 0x1000.
bits 64
org 0x1000
.again:
    lock inc qword [0x5000]
    dec rcx
    jnz .again
    mov al, 1
    out 0x44, al
    hlt

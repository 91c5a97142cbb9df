; Drives a memory-mapped adder at 0xd0000000 (the host emulates it): writes 40 to
; register A (+0) and 2 to register B (+8), reads the sum from register SUM (+16),
; and reports it with `out dx, eax` on port 0x3f9. Then hlt. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
    mov rbx, 0xd0000000
    mov qword [rbx], 40
    mov qword [rbx + 8], 2
    mov rax, qword [rbx + 16]
    mov dx, 0x3f9
    out dx, eax
    hlt

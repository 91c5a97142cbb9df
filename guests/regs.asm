; Reads registers the host set and sets others: rax = rax + rbx; rcx = 0xc0ffee;
; rdx = rip of the next instruction, then hlt. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
    add rax, rbx
    mov ecx, 0xc0ffee
    lea rdx, [rel after]
after:
    hlt

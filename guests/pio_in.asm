; Port input at each width, kept in registers: bl <- in 0x20 (1 byte),
; cx <- in 0x22 (2), edx <- in 0x24 (4), then hlt. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
    xor ebx, ebx
    xor ecx, ecx
    in al, 0x20
    mov bl, al
    in ax, 0x22
    mov cx, ax
    in eax, 0x24
    mov edx, eax
    hlt

; String input with a huge count: `rep insb` of rcx bytes (set by the host) from port
; 0x31 to 0x100000, then hlt. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
    cld
    mov rdi, 0x100000
    mov dx, 0x31
    rep insb
    hlt

; String port I/O: rep outsb of the 4 bytes at 0x2000 to port 0x30, then rep insb of
; 4 bytes from port 0x31 to 0x3000, then hlt. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
    cld
    mov rsi, 0x2000
    mov ecx, 4
    mov dx, 0x30
    rep outsb
    mov rdi, 0x3000
    mov ecx, 4
    mov dx, 0x31
    rep insb
    hlt

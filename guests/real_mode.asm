; 16-bit real mode, CS base 0, loaded at 0x1000: out 0x42 to port 0x10, read a byte
; from port 0x11 into bl, add 1 to it, write [0x2000] = bl, then hlt.
bits 16
org 0x1000
    mov al, 0x42
    out 0x10, al
    in al, 0x11
    mov bl, al
    inc bl
    mov [0x2000], bl
    hlt

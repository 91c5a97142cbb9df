; Writes the byte 0x55 to [rbx], then reads [rbx] into al, then hlt. The host sets rbx:
; used against read-only and removed memory. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
    mov byte [rbx], 0x55
    mov al, byte [rbx]
    hlt

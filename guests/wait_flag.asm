; Spins until the host sets the byte at 0x3000, then writes it to port 0x10 and halts:
; a guest that exits only once the host says so. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
poll:
    mov al, [0x3000]
    test al, al
    jz poll
    out 0x10, al
    hlt

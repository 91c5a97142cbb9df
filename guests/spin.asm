; Spins forever: only an immediate exit or a kick stops it. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
    jmp $

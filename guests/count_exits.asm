; Counts its own exits: adds 1 to the 64-bit counter at 0x5000, then writes to port
; 0x10 (an exit), forever. The host counts the exits it handles; the two must match.
; 64-bit, loaded at 0x1000.
bits 64
org 0x1000
again:
    inc qword [0x5000]
    out 0x10, al
    jmp again

; Counts in a register and in memory: rbx += 1, stored at 0x5000 and written to port
; 0x10 (an exit whose data is the count), forever. A snapshot taken at any exit
; resumes with the next number. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
again:
    inc rbx
    mov [0x5000], rbx
    mov eax, ebx
    out 0x10, eax
    jmp again

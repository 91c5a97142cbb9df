; Writes one dword into each of 1000 pages from 2 MiB up (0x200000 + 4096 n), then
; reports on port 0x10 and halts. For reset tests: every page it wrote must come back.
; 64-bit, loaded at 0x1000.
bits 64
org 0x1000
    mov rdi, 0x200000
    mov ecx, 1000
    mov eax, 0xdeadbeef
next:
    mov [rdi], eax
    add rdi, 4096
    dec ecx
    jnz next
    out 0x10, al
    hlt

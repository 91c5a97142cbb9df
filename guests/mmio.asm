; MMIO at an address no memory slot backs (rbx = 0x30000000, inside the 1 GiB the
; long-mode page tables map). Writes 1, 2, 4, 8 bytes at rbx+0/8/16/24, then reads
; 1, 2, 4, 8 bytes from rbx+32/40/48/56 into ecx, edx, esi, rdi, then hlt.
bits 64
org 0x1000
    mov rbx, 0x30000000
    mov byte [rbx], 0x11
    mov word [rbx + 8], 0x2222
    mov dword [rbx + 16], 0x44444444
    mov rax, 0x8877665544332211
    mov qword [rbx + 24], rax
    movzx ecx, byte [rbx + 32]
    movzx edx, word [rbx + 40]
    mov esi, dword [rbx + 48]
    mov rdi, qword [rbx + 56]
    hlt

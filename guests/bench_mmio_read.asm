; Benchmark: one 4-byte MMIO read per loop at 0x30000000, forever.
bits 64
org 0x1000
    mov rbx, 0x30000000
again:
    mov eax, dword [rbx]
    jmp again

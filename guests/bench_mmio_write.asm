; Benchmark: one 4-byte MMIO write per loop at 0x30000000 (no memory there), forever.
bits 64
org 0x1000
    mov rbx, 0x30000000
again:
    mov dword [rbx], eax
    jmp again

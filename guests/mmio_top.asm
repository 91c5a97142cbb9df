; MMIO at the top of the 4 GiB the long-mode tables map: reads 4 bytes at 0xfffffffc
; into eax, then hlt. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
    mov rbx, 0xfffffffc
    mov eax, dword [rbx]
    hlt

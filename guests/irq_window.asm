; Interrupts disabled, then enabled: an IDT at 0x3000 with a handler for vector 0x40
; (it writes 0x40 to port 0x600), then `cli`, writes of 1 and 3 to port 0x10 (exits with
; interrupts off) around some work, `sti`, a write of 2 to port 0x10, and `hlt`. An
; interrupt taken inside the cli section would show as 0x40 on port 0x600 before the 3.
; 64-bit, loaded at 0x1000.
bits 64
org 0x1000
%include "idt.inc"
    IDT_GATE 0x40, handler
    lidt [rel idtr]
    cli
    mov al, 1
    out 0x10, al
    mov ecx, 100
.busy:
    dec ecx
    jnz .busy
    mov al, 3
    out 0x10, al
    sti
    nop
    mov al, 2
    out 0x10, al
    hlt
handler:
    mov al, 0x40
    mov dx, 0x600
    out dx, al
    iretq
IDT_REGISTER

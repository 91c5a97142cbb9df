; Waits for interrupt 0x40: installs a 64-bit interrupt gate for it in an IDT at
; 0x3000, enables the local APIC if rbx != 0 (in-kernel irqchip: SVR = 0x1ff), sets the
; byte at 0x4000 to 1 (ready), then `sti; hlt`. The handler writes vector 0x40 to port
; 0x600; if it ever returns from hlt without one, it writes 0xff there instead. (Ports
; 0x40-0x43 would go to the in-kernel PIT.)
; 64-bit, loaded at 0x1000.
bits 64
org 0x1000
%include "idt.inc"
    IDT_GATE 0x40, handler
    lidt [rel idtr]
    test rbx, rbx
    jz .ready
    mov rsi, 0xfee00000              ; the local APIC's registers
    mov dword [rsi + 0xf0], 0x1ff    ; spurious vector register: enable
.ready:
    mov byte [0x4000], 1
    sti
    hlt
    mov al, 0xff
    mov dx, 0x600
    out dx, al
    hlt
handler:
    mov al, 0x40
    mov dx, 0x600
    out dx, al
    test rbx, rbx
    jz .done
    mov rsi, 0xfee00000
    mov dword [rsi + 0xb0], 0        ; LAPIC EOI
.done:
    iretq
IDT_REGISTER

; The VM device surface, guest side (in-kernel irqchip):
;  1. three `out 0x700, al` and two `mov dword [0xd0000000], 0x1234`: with ioevents
;     registered they complete in the kernel (no exit); then one write of 0x9999 there,
;     which matches no datamatch and exits as MMIO;
;  2. masks the 8259s, routes GSI 10 to vector 0x40 in the IOAPIC, enables the local APIC, reports ready
;     on port 0x601, and waits (`sti; hlt`) for the interrupt twice: the handler writes
;     0x40 to port 0x600 and EOIs. Then hlt.
; 64-bit, loaded at 0x1000.
bits 64
org 0x1000
%include "idt.inc"
    IDT_GATE 0x40, handler
    lidt [rel idtr]
    mov dx, 0x700
    out dx, al
    out dx, al
    out dx, al
    mov rdi, 0xd0000000
    mov dword [rdi], 0x1234
    mov dword [rdi], 0x1234
    mov dword [rdi], 0x9999
    mov al, 0xff                     ; the 8259s would deliver GSI 10 too (through
    out 0x21, al                     ; LINT0, ExtINT on the BSP): mask them, only the
    out 0xa1, al                     ; IOAPIC delivers
    mov rsi, 0xfec00000              ; IOAPIC: redirection entry of pin 10
    mov dword [rsi], 0x10 + 2 * 10
    mov dword [rsi + 0x10], 0x40     ; vector 0x40, fixed, edge, unmasked
    mov dword [rsi], 0x11 + 2 * 10
    mov dword [rsi + 0x10], 0        ; to APIC 0
    mov rsi, 0xfee00000
    mov dword [rsi + 0xf0], 0x1ff    ; local APIC on
    mov dx, 0x601
    out dx, al                       ; ready for the first interrupt
    sti
    hlt
    cli
    mov dx, 0x601
    out dx, al                       ; ready for the second
    sti
    hlt
    cli
    hlt
handler:
    mov al, 0x40
    mov dx, 0x600
    out dx, al
    mov rsi, 0xfee00000
    mov dword [rsi + 0xb0], 0        ; EOI
    iretq
IDT_REGISTER

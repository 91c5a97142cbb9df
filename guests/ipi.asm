; Sends IPI vector 0x40 to the vcpu with APIC id 1 once it is ready (byte at 0x4000 is
; 1), through this vcpu's local APIC (enabled first), then writes 1 to port 0x601.
; 64-bit, loaded at 0x2000 (next to irq.asm at 0x1000).
bits 64
org 0x2000
    mov rsi, 0xfee00000              ; the local APIC's registers
    mov dword [rsi + 0xf0], 0x1ff    ; spurious vector register: enable
.wait:
    pause
    cmp byte [0x4000], 1
    jne .wait
    mov dword [rsi + 0x310], 1 << 24 ; ICR high: destination APIC id 1
    mov dword [rsi + 0x300], 0x40    ; ICR low: fixed delivery, vector 0x40 (sends)
    mov al, 1
    mov dx, 0x601
    out dx, al
    hlt

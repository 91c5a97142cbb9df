; A multiprocessor start-up as a kernel does it: the boot vcpu (64-bit, at 0x2000) sends
; INIT and then SIPI (vector 1: start at 0x1000) to the vcpu with APIC id 1 through its
; local APIC, then writes 1 to port 0x601. The other vcpu, left waiting for SIPI, starts
; in real mode at 0x1000 and writes 0x42 to port 0x600. Loaded at 0x1000.
AP_VECTOR equ 1                          ; a SIPI starts the vcpu at vector << 12
org AP_VECTOR << 12
bits 16
ap_start:
    mov al, 0x42
    mov dx, 0x600
    out dx, al
    hlt
    times 0x1000 - ($ - $$) db 0

bits 64
bsp_start:
    mov rsi, 0xfee00000                  ; the local APIC's registers
    mov dword [rsi + 0xf0], 0x1ff        ; spurious vector register: enable
    mov dword [rsi + 0x310], 1 << 24     ; ICR high: destination APIC id 1
    mov dword [rsi + 0x300], 0x4500      ; ICR low: INIT, assert (sends)
    mov dword [rsi + 0x300], 0x4600 | AP_VECTOR  ; ICR low: SIPI to ap_start
    mov al, 1
    mov dx, 0x601
    out dx, al
    hlt

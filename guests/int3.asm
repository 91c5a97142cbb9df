; Executes fwait, then int3 in kernel mode with a handler for #BP (vector 3) in an IDT
; at 0x3000;
; the handler pulses the i8042 reset line (out 0x64, 0xfe). Without the handler running,
; it writes 0xee to port 0x600 and halts. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
    lea rax, [rel handler]
    mov rdi, 0x3000 + 3 * 16
    mov word [rdi], ax
    mov word [rdi + 2], 0x08
    mov word [rdi + 4], 0x8e00
    shr rax, 16
    mov word [rdi + 6], ax
    shr rax, 16
    mov dword [rdi + 8], eax
    mov dword [rdi + 12], 0
    lidt [rel idtr]
    fwait
    int3
    mov al, 0xee
    mov dx, 0x600
    out dx, al
    hlt
handler:
    mov al, 0xfe
    out 0x64, al
    hlt
align 8
idtr:
    dw 256 * 16 - 1
    dq 0x3000

// Writes 0x55 to read-only memory at 0x800000 (an MMIO write exit; memory keeps its
// byte), reads the byte back and reports it as an MMIO write to 0x10000000, then PSCI
// SYSTEM_OFF. arm64, loaded at 0x1000, MMU off.
    .text
    .global _start
_start:
    movz x1, #0x80, lsl #16             // 0x800000: read-only memory
    mov  w0, #0x55
    strb w0, [x1]
    ldrb w2, [x1]
    movz x9, #0x1000, lsl #16
    str  x2, [x9]
    ldr  x0, =0x84000008
    hvc  #0
    b    .
    .ltorg

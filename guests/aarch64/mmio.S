// MMIO writes and reads at widths 1, 2, 4 and 8 where there is no memory, then the
// values it read written back as 8-byte MMIO writes, then PSCI SYSTEM_OFF.
// arm64, loaded at 0x1000, MMU off.
    .text
    .global _start
_start:
    movz x1, #0x1000, lsl #16           // x1 = 0x10000000: no memory there
    mov  w0, #0x11
    strb w0, [x1]
    mov  w0, #0x2222
    strh w0, [x1, #8]
    ldr  w0, =0x33333333
    str  w0, [x1, #16]
    ldr  x0, =0x4444444444444444
    str  x0, [x1, #24]
    ldrb w2, [x1, #32]
    ldrh w3, [x1, #40]
    ldr  w4, [x1, #48]
    ldr  x5, [x1, #56]
    str  x2, [x1, #64]
    str  x3, [x1, #72]
    str  x4, [x1, #80]
    str  x5, [x1, #88]
    ldr  x0, =0x84000008                // PSCI SYSTEM_OFF
    hvc  #0
    b    .
    .ltorg

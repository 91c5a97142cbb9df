// An SMCCC call with three arguments the VMM answers (a SiP service call, SMC64 fast
// call 0xC2000001: KVM forwards it), then the four results written as MMIO, then PSCI
// SYSTEM_OFF. arm64, loaded at 0x1000, MMU off.
    .text
    .global _start
_start:
    ldr  x0, =0xc2000001
    mov  x1, #1
    mov  x2, #2
    mov  x3, #3
    hvc  #0
    movz x9, #0x1000, lsl #16           // 0x10000000: MMIO
    str  x0, [x9]
    str  x1, [x9, #8]
    str  x2, [x9, #16]
    str  x3, [x9, #24]
    ldr  x0, =0x84000008                // PSCI SYSTEM_OFF
    hvc  #0
    b    .
    .ltorg

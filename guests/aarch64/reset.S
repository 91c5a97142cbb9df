// PSCI SYSTEM_RESET at once. arm64, loaded at 0x1000.
    .text
    .global _start
_start:
    ldr  x0, =0x84000009                // PSCI SYSTEM_RESET
    hvc  #0
    b    .
    .ltorg

; Halts at once. Without an in-kernel irqchip, hlt exits to userspace.
bits 64
org 0x1000
    hlt

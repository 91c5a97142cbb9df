; ud2 with an empty IDT (limit 0): #UD cannot be delivered, #DF neither -> triple
; fault, which KVM reports as a shutdown. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
    ud2

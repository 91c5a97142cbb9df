; MSR exits: reads MSR 0x4b564d99 (one KVM does not know) into edx:eax and reports both
; halves on port 0x10 (eax, then edx), then writes 0x1122334455667788 to it, then hlt.
; With userspace MSRs both accesses exit to the host. 64-bit, loaded at 0x1000.
bits 64
org 0x1000
    mov ecx, 0x4b564d99
    rdmsr
    out 0x10, eax
    mov eax, edx
    out 0x10, eax
    mov ecx, 0x4b564d99
    mov eax, 0x55667788
    mov edx, 0x11223344
    wrmsr
    hlt

; A system call from user mode, the way every Linux program makes one: sets up user
; segments, EFER.SCE, STAR and LSTAR, drops to CPL 3 with iretq and runs `syscall`. The
; entry at LSTAR writes its CS selector to port 0x10: 0x08 (kernel code, CPL 0) on a
; KVM that carries out SYSCALL; a KVM that leaves the vcpu in user mode shows a user
; selector there (CPL 3 in its low bits).
; 64-bit, loaded at 0x1000, after the long-mode helper (identity map, PML4 at 0x9000).
bits 64
org 0x1000
    or qword [0x9000], 4             ; user access to the first 2 MiB: PML4[0],
    or qword [0xa000], 4             ; PDPT[0] and PD[0] get the U/S bit
    or qword [0xb000], 4
    mov rax, cr3
    mov cr3, rax
    lgdt [rel gdtr]
    mov ecx, 0xc0000080              ; EFER.SCE: syscall enabled
    rdmsr
    or eax, 1
    wrmsr
    mov ecx, 0xc0000081              ; STAR: the kernel's CS is 0x08 (SS 0x10)
    xor eax, eax
    mov edx, 0x00100008
    wrmsr
    mov ecx, 0xc0000082              ; LSTAR: where syscall goes
    lea rax, [rel entry]
    xor edx, edx
    wrmsr
    push 0x23                        ; SS: user data
    push 0x7000                      ; RSP
    push 0x2                         ; RFLAGS
    push 0x1b                        ; CS: user code, CPL 3
    lea rax, [rel user]
    push rax
    iretq
user:
    syscall
entry:
    mov ax, cs
    mov dx, 0x10
    out dx, al
    hlt
align 8
; null, kernel code 0x08, kernel data 0x10, user code 0x18, user data 0x20
gdt: dq 0, 0x00af9b000000ffff, 0x00cf93000000ffff, 0x00affb000000ffff, 0x00cff3000000ffff
gdtr: dw 5 * 8 - 1
      dq gdt

; A tiny test kernel for the Linux boot protocol: built as a bzImage (a real setup
; header, one setup sector, the protected-mode kernel at 1 MiB with its 64-bit entry at
; +0x200) and, with -DELF, as an ELF vmlinux of the same code. Entered in 64-bit mode
; with RSI = the zero page (boot_params), it checks and reports, on COM1:
;   vcpu-test-kernel
;   boot_params: ok            (boot_flag 0xAA55 and the "HdrS" magic)
;   loader: <type_of_loader>
;   e820: <addr> <size> <type> (one line per entry)
;   cmdline: <the command line>
;   initrd: <size> <sum of its bytes, 32 bits>
;   (if the command line starts with "echo": console input, upper-cased, up to a newline;
;    a carriage return, what a terminal's Enter key sends, counts as one)
;   bye
; then pulses the i8042 reset line (out 0x64, 0xfe): the VMM powers off. Numbers are
; hex without leading zeros. `lines` counts the newlines it wrote itself (a variable for
; debugger tests to watch).

%ifndef ELF
bits 16
org 0
    times 0x1f1 - ($ - $$) db 0
    db 1                          ; 0x1f1 setup_sects
    dw 0                          ; 0x1f2 root_flags
    dd (kernel_end - kernel_start + 15) / 16 ; 0x1f4 syssize
    dw 0                          ; 0x1f8 ram_size
    dw 0xffff                     ; 0x1fa vid_mode
    dw 0                          ; 0x1fc root_dev
    dw 0xaa55                     ; 0x1fe boot_flag
    db 0xeb, 0x66                 ; 0x200 jump
    db "HdrS"                     ; 0x202 header
    dw 0x020f                     ; 0x206 version
    dd 0                          ; 0x208 realmode_swtch
    dw 0x1000                     ; 0x20c start_sys_seg
    dw 0                          ; 0x20e kernel_version
    db 0                          ; 0x210 type_of_loader
    db 0x01                       ; 0x211 loadflags: LOADED_HIGH
    dw 0x8000                     ; 0x212 setup_move_size
    dd 0x100000                   ; 0x214 code32_start
    dd 0                          ; 0x218 ramdisk_image
    dd 0                          ; 0x21c ramdisk_size
    dd 0                          ; 0x220 bootsect_kludge
    dw 0                          ; 0x224 heap_end_ptr
    db 0                          ; 0x226 ext_loader_ver
    db 0                          ; 0x227 ext_loader_type
    dd 0                          ; 0x228 cmd_line_ptr
    dd 0x7fffffff                 ; 0x22c initrd_addr_max
    dd 0x200000                   ; 0x230 kernel_alignment
    db 0                          ; 0x234 relocatable_kernel
    db 21                         ; 0x235 min_alignment
    dw 1                          ; 0x236 xloadflags: XLF_KERNEL_64
    dd 2047                       ; 0x238 cmdline_size
    dd 0                          ; 0x23c hardware_subarch
    dq 0                          ; 0x240 hardware_subarch_data
    dd 0                          ; 0x248 payload_offset
    dd 0                          ; 0x24c payload_length
    dq 0                          ; 0x250 setup_data
    dq 0x100000                   ; 0x258 pref_address
    dd kernel_end - kernel_start  ; 0x260 init_size
    dd 0                          ; 0x264 handover_offset
    times 1024 - ($ - $$) db 0    ; the boot sector and one setup sector
%else
section .text
global startup_64
%endif

bits 64
kernel_start:                     ; loaded at 1 MiB
    ud2                           ; +0: the 32-bit entry, unused
    times 0x200 - ($ - kernel_start) db 0xcc
startup_64:                       ; +0x200: the 64-bit entry
    mov r15, rsi                  ; boot_params
    lea rsi, [rel s_banner]
    call puts
    cmp word [r15 + 0x1fe], 0xaa55
    jne bad
    cmp dword [r15 + 0x202], 0x53726448
    jne bad
    lea rsi, [rel s_ok]
    call puts
    lea rsi, [rel s_loader]
    call puts
    movzx eax, byte [r15 + 0x210]
    call puthex
    call newline
    movzx r12d, byte [r15 + 0x1e8] ; e820_entries
    lea r13, [r15 + 0x2d0]        ; e820_table
.e820:
    test r12d, r12d
    jz .cmdline
    lea rsi, [rel s_e820]
    call puts
    mov rax, [r13]
    call puthex
    call space
    mov rax, [r13 + 8]
    call puthex
    call space
    mov eax, [r13 + 16]
    call puthex
    call newline
    add r13, 20
    dec r12d
    jmp .e820
.cmdline:
    lea rsi, [rel s_cmdline]
    call puts
    mov esi, [r15 + 0x228]        ; cmd_line_ptr
    call puts
    call newline
    lea rsi, [rel s_initrd]
    call puts
    mov r14d, [r15 + 0x21c]       ; ramdisk_size
    mov eax, r14d
    call puthex                   ; (uses rcx, rdx, rdi, r8)
    call space
    mov ecx, r14d
    mov esi, [r15 + 0x218]        ; ramdisk_image
    xor ebx, ebx
.sum:
    test ecx, ecx
    jz .summed
    movzx eax, byte [rsi]
    add ebx, eax
    inc rsi
    dec ecx
    jmp .sum
.summed:
    mov eax, ebx
    call puthex
    call newline
    mov esi, [r15 + 0x228]
    cmp dword [rsi], 'echo'
    jne .bye
.read:
    mov dx, 0x3fd                 ; line status: bit 0 = a byte is waiting
.wait:
    in al, dx
    test al, 1
    jz .wait
    mov dx, 0x3f8
    in al, dx
    cmp al, 13                    ; Enter in a terminal: a newline
    jne .letter
    mov al, 10
.letter:
    cmp al, 'a'
    jb .echo
    cmp al, 'z'
    ja .echo
    sub al, 'a' - 'A'
.echo:
    out dx, al
    cmp al, 10
    jne .read
.bye:
    lea rsi, [rel s_bye]
    call puts
    jmp off
bad:
    lea rsi, [rel s_bad]
    call puts
off:
    mov al, 0xfe                  ; i8042: pulse the reset line
    out 0x64, al
.halt:
    hlt
    jmp .halt

; puts: the NUL-terminated string at rsi to COM1
puts:
    mov dx, 0x3f8
.next:
    lodsb
    test al, al
    jz .done
    out dx, al
    jmp .next
.done:
    ret

; puthex: rax in hex, no leading zeros
puthex:
    mov rdi, rax
    mov ecx, 16
    xor r8d, r8d                  ; a digit was printed
.digit:
    rol rdi, 4
    mov eax, edi
    and eax, 0xf
    dec ecx
    jz .last
    test eax, eax
    jnz .print
    test r8d, r8d
    jz .digit
.print:
    mov r8d, 1
    call putdigit
    jmp .digit
.last:
    call putdigit
    ret
putdigit:
    cmp al, 10
    jb .dec
    add al, 'a' - 10 - '0'
.dec:
    add al, '0'
    mov dx, 0x3f8
    out dx, al
    ret

space:
    mov al, ' '
    jmp putc
newline:
    inc qword [rel lines]
    mov al, 10
putc:
    mov dx, 0x3f8
    out dx, al
    ret

s_banner: db "vcpu-test-kernel", 10, 0
s_ok: db "boot_params: ok", 10, 0
s_bad: db "boot_params: BAD", 10, 0
s_loader: db "loader: ", 0
s_e820: db "e820: ", 0
s_cmdline: db "cmdline: ", 0
s_initrd: db "initrd: ", 0
s_bye: db "bye", 10, 0
align 8
lines: dq 0
kernel_end:

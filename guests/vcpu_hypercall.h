/*
 * The vcpu port-I/O hypercall ABI, guest side (C, x86-64, GCC/Clang inline asm).
 *
 *   id        written with `out dx, eax` to the hypercall port (default 0x500)
 *   arguments rbx, rcx, rsi, rdi, r8, r9   (arguments 0 to 5)
 *   results   rax, rbx, rcx, rdx           (results 0 to 3)
 *
 * rax is -1 (not supported) unless the host sets result 0; rbx, rcx, rdx keep their
 * values unless the host sets results 1 to 3.
 */
#ifndef VCPU_HYPERCALL_H
#define VCPU_HYPERCALL_H

#include <stdint.h>

#ifndef VCPU_HYPERCALL_PORT
#define VCPU_HYPERCALL_PORT 0x500
#endif

/* Calls hypercall `id` with up to four arguments; returns result 0. */
static inline uint64_t vcpu_hypercall4(uint32_t id, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3)
{
	uint64_t rax = id;
	uint64_t rdx = VCPU_HYPERCALL_PORT; /* the port in, result 3 (or unchanged) out */
	register uint64_t r8 __asm__("r8") = 0;
	register uint64_t r9 __asm__("r9") = 0;
	__asm__ volatile("out %%eax, %%dx"
			 : "+a"(rax), "+b"(a0), "+c"(a1), "+d"(rdx)
			 : "S"(a2), "D"(a3), "r"(r8), "r"(r9)
			 : "memory");
	return rax;
}

#endif

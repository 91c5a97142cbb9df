/*
 * The sandbox runtime: the entry point, the call loop, host calls and the few C library
 * functions freestanding code needs. The host writes a command into the mailbox and
 * resumes the guest after its last hypercall; the runtime reads the command there, so
 * it does not matter whether that hypercall was completed or the vcpu was reset or
 * restored just after it.
 */
#include "vcpu_guest.h"

#define HC_READY 0x53420001u
#define HC_RETURN 0x53420002u
#define HC_HOST_CALL 0x53420003u
#define HC_WAIT 0x53420005u
#define CMD_CALL 1u
#define CMD_RESULT 2u
#define MAGIC 0x3158425355504356ull /* "VCPUSBX1" */
#ifndef VCPU_HYPERCALL_PORT
#define VCPU_HYPERCALL_PORT 0x500
#endif

struct vcpu_mailbox {
  uint64_t magic;         /* the runtime's, once it started */
  uint64_t exports;       /* the guest address of the exports table */
  uint32_t export_count;
  uint32_t cmd;           /* host -> guest: CMD_CALL or CMD_RESULT; the guest clears it */
  uint32_t index;         /* CMD_CALL: which export */
  uint32_t argc;          /* CMD_CALL: how many arguments */
  uint64_t args;          /* CMD_CALL: the arguments; CMD_RESULT: the one result */
  uint64_t reserved;
  vcpu_value returned;    /* a call's result, where the host reads it at the RETURN exit */
};

#define MAILBOX ((volatile struct vcpu_mailbox *)VCPU_MAILBOX)

extern const struct vcpu_export __start_vcpu_exports[], __stop_vcpu_exports[];

__attribute__((weak)) void vcpu_init(void) {}

/* The hypercall: id in eax, arguments in rbx, rcx, rsi, rdi; rax..rdx may come back
 * changed. One call site, never inlined. */
__attribute__((noinline)) static void hypercall(uint32_t id, uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  uint64_t rax = id;
  __asm__ volatile("out %%eax, %%dx"
                   : "+a"(rax), "+b"(a), "+c"(b)
                   : "d"((uint16_t)VCPU_HYPERCALL_PORT), "S"(c), "D"(d)
                   : "memory");
}

/* Makes hypercall `id` and then serves the host's commands: calls, until a result
 * comes (returned), or forever. */
static const vcpu_value *serve(uint32_t id, uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  for (;;) {
    hypercall(id, a, b, c, d);
    uint32_t cmd = MAILBOX->cmd;
    MAILBOX->cmd = 0;
    if (cmd == CMD_RESULT)
      return (const vcpu_value *)(uintptr_t)MAILBOX->args;
    if (cmd == CMD_CALL) {
      uint32_t i = MAILBOX->index;
      const vcpu_value *args = (const vcpu_value *)(uintptr_t)MAILBOX->args;
      int argc = (int)MAILBOX->argc;
      size_t count = (size_t)(__stop_vcpu_exports - __start_vcpu_exports);
      /* In the mailbox's page, which the call touches anyway: one page fewer to fault
       * in after a reset or a restore. The host reads it before anything overwrites it. */
      vcpu_value r = i < count ? __start_vcpu_exports[i].fn(args, argc) : vcpu_void();
      MAILBOX->returned.type = r.type;
      MAILBOX->returned.len = r.len;
      MAILBOX->returned.u.i64 = r.u.i64;
      id = HC_RETURN, a = (uintptr_t)&MAILBOX->returned, b = c = d = 0;
      continue;
    }
    id = HC_WAIT, a = b = c = d = 0;
  }
}

vcpu_value vcpu_host_call(const char *name, const vcpu_value *args, int n) {
  return *serve(HC_HOST_CALL, (uintptr_t)name, strlen(name), (uintptr_t)args, (uint64_t)(n < 0 ? 0 : n));
}

__attribute__((noreturn, used)) void vcpu__main(void) {
  MAILBOX->exports = (uintptr_t)__start_vcpu_exports;
  MAILBOX->export_count = (uint32_t)(__stop_vcpu_exports - __start_vcpu_exports);
  MAILBOX->magic = MAGIC;
  vcpu_init();
  serve(HC_READY, 0, 0, 0, 0);
  for (;;)
    serve(HC_WAIT, 0, 0, 0, 0);
}

/* The host starts the vcpu here with RSP at the top of RAM. */
__asm__(".section .text.vcpu_start,\"ax\"\n"
        ".globl _start\n"
        "_start:\n"
        "  and $-16, %rsp\n"
        "  xor %ebp, %ebp\n"
        "  call vcpu__main\n"
        "  ud2\n"
        ".previous\n");

/* `rep movsb`/`rep stosb`: short, fast on current CPUs, and not a loop the compiler
 * would turn back into a call to itself. */
void *memcpy(void *dst, const void *src, size_t n) {
  void *d = dst;
  __asm__ volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
  return dst;
}

void *memmove(void *dst, const void *src, size_t n) {
  if ((uintptr_t)dst - (uintptr_t)src >= n) return memcpy(dst, src, n);
  void *d = (uint8_t *)dst + n - 1;
  const void *s = (const uint8_t *)src + n - 1;
  __asm__ volatile("std; rep movsb; cld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
  return dst;
}

void *memset(void *dst, int c, size_t n) {
  void *d = dst;
  __asm__ volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
  return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
  const uint8_t *x = a, *y = b;
  for (; n; n--, x++, y++)
    if (*x != *y) return *x - *y;
  return 0;
}

size_t strlen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

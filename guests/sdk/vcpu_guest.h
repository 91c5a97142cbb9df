/*
 * vcpu_guest.h: the guest side of `vcpu`'s sandboxes. A guest is freestanding C linked
 * with this directory's runtime (`npx vcpu build-guest a.c -o fn.elf`); it runs in
 * 64-bit long mode at CPL 3, and exchanges calls with the host through the mailbox at
 * VCPU_MAILBOX and the port-I/O hypercall ABI (docs/sandboxes.md).
 *
 *   #include <vcpu_guest.h>
 *   VCPU_EXPORT(add) {
 *     return vcpu_i64(vcpu_arg_i64(args, 0) + vcpu_arg_i64(args, 1));
 *   }
 *
 * Values: bigint <-> i64, number <-> f64, boolean <-> bool, string <-> str (UTF-8),
 * Uint8Array <-> bytes, undefined <-> void. A str or bytes argument stays valid until
 * the function returns; one a host call returns, until the next host call.
 */
#ifndef VCPU_GUEST_H
#define VCPU_GUEST_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The machine (the host's crates/vcpu-kvm/src/arch/x86_64/sandbox.rs mirrors these). */
#define VCPU_MAILBOX 0x100000UL
#define VCPU_MAILBOX_SIZE 0x100000UL
#define VCPU_MAX_ARGS 16

enum vcpu_type { VCPU_VOID, VCPU_I64, VCPU_F64, VCPU_BOOL, VCPU_STR, VCPU_BYTES };

typedef struct vcpu_value {
  uint32_t type; /* enum vcpu_type */
  uint32_t len;  /* str and bytes: the length in bytes (a str has a NUL after it) */
  union {
    int64_t i64;
    double f64;
    uint64_t ptr; /* str and bytes: the guest address of the first byte */
  } u;
} vcpu_value;

typedef vcpu_value (*vcpu_fn)(const vcpu_value *args, int n);

struct vcpu_export {
  const char *name;
  vcpu_fn fn;
};

/* Defines `vcpu_value name(const vcpu_value *args, int n)` and lists it for the host. */
#define VCPU_EXPORT(name)                                                              \
  vcpu_value name(const vcpu_value *args, int n);                                      \
  static const struct vcpu_export vcpu_export_##name                                   \
      __attribute__((used, section("vcpu_exports"), aligned(8))) = {#name, name};      \
  vcpu_value name(const vcpu_value *args __attribute__((unused)),                      \
                  int n __attribute__((unused)))

/* Arguments: the host always passes VCPU_MAX_ARGS values, void past the last one. A
 * value of another type converts where that makes sense (i64 <-> f64, bool), else 0. */
static inline const vcpu_value *vcpu__arg(const vcpu_value *args, int i) {
  static const vcpu_value none = {VCPU_VOID, 0, {0}};
  return (i >= 0 && i < VCPU_MAX_ARGS) ? &args[i] : &none;
}

static inline int64_t vcpu_arg_i64(const vcpu_value *args, int i) {
  const vcpu_value *v = vcpu__arg(args, i);
  switch (v->type) {
  case VCPU_I64: case VCPU_BOOL: return v->u.i64;
  case VCPU_F64: return (int64_t)v->u.f64;
  default: return 0;
  }
}

static inline double vcpu_arg_f64(const vcpu_value *args, int i) {
  const vcpu_value *v = vcpu__arg(args, i);
  switch (v->type) {
  case VCPU_F64: return v->u.f64;
  case VCPU_I64: case VCPU_BOOL: return (double)v->u.i64;
  default: return 0;
  }
}

static inline int vcpu_arg_bool(const vcpu_value *args, int i) {
  const vcpu_value *v = vcpu__arg(args, i);
  switch (v->type) {
  case VCPU_BOOL: case VCPU_I64: return v->u.i64 != 0;
  case VCPU_F64: return v->u.f64 != 0;
  default: return 0;
  }
}

static inline const char *vcpu_arg_str(const vcpu_value *args, int i, size_t *len) {
  const vcpu_value *v = vcpu__arg(args, i);
  int ok = v->type == VCPU_STR || v->type == VCPU_BYTES;
  if (len) *len = ok ? v->len : 0;
  return ok ? (const char *)(uintptr_t)v->u.ptr : "";
}

static inline const uint8_t *vcpu_arg_bytes(const vcpu_value *args, int i, size_t *len) {
  const vcpu_value *v = vcpu__arg(args, i);
  int ok = v->type == VCPU_STR || v->type == VCPU_BYTES;
  if (len) *len = ok ? v->len : 0;
  return ok ? (const uint8_t *)(uintptr_t)v->u.ptr : (const uint8_t *)0;
}

/* Results. A str or bytes result is copied out by the host when the function returns. */
static inline vcpu_value vcpu_void(void) { vcpu_value v = {VCPU_VOID, 0, {0}}; return v; }
static inline vcpu_value vcpu_i64(int64_t x) { vcpu_value v = {VCPU_I64, 0, {0}}; v.u.i64 = x; return v; }
static inline vcpu_value vcpu_f64(double x) { vcpu_value v = {VCPU_F64, 0, {0}}; v.u.f64 = x; return v; }
static inline vcpu_value vcpu_bool(int x) { vcpu_value v = {VCPU_BOOL, 0, {0}}; v.u.i64 = x != 0; return v; }
static inline vcpu_value vcpu_str(const char *s, size_t len) {
  vcpu_value v = {VCPU_STR, (uint32_t)len, {0}}; v.u.ptr = (uintptr_t)s; return v;
}
static inline vcpu_value vcpu_bytes(const void *p, size_t len) {
  vcpu_value v = {VCPU_BYTES, (uint32_t)len, {0}}; v.u.ptr = (uintptr_t)p; return v;
}

/* Calls the host function `name` with `n` (at most VCPU_MAX_ARGS) values; read the
 * result with the accessors: vcpu_arg_i64(&r, 0). The host may call back into the guest
 * meanwhile. */
vcpu_value vcpu_host_call(const char *name, const vcpu_value *args, int n);

/* Optional: runs once at start, before the host takes the reset point. */
void vcpu_init(void);

/* What freestanding code still needs (the compiler may call them too). */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#ifdef __cplusplus
}
#endif

#endif

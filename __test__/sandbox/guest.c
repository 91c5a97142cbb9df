/* The sandbox tests' guest: one function per behaviour the tests check. */
#include <vcpu_guest.h>

static int64_t initialized;
static int64_t counter;
static char joined[256];
/* 1000 pages the guest may write (in .bss: zero until written). */
static uint8_t pages[1000][4096];

void vcpu_init(void) { initialized = 42; }

VCPU_EXPORT(init_value) { return vcpu_i64(initialized); }
VCPU_EXPORT(add) { return vcpu_i64(vcpu_arg_i64(args, 0) + vcpu_arg_i64(args, 1)); }
VCPU_EXPORT(nothing) { return vcpu_void(); }
VCPU_EXPORT(count) { return vcpu_i64(++counter); }
VCPU_EXPORT(argc) { return vcpu_i64(n); }

/* Each argument back as it came, by its type. */
VCPU_EXPORT(echo) {
  switch (args[0].type) {
  case VCPU_I64: return vcpu_i64(vcpu_arg_i64(args, 0));
  case VCPU_F64: return vcpu_f64(vcpu_arg_f64(args, 0));
  case VCPU_BOOL: return vcpu_bool(vcpu_arg_bool(args, 0));
  case VCPU_STR: { size_t len; const char *s = vcpu_arg_str(args, 0, &len); return vcpu_str(s, len); }
  case VCPU_BYTES: { size_t len; const uint8_t *p = vcpu_arg_bytes(args, 0, &len); return vcpu_bytes(p, len); }
  default: return vcpu_void();
  }
}

VCPU_EXPORT(type_of) { return vcpu_i64(args[0].type); }

/* Computed in the guest, not echoed: proves it read the values. */
VCPU_EXPORT(join) {
  size_t a, b;
  const char *x = vcpu_arg_str(args, 0, &a), *y = vcpu_arg_str(args, 1, &b);
  if (a + b + 1 > sizeof joined) return vcpu_void();
  memcpy(joined, x, a);
  joined[a] = '+';
  memcpy(joined + a + 1, y, b);
  return vcpu_str(joined, a + b + 1);
}

VCPU_EXPORT(sum_bytes) {
  size_t len;
  const uint8_t *p = vcpu_arg_bytes(args, 0, &len);
  int64_t sum = 0;
  for (size_t i = 0; i < len; i++) sum += p[i];
  return vcpu_i64(sum);
}

VCPU_EXPORT(half) { return vcpu_f64(vcpu_arg_f64(args, 0) / 2); }
VCPU_EXPORT(negate) { return vcpu_bool(!vcpu_arg_bool(args, 0)); }

/* Host calls: twice(x) asks the host's `double` and adds one. */
VCPU_EXPORT(twice_plus_one) {
  vcpu_value x = vcpu_i64(vcpu_arg_i64(args, 0));
  vcpu_value r = vcpu_host_call("double", &x, 1);
  return vcpu_i64(vcpu_arg_i64(&r, 0) + 1);
}

/* Re-entry: depth(n) asks the host's `down`, which calls depth(n - 1) in the guest. */
VCPU_EXPORT(depth) {
  int64_t d = vcpu_arg_i64(args, 0);
  if (d <= 0) return vcpu_i64(0);
  vcpu_value x = vcpu_i64(d);
  vcpu_value r = vcpu_host_call("down", &x, 1);
  return vcpu_i64(vcpu_arg_i64(&r, 0) + 1);
}

/* A host call whose string result the guest reads. */
VCPU_EXPORT(greet) {
  vcpu_value who = vcpu_str("guest", 5);
  vcpu_value r = vcpu_host_call("hello", &who, 1);
  size_t len;
  const char *s = vcpu_arg_str(&r, 0, &len);
  return vcpu_i64((int64_t)len * 1000 + s[0]);
}

VCPU_EXPORT(spin) {
  for (volatile int64_t i = 0;; i++) {
  }
  return vcpu_void();
}

VCPU_EXPORT(host_loop) {
  for (;;) vcpu_host_call("tick", 0, 0);
  return vcpu_void();
}

VCPU_EXPORT(null_deref) { return vcpu_i64(*(volatile int64_t *)0); }

VCPU_EXPORT(divide) {
  volatile int64_t d = vcpu_arg_i64(args, 1);
  return vcpu_i64(vcpu_arg_i64(args, 0) / d);
}

/* Writes a marker into the first n of the 1000 pages; read_pages(n) sums them. */
VCPU_EXPORT(write_pages) {
  int64_t count = vcpu_arg_i64(args, 0);
  for (int64_t i = 0; i < count && i < 1000; i++) pages[i][i % 4096] = 1;
  return vcpu_i64(count);
}

VCPU_EXPORT(read_pages) {
  int64_t sum = 0;
  for (int64_t i = 0; i < 1000; i++) sum += pages[i][i % 4096];
  return vcpu_i64(sum);
}

VCPU_EXPORT(bad_string) { return vcpu_str((const char *)0x7ffffff000, 16); }

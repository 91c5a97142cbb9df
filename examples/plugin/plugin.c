/* A sandbox "plugin": a few functions a host calls, one host function it calls back.
 * Built by examples/sandbox.ts with `npx vcpu build-guest plugin.c -o plugin.elf`. */
#include <vcpu_guest.h>

static char shout[1024];

VCPU_EXPORT(fib) {
  int64_t a = 0, b = 1;
  for (int64_t i = vcpu_arg_i64(args, 0); i > 0; i--) {
    int64_t t = a + b;
    a = b;
    b = t;
  }
  return vcpu_i64(a);
}

VCPU_EXPORT(upper) {
  size_t len;
  const char *s = vcpu_arg_str(args, 0, &len);
  if (len > sizeof shout) len = sizeof shout;
  for (size_t i = 0; i < len; i++) shout[i] = (s[i] >= 'a' && s[i] <= 'z') ? s[i] - 32 : s[i];
  return vcpu_str(shout, len);
}

/* FNV-1a over the bytes. */
VCPU_EXPORT(checksum) {
  size_t len;
  const uint8_t *p = vcpu_arg_bytes(args, 0, &len);
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 1099511628211ull;
  return vcpu_i64((int64_t)h);
}

/* Calls the host's `log` and returns what it answered plus one. */
VCPU_EXPORT(greet) {
  vcpu_value msg = vcpu_str("hello from the guest", 20);
  vcpu_value r = vcpu_host_call("log", &msg, 1);
  return vcpu_i64(vcpu_arg_i64(&r, 0) + 1);
}

VCPU_EXPORT(forever) {
  for (;;) {
  }
  return vcpu_void();
}

VCPU_EXPORT(crash) {
  *(volatile int *)0 = 1;
  return vcpu_void();
}

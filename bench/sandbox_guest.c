/* The sandbox benchmark's guest (bench/sandbox.js). */
#include <vcpu_guest.h>

static uint8_t pages[1000][4096];

VCPU_EXPORT(nothing) { return vcpu_void(); }

VCPU_EXPORT(one_host_call) { return vcpu_host_call("one", 0, 0); }

VCPU_EXPORT(write_pages) {
  int64_t count = vcpu_arg_i64(args, 0);
  for (int64_t i = 0; i < count && i < 1000; i++) pages[i][0] = 1;
  return vcpu_void();
}

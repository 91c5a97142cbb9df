/* The floor for bench/callgrind.js: a port-write guest run with raw KVM ioctls, no
 * library. Guest (real mode at 0x1000): `out 0x10, al; jmp $-2`, one exit per loop.
 * Usage: raw EXITS. Userspace instructions per exit = the difference between two
 * EXITS counts, divided by their difference. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

unsigned long measured(int vcpu, struct kvm_run *run, long exits);

static void check(int ok, const char *what) {
  if (!ok) {
    perror(what);
    exit(1);
  }
}

int main(int argc, char **argv) {
  long exits = argc > 1 ? atol(argv[1]) : 1000;
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  check(kvm >= 0, "open /dev/kvm");
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  check(vm >= 0, "KVM_CREATE_VM");
  check(ioctl(vm, KVM_SET_TSS_ADDR, 0xfffbd000) == 0, "KVM_SET_TSS_ADDR");
  unsigned char *mem = mmap(NULL, 0x10000, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  check(mem != MAP_FAILED, "mmap");
  static const unsigned char guest[] = {0xe6, 0x10, 0xeb, 0xfc};
  memcpy(mem + 0x1000, guest, sizeof guest);
  struct kvm_userspace_memory_region region = {
      .slot = 0, .guest_phys_addr = 0, .memory_size = 0x10000, .userspace_addr = (unsigned long)mem};
  check(ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) == 0, "KVM_SET_USER_MEMORY_REGION");
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  check(vcpu >= 0, "KVM_CREATE_VCPU");
  int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run *run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  check(run != MAP_FAILED, "mmap kvm_run");
  struct kvm_sregs sregs;
  check(ioctl(vcpu, KVM_GET_SREGS, &sregs) == 0, "KVM_GET_SREGS");
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  check(ioctl(vcpu, KVM_SET_SREGS, &sregs) == 0, "KVM_SET_SREGS");
  struct kvm_regs regs = {.rip = 0x1000, .rflags = 2};
  check(ioctl(vcpu, KVM_SET_REGS, &regs) == 0, "KVM_SET_REGS");
  /* Warm-up, then the counted section (bench/callgrind.js counts inside `measured`). */
  unsigned long sum = measured(vcpu, run, 1000) + measured(vcpu, run, exits);
  printf("%lu\n", sum);
  return 0;
}

__attribute__((noinline)) unsigned long measured(int vcpu, struct kvm_run *run, long exits) {
  unsigned long sum = 0;
  for (long i = 0; i < exits;) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) continue; /* a stray signal: enter again */
    if (run->exit_reason != KVM_EXIT_IO) {
      fprintf(stderr, "unexpected exit %u\n", run->exit_reason);
      exit(1);
    }
    /* What a device does with the byte: read it. */
    sum += ((unsigned char *)run)[run->io.data_offset];
    i++;
  }
  return sum;
}

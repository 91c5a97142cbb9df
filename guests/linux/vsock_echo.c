// The Linux guests' vsock client (busybox has none): `vsock_echo PORT MESSAGE` connects
// to the host (CID 2) at PORT, sends MESSAGE and prints what comes back. Built static
// for the guest's architecture by scripts/guest-userland.js.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
// After sys/socket.h, which defines what it uses.
#include <linux/vm_sockets.h>

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: vsock_echo PORT MESSAGE\n");
    return 2;
  }
  int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
  if (fd < 0) {
    perror("socket");
    return 1;
  }
  struct sockaddr_vm host = {.svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_HOST, .svm_port = atoi(argv[1])};
  if (connect(fd, (struct sockaddr *)&host, sizeof host) < 0) {
    perror("connect");
    return 1;
  }
  size_t n = strlen(argv[2]);
  if (n > 200 || write(fd, argv[2], n) != (ssize_t)n) {
    perror("write");
    return 1;
  }
  char buf[256];
  size_t got = 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
    if (r <= 0)
      break;
    got += r;
  }
  buf[got] = 0;
  printf("vsock echo: %s\n", buf);
  close(fd);
  return got == n ? 0 : 1;
}

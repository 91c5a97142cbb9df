/*
 * The virtio test guest: booted by bootLinux as an ELF kernel, it reads the devices the
 * loader announced on its command line (virtio_mmio.device=4K@ADDR:IRQ) and drives each
 * through its MMIO registers as a driver would: negotiate, set up queue 0, DRIVER_OK,
 * then requests, polling the used ring. It reports on COM1 and resets through the
 * i8042. Freestanding, general registers only (it runs in kernel mode, where this
 * project's test host emulates every instruction).
 */
#include <stddef.h>
#include <stdint.h>

#define COM1 0x3f8
#define QSIZE 8

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline uint8_t inb(uint16_t port) {
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline uint32_t rd(uint64_t base, uint32_t off) { return *(volatile uint32_t *)(base + off); }
static inline void wr(uint64_t base, uint32_t off, uint32_t v) { *(volatile uint32_t *)(base + off) = v; }

static void putc(char c) {
  while (!(inb(COM1 + 5) & 0x20)) {
  }
  outb(COM1, (uint8_t)c);
}
static void puts(const char *s) {
  while (*s) putc(*s++);
}
static void hex(uint64_t v, int digits) {
  for (int i = digits - 1; i >= 0; i--) putc("0123456789abcdef"[(v >> (i * 4)) & 15]);
}
static void dec(uint64_t v) {
  char b[21];
  int i = 20;
  b[i] = 0;
  do b[--i] = (char)('0' + v % 10); while ((v /= 10) && i > 0);
  puts(&b[i]);
}

struct desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags, next;
};
struct __attribute__((aligned(4096))) ring {
  struct desc desc[QSIZE];
  uint16_t avail_flags, avail_idx, avail_ring[QSIZE];
  uint16_t used_flags __attribute__((aligned(4)));
  volatile uint16_t used_idx;
  struct { uint32_t id, len; } used_ring[QSIZE];
};
static struct ring rings[4] __attribute__((aligned(4096)));
static uint8_t buffers[4][4096] __attribute__((aligned(4096)));

/* Sets up queue `q` on ring `r`. */
static int queue(uint64_t base, int q, struct ring *r) {
  wr(base, 0x30, (uint32_t)q);
  if (rd(base, 0x34) < QSIZE) return 0;
  wr(base, 0x38, QSIZE);
  uint64_t d = (uint64_t)r->desc, a = (uint64_t)&r->avail_flags, u = (uint64_t)&r->used_flags;
  wr(base, 0x80, (uint32_t)d);
  wr(base, 0x84, (uint32_t)(d >> 32));
  wr(base, 0x90, (uint32_t)a);
  wr(base, 0x94, (uint32_t)(a >> 32));
  wr(base, 0xa0, (uint32_t)u);
  wr(base, 0xa4, (uint32_t)(u >> 32));
  wr(base, 0x44, 1);
  return 1;
}

/* Negotiates VERSION_1 plus `want` (of what the device offers), sets up queue 0 on `r`
 * and, with `r1`, queue 1 on it. */
static int start2(uint64_t base, struct ring *r, struct ring *r1, uint32_t want) {
  wr(base, 0x70, 0);
  wr(base, 0x70, 1);
  wr(base, 0x70, 3);
  wr(base, 0x14, 0);
  uint32_t offered = rd(base, 0x10);
  wr(base, 0x24, 0);
  wr(base, 0x20, offered & want);
  wr(base, 0x24, 1);
  wr(base, 0x20, 1); /* VIRTIO_F_VERSION_1 */
  wr(base, 0x70, 11);
  if (!(rd(base, 0x70) & 8)) return 0;
  if (!queue(base, 0, r) || (r1 && !queue(base, 1, r1))) return 0;
  wr(base, 0x70, 15);
  return (rd(base, 0x70) & 64) == 0;
}

static int start(uint64_t base, struct ring *r, uint32_t want) { return start2(base, r, 0, want); }

/* Makes the chain at descriptor 0 of queue `q` available, notifies, and waits for it
 * to be used. */
static int submit_on(uint64_t base, int q, struct ring *r, long patience) {
  uint16_t before = r->used_idx;
  r->avail_ring[r->avail_idx % QSIZE] = 0;
  __asm__ volatile("" ::: "memory");
  r->avail_idx++;
  __asm__ volatile("mfence" ::: "memory");
  wr(base, 0x50, (uint32_t)q);
  for (long spins = 0; spins < patience; spins++)
    if (r->used_idx != before) {
      uint32_t isr = rd(base, 0x60);
      wr(base, 0x64, isr);
      return (int)(isr & 1);
    }
  return -1;
}

static int submit(uint64_t base, struct ring *r) { return submit_on(base, 0, r, 2000000); }

static void desc(struct ring *r, int i, void *p, uint32_t len, uint16_t flags, uint16_t next) {
  r->desc[i].addr = (uint64_t)p;
  r->desc[i].len = len;
  r->desc[i].flags = flags;
  r->desc[i].next = next;
}

/* One block request: header, data (writable for reads), status. */
static uint8_t block_request(uint64_t base, struct ring *r, uint8_t *buf, uint32_t type, uint64_t sector, uint32_t len) {
  uint32_t *h = (uint32_t *)buf;
  h[0] = type;
  h[1] = 0;
  *(uint64_t *)(buf + 8) = sector;
  buf[4095] = 0xee;
  int writable = type == 0 || type == 8;
  desc(r, 0, buf, 16, 1, 1);
  desc(r, 1, buf + 512, len, 1 | (writable ? 2 : 0), 2);
  desc(r, 2, buf + 4095, 1, 2, 0);
  if (submit(base, r) < 0) return 0xff;
  return buf[4095];
}

static void block(uint64_t base, struct ring *r, uint8_t *buf) {
  puts("virtio-blk at 0x");
  hex(base, 8);
  puts(": ");
  uint32_t features = rd(base, 0x10);
  int ro = (features >> 5) & 1;
  if (!start(base, r, 1u << 5 | 1u << 9)) {
    puts("set-up failed\n");
    return;
  }
  dec(rd(base, 0x100));
  puts(" sectors");
  puts(ro ? ", read-only\n" : "\n");
  uint8_t s = block_request(base, r, buf, 0, 0, 512);
  puts("  read sector 0: status ");
  dec(s);
  puts(", \"");
  for (int i = 0; i < 32 && buf[512 + i] >= 32 && buf[512 + i] < 127; i++) putc((char)buf[512 + i]);
  puts("\"\n");
  const char *msg = "written by the virtio test guest";
  for (int i = 0; i < 512; i++) buf[512 + i] = 0;
  for (int i = 0; msg[i]; i++) buf[512 + i] = (uint8_t)msg[i];
  puts("  write sector 1: status ");
  dec(block_request(base, r, buf, 1, 1, 512));
  puts("\n  flush: status ");
  dec(block_request(base, r, buf, 4, 0, 0));
  puts("\n  get-id: status ");
  for (int i = 0; i < 21; i++) buf[512 + i] = 0;
  dec(block_request(base, r, buf, 8, 0, 20));
  puts(", \"");
  puts((const char *)buf + 512);
  puts("\"\n  read past the end: status ");
  dec(block_request(base, r, buf, 0, rd(base, 0x100), 512));
  puts("\n");
}

static void rng(uint64_t base, struct ring *r, uint8_t *buf) {
  puts("virtio-rng at 0x");
  hex(base, 8);
  puts(": ");
  if (!start(base, r, 0)) {
    puts("set-up failed\n");
    return;
  }
  for (int i = 0; i < 16; i++) buf[i] = 0;
  desc(r, 0, buf, 16, 2, 0);
  int isr = submit(base, r);
  puts("16 bytes ");
  for (int i = 0; i < 16; i++) hex(buf[i], 2);
  puts(isr == 1 ? ", used-buffer interrupt\n" : ", no interrupt status\n");
}

static struct ring console_tx;
static uint8_t console_out[256];

/* Writes `s` to hvc0 through the transmit queue. */
static int hvc_write(uint64_t base, const char *s) {
  int n = 0;
  while (s[n] && n < (int)sizeof console_out) console_out[n] = (uint8_t)s[n], n++;
  desc(&console_tx, 0, console_out, (uint32_t)n, 0, 0);
  return submit_on(base, 1, &console_tx, 2000000);
}

static void console(uint64_t base, struct ring *r, uint8_t *buf) {
  puts("virtio-console at 0x");
  hex(base, 8);
  puts(": ");
  if (!start2(base, r, &console_tx, 0)) {
    puts("set-up failed\n");
    return;
  }
  puts(hvc_write(base, "hello from hvc0\n") >= 0 ? "wrote to hvc0\n" : "write to hvc0 unanswered\n");
  for (int i = 0; i < 64; i++) buf[i] = 0;
  desc(r, 0, buf, 63, 2, 0);
  if (submit_on(base, 0, r, 20000000) < 0) {
    puts("  no input\n");
    return;
  }
  char line[96] = "hvc0 got: ";
  int n = 10;
  for (int i = 0; buf[i] && buf[i] != '\n' && n < 94; i++) line[n++] = (char)buf[i];
  line[n++] = '\n';
  line[n] = 0;
  hvc_write(base, line);
  puts("  echoed its input\n");
}

/* virtio-vsock: the packet header, and a driver for one stream at a time. */
struct __attribute__((packed)) vhdr {
  uint64_t src_cid, dst_cid;
  uint32_t src_port, dst_port, len;
  uint16_t type, op;
  uint32_t flags, buf_alloc, fwd_cnt;
};
static struct ring vs_rx, vs_tx;
static uint8_t vs_rxbuf[4][256], vs_txbuf[320], vs_packet[256];
static uint16_t vs_seen;
static uint64_t vs_cid;

static void vs_post(int i) {
  desc(&vs_rx, i, vs_rxbuf[i], 256, 2, 0);
  vs_rx.avail_ring[vs_rx.avail_idx % QSIZE] = (uint16_t)i;
  __asm__ volatile("" ::: "memory");
  vs_rx.avail_idx++;
}

/* The next packet from the host (copied out; its buffer goes back), or null. */
static struct vhdr *vs_recv(uint64_t base, long patience) {
  for (long spins = 0; vs_rx.used_idx == vs_seen; spins++)
    if (spins > patience) return 0;
  uint32_t id = vs_rx.used_ring[vs_seen % QSIZE].id;
  vs_seen++;
  for (int i = 0; i < 256; i++) vs_packet[i] = vs_rxbuf[id & 3][i];
  vs_post((int)(id & 3));
  __asm__ volatile("mfence" ::: "memory");
  wr(base, 0x50, 0);
  return (struct vhdr *)vs_packet;
}

static void vs_send(uint64_t base, uint16_t op, uint32_t flags, uint32_t src, uint32_t dst, const char *data) {
  struct vhdr *h = (struct vhdr *)vs_txbuf;
  uint32_t n = 0;
  while (data && data[n] && n < 256) vs_txbuf[sizeof *h + n] = (uint8_t)data[n], n++;
  h->src_cid = vs_cid, h->dst_cid = 2, h->src_port = src, h->dst_port = dst, h->len = n;
  h->type = 1, h->op = op, h->flags = flags, h->buf_alloc = 65536, h->fwd_cnt = 0;
  desc(&vs_tx, 0, vs_txbuf, (uint32_t)sizeof *h + n, 0, 0);
  submit_on(base, 1, &vs_tx, 2000000);
}

static void print_payload(struct vhdr *p) {
  for (uint32_t i = 0; i < p->len && i < 200; i++) putc((char)vs_packet[sizeof *p + i]);
}

static void vsock(uint64_t base) {
  puts("virtio-vsock at 0x");
  hex(base, 8);
  vs_cid = rd(base, 0x100);
  puts(": cid ");
  dec(vs_cid);
  puts("\n");
  if (!start2(base, &vs_rx, &vs_tx, 0)) {
    puts("  set-up failed\n");
    return;
  }
  for (int i = 0; i < 4; i++) vs_post(i);
  wr(base, 0x50, 0);
  /* To the host's port 1234, an echo. */
  vs_send(base, 1, 0, 10000, 1234, 0);
  struct vhdr *p = vs_recv(base, 2000000);
  if (!p || p->op != 2) {
    puts("  host port 1234 refused\n");
  } else {
    puts("  connected to host port 1234\n");
    vs_send(base, 5, 0, 10000, 1234, "hello over vsock");
    p = vs_recv(base, 2000000);
    while (p && p->op != 5) p = vs_recv(base, 2000000);
    puts("  host port 1234 echoed: ");
    if (p) print_payload(p);
    puts("\n");
    vs_send(base, 4, 3, 10000, 1234, 0);
    p = vs_recv(base, 2000000);
    while (p && p->op == 6) p = vs_recv(base, 2000000);
    puts(p && p->op == 3 ? "  closed\n" : "  no reset after shutdown\n");
  }
  /* A connection from the host to the guest's port 5000. */
  puts("  waiting on port 5000\n");
  p = vs_recv(base, 200000000);
  /* Requests for other ports are refused, as a guest with nothing listening there does. */
  while (p && p->op == 1 && p->dst_port != 5000) {
    puts("  refused port ");
    dec(p->dst_port);
    puts("\n");
    vs_send(base, 3, 0, p->dst_port, p->src_port, 0);
    p = vs_recv(base, 200000000);
  }
  if (!p || p->op != 1 || p->dst_port != 5000) {
    puts("  no connection on port 5000\n");
    return;
  }
  uint32_t host_port = p->src_port;
  vs_send(base, 2, 0, 5000, host_port, 0);
  p = vs_recv(base, 20000000);
  while (p && p->op == 6) p = vs_recv(base, 20000000);
  if (!p || p->op != 5) {
    puts("  nothing came on port 5000\n");
    return;
  }
  char reply[128] = "guest heard: ";
  int n = 13;
  for (uint32_t i = 0; i < p->len && n < 126; i++) reply[n++] = (char)vs_packet[sizeof *p + i];
  reply[n] = 0;
  vs_send(base, 5, 0, 5000, host_port, reply);
  puts("  answered on port 5000\n");
  p = vs_recv(base, 20000000);
  while (p && p->op != 4 && p->op != 3) p = vs_recv(base, 20000000);
  if (p && p->op == 4) vs_send(base, 3, 0, 5000, host_port, 0);
  puts(p ? "  the host closed port 5000\n" : "  the host never closed\n");
}

/* virtio-net: asks who has 10.0.0.1 (ARP, from 10.0.0.2) and waits for the answer. */
static struct ring net_rx, net_tx;
static uint8_t net_in[2048], net_out[64];

static void net(uint64_t base) {
  puts("virtio-net at 0x");
  hex(base, 8);
  puts(": mac ");
  uint8_t mac[6];
  for (int i = 0; i < 6; i++) mac[i] = *(volatile uint8_t *)(base + 0x100 + i);
  for (int i = 0; i < 6; i++) hex(mac[i], 2), putc(i < 5 ? ':' : '\n');
  if (!start2(base, &net_rx, &net_tx, 1u << 5)) {
    puts("  set-up failed\n");
    return;
  }
  uint8_t *f = net_out + 12;
  for (int i = 0; i < 12; i++) net_out[i] = 0;
  for (int i = 0; i < 6; i++) f[i] = 0xff, f[6 + i] = mac[i];
  f[12] = 0x08, f[13] = 0x06;                                      /* ARP */
  f[14] = 0, f[15] = 1, f[16] = 8, f[17] = 0, f[18] = 6, f[19] = 4; /* Ethernet, IPv4 */
  f[20] = 0, f[21] = 1;                                             /* request */
  for (int i = 0; i < 6; i++) f[22 + i] = mac[i], f[32 + i] = 0;
  f[28] = 10, f[29] = 0, f[30] = 0, f[31] = 2;                      /* from 10.0.0.2 */
  f[38] = 10, f[39] = 0, f[40] = 0, f[41] = 1;                      /* who has 10.0.0.1 */
  desc(&net_tx, 0, net_out, 12 + 42, 0, 0);
  puts(submit_on(base, 1, &net_tx, 2000000) >= 0 ? "  sent an ARP request for 10.0.0.1\n" : "  the frame was not taken\n");
  /* Frames arrive until the answer does (the host may say other things first). */
  for (int frames = 0; frames < 16; frames++) {
    desc(&net_rx, 0, net_in, sizeof net_in, 2, 0);
    if (submit_on(base, 0, &net_rx, 200000000) < 0) break;
    uint8_t *g = net_in + 12;
    if (g[12] == 0x08 && g[13] == 0x06 && g[21] == 2 && g[28] == 10 && g[31] == 1) {
      puts("  10.0.0.1 is at ");
      for (int i = 0; i < 6; i++) hex(g[22 + i], 2), putc(i < 5 ? ':' : '\n');
      return;
    }
  }
  puts("  no ARP answer\n");
}

/* A device written in TypeScript (examples/virtio-device.ts): it upper-cases what it
 * reads into what it writes. */
static void echo(uint64_t base, struct ring *r, uint8_t *buf) {
  puts("echo device at 0x");
  hex(base, 8);
  puts(": ");
  if (!start(base, r, 0)) {
    puts("set-up failed\n");
    return;
  }
  const char *msg = "hello, device";
  int n = 0;
  while (msg[n]) buf[n] = (uint8_t)msg[n], n++;
  for (int i = 0; i < 64; i++) buf[2048 + i] = 0;
  desc(r, 0, buf, (uint32_t)n, 1, 1);
  desc(r, 1, buf + 2048, 64, 2, 0);
  int isr = submit(base, r);
  uint32_t len = r->used_ring[(uint16_t)(r->used_idx - 1) % QSIZE].len;
  dec(len);
  puts(" bytes back, \"");
  for (uint32_t i = 0; i < len && i < 64; i++) putc((char)buf[2048 + i]);
  puts(isr == 1 ? "\", interrupted\n" : "\"\n");
}

/* The value after `key` in the command line, parsed as hex (with 0x) or decimal. */
static uint64_t number(const char **p) {
  uint64_t v = 0;
  const char *s = *p;
  if (s[0] == '0' && s[1] == 'x') {
    for (s += 2;; s++) {
      int d = (*s >= '0' && *s <= '9') ? *s - '0' : (*s >= 'a' && *s <= 'f') ? *s - 'a' + 10 : -1;
      if (d < 0) break;
      v = v * 16 + (uint64_t)d;
    }
  } else {
    for (; *s >= '0' && *s <= '9'; s++) v = v * 10 + (uint64_t)(*s - '0');
  }
  *p = s;
  return v;
}

void main(const uint8_t *zero_page) {
  const char *cmdline = (const char *)(uint64_t) * (const uint32_t *)(zero_page + 0x228);
  puts("virtio test guest\n");
  int n = 0;
  for (const char *p = cmdline; *p && n < 4; p++) {
    const char *key = "virtio_mmio.device=4K@";
    int i = 0;
    while (key[i] && p[i] == key[i]) i++;
    if (key[i]) continue;
    p += i;
    uint64_t base = number(&p);
    if (*p == ':') p++;
    uint64_t irq = number(&p);
    (void)irq;
    if (rd(base, 0) != 0x74726976 || rd(base, 4) != 2) {
      puts("not a virtio-mmio version 2 device\n");
      continue;
    }
    switch (rd(base, 8)) {
    case 2: block(base, &rings[n], buffers[n]); break;
    case 4: rng(base, &rings[n], buffers[n]); break;
    case 3: console(base, &rings[n], buffers[n]); break;
    case 19: vsock(base); break;
    case 1: net(base); break;
    case 0x7fff: echo(base, &rings[n], buffers[n]); break;
    default: puts("an unknown device\n");
    }
    n++;
  }
  puts("virtio test guest: done\n");
}

/* bootLinux enters here in 64-bit mode with RSI at the zero page. */
__asm__(".section .text.startup_64, \"ax\"\n"
        ".globl startup_64\n"
        "startup_64:\n"
        "  mov %rsi, %rdi\n"
        "  lea stack_top(%rip), %rsp\n"
        "  call main\n"
        "  mov $0xfe, %al\n"
        "  out %al, $0x64\n"
        "1: hlt\n"
        "  jmp 1b\n"
        ".previous\n");

static uint8_t stack[16384] __attribute__((aligned(16), used));
__asm__(".set stack_top, stack + 16384\n");

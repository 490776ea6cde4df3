// Experiment (not built by cargo, not part of sockbroker): a relay that keeps
// itself out of the data path with a BPF sockmap, to measure whether that
// design could reach the round-trip target of issue #6. Result and method:
// docs/performance.md, "What was tried" (it did not: about the same rate as
// sockbroker, because the kernel forwards each redirected message from a
// kworker, so every message still costs a wake-up and a context switch).
//
// Each accepted client socket and its upstream socket get two one-slot
// sockmaps, each with an sk_skb verdict program (hand-assembled: no clang
// needed) that redirects every message to the egress of the other socket.
// Setting up a pair costs two map creations, two program loads (verifier)
// and two attaches, so it is only fit for long-lived connections; no
// counters, no half-close, no error handling: a measuring device.
//
//   gcc -O2 -o /tmp/sockmap-relay bench/experiments/sockmap-relay.c
//   printf '#!/bin/sh\nl=$(sed -n "s/^    listen: //p" "$3"); u=$(sed -n "s/^  upstream: //p" "$3")\nmkdir -p "$(dirname "$l")"; exec /tmp/sockmap-relay "$l" "$u"\n' > /tmp/sockmap-wrap
//   chmod +x /tmp/sockmap-wrap
//   target/release/sockbroker-bench --only rr --rounds 7 --compare /tmp/sockmap-wrap
//
// Needs root (CAP_BPF + CAP_NET_ADMIN) and a kernel with AF_UNIX sockmap
// support (5.15+; measured on 6.18).
//
// argv: LISTEN_PATH UPSTREAM_PATH
#define _GNU_SOURCE
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <sys/un.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <stdint.h>
static long bpf(int cmd, union bpf_attr *a) { return syscall(SYS_bpf, cmd, a, sizeof *a); }
#define INS(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
static int map_create(int type, int ks, int vs, int n) {
  union bpf_attr a; memset(&a, 0, sizeof a);
  a.map_type = type; a.key_size = ks; a.value_size = vs; a.max_entries = n;
  int fd = bpf(BPF_MAP_CREATE, &a); if (fd < 0) { perror("map_create"); exit(1); } return fd;
}
static int upd(int map, void *k, void *v) {
  union bpf_attr a; memset(&a, 0, sizeof a);
  a.map_fd = map; a.key = (uint64_t)k; a.value = (uint64_t)v; a.flags = BPF_ANY;
  return bpf(BPF_MAP_UPDATE_ELEM, &a);
}
static char logb[65536];
// sk_skb verdict: return bpf_sk_redirect_map(skb, target_map, 0, 0) (egress).
static int load_redirect(int target_map) {
  struct bpf_insn p[] = {
    INS(BPF_LD | BPF_DW | BPF_IMM, 2, BPF_PSEUDO_MAP_FD, 0, target_map), INS(0, 0, 0, 0, 0),
    INS(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, 0),
    INS(BPF_ALU64 | BPF_MOV | BPF_K, 4, 0, 0, 0),
    INS(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_redirect_map),
    INS(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
  };
  union bpf_attr a; memset(&a, 0, sizeof a);
  a.prog_type = BPF_PROG_TYPE_SK_SKB; a.insns = (uint64_t)p; a.insn_cnt = sizeof p / sizeof p[0];
  a.license = (uint64_t)"GPL"; a.log_buf = (uint64_t)logb; a.log_size = sizeof logb; a.log_level = 1;
  int prog = bpf(BPF_PROG_LOAD, &a);
  if (prog < 0) { perror("prog_load"); fprintf(stderr, "%s\n", logb); exit(1); }
  return prog;
}
static void attach(int map, int prog) {
  union bpf_attr a; memset(&a, 0, sizeof a);
  a.target_fd = map; a.attach_bpf_fd = prog; a.attach_type = BPF_SK_SKB_VERDICT;
  if (bpf(BPF_PROG_ATTACH, &a) < 0) { perror("attach"); exit(1); }
}
static void setup_pair(int c, int u) {
  int ma = map_create(BPF_MAP_TYPE_SOCKMAP, 4, 4, 1), mb = map_create(BPF_MAP_TYPE_SOCKMAP, 4, 4, 1);
  int pa = load_redirect(mb), pb = load_redirect(ma);
  attach(ma, pa); attach(mb, pb);
  uint32_t k = 0, vc = c, vu = u;
  if (upd(ma, &k, &vc) || upd(mb, &k, &vu)) { perror("sockmap add"); exit(1); }
  close(pa); close(pb);  // maps keep the programs; keep map fds (leak: experiment)
}
int main(int argc, char **argv) {
  const char *up = argv[2];
  unlink(argv[1]);
  int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX}; strcpy(sa.sun_path, argv[1]);
  if (bind(lfd, (void *)&sa, sizeof sa) || listen(lfd, 1024)) { perror("bind"); exit(1); }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ~0ull};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  static int peer[65536];
  struct epoll_event evs[256];
  char buf[16384];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      if (evs[i].data.u64 == ~0ull) {
        for (;;) {
          int c = accept4(lfd, 0, 0, SOCK_NONBLOCK);
          if (c < 0) break;
          int u = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
          struct sockaddr_un us = {.sun_family = AF_UNIX}; strcpy(us.sun_path, up);
          if (connect(u, (void *)&us, sizeof us)) { close(c); close(u); continue; }
          peer[c] = u; peer[u] = c;
          setup_pair(c, u);
          // data that arrived before the sockmap took over
          int q = 0; ioctl(c, FIONREAD, &q);
          if (q > 0) { ssize_t r = recv(c, buf, sizeof buf, 0); if (r > 0) send(u, buf, r, MSG_NOSIGNAL); }
          struct epoll_event e = {.events = EPOLLRDHUP};
          e.data.u64 = c; epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
          e.data.u64 = u; epoll_ctl(ep, EPOLL_CTL_ADD, u, &e);
        }
        continue;
      }
      int fd = evs[i].data.u64; int p2 = peer[fd];
      if (p2 < 0) continue;
      peer[fd] = peer[p2] = -1;
      close(fd); close(p2);
    }
  }
}

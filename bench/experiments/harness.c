/*
 * An independent check of sockbroker-bench's round-trip and connection-rate
 * rows, written apart from it (C, pthreads, no shared code): blocking client
 * threads, and an upstream that serves each connection on a blocking thread
 * of its own -- the model of the outside harness #17 quotes. Driven by
 * harness.py, which starts socat, the floor relay and sockbroker in front of
 * the server and alternates them.
 *
 *   harness server PATH              echo server, a thread per connection
 *   harness rr PATH CONNS MS         CONNS connections, 64-byte round trips
 *   harness conn PATH WORKERS MS     connect, one 64-byte round trip, close
 *
 * The client modes print "count=N seconds=S".
 *
 * Build: gcc -O2 -pthread -o harness harness.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MSG 64

static const char *path;
static atomic_long total;
static atomic_int stop;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

static int dial(void) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, path, sizeof a.sun_path - 1);
  while (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    if (errno != EAGAIN && errno != EINTR) {
      perror("connect");
      exit(1);
    }
  }
  return fd;
}

static int full(ssize_t (*op)(int, void *, size_t, int), int fd, char *b, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = op(fd, b + done, n - done, MSG_NOSIGNAL);
    if (r <= 0) {
      if (r < 0 && errno == EINTR) continue;
      return -1;
    }
    done += r;
  }
  return 0;
}

static ssize_t send_op(int fd, void *b, size_t n, int f) { return send(fd, b, n, f); }
static ssize_t recv_op(int fd, void *b, size_t n, int f) { return recv(fd, b, n, f & 0); }

static int round_trip(int fd) {
  char b[MSG];
  memset(b, 7, sizeof b);
  return full(send_op, fd, b, MSG) || full(recv_op, fd, b, MSG) ? -1 : 0;
}

static void *rr_client(void *arg) {
  (void)arg;
  int fd = dial();
  long n = 0;
  while (!atomic_load(&stop)) {
    if (round_trip(fd)) {
      fprintf(stderr, "round trip failed\n");
      exit(1);
    }
    n++;
  }
  atomic_fetch_add(&total, n);
  close(fd);
  return NULL;
}

static void *conn_client(void *arg) {
  (void)arg;
  long n = 0;
  while (!atomic_load(&stop)) {
    int fd = dial();
    if (round_trip(fd)) {
      fprintf(stderr, "connection's round trip failed\n");
      exit(1);
    }
    close(fd);
    n++;
  }
  atomic_fetch_add(&total, n);
  return NULL;
}

static void *serve(void *arg) {
  int fd = (int)(long)arg;
  char b[65536];
  for (;;) {
    ssize_t r = recv(fd, b, sizeof b, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0 || full(send_op, fd, b, r)) break;
  }
  close(fd);
  return NULL;
}

static int server(void) {
  int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  strncpy(a.sun_path, path, sizeof a.sun_path - 1);
  unlink(path);
  if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 4096)) {
    perror("bind/listen");
    return 1;
  }
  pthread_attr_t at;
  pthread_attr_init(&at);
  pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&at, 256 * 1024);
  for (;;) {
    int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0) continue;
    pthread_t t;
    if (pthread_create(&t, &at, serve, (void *)(long)c)) close(c);
  }
}

int main(int argc, char **argv) {
  if (argc == 3 && !strcmp(argv[1], "server")) {
    path = argv[2];
    return server();
  }
  if (argc != 5 || (strcmp(argv[1], "rr") && strcmp(argv[1], "conn"))) {
    fprintf(stderr, "usage: harness server PATH | harness rr|conn PATH N MS\n");
    return 2;
  }
  path = argv[2];
  int n = atoi(argv[3]);
  long ms = atol(argv[4]);
  pthread_t *t = calloc(n, sizeof *t);
  double t0 = now();
  for (int i = 0; i < n; i++)
    pthread_create(&t[i], NULL, argv[1][0] == 'r' ? rr_client : conn_client, NULL);
  struct timespec d = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&d, NULL);
  atomic_store(&stop, 1);
  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
  printf("count=%ld seconds=%.6f\n", atomic_load(&total), now() - t0);
  return 0;
}

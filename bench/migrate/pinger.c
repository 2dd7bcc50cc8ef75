/*
 * The clients of bench:migrate's stall measurement, in one C process (`--client=c`, the default): N
 * connections to an echo app, each sending a message every PERIOD_MS and timing its answer, exactly as
 * bench/migrate/stall.ts's Pinger does in Node.
 *
 * Why C: at 10,000 connections the clients send 40,000 messages a second. Node's clients (`ws` and
 * net.Socket) spent most of a core on that (their own event-loop delay reached 280-510 ms during a reload on
 * 2026-12-07), on a machine with 2 cores for both generations too: every echo they timed was late by their
 * own delay, and the generations got less CPU than they would with real, remote clients. This process
 * spends a few µs of system time per message and records how late it sent each one.
 *
 * Usage: pinger tcp|ws HOST PORT N PERIOD_MS OUT
 *   tcp: examples/tcp-echo — line in, `<generation>:<id>:<n>:<line>` out (n: lines answered on the connection)
 *   ws:  bench/migrate/ws-echo — masked text frame in, `<generation> <n> <message>` out
 * On stdout: `ready <ms to connect all>` once every connection had its first message answered, then, after
 * `start` and `stop` on stdin, `done <round trips> <wrong counts> <closed by the server> <unanswered> <CPU ms>`
 * (user + system since it started) once the
 * round trips are written to OUT: float64 little-endian records [client, generation, sent, round trip, late],
 * ms, `sent` on CLOCK_MONOTONIC (Node's process.hrtime), `late` how long after its slot the message left.
 * It exits at EOF on stdin (its connections closing with it). Errors: a line on stderr, exit 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum state { CONNECTING, HANDSHAKE, FIRST, READY, CLOSED };

struct client {
  int fd;
  uint8_t state;
  uint8_t outstanding;
  uint32_t sent; /* messages sent on this connection (the server's count must equal it) */
  double sent_at, late;
  uint16_t len;
  char buf[512];
};

struct rec {
  double client, gen, sent, rtt, late;
};

static struct client *clients;
static int n_clients, kind_ws, ep;
static struct rec *recs;
static size_t n_recs, cap_recs;
static long wrong, dropped, outstanding;
static int pinging;

static void die(const char *what) {
  fprintf(stderr, "pinger: %s: %s\n", what, strerror(errno));
  exit(1);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* One message, whole: the answers are a few dozen bytes, far below the socket buffer, so a short write means a
 * broken connection (counted as dropped by the read that follows). */
static void send_message(struct client *c) {
  static const char line[] = "ping\n";
  if (!kind_ws) {
    if (write(c->fd, line, 5) != 5) return;
  } else {
    unsigned char f[10] = {0x81, 0x80 | 4};
    uint32_t mask = (uint32_t)rand();
    memcpy(f + 2, &mask, 4);
    for (int i = 0; i < 4; i++) f[6 + i] = (unsigned char)line[i] ^ f[2 + i];
    if (write(c->fd, f, 10) != 10) return;
  }
  c->sent++;
}

static void answered(struct client *c, long gen, long count) {
  if (count != (long)c->sent) wrong++;
  if (c->state == FIRST) {
    c->state = READY;
    return;
  }
  if (!c->outstanding) return;
  c->outstanding = 0;
  outstanding--;
  if (n_recs == cap_recs) {
    cap_recs = cap_recs ? cap_recs * 2 : 1 << 16;
    recs = realloc(recs, cap_recs * sizeof *recs);
    if (!recs) die("realloc");
  }
  double t = now_ms();
  recs[n_recs++] = (struct rec){c - clients, gen, c->sent_at, t - c->sent_at, c->late};
}

/* Consume the complete answers in c->buf. Returns -1 if the server closed the WebSocket. */
static int parse(struct client *c) {
  size_t off = 0;
  for (;;) {
    char *p = c->buf + off;
    size_t avail = c->len - off;
    if (c->state == HANDSHAKE) {
      char *end = memmem(p, avail, "\r\n\r\n", 4);
      if (!end) break;
      if (avail < 12 || memcmp(p + 9, "101", 3) != 0) {
        errno = EPROTO;
        die("WebSocket handshake refused");
      }
      off += (size_t)(end - p) + 4;
      c->state = FIRST;
      send_message(c);
      continue;
    }
    if (!kind_ws) {
      char *nl = memchr(p, '\n', avail);
      if (!nl) break;
      /* <generation>:<id>:<n>:<line> */
      char *colon1 = memchr(p, ':', (size_t)(nl - p));
      char *colon2 = colon1 ? memchr(colon1 + 1, ':', (size_t)(nl - colon1 - 1)) : NULL;
      long gen = strtol(p, NULL, 10);
      long count = colon2 ? strtol(colon2 + 1, NULL, 10) : -1;
      off += (size_t)(nl - p) + 1;
      answered(c, gen, count);
      continue;
    }
    if (avail < 2) break;
    unsigned opcode = (unsigned char)p[0] & 0x0f;
    size_t len = (unsigned char)p[1] & 0x7f, head = 2;
    if (len == 126) {
      if (avail < 4) break;
      len = ((size_t)(unsigned char)p[2] << 8) | (unsigned char)p[3];
      head = 4;
    } else if (len == 127) {
      errno = EMSGSIZE;
      die("WebSocket frame too long");
    }
    if (avail < head + len) break;
    off += head + len;
    if (opcode == 8) return -1; /* close */
    if (opcode != 1) continue; /* ping/pong: not answers */
    /* <generation> <n> <message> */
    char num[64];
    size_t k = len < sizeof num - 1 ? len : sizeof num - 1;
    memcpy(num, p + head, k);
    num[k] = 0;
    char *rest;
    long gen = strtol(num, &rest, 10);
    long count = strtol(rest, NULL, 10);
    answered(c, gen, count);
  }
  memmove(c->buf, c->buf + off, c->len - off);
  c->len -= (uint16_t)off;
  return 0;
}

static void lost(struct client *c) {
  if (c->state == CLOSED) return;
  if (c->state != READY) {
    errno = ECONNRESET;
    die("a connection closed before its first answer");
  }
  dropped++;
  if (c->outstanding) {
    c->outstanding = 0;
    outstanding--;
  }
  c->state = CLOSED;
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
}

static void readable(struct client *c) {
  for (;;) {
    if (c->len == sizeof c->buf) {
      errno = EMSGSIZE;
      die("answer too long");
    }
    ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
    if (r > 0) {
      c->len += (uint16_t)r;
      if (parse(c) < 0) {
        lost(c);
        return;
      }
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    lost(c);
    return;
  }
}

static void connected(struct client *c) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err) {
    errno = err;
    die("connect");
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)(c - clients)};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
  if (kind_ws) {
    char req[256];
    int k = snprintf(req, sizeof req,
                     "GET /c%ld HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                     (long)(c - clients));
    if (write(c->fd, req, (size_t)k) != k) die("write handshake");
    c->state = HANDSHAKE;
  } else {
    c->state = FIRST;
    static const char hello[] = "hello\n";
    if (write(c->fd, hello, 6) != 6) die("write hello");
    c->sent++;
  }
}

static void dispatch(struct epoll_event *evs, int k) {
  for (int i = 0; i < k; i++) {
    uint32_t id = evs[i].data.u32;
    if (id == UINT32_MAX) continue; /* stdin: read by the caller */
    struct client *c = &clients[id];
    if (c->state == CONNECTING) connected(c);
    else readable(c);
  }
}

static int stdin_ready(struct epoll_event *evs, int k) {
  for (int i = 0; i < k; i++)
    if (evs[i].data.u32 == UINT32_MAX) return 1;
  return 0;
}

/* A command from stdin (whole lines: they come one at a time). 0 at EOF. */
static int command(char *out, size_t cap) {
  ssize_t r = read(0, out, cap - 1);
  if (r <= 0) return 0;
  out[r] = 0;
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 7 || (strcmp(argv[1], "tcp") && strcmp(argv[1], "ws"))) {
    fprintf(stderr, "usage: pinger tcp|ws HOST PORT N PERIOD_MS OUT\n");
    return 2;
  }
  kind_ws = !strcmp(argv[1], "ws");
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[3]))};
  if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
    fprintf(stderr, "pinger: bad host %s\n", argv[2]);
    return 2;
  }
  n_clients = atoi(argv[4]);
  double period = atof(argv[5]);
  if (n_clients < 1 || period <= 0) {
    fprintf(stderr, "pinger: bad N or PERIOD_MS\n");
    return 2;
  }
  srand((unsigned)getpid());
  clients = calloc((size_t)n_clients, sizeof *clients);
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (!clients || ep < 0) die("setup");
  struct epoll_event in = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, 0, &in) < 0) die("epoll_ctl stdin");
  struct epoll_event evs[512];
  char cmd[64];

  /* Connect in batches of 200, as the Node clients do: the listen backlog is 511. */
  double t_connect = now_ms();
  for (int base = 0; base < n_clients; base += 200) {
    int end = base + 200 < n_clients ? base + 200 : n_clients;
    for (int i = base; i < end; i++) {
      struct client *c = &clients[i];
      c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (c->fd < 0) die("socket");
      int one = 1;
      setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) die("connect");
      struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)i};
      if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
    }
    for (int i = base; i < end;) {
      if (clients[i].state == READY) {
        i++;
        continue;
      }
      int k = epoll_wait(ep, evs, 512, 30000);
      if (k == 0) {
        errno = ETIMEDOUT;
        die("connecting");
      }
      if (k < 0 && errno != EINTR) die("epoll_wait");
      if (k > 0) dispatch(evs, k);
      if (k > 0 && stdin_ready(evs, k) && !command(cmd, sizeof cmd)) return 0; /* given up on */
    }
  }
  printf("ready %.1f\n", now_ms() - t_connect);
  fflush(stdout);

  double t0 = 0, stop_deadline = 0;
  long cycle = 0, next = 0;
  for (;;) {
    int timeout = -1;
    double t = now_ms();
    if (pinging) {
      double due = t0 + cycle * period + next * period / n_clients;
      while (due <= t) {
        struct client *c = &clients[next];
        if (c->state == READY && !c->outstanding) {
          c->outstanding = 1;
          outstanding++;
          c->sent_at = now_ms();
          c->late = c->sent_at - due;
          send_message(c);
        }
        if (++next == n_clients) {
          next = 0;
          cycle++;
        }
        due = t0 + cycle * period + next * period / n_clients;
      }
      t = now_ms();
      /* Sleep at least 1 ms, then send all that is due: sends up to ~1 ms late (Node's Pinger ticks every 2 ms).
       * Waking for each slot instead (every 25 µs at 10,000 clients) would spin a core. */
      timeout = due > t ? (int)(due - t) + 1 : 0;
    } else if (stop_deadline) {
      if (!outstanding || t > stop_deadline) {
        FILE *f = fopen(argv[6], "wb");
        if (!f || fwrite(recs, sizeof *recs, n_recs, f) != n_recs || fclose(f)) die(argv[6]);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        double cpu = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
        printf("done %zu %ld %ld %ld %.0f\n", n_recs, wrong, dropped, outstanding, cpu);
        fflush(stdout);
        stop_deadline = 0;
        continue;
      }
      timeout = 10;
    }
    int k = epoll_wait(ep, evs, 512, timeout);
    if (k < 0 && errno != EINTR) die("epoll_wait");
    if (k <= 0) continue;
    dispatch(evs, k);
    if (stdin_ready(evs, k)) {
      if (!command(cmd, sizeof cmd)) return 0;
      if (!strncmp(cmd, "start", 5)) {
        pinging = 1;
        t0 = now_ms();
        cycle = next = 0;
      } else if (!strncmp(cmd, "stop", 4)) {
        pinging = 0;
        stop_deadline = now_ms() + 30000;
      }
    }
  }
}

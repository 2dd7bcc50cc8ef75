/* The C baseline for `npm run bench:fd`: the same sendmsg/recvmsg loop baton's fd channel does, with no
 * JavaScript in the way.
 *
 *   baseline <fds-per-message> <messages> <cap-seconds>
 *
 * A connected AF_UNIX SOCK_SEQPACKET pair, then fork: the parent sends, the child receives. Every message
 * is one record shaped like baton's: the 4-byte header (0xBA, version 1, flags 0, 0) and a 16-byte payload
 * in two iovecs, plus <fds-per-message> fds in one SCM_RIGHTS (dups of one /dev/null fd, as the JS sender
 * uses). The receiver reads with MSG_CMSG_CLOEXEC, checks the header and closes every fd it gets, as a
 * baton receiver must. Blocking I/O on both sides.
 *
 * The sender stops after <messages> messages or <cap-seconds>, whichever comes first, then sends an end
 * record (payload tag 'E', no fds); the receiver answers with the number of messages it got. Time runs from
 * just before the first sendmsg to the arrival of that answer, the same span the JS sender measures.
 * Prints one JSON line on stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SCM_MAX_FD 253
#define HEADER_SIZE 4
#define PAYLOAD_SIZE 16
#define RECV_BUF (256 * 1024) /* what baton's receiver reads into */

static const unsigned char HEADER[HEADER_SIZE] = {0xba, 1, 0, 0};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
  fprintf(stderr, "baseline: %s: %s\n", what, strerror(errno));
  exit(1);
}

static ssize_t send_record(int sock, const unsigned char *payload, const int *fds, int nfds) {
  union {
    char buf[CMSG_SPACE(sizeof(int) * SCM_MAX_FD)];
    struct cmsghdr align;
  } control;
  struct iovec iov[2] = {{(void *)HEADER, HEADER_SIZE}, {(void *)payload, PAYLOAD_SIZE}};
  struct msghdr msg = {0};
  msg.msg_iov = iov;
  msg.msg_iovlen = 2;
  if (nfds > 0) {
    msg.msg_control = control.buf;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    memset(control.buf, 0, msg.msg_controllen);
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do n = sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n;
}

static int receiver(int sock) {
  char *buf = malloc(RECV_BUF);
  if (!buf) die("malloc");
  union {
    char buf[CMSG_SPACE(sizeof(int) * SCM_MAX_FD) + CMSG_SPACE(64)];
    struct cmsghdr align;
  } control;
  uint64_t count = 0;
  for (;;) {
    struct iovec iov = {buf, RECV_BUF};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    ssize_t n;
    do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) die("recvmsg");
    if (n == 0) return 0; /* sender gone */
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t j = 0; j < k; j++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + j * sizeof(int), sizeof(int));
        close(fd);
      }
    }
    if (msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) {
      fprintf(stderr, "baseline: truncated record\n");
      return 1;
    }
    if (n < HEADER_SIZE + 1 || memcmp(buf, HEADER, HEADER_SIZE) != 0) {
      fprintf(stderr, "baseline: bad record\n");
      return 1;
    }
    if (buf[HEADER_SIZE] == 'E') {
      unsigned char reply[PAYLOAD_SIZE] = {'R'};
      memcpy(reply + 8, &count, sizeof count);
      if (send_record(sock, reply, NULL, 0) < 0) die("sendmsg (reply)");
      count = 0;
    } else {
      count++;
    }
  }
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: baseline <fds-per-message> <messages> <cap-seconds>\n");
    return 2;
  }
  int k = atoi(argv[1]);
  long messages = atol(argv[2]);
  double cap = atof(argv[3]);
  if (k < 0 || k > SCM_MAX_FD || messages <= 0 || cap <= 0) {
    fprintf(stderr, "baseline: fds-per-message must be 0..%d, messages and cap-seconds > 0\n", SCM_MAX_FD);
    return 2;
  }
  /* Node raises its soft RLIMIT_NOFILE to the hard limit at startup; do the same (the kernel bounds the fds
   * in flight per user by it). */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair");
  fflush(stdout);
  pid_t pid = fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    close(sv[0]);
    _exit(receiver(sv[1]));
  }
  close(sv[1]);
  int sock = sv[0];

  int base = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (base < 0) die("open /dev/null");
  int fds[SCM_MAX_FD];
  for (int i = 0; i < k; i++) {
    fds[i] = fcntl(base, F_DUPFD_CLOEXEC, 0);
    if (fds[i] < 0) die("dup");
  }
  unsigned char payload[PAYLOAD_SIZE];
  memset(payload, 'x', sizeof payload);
  payload[0] = 'D';

  double t0 = now(), deadline = t0 + cap;
  long sent = 0;
  int capped = 0;
  while (sent < messages) {
    if (send_record(sock, payload, fds, k) < 0) die("sendmsg");
    sent++;
    if ((sent & 63) == 0 && now() > deadline) {
      capped = 1;
      break;
    }
  }
  unsigned char end[PAYLOAD_SIZE] = {'E'};
  if (send_record(sock, end, NULL, 0) < 0) die("sendmsg (end)");
  char buf[256];
  ssize_t n;
  do n = recv(sock, buf, sizeof buf, 0);
  while (n < 0 && errno == EINTR);
  double t1 = now();
  if (n < HEADER_SIZE + PAYLOAD_SIZE || buf[HEADER_SIZE] != 'R') {
    fprintf(stderr, "baseline: no reply from the receiver\n");
    return 1;
  }
  uint64_t received;
  memcpy(&received, buf + HEADER_SIZE + 8, sizeof received);
  if ((long)received != sent) {
    fprintf(stderr, "baseline: sent %ld messages, the receiver got %llu\n", sent, (unsigned long long)received);
    return 1;
  }
  shutdown(sock, SHUT_RDWR);
  close(sock);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "baseline: receiver failed\n");
    return 1;
  }
  double secs = t1 - t0;
  printf("{\"fdsPerMessage\":%d,\"messages\":%ld,\"seconds\":%.6f,\"messagesPerSec\":%.1f,\"fdsPerSec\":%.1f,\"capped\":%s}\n",
         k, sent, secs, sent / secs, (double)sent * k / secs, capped ? "true" : "false");
  return 0;
}

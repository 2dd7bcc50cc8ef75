/* SCM_RIGHTS, once: the one sendmsg with fds attached and the one walk over a received message's control
 * data, shared by channel.c (the fd channel) and notify.c (the service manager's FDSTORE=1).
 *
 * Header-only (static inline): both are on the channel's hot path, one call per record, and the addon is
 * built without link-time optimisation, so a function in another file could not be inlined.
 */
#ifndef BATON_SCM_H
#define BATON_SCM_H

#include "baton.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

/* Room for one control message of BATON_SCM_MAX_FD fds, aligned for struct cmsghdr. */
typedef union {
  char buf[CMSG_SPACE(sizeof(int) * BATON_SCM_MAX_FD)];
  struct cmsghdr align;
} baton_scm_space;

/* sendmsg(fd, msg, flags) with `fds` attached as one SCM_RIGHTS control message (none when nfds is 0;
 * at most BATON_SCM_MAX_FD, which callers check), retried on EINTR. Sets msg's control fields; the fds are
 * borrowed (the kernel takes its own references). Returns what sendmsg returns, errno set on -1. */
static inline ssize_t baton_scm_sendmsg(int fd, struct msghdr *msg, const int *fds, uint32_t nfds, int flags) {
  baton_scm_space control;
  msg->msg_control = NULL;
  msg->msg_controllen = 0;
  if (nfds > 0) {
    msg->msg_control = control.buf;
    msg->msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    memset(control.buf, 0, msg->msg_controllen);
    struct cmsghdr *c = CMSG_FIRSTHDR(msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do n = sendmsg(fd, msg, flags);
  while (n < 0 && errno == EINTR);
  msg->msg_control = NULL; /* `control` is gone once this returns */
  msg->msg_controllen = 0;
  return n;
}

/* Copy every fd of every SCM_RIGHTS message in a received `msg` into `fds` and return how many. Called right
 * after recvmsg, so that from then on each received fd is either handed on or closed; `cap` must cover what
 * the receive's control buffer can hold (an fd left out would stay open, unreported). */
static inline size_t baton_scm_collect(struct msghdr *msg, int *fds, size_t cap) {
  size_t n = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t j = 0; j < k && n < cap; j++) memcpy(&fds[n++], CMSG_DATA(c) + j * sizeof(int), sizeof(int));
  }
  return n;
}

#endif

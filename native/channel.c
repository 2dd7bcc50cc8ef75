/* The fd channel's syscalls: AF_UNIX SOCK_SEQPACKET sockets carrying records with SCM_RIGHTS.
 *
 * Why SOCK_SEQPACKET: each sendmsg is one record that the receiver gets whole, with exactly the fds that
 * were attached to it. On a SOCK_STREAM socket the kernel attaches fds to a byte range, a recvmsg may
 * return bytes of two messages with the fds of one, and a reader that asks for fewer bytes than were sent
 * can silently drop fds; message framing and fd attribution would have to be rebuilt on top. SEQPACKET also
 * reports the peer going away as a clean end of stream and keeps its ordering guarantees.
 *
 * Every function here is nonblocking: EAGAIN is reported to the caller (false / -1 / stop), never waited
 * on; the TypeScript side waits through a Poller. One exception, bounded: listen() waits for another process
 * to leave the few syscalls of its own listen() in the same directory (see lock_socket_dir).
 */
#include "baton.h"
#include "scm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* The largest record baton reads. The sender never writes more than BATON_RECORD_MAX (see framing.ts); a
 * bigger record from a misbehaving peer is cut by the kernel and reported as truncated. */
#define BATON_RECV_BUF (256 * 1024)
/* recvBatch copies records up to BATON_PACK_MAX bytes into one shared Buffer per batch (at most
 * BATON_PACK_BUF bytes), so a batch of small records costs one allocation, not one per record. */
#define BATON_PACK_MAX 4096
#define BATON_PACK_BUF (64 * 1024)

enum { REC_OK = 0, REC_CTRUNC = 1, REC_TRUNC = 2 };

typedef struct {
  char *buf;    /* BATON_RECV_BUF: every record is read here first */
  char *packed; /* BATON_PACK_BUF: recvBatch's small records, copied out as one Buffer per batch */
} baton_instance;

static void instance_finalize(napi_env env, void *data, void *hint) {
  baton_instance *inst = data;
  free(inst->buf);
  free(inst->packed);
  free(inst);
}

static bool get_path(napi_env env, napi_value v, struct sockaddr_un *addr, socklen_t *len, char *path,
                     size_t path_size) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_string) {
    baton_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"path\" argument must be a string");
    return false;
  }
  size_t n;
  napi_get_value_string_utf8(env, v, path, path_size, &n);
  if (n == 0) {
    baton_throw_type(env, "ERR_INVALID_ARG_VALUE", "The \"path\" argument must not be empty");
    return false;
  }
  if (memchr(path, '\0', n)) {
    baton_throw_type(env, "ERR_INVALID_ARG_VALUE", "The \"path\" argument must not contain NUL bytes");
    return false;
  }
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (n >= sizeof addr->sun_path) {
    char msg[200];
    snprintf(msg, sizeof msg, "The socket path is %zu bytes; AF_UNIX paths must be shorter than %zu bytes",
             n, sizeof addr->sun_path);
    baton_throw_range(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  memcpy(addr->sun_path, path, n);
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  return true;
}

/* A call whose first argument is a socket path: its arguments, and the path as text and as an address. */
typedef struct {
  size_t argc;
  napi_value argv[3];
  struct sockaddr_un addr;
  socklen_t len;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];
} path_call;

/* Read up to `argc` arguments into *c: false with an exception pending when the path is not a usable one. */
static bool path_args(napi_env env, napi_callback_info info, size_t argc, path_call *c) {
  c->argc = argc;
  if (napi_get_cb_info(env, info, &c->argc, c->argv, NULL, NULL) != napi_ok) {
    baton__rethrow(env, "napi_get_cb_info");
    return false;
  }
  return get_path(env, c->argv[0], &c->addr, &c->len, c->path, sizeof c->path);
}

/* Is someone listening on this socket path? 1 yes, 0 no (stale), -1 error in errno, with *syscall naming
 * the call that failed (socket or connect). */
static int path_has_listener(const struct sockaddr_un *addr, socklen_t len, int type, const char **syscall) {
  int probe = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (probe < 0) {
    *syscall = "socket";
    return -1;
  }
  int r = connect(probe, (const struct sockaddr *)addr, len);
  int err = errno;
  close(probe);
  if (r == 0) return 1;
  /* EAGAIN: a listener with a full backlog. EPROTOTYPE: a live socket of another type holds the path. */
  if (err == EAGAIN || err == EPROTOTYPE || err == EINPROGRESS) return 1;
  if (err == ECONNREFUSED) return 0;
  *syscall = "connect";
  errno = err;
  return -1;
}

/* How long listen() waits for another process's listen() in the same directory: it holds the lock for a
 * bind, an lstat, a probe connect, an unlink, a chmod and a listen (microseconds), so this bound is only
 * reached when that process was stopped (SIGSTOP, a debugger) while holding it. */
#define LISTEN_LOCK_TRIES 2000
#define LISTEN_LOCK_SLEEP_NS 1000000L /* 1 ms: LISTEN_LOCK_TRIES of these is ~2 s */

/* Take an exclusive flock(2) on the directory that holds `path`, so that two processes never interleave
 * in listen() below. Without it, process B's probe could find A's socket bound but not yet listening
 * (ECONNREFUSED, "stale"), unlink A's file and bind its own: both would then believe they own the path,
 * and A would listen on a file nobody can reach. Two threads calling listen() on a stale path at the same
 * moment did that 15 times in 3,000 tries (2026-12-07); two `baton run`s racing for a crashed supervisor's
 * socket did it once in ~12 CI runs. The kernel drops the lock when its holder dies, so a crash leaves no
 * stale lock. Returns the locked directory fd (the caller closes it, which unlocks); -1 when the directory
 * cannot be opened for a reason of its own (missing, not searchable: bind() reports that itself) or flock is
 * unsupported there, and listen() goes on unlocked, since the lock only guards a race; -2 with errno set when
 * the process has no fd to spare (EMFILE, ENFILE: the listening socket would fail next) or the bound ran
 * out (EWOULDBLOCK). */
static int lock_socket_dir(const char *path) {
  char dir[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash) snprintf(dir, sizeof dir, ".");
  else if (slash == dir) dir[1] = '\0';
  else *slash = '\0';
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno == EMFILE || errno == ENFILE || errno == ENOMEM ? -2 : -1;
  for (int i = 0; i < LISTEN_LOCK_TRIES; i++) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) break;
    struct timespec ts = {0, LISTEN_LOCK_SLEEP_NS};
    nanosleep(&ts, NULL);
  }
  int err = errno;
  close(fd);
  if (err != EWOULDBLOCK) return -1;
  errno = EWOULDBLOCK;
  return -2;
}

/* channel_listen's work once it holds the directory's lock: a listening fd, or NULL with an exception. */
static napi_value bind_and_listen(napi_env env, const char *path, const struct sockaddr_un *addr_in, socklen_t len,
                                  int type, int32_t backlog) {
  struct sockaddr_un addr = *addr_in;
  int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return baton_throw_errno(env, errno, "socket", path);

  for (int attempt = 0;; attempt++) {
    if (bind(fd, (struct sockaddr *)&addr, len) == 0) break;
    int err = errno;
    if (err != EADDRINUSE || attempt >= 2) {
      close(fd);
      return baton_throw_errno(env, err, "bind", path);
    }
    struct stat st;
    if (lstat(path, &st) != 0) {
      if (errno == ENOENT) continue; /* removed meanwhile: bind again */
      err = errno;
      close(fd);
      return baton_throw_errno(env, err, "lstat", path);
    }
    if (!S_ISSOCK(st.st_mode)) {
      close(fd);
      char detail[sizeof addr.sun_path + 128];
      snprintf(detail, sizeof detail, "%s (exists and is not a socket; baton will not remove it)", path);
      return baton_throw_errno(env, EADDRINUSE, "bind", detail);
    }
    const char *failed = "bind";
    int live = path_has_listener(&addr, len, type, &failed);
    if (live != 0) {
      err = live < 0 ? errno : EADDRINUSE;
      close(fd);
      char detail[sizeof addr.sun_path + 128];
      snprintf(detail, sizeof detail, live < 0 ? "%s (checking whether anyone listens on it)"
                                                : "%s (another process is listening on it)", path);
      return baton_throw_errno(env, err, failed, detail);
    }
    if (unlink(path) != 0 && errno != ENOENT) {
      err = errno;
      close(fd);
      return baton_throw_errno(env, err, "unlink", path);
    }
  }
  /* chmod before listen(): until listen() nobody can connect, so there is no window with a wider mode. */
  const char *failed = chmod(path, 0600) != 0 ? "chmod" : listen(fd, backlog) != 0 ? "listen" : NULL;
  if (failed) {
    int err = errno;
    unlink(path);
    close(fd);
    return baton_throw_errno(env, err, failed, path);
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

/* listen(path, backlog, stream = false) -> fd: a SOCK_SEQPACKET listener for the fd channel, or with
 * `stream` a SOCK_STREAM one (the upgrader's Unix listeners: bound here rather than by libuv, because
 * libuv unlinks the path of a pipe it bound when the handle closes, and the old generation's close would
 * then remove the file the new generation is serving on). The socket file gets mode 0600; a stale socket
 * file is replaced only when nobody listens on it; a live one gives EADDRINUSE; a path that is not a
 * socket is never removed. Done under an flock of the socket's directory (lock_socket_dir), so that two
 * processes listening on one path at once end as one listener and one EADDRINUSE. */
static napi_value channel_listen(napi_env env, napi_callback_info info) {
  path_call c;
  if (!path_args(env, info, 3, &c)) return NULL;
  int32_t backlog = 128;
  if (c.argc >= 2 && !baton_arg_int32(env, c.argv[1], "backlog", &backlog)) return NULL;
  bool stream = false;
  if (c.argc >= 3) napi_get_value_bool(env, c.argv[2], &stream);
  int type = stream ? SOCK_STREAM : SOCK_SEQPACKET;

  int lock = lock_socket_dir(c.path);
  if (lock == -2) {
    int err = errno;
    bool waited = err == EWOULDBLOCK;
    char detail[sizeof c.path + 96];
    snprintf(detail, sizeof detail,
             waited ? "%s (another process has been binding a socket in its directory for 2 s)"
                    : "%s (opening its directory to lock it)",
             c.path);
    return baton_throw_errno(env, err, waited ? "flock" : "open", detail);
  }
  napi_value out = bind_and_listen(env, c.path, &c.addr, c.len, type, backlog);
  if (lock >= 0) close(lock);
  return out;
}

/* connect(path) -> fd. EAGAIN (the listener's backlog is full) is thrown like any error: the caller retries. */
static napi_value channel_connect(napi_env env, napi_callback_info info) {
  path_call c;
  if (!path_args(env, info, 1, &c)) return NULL;
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return baton_throw_errno(env, errno, "socket", c.path);
  int r;
  do r = connect(fd, (struct sockaddr *)&c.addr, c.len);
  while (r != 0 && errno == EINTR);
  if (r != 0) {
    int err = errno;
    close(fd);
    return baton_throw_errno(env, err, "connect", c.path);
  }
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

/* accept(fd) -> fd, or -1 when nothing is pending. */
static napi_value channel_accept(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  if (!baton_arg_fd(env, argv[0], "fd", &fd)) return NULL;
  int c;
  do c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  while (c < 0 && errno == EINTR);
  if (c < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return baton_throw_errno(env, errno, "accept4", NULL);
  napi_value out;
  napi_create_int32(env, c < 0 ? -1 : c, &out);
  return out;
}

/* socketpair() -> [fd, fd]: a connected SEQPACKET pair (tests, and handing a channel to a child). */
static napi_value channel_socketpair(napi_env env, napi_callback_info info) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
    return baton_throw_errno(env, errno, "socketpair", NULL);
  napi_value arr = baton_fd_array(env, sv, 2);
  if (!arr) baton_close_all(sv, 2);
  return arr;
}

static bool get_bytes(napi_env env, napi_value v, const char *name, void **data, size_t *len) {
  bool ok = false;
  napi_is_buffer(env, v, &ok);
  if (ok) return napi_get_buffer_info(env, v, data, len) == napi_ok;
  napi_is_typedarray(env, v, &ok);
  if (ok) {
    napi_typedarray_type type;
    size_t count, offset;
    napi_value ab;
    if (napi_get_typedarray_info(env, v, &type, &count, data, &ab, &offset) != napi_ok) return false;
    if (type != napi_uint8_array) ok = false;
    else {
      *len = count;
      return true;
    }
  }
  char msg[120];
  snprintf(msg, sizeof msg, "The \"%s\" argument must be a Buffer or Uint8Array", name);
  baton_throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
  return false;
}

/* The sendmsg of sendRecord and sendRecordInt32: true when sent, false on EAGAIN, throws otherwise. */
static napi_value send_record(napi_env env, int fd, struct iovec *iov, int iovcnt, const int *fds, uint32_t nfds) {
  struct msghdr msg = {0};
  msg.msg_iov = iov;
  msg.msg_iovlen = iovcnt;
  ssize_t n = baton_scm_sendmsg(fd, &msg, fds, nfds, MSG_NOSIGNAL | MSG_DONTWAIT);
  napi_value out;
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      napi_get_boolean(env, false, &out);
      return out;
    }
    return baton_throw_errno(env, errno, "sendmsg", NULL);
  }
  napi_get_boolean(env, true, &out);
  return out;
}

/* The common arguments of sendRecord and sendRecordInt32: fd, header, payload | null. */
static bool record_args(napi_env env, napi_value *argv, int *fd, struct iovec *iov, int *iovcnt) {
  if (!baton_arg_fd(env, argv[0], "fd", fd)) return false;
  *iovcnt = 1;
  if (!get_bytes(env, argv[1], "header", &iov[0].iov_base, &iov[0].iov_len)) return false;
  napi_valuetype t;
  napi_typeof(env, argv[2], &t);
  if (t != napi_null && t != napi_undefined) {
    if (!get_bytes(env, argv[2], "payload", &iov[1].iov_base, &iov[1].iov_len)) return false;
    if (iov[1].iov_len > 0) *iovcnt = 2;
  }
  return true;
}

/* sendRecord(fd, header, payload | null, fds) -> true when the record was sent, false on EAGAIN (nothing
 * was sent: a SEQPACKET record goes whole or not at all). The fds are borrowed: the kernel takes its own
 * references while the record is in flight. */
static napi_value channel_send_record(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd, iovcnt;
  struct iovec iov[2];
  if (!record_args(env, argv, &fd, iov, &iovcnt)) return NULL;
  int fds[BATON_SCM_MAX_FD];
  uint32_t nfds = 0;
  napi_valuetype t;
  napi_typeof(env, argv[3], &t);
  if (t != napi_null && t != napi_undefined &&
      !baton_arg_fd_array(env, argv[3], "fds", fds, BATON_SCM_MAX_FD, &nfds))
    return NULL;
  return send_record(env, fd, iov, iovcnt, fds, nfds);
}

/* sendRecordInt32(fd, header, payload | null, fds: Int32Array, count): sendRecord with the fds in the first
 * `count` entries of a typed array, for the TypeScript sendRecord in src/fd/native.ts, which checks them
 * (reading a JavaScript array element by element through N-API costs more than passing the fds to the
 * kernel). Each fd must be >= 0; at most SCM_MAX_FD. */
static napi_value channel_send_record_int32(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd, iovcnt;
  struct iovec iov[2];
  if (!record_args(env, argv, &fd, iov, &iovcnt)) return NULL;
  int32_t *fds;
  size_t len;
  int32_t count;
  if (!baton_arg_int32_array(env, argv[3], "fds", &fds, &len) || !baton_arg_int32(env, argv[4], "count", &count))
    return NULL;
  if (count < 0 || (size_t)count > len || count > BATON_SCM_MAX_FD)
    return baton_throw_range(env, "ERR_OUT_OF_RANGE", "The \"count\" argument is out of range");
  for (int32_t i = 0; i < count; i++)
    if (fds[i] < 0)
      return baton_throw_range(env, "ERR_OUT_OF_RANGE", "The \"fds\" argument must hold file descriptors (>= 0)");
  return send_record(env, fd, iov, iovcnt, fds, (uint32_t)count);
}

/* After a zero-length read: has the peer shut down (end of stream), or was that a zero-length record?
 * baton never sends one, but any peer can, and taking it for the end of stream would end the channel as a
 * clean close. The kernel reports end of stream only once the peer has shut down, which poll() shows as
 * POLLRDHUP; anything else is a record (and framing rejects it as too short). */
static bool peer_shut_down(int fd) {
  struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
  int r;
  do r = poll(&p, 1, 0);
  while (r < 0 && errno == EINTR);
  return r < 0 || (p.revents & (POLLRDHUP | POLLHUP)) != 0;
}

/* recvBatch(fd, max, meta: Int32Array, fds: Int32Array) -> [packed | null, big...]: the channel's one
 * receive path. Reads up to `max` records, stopping at EAGAIN, and reports them in typed arrays rather than
 * as JavaScript values per record; the recvRecords of src/fd/native.ts turns that into its flat array
 * [status, data, fds | null, ...] (JavaScript builds arrays far faster than N-API element by element).
 *
 *   meta[0]  records read              meta[1]  1 if the batch ended at end of stream
 *   meta[2 + 5i ...]  record i: status, source (0: the packed Buffer, k > 0: result[k]), offset, length,
 *                     fd count; record i's fds follow record i-1's in `fds`.
 *
 * status: 0 ok, 1 control data truncated (MSG_CTRUNC: every fd that did arrive is already closed), 2 data
 * truncated (MSG_TRUNC: fds closed too). Received fds are close-on-exec from the start (MSG_CMSG_CLOEXEC),
 * so a concurrent spawn can never inherit them. An error before any record is thrown; an error after some
 * records ends the batch and surfaces on the next call.
 *
 * Reads stop at `max` records, when `meta` is full, or when `fds` has room for less than one more
 * record's fds. Records up to BATON_PACK_MAX bytes are copied into one Buffer per batch (result[0]);
 * larger ones get a Buffer each. If building the result fails, every fd of the batch is closed. */
static napi_value channel_recv_batch(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  int32_t max;
  int32_t *meta, *fds;
  size_t meta_len, fds_cap;
  if (!baton_arg_fd(env, argv[0], "fd", &fd) || !baton_arg_int32(env, argv[1], "max", &max) ||
      !baton_arg_int32_array(env, argv[2], "meta", &meta, &meta_len) ||
      !baton_arg_int32_array(env, argv[3], "fds", &fds, &fds_cap))
    return NULL;
  enum { PER_RECORD_FDS = BATON_SCM_MAX_FD * 2 };
  if (meta_len < 2 + 5 || fds_cap < PER_RECORD_FDS)
    return baton_throw_range(env, "ERR_OUT_OF_RANGE", "recvBatch: the meta or fds array is too small");
  if (max > 0 && (size_t)max > (meta_len - 2) / 5) max = (int32_t)((meta_len - 2) / 5);
  baton_instance *inst = NULL;
  BATON_CALL(env, napi_get_instance_data(env, (void **)&inst));
  char *buf = inst->buf;

  napi_value out;
  BATON_CALL(env, napi_create_array(env, &out));
  uint32_t nbig = 0;
  size_t packed_len = 0, fds_used = 0;
  int32_t count = 0, eof = 0;
  bool reset = false;
  union {
    char buf[CMSG_SPACE(sizeof(int) * BATON_SCM_MAX_FD) + CMSG_SPACE(64)];
    struct cmsghdr align;
  } control;

  while (count < max && fds_cap - fds_used >= PER_RECORD_FDS) {
    struct iovec iov = {buf, BATON_RECV_BUF};
    struct msghdr msg = {0};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    ssize_t n;
    do n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      /* ECONNRESET: the peer closed while records we sent it were unread. The kernel reports it once
       * (reading the error clears it), ahead of the records the peer sent before closing, which are still
       * queued: read on, and they come, then the end of stream. */
      if (errno == ECONNRESET && !reset) {
        reset = true;
        continue;
      }
      if (count == 0) return baton_throw_errno(env, errno, "recvmsg", NULL);
      break;
    }
    /* Every SCM_RIGHTS fd goes into `fds` first: from here on each is either reported or closed. */
    int *rec_fds = fds + fds_used;
    size_t nfds = baton_scm_collect(&msg, rec_fds, PER_RECORD_FDS);
    if (n == 0 && nfds == 0 && !(msg.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) && peer_shut_down(fd)) {
      eof = 1; /* SEQPACKET: a zero-length read once the peer has shut down is its end of stream */
      break;
    }
    int status = REC_OK;
    if (msg.msg_flags & MSG_CTRUNC) status = REC_CTRUNC;
    else if (msg.msg_flags & MSG_TRUNC) status = REC_TRUNC;
    if (status != REC_OK) {
      baton_close_all(rec_fds, nfds);
      nfds = 0;
    }
    int32_t source = 0, offset = 0;
    if ((size_t)n <= BATON_PACK_MAX && packed_len + (size_t)n <= BATON_PACK_BUF) {
      memcpy(inst->packed + packed_len, buf, (size_t)n);
      offset = (int32_t)packed_len;
      packed_len += (size_t)n;
    } else {
      napi_value data;
      if (napi_create_buffer_copy(env, (size_t)n, buf, NULL, &data) != napi_ok ||
          napi_set_element(env, out, nbig + 1, data) != napi_ok) {
        baton_close_all(fds, fds_used + nfds);
        baton__rethrow(env, "recvBatch result");
        return NULL;
      }
      source = (int32_t)++nbig;
    }
    int32_t *m = meta + 2 + 5 * count;
    m[0] = status;
    m[1] = source;
    m[2] = offset;
    m[3] = (int32_t)n;
    m[4] = (int32_t)nfds;
    fds_used += nfds;
    count++;
  }
  napi_value packed;
  napi_status s = packed_len ? napi_create_buffer_copy(env, packed_len, inst->packed, NULL, &packed)
                             : napi_get_null(env, &packed);
  if (s != napi_ok || napi_set_element(env, out, 0, packed) != napi_ok) {
    baton_close_all(fds, fds_used);
    baton__rethrow(env, "recvBatch result");
    return NULL;
  }
  meta[0] = count;
  meta[1] = eof;
  return out;
}

/* peerCred(fd) -> { pid, uid, gid } of the process that connected (SO_PEERCRED, fixed at connect time). */
static napi_value channel_peer_cred(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  if (!baton_arg_fd(env, argv[0], "fd", &fd)) return NULL;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return baton_throw_errno(env, errno, "getsockopt", "SO_PEERCRED");
  napi_value out;
  napi_create_object(env, &out);
  baton_export_int(env, out, "pid", cred.pid);
  napi_value v;
  napi_create_uint32(env, cred.uid, &v);
  napi_set_named_property(env, out, "uid", v);
  napi_create_uint32(env, cred.gid, &v);
  napi_set_named_property(env, out, "gid", v);
  return out;
}

napi_status baton_init_channel(napi_env env, napi_value exports) {
  baton_instance *inst = calloc(1, sizeof *inst);
  if (!inst) return napi_generic_failure;
  inst->buf = malloc(BATON_RECV_BUF);
  inst->packed = malloc(BATON_PACK_BUF);
  if (!inst->buf || !inst->packed) {
    free(inst->buf);
    free(inst->packed);
    free(inst);
    return napi_generic_failure;
  }
  napi_status s = napi_set_instance_data(env, inst, instance_finalize, NULL);
  if (s != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "listen", channel_listen)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "connect", channel_connect)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "accept", channel_accept)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "socketpair", channel_socketpair)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "sendRecord", channel_send_record)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "sendRecordInt32", channel_send_record_int32)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "recvBatch", channel_recv_batch)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "peerCred", channel_peer_cred)) != napi_ok) return s;
  return baton_export_int(env, exports, "SCM_MAX_FD", BATON_SCM_MAX_FD);
}

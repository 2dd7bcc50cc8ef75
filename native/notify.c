/* The service manager's notification protocol (sd_notify(3)), without libsystemd: one AF_UNIX SOCK_DGRAM
 * datagram per message, sent to $NOTIFY_SOCKET, optionally with fds attached (SCM_RIGHTS: FDSTORE=1).
 *
 * notify(path, message, fds?) sends `message` (a Buffer, e.g. "READY=1\nSTATUS=serving") to `path`, a
 * filesystem socket ("/run/systemd/notify") or an abstract one ("@name": the '@' stands for the leading
 * NUL byte). Each call makes its own socket — close-on-exec, nonblocking — and closes it before returning,
 * on every path: nothing is kept open between calls, so a forked child never inherits it.
 *
 * Credentials: the service manager sets SO_PASSCRED on its socket, so the kernel attaches the sender's
 * pid/uid/gid to every datagram by itself; SCM_CREDENTIALS only matters for sending on behalf of another
 * pid, which baton never does.
 *
 * The send is nonblocking: if the manager's queue is full the call fails with EAGAIN instead of stalling
 * the event loop (a service manager drains its queue continuously; losing a STATUS= is better than
 * blocking). MSG_NOSIGNAL: a datagram socket raises no SIGPIPE, but the flag costs nothing and documents it.
 */
#include "baton.h"
#include "scm.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* notify(path: string, message: Buffer, fds?: number[] | null) -> undefined; throws errno errors. */
static napi_value notify(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2)
    return baton_throw_type(env, "ERR_INVALID_ARG_TYPE", "notify(path, message[, fds]) needs a path and a message");

  /* The address. One byte more than sun_path so an over-long path is detected, not cut. */
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  char path[sizeof sa.sun_path + 2];
  size_t len = 0;
  napi_valuetype t;
  if (napi_typeof(env, argv[0], &t) != napi_ok || t != napi_string)
    return baton_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"path\" argument must be a string");
  BATON_CALL(env, napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len));
  socklen_t salen;
  if (len >= 2 && path[0] == '@') {
    /* Abstract namespace: a leading NUL, then the name; the length counts exactly its bytes. */
    if (len > sizeof sa.sun_path)
      return baton_throw_range(env, "ERR_OUT_OF_RANGE", "The \"path\" argument is too long for an AF_UNIX address");
    memcpy(sa.sun_path + 1, path + 1, len - 1);
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
  } else if (len >= 1 && path[0] == '/') {
    if (len >= sizeof sa.sun_path)
      return baton_throw_range(env, "ERR_OUT_OF_RANGE", "The \"path\" argument is too long for an AF_UNIX address");
    memcpy(sa.sun_path, path, len);
    salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
  } else {
    return baton_throw_type(env, "ERR_INVALID_ARG_VALUE",
                            "The \"path\" argument must be an absolute path or an abstract socket name ('@name')");
  }
  if (memchr(path, '\0', len) != NULL)
    return baton_throw_type(env, "ERR_INVALID_ARG_VALUE", "The \"path\" argument must not contain NUL bytes");

  bool is_buffer = false;
  napi_is_buffer(env, argv[1], &is_buffer);
  if (!is_buffer) return baton_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"message\" argument must be a Buffer");
  void *data = NULL;
  size_t size = 0;
  BATON_CALL(env, napi_get_buffer_info(env, argv[1], &data, &size));

  int fds[BATON_SCM_MAX_FD];
  uint32_t nfds = 0;
  if (argc >= 3) {
    napi_valuetype ft;
    BATON_CALL(env, napi_typeof(env, argv[2], &ft));
    if (ft != napi_undefined && ft != napi_null &&
        !baton_arg_fd_array(env, argv[2], "fds", fds, BATON_SCM_MAX_FD, &nfds))
      return NULL;
  }

  int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s < 0) return baton_throw_errno(env, errno, "socket", NULL);

  struct iovec iov = {.iov_base = data, .iov_len = size};
  struct msghdr mh;
  memset(&mh, 0, sizeof mh);
  mh.msg_name = &sa;
  mh.msg_namelen = salen;
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  ssize_t r = baton_scm_sendmsg(s, &mh, fds, nfds, MSG_NOSIGNAL);
  int err = r < 0 ? errno : 0;
  close(s);
  if (err) return baton_throw_errno(env, err, "sendmsg", path);
  return NULL;
}

napi_status baton_init_notify(napi_env env, napi_value exports) {
  return baton_export_fn(env, exports, "notify", notify);
}

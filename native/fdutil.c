/* Plain fd operations the fd layer needs and Node does not offer synchronously without side effects:
 * a close-on-exec dup, a batch close (one N-API call for a whole message's fds), and a validity check. */
#include "baton.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* dup(fd) -> a new close-on-exec fd sharing the same open file description. It never touches O_NONBLOCK
 * (that flag lives on the shared description, so changing it would change the original too). */
static napi_value fd_dup(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  if (!baton_arg_fd(env, argv[0], "fd", &fd)) return NULL;
  int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) return baton_throw_errno(env, errno, "dup", NULL);
  napi_value out;
  napi_create_int32(env, d, &out);
  return out;
}

/* close(fd). EINTR is not retried: on Linux the fd is gone either way. */
static napi_value fd_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  if (!baton_arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (close(fd) != 0 && errno != EINTR) return baton_throw_errno(env, errno, "close", NULL);
  return NULL;
}

/* closeMany(fds) -> how many were open. Never throws for a bad fd: it is an error-path helper. */
static napi_value fd_close_many(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  bool is_array = false;
  napi_is_array(env, argv[0], &is_array);
  if (!is_array) return baton_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"fds\" argument must be an array");
  uint32_t n, closed = 0;
  napi_get_array_length(env, argv[0], &n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    int32_t fd;
    if (napi_get_element(env, argv[0], i, &e) != napi_ok || napi_get_value_int32(env, e, &fd) != napi_ok) continue;
    if (fd >= 0 && (close(fd) == 0 || errno == EINTR)) closed++;
  }
  napi_value out;
  napi_create_uint32(env, closed, &out);
  return out;
}

/* closeInt32(fds: Int32Array, count) -> how many were open: closeMany's loop over the first `count`
 * entries of a typed array, for the TypeScript closeMany in src/fd/native.ts (reading a JavaScript array
 * element by element through N-API costs more than the close(2) calls themselves). Negative entries are
 * skipped. The syscall is made directly: glibc's close() is a pthread cancellation point, and in a
 * multithreaded process (any Node process) each call pays for enabling and disabling asynchronous
 * cancellation around it, about a fifth of the cost of closing a received fd. */
static napi_value fd_close_int32(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t *fds;
  size_t length;
  if (!baton_arg_int32_array(env, argv[0], "fds", &fds, &length)) return NULL;
  int32_t count;
  if (!baton_arg_int32(env, argv[1], "count", &count)) return NULL;
  if (count < 0 || (size_t)count > length)
    return baton_throw_range(env, "ERR_OUT_OF_RANGE", "The \"count\" argument is out of range");
  uint32_t closed = 0;
  for (int32_t i = 0; i < count; i++)
    if (fds[i] >= 0 && (syscall(SYS_close, fds[i]) == 0 || errno == EINTR)) closed++;
  napi_value out;
  napi_create_uint32(env, closed, &out);
  return out;
}

/* isOpen(fd) -> whether fd names an open file in this process. */
static napi_value fd_is_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  if (!baton_arg_fd(env, argv[0], "fd", &fd)) return NULL;
  napi_value out;
  napi_get_boolean(env, fcntl(fd, F_GETFD) >= 0, &out);
  return out;
}

napi_status baton_init_fdutil(napi_env env, napi_value exports) {
  napi_status s;
  if ((s = baton_export_fn(env, exports, "dup", fd_dup)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "close", fd_close)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "closeMany", fd_close_many)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "closeInt32", fd_close_int32)) != napi_ok) return s;
  return baton_export_fn(env, exports, "isOpen", fd_is_open);
}

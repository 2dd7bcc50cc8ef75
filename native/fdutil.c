/* Plain fd operations the fd layer needs and Node does not offer synchronously without side effects:
 * a close-on-exec dup, a batch close (one N-API call for a whole message's fds), a validity check, and
 * growing the fd table ahead of need off the event loop. */
#include "baton.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
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

/*
 * growFdTable(fd, minFd) -> Promise<void>: make this process's fd table cover fd number `minFd`, on a libuv
 * threadpool thread: fcntl(fd, F_DUPFD_CLOEXEC, minFd) — the lowest free fd >= minFd — then close that copy.
 * The kernel never shrinks a table it grew.
 *
 * Why: the kernel grows a table by doubling it (128, 256, ... fds), and in a process with more than one
 * thread sharing it — every Node process — each growth waits for an RCU grace period (expand_fdtable():
 * synchronize_rcu() once files->count > 1) in whichever thread needs the new fd. A generation taking 10,000
 * connections in grew its table 7 times, each inside recvmsg() on the event loop (Linux 6.18: /dev/null opened
 * 16,000 times from Node, the opens at fd 256, 512, ... 8192 took 7-22 ms each, ~75 ms in all, the others
 * ~2 µs). Grown here once ahead, that is one grace period, slept on a threadpool thread; the event loop waits
 * only for an fd it needs meanwhile beyond the old size (the kernel makes it wait for the growth in progress).
 *
 * `fd` is any open fd (its copy is closed at once); if the event loop closes it meanwhile, the dup fails with
 * EBADF or copies whatever took the number — closed again just the same. Rejects with the errno Error (EMFILE:
 * no fd free at or above minFd; EINVAL: minFd at or above RLIMIT_NOFILE).
 */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd;
  int min_fd;
  int err;
} grow_job;

static void grow_execute(napi_env env, void *data) {
  grow_job *job = data;
  int d = fcntl(job->fd, F_DUPFD_CLOEXEC, job->min_fd);
  if (d < 0) job->err = errno;
  else close(d);
}

static void grow_complete(napi_env env, napi_status status, void *data) {
  grow_job *job = data;
  napi_value result = NULL;
  if (status == napi_ok && job->err == 0) {
    napi_get_undefined(env, &result);
    napi_resolve_deferred(env, job->deferred, result);
  } else {
    result = baton_errno_error(env, status == napi_ok ? job->err : ECANCELED, "fcntl", "F_DUPFD_CLOEXEC");
    if (!result) napi_get_undefined(env, &result);
    napi_reject_deferred(env, job->deferred, result);
  }
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value fd_grow_table(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  int32_t min_fd;
  if (!baton_arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (!baton_arg_int32(env, argv[1], "minFd", &min_fd)) return NULL;
  if (min_fd < 0) return baton_throw_range(env, "ERR_OUT_OF_RANGE", "The \"minFd\" argument must be >= 0");
  grow_job *job = calloc(1, sizeof *job);
  if (!job) return baton_throw_errno(env, ENOMEM, "calloc", NULL);
  job->fd = fd;
  job->min_fd = min_fd;
  napi_value promise, name;
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "baton.growFdTable", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, grow_execute, grow_complete, job, &job->work) != napi_ok) {
    free(job);
    baton__rethrow(env, "growFdTable");
    return NULL;
  }
  if (napi_queue_async_work(env, job->work) != napi_ok) {
    napi_delete_async_work(env, job->work);
    free(job);
    baton__rethrow(env, "napi_queue_async_work");
    return NULL;
  }
  return promise;
}

napi_status baton_init_fdutil(napi_env env, napi_value exports) {
  napi_status s;
  if ((s = baton_export_fn(env, exports, "dup", fd_dup)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "close", fd_close)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "closeMany", fd_close_many)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "closeInt32", fd_close_int32)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "growFdTable", fd_grow_table)) != napi_ok) return s;
  return baton_export_fn(env, exports, "isOpen", fd_is_open);
}

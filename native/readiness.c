/* Readiness: an epoll set used only to learn which of many parked fds became readable.
 *
 * The new generation of a reload receives connections faster than it can build a net.Socket for each (~17 µs
 * raw TCP, ~27 µs WebSocket). It parks them (src/upgrader/migrate-receiver.ts) and adopts first those whose
 * client sends something. Nothing here reads or owns a watched fd: each is registered EPOLLIN | EPOLLRDHUP |
 * EPOLLONESHOT (one report, then disabled until removed), with its own number as data. The epoll fd itself
 * polls readable while it has reports, so the existing Poller (a uv_poll_t on Node's loop) watches it: no
 * second handle type, no thread. Every call is nonblocking (epoll_wait with a timeout of 0).
 *
 *   readinessCreate() -> epfd (close-on-exec; close it with the Poller's close(true), or close())
 *   readinessAdd(epfd, fd)
 *   readinessRemove(epfd, fd)
 *   readinessTake(epfd, out: Int32Array) -> how many fds were written to `out` (at most its length, 0..64)
 */
#include "baton.h"

#include <errno.h>
#include <sys/epoll.h>

/* Reports taken per call: a caller wanting more calls again (it adopts each one it takes, ~20-30 µs each). */
#define READINESS_TAKE_MAX 64

static napi_value readiness_create(napi_env env, napi_callback_info info) {
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return baton_throw_errno(env, errno, "epoll_create1", NULL);
  napi_value out;
  napi_create_int32(env, epfd, &out);
  return out;
}

static bool two_fds(napi_env env, napi_callback_info info, int *epfd, int *fd) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    baton__rethrow(env, "napi_get_cb_info");
    return false;
  }
  return baton_arg_fd(env, argv[0], "epfd", epfd) && baton_arg_fd(env, argv[1], "fd", fd);
}

static napi_value readiness_add(napi_env env, napi_callback_info info) {
  int epfd, fd;
  if (!two_fds(env, info, &epfd, &fd)) return NULL;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT, .data.fd = fd};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) return baton_throw_errno(env, errno, "epoll_ctl", "EPOLL_CTL_ADD");
  return NULL;
}

static napi_value readiness_remove(napi_env env, napi_callback_info info) {
  int epfd, fd;
  if (!two_fds(env, info, &epfd, &fd)) return NULL;
  /* The event argument is ignored for DEL (non-NULL for kernels before 2.6.9). */
  struct epoll_event ev = {0};
  if (epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &ev) != 0) return baton_throw_errno(env, errno, "epoll_ctl", "EPOLL_CTL_DEL");
  return NULL;
}

static napi_value readiness_take(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int epfd;
  if (!baton_arg_fd(env, argv[0], "epfd", &epfd)) return NULL;
  int32_t *out;
  size_t length;
  if (!baton_arg_int32_array(env, argv[1], "out", &out, &length)) return NULL;
  int max = length < READINESS_TAKE_MAX ? (int)length : READINESS_TAKE_MAX;
  int n = 0;
  if (max > 0) {
    struct epoll_event events[READINESS_TAKE_MAX];
    n = epoll_wait(epfd, events, max, 0);
    if (n < 0) {
      if (errno != EINTR) return baton_throw_errno(env, errno, "epoll_wait", NULL);
      n = 0; /* a signal: nothing taken, the epoll fd still polls readable */
    }
    for (int i = 0; i < n; i++) out[i] = events[i].data.fd;
  }
  napi_value result;
  napi_create_int32(env, n, &result);
  return result;
}

napi_status baton_init_readiness(napi_env env, napi_value exports) {
  napi_status s;
  if ((s = baton_export_fn(env, exports, "readinessCreate", readiness_create)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "readinessAdd", readiness_add)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "readinessRemove", readiness_remove)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "readinessTake", readiness_take)) != napi_ok) return s;
  return baton_export_int(env, exports, "READINESS_TAKE_MAX", READINESS_TAKE_MAX);
}

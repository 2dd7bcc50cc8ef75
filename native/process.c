/* Process helpers for the supervisor.
 *
 * reap(pid): waitpid(pid, WNOHANG) for one specific pid. As PID 1 in a container, `baton run` inherits
 * orphaned grandchildren; when they exit they stay zombies until PID 1 waits for them. libuv only waits for
 * the children it spawned (by pid), so a blanket waitpid(-1) would steal their exit statuses from Node.
 * The supervisor instead finds zombies that are not its own children in /proc and reaps exactly those.
 *
 * threadCpuMicros(): the calling thread's CPU time, µs (clock_gettime(CLOCK_THREAD_CPUTIME_ID)). What the
 * migration paces by (src/upgrader/pacing.ts): the event loop's own work. process.cpuUsage() — getrusage(
 * RUSAGE_SELF), every thread of the process summed — cost a mean 61-138 µs a call, up to 9 ms, in generations
 * moving 10,000 connections (bench:migrate, 2026-12-07: 364 calls, 50 ms, in one old generation), ~1 µs idle.
 */
#include "baton.h"

#include <errno.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The one argument `pid` (> 0) of every function here; false with a TypeError/RangeError thrown. */
static bool pid_arg(napi_env env, napi_callback_info info, int32_t *pid) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    baton__rethrow(env, "napi_get_cb_info");
    return false;
  }
  if (!baton_arg_int32(env, argv[0], "pid", pid)) return false;
  if (*pid <= 0) {
    baton_throw_range(env, "ERR_OUT_OF_RANGE", "The \"pid\" argument must be > 0");
    return false;
  }
  return true;
}

static pid_t wait_nohang(pid_t pid, int *status) {
  pid_t r;
  do r = waitpid(pid, status, WNOHANG);
  while (r < 0 && errno == EINTR);
  return r;
}

/* reap(pid) -> true if a zombie with that pid was reaped, false if it has not exited (or is not ours). */
static napi_value reap(napi_env env, napi_callback_info info) {
  int32_t pid;
  if (!pid_arg(env, info, &pid)) return NULL;
  int status;
  napi_value out;
  napi_get_boolean(env, wait_nohang(pid, &status) == pid, &out);
  return out;
}

/* waitStatus(pid) -> null while it runs, else { code, signal } (one of them null), reaping it. For the
 * children a re-executed supervisor inherits from its previous image (watchChildExit in src/fd/process.ts): libuv
 * knows nothing of them. Throws on error (ECHILD: not our child, or reaped already). */
static napi_value wait_status(napi_env env, napi_callback_info info) {
  int32_t pid;
  if (!pid_arg(env, info, &pid)) return NULL;
  int status;
  pid_t r = wait_nohang(pid, &status);
  if (r < 0) return baton_throw_errno(env, errno, "waitpid", NULL);
  napi_value out, code, sig;
  if (r == 0) {
    napi_get_null(env, &out);
    return out;
  }
  napi_create_object(env, &out);
  if (WIFEXITED(status)) napi_create_int32(env, WEXITSTATUS(status), &code);
  else napi_get_null(env, &code);
  if (WIFSIGNALED(status)) napi_create_int32(env, WTERMSIG(status), &sig);
  else napi_get_null(env, &sig);
  napi_set_named_property(env, out, "code", code);
  napi_set_named_property(env, out, "signal", sig);
  return out;
}

/* pidfdOpen(pid) -> a pidfd (close-on-exec, as pidfd_open(2) always makes it), readable once the process
 * exits: polled through libuv like any fd. Linux >= 5.3; ENOSYS before. */
static napi_value pidfd_open(napi_env env, napi_callback_info info) {
  int32_t pid;
  if (!pid_arg(env, info, &pid)) return NULL;
#ifdef SYS_pidfd_open
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) return baton_throw_errno(env, errno, "pidfd_open", NULL);
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
#else
  return baton_throw_errno(env, ENOSYS, "pidfd_open", NULL);
#endif
}

/* threadCpuMicros() -> this thread's CPU time, µs (a double: exact below 2^53 µs, ~285 years). */
static napi_value thread_cpu_micros(napi_env env, napi_callback_info info) {
  (void)info;
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return baton_throw_errno(env, errno, "clock_gettime", NULL);
  napi_value result;
  BATON_CALL(env, napi_create_double(env, (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3, &result));
  return result;
}

napi_status baton_init_process(napi_env env, napi_value exports) {
  napi_status s;
  if ((s = baton_export_fn(env, exports, "reap", reap)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "waitStatus", wait_status)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "threadCpuMicros", thread_cpu_micros)) != napi_ok) return s;
  return baton_export_fn(env, exports, "pidfdOpen", pidfd_open);
}

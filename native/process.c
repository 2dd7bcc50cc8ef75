/* Process helpers for the supervisor.
 *
 * reap(pid): waitpid(pid, WNOHANG) for one specific pid. As PID 1 in a container, `baton run` inherits
 * orphaned grandchildren; when they exit they stay zombies until PID 1 waits for them. libuv only waits for
 * the children it spawned (by pid), so a blanket waitpid(-1) would steal their exit statuses from Node.
 * The supervisor instead finds zombies that are not its own children in /proc and reaps exactly those.
 */
#include "baton.h"

#include <errno.h>
#include <sys/wait.h>

/* reap(pid) -> true if a zombie with that pid was reaped, false if it has not exited (or is not ours). */
static napi_value reap(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t pid;
  if (!baton_arg_int32(env, argv[0], "pid", &pid)) return NULL;
  if (pid <= 0) return baton_throw_range(env, "ERR_OUT_OF_RANGE", "The \"pid\" argument must be > 0");
  int status;
  pid_t r;
  do r = waitpid(pid, &status, WNOHANG);
  while (r < 0 && errno == EINTR);
  napi_value out;
  napi_get_boolean(env, r == pid, &out);
  return out;
}

napi_status baton_init_process(napi_env env, napi_value exports) {
  return baton_export_fn(env, exports, "reap", reap);
}

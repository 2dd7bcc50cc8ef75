/* baton native layer: shared declarations.
 *
 * The addon does only what JavaScript cannot: SCM_RIGHTS over AF_UNIX, socket options, fd probing, peer
 * credentials, and a libuv poll watcher so none of it ever blocks the event loop. Everything else (framing,
 * queues, object adoption) lives in TypeScript.
 *
 * Conventions, after libuv: every syscall is nonblocking; every error path closes what it opened; errors
 * become a JavaScript Error with `code` (errno name), `errno` (negative, as Node does) and `syscall`.
 */
#ifndef BATON_H
#define BATON_H

#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Linux caps SCM_RIGHTS at 253 fds per sendmsg (SCM_MAX_FD in include/net/scm.h). */
#define BATON_SCM_MAX_FD 253

/* Throw helpers. Each returns NULL so callers can `return baton_throw_...(...)`. */
napi_value baton_throw_errno(napi_env env, int err, const char *syscall, const char *detail);
/* The Error baton_throw_errno() throws, not thrown (to reject a promise with); NULL if it could not be made. */
napi_value baton_errno_error(napi_env env, int err, const char *syscall, const char *detail);
napi_value baton_throw_type(napi_env env, const char *code, const char *message);
napi_value baton_throw_range(napi_env env, const char *code, const char *message);

/* Argument helpers: on failure they throw a TypeError/RangeError and return false. */
bool baton_arg_fd(napi_env env, napi_value v, const char *name, int *out);
bool baton_arg_int32(napi_env env, napi_value v, const char *name, int32_t *out);
bool baton_arg_fd_array(napi_env env, napi_value v, const char *name, int *fds, uint32_t max, uint32_t *count);
/* A typed array of `type` (`type_name` in the message, e.g. "an Int32Array"): its data and element count. */
bool baton_arg_typed_array(napi_env env, napi_value v, const char *name, napi_typedarray_type type,
                           const char *type_name, void **data, size_t *length);
bool baton_arg_int32_array(napi_env env, napi_value v, const char *name, int32_t **data, size_t *length);

/* Close an array of fds, keeping errno intact (used on error paths). */
void baton_close_all(const int *fds, size_t n);

/* Build a JavaScript array of numbers from fds. */
napi_value baton_fd_array(napi_env env, const int *fds, size_t n);

#define BATON_CALL(env, call)                                   \
  do {                                                          \
    if ((call) != napi_ok) {                                    \
      baton__rethrow((env), #call);                             \
      return NULL;                                              \
    }                                                           \
  } while (0)

void baton__rethrow(napi_env env, const char *what);

/* Each module registers its exports here. */
napi_status baton_init_poller(napi_env env, napi_value exports);
napi_status baton_init_channel(napi_env env, napi_value exports);
napi_status baton_init_probe(napi_env env, napi_value exports);
napi_status baton_init_sockopt(napi_env env, napi_value exports);
napi_status baton_init_fdutil(napi_env env, napi_value exports);
napi_status baton_init_process(napi_env env, napi_value exports);
napi_status baton_init_notify(napi_env env, napi_value exports);
napi_status baton_init_reexec(napi_env env, napi_value exports);
napi_status baton_init_http2(napi_env env, napi_value exports);
napi_status baton_init_reuseport(napi_env env, napi_value exports);
napi_status baton_init_readiness(napi_env env, napi_value exports);

/* Define a function property on an object. */
napi_status baton_export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb);
napi_status baton_export_int(napi_env env, napi_value obj, const char *name, int32_t value);

#endif

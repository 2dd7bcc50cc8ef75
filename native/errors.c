/* Errors and argument checking shared by every native module. */
#include "baton.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

void baton__rethrow(napi_env env, const char *what) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  char msg[256];
  snprintf(msg, sizeof msg, "baton native: %s failed: %s", what,
           info && info->error_message ? info->error_message : "unknown N-API error");
  napi_throw_error(env, "ERR_BATON_NATIVE", msg);
}

static void set_string(napi_env env, napi_value obj, const char *key, const char *value) {
  napi_value v;
  if (napi_create_string_utf8(env, value, NAPI_AUTO_LENGTH, &v) == napi_ok)
    napi_set_named_property(env, obj, key, v);
}

napi_value baton_errno_error(napi_env env, int err, const char *syscall, const char *detail) {
  /* uv_err_name knows every errno name Linux uses; Node's own errors carry the same codes. */
  const char *code = uv_err_name(-err);
  char msg[512];
  if (detail && *detail)
    snprintf(msg, sizeof msg, "%s %s (%s) %s", syscall, code, strerror(err), detail);
  else
    snprintf(msg, sizeof msg, "%s %s (%s)", syscall, code, strerror(err));
  napi_value jmsg, jcode, error, jerrno;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &jmsg) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &jcode) != napi_ok) return NULL;
  if (napi_create_error(env, jcode, jmsg, &error) != napi_ok) return NULL;
  napi_create_int32(env, -err, &jerrno);
  napi_set_named_property(env, error, "errno", jerrno);
  set_string(env, error, "syscall", syscall);
  if (detail && *detail) set_string(env, error, "detail", detail);
  return error;
}

napi_value baton_throw_errno(napi_env env, int err, const char *syscall, const char *detail) {
  napi_value error = baton_errno_error(env, err, syscall, detail);
  if (error) napi_throw(env, error);
  return NULL;
}

napi_value baton_throw_type(napi_env env, const char *code, const char *message) {
  napi_throw_type_error(env, code, message);
  return NULL;
}

napi_value baton_throw_range(napi_env env, const char *code, const char *message) {
  napi_throw_range_error(env, code, message);
  return NULL;
}

bool baton_arg_int32(napi_env env, napi_value v, const char *name, int32_t *out) {
  napi_valuetype t;
  char msg[160];
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    snprintf(msg, sizeof msg, "The \"%s\" argument must be an integer", name);
    baton_throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  double d;
  napi_get_value_double(env, v, &d);
  if (d != (double)(int32_t)d) {
    snprintf(msg, sizeof msg, "The \"%s\" argument must be a 32-bit integer. Received %g", name, d);
    baton_throw_range(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  *out = (int32_t)d;
  return true;
}

bool baton_arg_fd(napi_env env, napi_value v, const char *name, int *out) {
  int32_t fd;
  if (!baton_arg_int32(env, v, name, &fd)) return false;
  if (fd < 0) {
    char msg[160];
    snprintf(msg, sizeof msg, "The \"%s\" argument must be a file descriptor (>= 0). Received %d", name, fd);
    baton_throw_range(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  *out = fd;
  return true;
}

bool baton_arg_fd_array(napi_env env, napi_value v, const char *name, int *fds, uint32_t max, uint32_t *count) {
  bool is_array = false;
  char msg[160];
  napi_is_array(env, v, &is_array);
  if (!is_array) {
    snprintf(msg, sizeof msg, "The \"%s\" argument must be an array of file descriptors", name);
    baton_throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  uint32_t n;
  napi_get_array_length(env, v, &n);
  if (n > max) {
    snprintf(msg, sizeof msg, "The \"%s\" argument holds %u fds; at most %u fit in one record", name, n, max);
    baton_throw_range(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    if (napi_get_element(env, v, i, &e) != napi_ok) return false;
    if (!baton_arg_fd(env, e, name, &fds[i])) return false;
  }
  *count = n;
  return true;
}

bool baton_arg_typed_array(napi_env env, napi_value v, const char *name, napi_typedarray_type type,
                           const char *type_name, void **data, size_t *length) {
  bool is_typed = false;
  napi_typedarray_type got;
  if (napi_is_typedarray(env, v, &is_typed) == napi_ok && is_typed &&
      napi_get_typedarray_info(env, v, &got, length, data, NULL, NULL) == napi_ok && got == type)
    return true;
  char msg[160];
  snprintf(msg, sizeof msg, "The \"%s\" argument must be %s", name, type_name);
  baton_throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
  return false;
}

bool baton_arg_int32_array(napi_env env, napi_value v, const char *name, int32_t **data, size_t *length) {
  void *p;
  if (!baton_arg_typed_array(env, v, name, napi_int32_array, "an Int32Array", &p, length)) return false;
  *data = p;
  return true;
}

void baton_close_all(const int *fds, size_t n) {
  int saved = errno;
  for (size_t i = 0; i < n; i++)
    if (fds[i] >= 0) close(fds[i]);
  errno = saved;
}

napi_value baton_fd_array(napi_env env, const int *fds, size_t n) {
  napi_value arr;
  if (napi_create_array_with_length(env, n, &arr) != napi_ok) return NULL;
  for (size_t i = 0; i < n; i++) {
    napi_value v;
    napi_create_int32(env, fds[i], &v);
    napi_set_element(env, arr, (uint32_t)i, v);
  }
  return arr;
}

napi_status baton_export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  napi_status s = napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn);
  if (s != napi_ok) return s;
  return napi_set_named_property(env, exports, name, fn);
}

napi_status baton_export_int(napi_env env, napi_value obj, const char *name, int32_t value) {
  napi_value v;
  napi_status s = napi_create_int32(env, value, &v);
  if (s != napi_ok) return s;
  return napi_set_named_property(env, obj, name, v);
}

/* What the supervisor needs to replace its own image in place (src/cli/reexec.ts). (Following the children
 * it inherits from its previous image: pidfdOpen and waitStatus in process.c.)
 *
 * Node 20 has no execve (process.execve arrived in 22.15 / 23.11), and libuv opens every fd close-on-exec;
 * so the addon does the exec: clear FD_CLOEXEC on exactly the fds to keep, execve, and if execve fails put
 * the flags (and the signal mask) back so the old image carries on as if nothing happened.
 *
 *   memfd(name)                    -> fd: anonymous memory file (close-on-exec) for the state blob
 *   execve(path, argv, env, keep, hold)  replaces the process; returns only by throwing (errno, syscall 'execve')
 *   releaseSignals(signals)        unblocks the signals execve() held (the new image calls it once its
 *                                  handlers are installed: a SIGUSR2 or SIGHUP sent meanwhile waits, pending)
 */
#include "baton.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_KEEP 4096
#define MAX_STRINGS 4096

static napi_value rx_memfd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[64];
  size_t len = 0;
  if (argc < 1 || napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok)
    return baton_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"name\" argument must be a string");
  int fd = (int)syscall(SYS_memfd_create, name, MFD_CLOEXEC);
  if (fd < 0) return baton_throw_errno(env, errno, "memfd_create", NULL);
  napi_value out;
  napi_create_int32(env, fd, &out);
  return out;
}

/* Copies a JavaScript array of strings into a NULL-terminated, malloc'd vector. */
static char **string_vector(napi_env env, napi_value arr, const char *what) {
  bool is_array = false;
  napi_is_array(env, arr, &is_array);
  uint32_t n = 0;
  if (is_array) napi_get_array_length(env, arr, &n);
  if (!is_array || n > MAX_STRINGS) {
    char msg[96];
    snprintf(msg, sizeof msg, "The \"%s\" argument must be an array of at most %d strings", what, MAX_STRINGS);
    baton_throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
    return NULL;
  }
  char **v = calloc(n + 1, sizeof *v);
  if (!v) {
    baton_throw_errno(env, ENOMEM, "malloc", NULL);
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    size_t len = 0;
    if (napi_get_element(env, arr, i, &e) != napi_ok || napi_get_value_string_utf8(env, e, NULL, 0, &len) != napi_ok ||
        !(v[i] = malloc(len + 1)) || napi_get_value_string_utf8(env, e, v[i], len + 1, &len) != napi_ok) {
      for (uint32_t j = 0; j <= i; j++) free(v[j]);
      free(v);
      char msg[96];
      snprintf(msg, sizeof msg, "The \"%s\" argument must be an array of strings", what);
      baton_throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
      return NULL;
    }
  }
  return v;
}

static void free_vector(char **v) {
  if (!v) return;
  for (char **p = v; *p; p++) free(*p);
  free(v);
}

/* Signal numbers from a JavaScript array into a set. */
static bool signal_set(napi_env env, napi_value arr, sigset_t *set) {
  sigemptyset(set);
  bool is_array = false;
  napi_is_array(env, arr, &is_array);
  if (!is_array) {
    baton_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"signals\" argument must be an array of signal numbers");
    return false;
  }
  uint32_t n = 0;
  napi_get_array_length(env, arr, &n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    int32_t sig;
    if (napi_get_element(env, arr, i, &e) != napi_ok || napi_get_value_int32(env, e, &sig) != napi_ok || sig <= 0 ||
        sig >= NSIG || sig == SIGKILL || sig == SIGSTOP) {
      baton_throw_range(env, "ERR_OUT_OF_RANGE", "The \"signals\" argument must hold catchable signal numbers");
      return false;
    }
    sigaddset(set, sig);
  }
  return true;
}

/* execve(path, argv, env, keep, hold). `keep`: the fds the new image inherits (FD_CLOEXEC cleared just before
 * the exec). `hold`: signals blocked across the exec — a blocked signal stays pending through execve, while a
 * handled one would be reset to its default action (terminate, for SIGHUP and SIGUSR2) during the ~100 ms
 * the new Node takes to install its handlers. On failure everything is put back and the error thrown. */
static napi_value rx_execve(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 5) return baton_throw_type(env, "ERR_INVALID_ARG_TYPE", "execve(path, argv, env, keep, hold)");
  char path[4096];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok || len == 0 ||
      len >= sizeof path - 1)
    return baton_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"path\" argument must be a non-empty string");
  static int keep[MAX_KEEP];
  uint32_t nkeep = 0;
  if (!baton_arg_fd_array(env, argv[3], "keep", keep, MAX_KEEP, &nkeep)) return NULL;
  sigset_t hold, old;
  if (!signal_set(env, argv[4], &hold)) return NULL;
  char **args = string_vector(env, argv[1], "argv");
  if (!args) return NULL;
  char **envp = string_vector(env, argv[2], "env");
  if (!envp) {
    free_vector(args);
    return NULL;
  }
  static int flags[MAX_KEEP];
  int err = 0;
  const char *failed = "execve";
  uint32_t cleared = 0;
  for (; cleared < nkeep; cleared++) {
    int fl = fcntl(keep[cleared], F_GETFD);
    if (fl < 0 || fcntl(keep[cleared], F_SETFD, fl & ~FD_CLOEXEC) < 0) {
      err = errno;
      failed = "fcntl";
      break;
    }
    flags[cleared] = fl;
  }
  if (!err) {
    pthread_sigmask(SIG_BLOCK, &hold, &old);
    execve(path, args, envp);
    err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
  }
  for (uint32_t i = 0; i < cleared; i++) fcntl(keep[i], F_SETFD, flags[i]);
  free_vector(args);
  free_vector(envp);
  char detail[4200];
  snprintf(detail, sizeof detail, "%s", path);
  return baton_throw_errno(env, err, failed, detail);
}

static napi_value rx_release_signals(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sigset_t set;
  if (!signal_set(env, argv[0], &set)) return NULL;
  pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  return NULL;
}

napi_status baton_init_reexec(napi_env env, napi_value exports) {
  napi_status s;
  if ((s = baton_export_fn(env, exports, "memfd", rx_memfd)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "execve", rx_execve)) != napi_ok) return s;
  return baton_export_fn(env, exports, "releaseSignals", rx_release_signals);
}

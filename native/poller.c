/* Poller: a uv_poll_t watching one fd on Node's own event loop.
 *
 * This is how the addon stays nonblocking: the TypeScript side asks for READABLE and/or WRITABLE, and when
 * libuv reports the fd ready it calls back into JavaScript (through napi_make_callback, so promises
 * resolved in the callback run their continuations right after it, as with any Node I/O callback). The
 * syscalls themselves (recvmsg, sendmsg, accept4) are separate nonblocking functions.
 *
 * Lifetime: while a Poller is open, it holds a strong reference to its own JavaScript object, so the
 * handle can never be collected under libuv's feet. close() stops the watcher, optionally closes the fd
 * (after the watcher is gone from epoll, which libuv requires), and drops that reference in uv_close's
 * callback. A Node environment that is torn down (a worker that exits) closes any open Poller through a
 * cleanup hook.
 */
#include "baton.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

typedef enum { POLLER_OPEN, POLLER_CLOSING, POLLER_CLOSED } poller_state;

typedef struct {
  uv_poll_t handle;
  napi_env env;
  napi_ref self;     /* strong while open or closing */
  napi_ref callback; /* the JavaScript function (status, events) */
  napi_async_context async;
  int fd;
  int events;
  poller_state state;
  bool close_fd;     /* close the fd once the watcher is stopped */
  bool in_teardown;  /* the env is going away: touch no N-API in callbacks */
  bool finalized;    /* the JavaScript object is gone */
} baton_poller;

static void poller_free_if_done(baton_poller *p) {
  if (p->state == POLLER_CLOSED && p->finalized) free(p);
}

static void on_close(uv_handle_t *h) {
  baton_poller *p = h->data;
  p->state = POLLER_CLOSED;
  if (!p->in_teardown) {
    if (p->callback) napi_delete_reference(p->env, p->callback);
    if (p->async) napi_async_destroy(p->env, p->async);
    p->callback = NULL;
    p->async = NULL;
    napi_ref self = p->self;
    p->self = NULL;
    /* Deleting the last strong reference may let the object be collected; free happens in the finalizer. */
    if (self) napi_delete_reference(p->env, self);
  }
  poller_free_if_done(p);
}

static void poller_teardown_hook(void *arg);

static void poller_begin_close(baton_poller *p) {
  if (p->state != POLLER_OPEN) return;
  p->state = POLLER_CLOSING;
  /* uv_close stops the watcher and removes the fd from epoll synchronously, so closing the fd right after
   * is safe; closing it before would leave a stale epoll registration. */
  uv_close((uv_handle_t *)&p->handle, on_close);
  if (p->close_fd && p->fd >= 0) close(p->fd);
  p->fd = -1;
}

static void poller_teardown_hook(void *arg) {
  baton_poller *p = arg;
  p->in_teardown = true;
  poller_begin_close(p);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  baton_poller *p = h->data;
  if (p->state != POLLER_OPEN || p->in_teardown) return;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb, recv, argv[2], result;
  if (napi_get_reference_value(env, p->callback, &cb) == napi_ok &&
      napi_get_reference_value(env, p->self, &recv) == napi_ok) {
    napi_create_int32(env, status, &argv[0]);
    napi_create_int32(env, events, &argv[1]);
    napi_status s = napi_make_callback(env, p->async, recv, cb, 2, argv, &result);
    if (s == napi_pending_exception) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc); /* same path as an exception thrown from any I/O callback */
    }
  }
  napi_close_handle_scope(env, scope);
}

static void poller_finalize(napi_env env, void *data, void *hint) {
  baton_poller *p = data;
  p->finalized = true;
  if (p->state == POLLER_OPEN) {
    /* Only reachable at env teardown (an open poller holds a strong reference to itself). */
    napi_remove_env_cleanup_hook(env, poller_teardown_hook, p);
    p->in_teardown = true;
    poller_begin_close(p);
    return;
  }
  poller_free_if_done(p);
}

static baton_poller *unwrap(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *data = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if (napi_unwrap(env, self, &data) != napi_ok || !data) {
    baton_throw_type(env, "ERR_INVALID_THIS", "Poller method called on an object that is not a Poller");
    return NULL;
  }
  return data;
}

/* new Poller(fd, callback) */
static napi_value poller_new(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], self;
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  int fd;
  if (!baton_arg_fd(env, argv[0], "fd", &fd)) return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[1], &t);
  if (t != napi_function)
    return baton_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"callback\" argument must be a function");

  uv_loop_t *loop;
  BATON_CALL(env, napi_get_uv_event_loop(env, &loop));
  baton_poller *p = calloc(1, sizeof *p);
  if (!p) return baton_throw_errno(env, ENOMEM, "calloc", NULL);
  p->env = env;
  p->fd = fd;
  /* uv_poll_init_socket also puts the fd in nonblocking mode: only ever used on fds baton owns. */
  int r = uv_poll_init(loop, &p->handle, fd);
  if (r < 0) {
    free(p);
    return baton_throw_errno(env, -r, "uv_poll_init", NULL);
  }
  p->handle.data = p;
  napi_value name;
  napi_create_string_utf8(env, "baton:Poller", NAPI_AUTO_LENGTH, &name);
  if (napi_async_init(env, self, name, &p->async) != napi_ok ||
      napi_create_reference(env, argv[1], 1, &p->callback) != napi_ok ||
      napi_wrap(env, self, p, poller_finalize, NULL, NULL) != napi_ok ||
      napi_create_reference(env, self, 1, &p->self) != napi_ok) {
    /* Cannot happen short of OOM; release what we can and leave the handle closed. */
    p->finalized = true;
    poller_begin_close(p);
    baton__rethrow(env, "Poller construction");
    return NULL;
  }
  napi_add_env_cleanup_hook(env, poller_teardown_hook, p);
  return self;
}

static napi_value poller_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  baton_poller *p = unwrap(env, info, &argc, argv);
  if (!p) return NULL;
  int32_t events;
  if (!baton_arg_int32(env, argv[0], "events", &events)) return NULL;
  if (p->state != POLLER_OPEN) return baton_throw_errno(env, EBADF, "uv_poll_start", "poller is closed");
  events &= UV_READABLE | UV_WRITABLE | UV_DISCONNECT;
  int r = events ? uv_poll_start(&p->handle, events, on_poll) : uv_poll_stop(&p->handle);
  if (r < 0) return baton_throw_errno(env, -r, events ? "uv_poll_start" : "uv_poll_stop", NULL);
  p->events = events;
  return NULL;
}

static napi_value poller_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  baton_poller *p = unwrap(env, info, &argc, argv);
  if (!p) return NULL;
  bool close_fd = false;
  if (argc >= 1) napi_get_value_bool(env, argv[0], &close_fd);
  if (p->state != POLLER_OPEN) return NULL;
  p->close_fd = close_fd;
  napi_remove_env_cleanup_hook(env, poller_teardown_hook, p);
  poller_begin_close(p);
  return NULL;
}

static napi_value poller_ref(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  baton_poller *p = unwrap(env, info, &argc, argv);
  if (!p) return NULL;
  bool on = true;
  if (argc >= 1) napi_get_value_bool(env, argv[0], &on);
  if (p->state == POLLER_OPEN) {
    if (on) uv_ref((uv_handle_t *)&p->handle);
    else uv_unref((uv_handle_t *)&p->handle);
  }
  return NULL;
}

napi_status baton_init_poller(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"start", NULL, poller_start, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, poller_close, NULL, NULL, NULL, napi_default, NULL},
      {"ref", NULL, poller_ref, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value ctor;
  napi_status s = napi_define_class(env, "Poller", NAPI_AUTO_LENGTH, poller_new, NULL,
                                    sizeof methods / sizeof methods[0], methods, &ctor);
  if (s != napi_ok) return s;
  s = napi_set_named_property(env, exports, "Poller", ctor);
  if (s != napi_ok) return s;
  napi_value ev;
  napi_create_object(env, &ev);
  baton_export_int(env, ev, "READABLE", UV_READABLE);
  baton_export_int(env, ev, "WRITABLE", UV_WRITABLE);
  baton_export_int(env, ev, "DISCONNECT", UV_DISCONNECT);
  return napi_set_named_property(env, exports, "pollEvents", ev);
}

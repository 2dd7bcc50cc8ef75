/* Module entry point: each file registers its own exports. */
#include "baton.h"

#ifdef BATON_UNSUPPORTED_OS
#error "baton's native layer needs Linux (SCM_RIGHTS on SOCK_SEQPACKET, SO_PEERCRED, MSG_CMSG_CLOEXEC)"
#endif

/* Each native file's init, one a line (baton.h declares them). */
static napi_status (*const inits[])(napi_env, napi_value) = {
    baton_init_poller,
    baton_init_channel,
    baton_init_probe,
    baton_init_sockopt,
    baton_init_fdutil,
    baton_init_process,
    baton_init_notify,
    baton_init_reexec,
    baton_init_http2,
    baton_init_reuseport,
    baton_init_readiness,
};

static napi_value init(napi_env env, napi_value exports) {
  for (size_t i = 0; i < sizeof inits / sizeof inits[0]; i++) {
    if (inits[i](env, exports) != napi_ok) {
      baton__rethrow(env, "module init");
      return NULL;
    }
  }
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }

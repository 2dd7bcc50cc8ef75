/* Module entry point: each file registers its own exports. */
#include "baton.h"

#ifdef BATON_UNSUPPORTED_OS
#error "baton's native layer needs Linux (SCM_RIGHTS on SOCK_SEQPACKET, SO_PEERCRED, MSG_CMSG_CLOEXEC)"
#endif

static napi_value init(napi_env env, napi_value exports) {
  if (baton_init_errors(env, exports) != napi_ok || baton_init_poller(env, exports) != napi_ok ||
      baton_init_channel(env, exports) != napi_ok || baton_init_probe(env, exports) != napi_ok ||
      baton_init_sockopt(env, exports) != napi_ok || baton_init_fdutil(env, exports) != napi_ok ||
      baton_init_process(env, exports) != napi_ok || baton_init_notify(env, exports) != napi_ok) {
    baton__rethrow(env, "module init");
    return NULL;
  }
  return exports;
}

NAPI_MODULE_INIT() { return init(env, exports); }

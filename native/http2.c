/* HTTP/2's graceful shutdown notice (RFC 9113 §6.8) through nghttp2 itself: nghttp2_submit_shutdown_notice()
 * on the nghttp2_session under a Node Http2Session. Node does not bind that function, and the GOAWAY that
 * Node does bind (session.goaway()) makes nghttp2 ignore every stream the client opens after it (see
 * src/fd/http2.ts for why that refuses streams on a reload, and for why writing the frame to a TLS socket
 * from JavaScript is not an option).
 *
 * shutdownNotice(handle, local, remote) -> string. `handle` is the session's native handle (the JavaScript
 * object lib/internal/http2/core.js keeps under Symbol(kHandle)); `local` and `remote` are Uint32Arrays of
 * the session's settings as JavaScript sees them (ids 1-6, in order), used to check the pointer found.
 * Returns "submitted", or why nothing was done ("unsupported: ...", "not found: ..."): the caller then
 * falls back to a single GOAWAY. It never throws for those, and it never dereferences a pointer it has not
 * checked: every read of memory that is not ours goes through process_vm_readv() on this process, which
 * fails with EFAULT instead of faulting.
 *
 * The path, verified on Node 20.20 (nghttp2 1.61), 22.23 (1.69) and 24.21 (1.70), x86-64:
 *  1. The handle is a BaseObject: internal field 1 (BaseObject::kSlot; field 0 is kEmbedderType) holds the
 *     node::http2::Http2Session C++ object, read with V8's exported
 *     v8::Object::SlowGetAlignedPointerFromInternalField(int) after InternalFieldCount() says there are
 *     exactly two fields (a wrong index would make V8 abort, so the count is checked first).
 *     A napi_value is the same pointer as the v8::Local's `*` (Node's js_native_api_v8.h), i.e. `this`.
 *  2. Checked: a BaseObject's first data member is its v8::Global to the very handle object, so one of the
 *     object's first words must point at a global handle slot holding the same heap address as the
 *     napi_value's slot.
 *  3. The Http2Session holds its nghttp2_session* (session_, a unique_ptr) within its first bytes; every
 *     word there is a candidate. nghttp2 was created with the Http2Session as its user_data
 *     (nghttp2_session_server_new3(..., this, ...)), so a candidate is kept only if the Http2Session's
 *     address appears inside it where nghttp2_session.user_data lies (offset 2416 in 1.69/1.70, 2608 in
 *     1.61; searched between 1 KiB and 4 KiB) with at least 512 readable bytes after it (the struct ends
 *     360 bytes after user_data).
 *  4. Only then nghttp2's own getters run on it (they read fields inside that checked range): it must be a
 *     server session whose local and remote settings equal what JavaScript reports for this session.
 *  5. nghttp2_submit_shutdown_notice() queues the GOAWAY; Node sends it with its next batch of frames (the
 *     caller's session.ping() schedules one).
 * Every nghttp2 and V8 function is looked up with dlsym() at run time, so a Node that lacks one (or links
 * nghttp2 without exporting it) gets "unsupported", never a crash or a failed load.
 *
 * The one call made before anything is checked is V8's, on internal field 1, which V8 aborts on if that field
 * does not hold an aligned pointer: so `handle` must be a Node BaseObject (src/integrations/internals.ts passes
 * only the session's native handle, whose constructor is the binding's Http2Session), and the field count
 * is checked first. Anything else with fewer than two fields, or whose C++ object does not point back at it,
 * or holds no matching nghttp2 session (a TCP handle, a client session: test/internals.test.ts), is refused.
 */
#include "baton.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* BaseObject::kInternalFieldCount and BaseObject::kSlot (src/base_object.h, Node 20-24). */
#define BASE_OBJECT_FIELDS 2
#define BASE_OBJECT_SLOT 1
/* How far into the C++ objects to look: the Http2Session's members, and nghttp2_session's user_data. */
#define SESSION_SCAN_BYTES 2048
#define NGHTTP2_WINDOW_BYTES 4096
#define USER_DATA_MIN_OFFSET 1024
#define USER_DATA_TAIL_BYTES 512
#define SETTINGS_CHECKED 6

typedef int (*field_count_fn)(const void *object);
typedef void *(*slow_aligned_pointer_fn)(void *object, int index);
typedef int (*session_fn)(void *session);
typedef uint32_t (*settings_fn)(void *session, int id);

static struct {
  field_count_fn field_count;
  slow_aligned_pointer_fn aligned_pointer;
  session_fn submit_shutdown_notice;
  session_fn check_server_session;
  settings_fn local_settings;
  settings_fn remote_settings;
} sym;

static pthread_once_t resolved = PTHREAD_ONCE_INIT;

static void resolve(void) {
  /* Casting dlsym's void* to a function pointer: POSIX guarantees it works (dlsym(3)). */
  *(void **)&sym.field_count = dlsym(RTLD_DEFAULT, "_ZNK2v86Object18InternalFieldCountEv");
  *(void **)&sym.aligned_pointer = dlsym(RTLD_DEFAULT, "_ZN2v86Object38SlowGetAlignedPointerFromInternalFieldEi");
  *(void **)&sym.submit_shutdown_notice = dlsym(RTLD_DEFAULT, "nghttp2_submit_shutdown_notice");
  *(void **)&sym.check_server_session = dlsym(RTLD_DEFAULT, "nghttp2_session_check_server_session");
  *(void **)&sym.local_settings = dlsym(RTLD_DEFAULT, "nghttp2_session_get_local_settings");
  *(void **)&sym.remote_settings = dlsym(RTLD_DEFAULT, "nghttp2_session_get_remote_settings");
}

static bool available(void) {
  /* Once per process: worker threads share this file's statics. */
  pthread_once(&resolved, resolve);
  return sym.field_count && sym.aligned_pointer && sym.submit_shutdown_notice && sym.check_server_session &&
         sym.local_settings && sym.remote_settings;
}

/* Copy up to n bytes at src; returns how many could be read (0 if none). Never faults. */
static size_t safe_read(void *dst, uintptr_t src, size_t n) {
  if (src == 0 || src + n < src) return 0;
  struct iovec local = {dst, n};
  struct iovec remote = {(void *)src, n};
  ssize_t r = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
  return r > 0 ? (size_t)r : 0;
}

static bool plausible_pointer(uintptr_t p) {
  return p >= 4096 && p < ((uintptr_t)1 << 47) && (p & 7) == 0;
}

/* Step 2: does the BaseObject at `object` hold a Global to the heap object that `handle` refers to? */
static bool owns_handle(uintptr_t object, napi_value handle) {
  uintptr_t heap_address, words[4], slot_value;
  if (safe_read(&heap_address, (uintptr_t)handle, sizeof heap_address) != sizeof heap_address) return false;
  if (safe_read(words, object, sizeof words) != sizeof words) return false;
  for (size_t i = 1; i < 4; i++) {
    if (!plausible_pointer(words[i])) continue;
    if (safe_read(&slot_value, words[i], sizeof slot_value) == sizeof slot_value && slot_value == heap_address)
      return true;
  }
  return false;
}

/* Step 3: does `candidate` point at memory holding `owner` where nghttp2_session.user_data lies? */
static bool holds_user_data(uintptr_t candidate, uintptr_t owner) {
  uintptr_t window[NGHTTP2_WINDOW_BYTES / sizeof(uintptr_t)];
  size_t n = safe_read(window, candidate, sizeof window);
  for (size_t off = USER_DATA_MIN_OFFSET; off + USER_DATA_TAIL_BYTES <= n; off += sizeof(uintptr_t)) {
    if (window[off / sizeof(uintptr_t)] == owner) return true;
  }
  return false;
}

/* Step 4: nghttp2's view of the candidate matches JavaScript's view of the session. */
static bool settings_match(void *session, const uint32_t *local, const uint32_t *remote) {
  if (sym.check_server_session(session) != 1) return false;
  for (int id = 1; id <= SETTINGS_CHECKED; id++) {
    if (sym.local_settings(session, id) != local[id - 1]) return false;
    if (sym.remote_settings(session, id) != remote[id - 1]) return false;
  }
  return true;
}

/* local or remote: a Uint32Array of the SETTINGS_CHECKED values, in setting-id order. */
static bool settings_arg(napi_env env, napi_value v, const char *name, const uint32_t **out) {
  void *data;
  size_t length;
  if (!baton_arg_typed_array(env, v, name, napi_uint32_array, "a Uint32Array", &data, &length)) return false;
  if (length != SETTINGS_CHECKED) {
    char msg[120];
    snprintf(msg, sizeof msg, "The \"%s\" argument must hold the %d checked settings", name, SETTINGS_CHECKED);
    baton_throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  *out = data;
  return true;
}

static napi_value result(napi_env env, const char *text) {
  napi_value v;
  BATON_CALL(env, napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &v));
  return v;
}

static napi_value shutdown_notice(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_valuetype t = napi_undefined;
  if (argc < 3 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_object)
    return baton_throw_type(env, "ERR_INVALID_ARG_TYPE", "shutdownNotice(handle, local, remote) needs an object");
  const uint32_t *local = NULL, *remote = NULL;
  if (!settings_arg(env, argv[1], "local", &local) || !settings_arg(env, argv[2], "remote", &remote)) return NULL;

  if (!available()) return result(env, "unsupported: this Node does not export the nghttp2/V8 functions");
  /* A failed read here means this kernel or sandbox refuses process_vm_readv: nothing can be checked. */
  uintptr_t probe;
  if (safe_read(&probe, (uintptr_t)&probe, sizeof probe) != sizeof probe)
    return result(env, "unsupported: process_vm_readv is not permitted here");

  void *handle = (void *)argv[0];
  if (sym.field_count(handle) < BASE_OBJECT_FIELDS) return result(env, "not found: not a BaseObject handle");
  uintptr_t object = (uintptr_t)sym.aligned_pointer(handle, BASE_OBJECT_SLOT);
  if (!plausible_pointer(object) || !owns_handle(object, argv[0]))
    return result(env, "not found: the handle's C++ object does not point back at it");

  uintptr_t members[SESSION_SCAN_BYTES / sizeof(uintptr_t)];
  size_t n = safe_read(members, object, sizeof members);
  for (size_t i = 0; i < n / sizeof(uintptr_t); i++) {
    uintptr_t candidate = members[i];
    if (!plausible_pointer(candidate) || candidate == object || !holds_user_data(candidate, object)) continue;
    if (!settings_match((void *)candidate, local, remote)) continue;
    int rv = sym.submit_shutdown_notice((void *)candidate);
    if (rv != 0) return result(env, "not submitted: nghttp2_submit_shutdown_notice failed");
    return result(env, "submitted");
  }
  return result(env, "not found: no nghttp2_session in the Http2Session");
}

napi_status baton_init_http2(napi_env env, napi_value exports) {
  return baton_export_fn(env, exports, "http2ShutdownNotice", shutdown_notice);
}

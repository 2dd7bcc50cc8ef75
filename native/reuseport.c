/* Sockets in an SO_REUSEPORT group: the supervisor's per-worker listeners (docs/workers.md).
 *
 * SO_REUSEPORT must be set before bind(), and Node 20 has no way to do that (Node >= 22.12 has `reusePort`
 * for TCP; dgram's `reuseAddr` is SO_REUSEADDR, which spreads nothing). So the socket is made here:
 * socket() nonblocking and close-on-exec, SO_REUSEADDR (TCP only), SO_REUSEPORT, IPV6_V6ONLY as asked,
 * bind(), and listen() for TCP. Every call is nonblocking; every failure closes the socket and throws an
 * Error naming the call that failed.
 *
 * With N such sockets on one port the kernel picks the socket for each new connection (or UDP flow) by a hash
 * of the 4-tuple: measured here, max/min connections per socket 1.01-1.09, against 1.12-2.25 for one socket
 * shared by N epolling processes. The kernel lets only sockets of the same effective uid join a group.
 */
#include "baton.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define ADDRESS_MAX (INET6_ADDRSTRLEN + IF_NAMESIZE + 2)

/* An IP literal ("127.0.0.1", "::", "fe80::1%eth0") and a port -> sockaddr. False (and a TypeError thrown)
 * when it is not one: resolving names is the caller's job (a lookup may block; this must not). */
static bool parse_address(napi_env env, napi_value v, int32_t port, struct sockaddr_storage *ss, socklen_t *len,
                          char *text, size_t text_size) {
  napi_valuetype t;
  size_t n = 0;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
    baton_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"address\" argument must be an IP address string");
    return false;
  }
  if (napi_get_value_string_utf8(env, v, text, text_size, &n) != napi_ok || n >= text_size - 1) {
    baton_throw_type(env, "ERR_INVALID_ARG_VALUE", "The \"address\" argument is too long for an IP address");
    return false;
  }
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *in = (struct sockaddr_in *)ss;
  if (inet_pton(AF_INET, text, &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    *len = sizeof *in;
    return true;
  }
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  char host[ADDRESS_MAX];
  snprintf(host, sizeof host, "%s", text);
  char *scope = strchr(host, '%');
  if (scope) *scope++ = '\0';
  if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    if (scope) {
      char *end;
      unsigned long id = strtoul(scope, &end, 10);
      in6->sin6_scope_id = (*scope && !*end) ? (uint32_t)id : if_nametoindex(scope);
      if (in6->sin6_scope_id == 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "The \"address\" argument has an unknown scope: '%.100s'", text);
        baton_throw_type(env, "ERR_INVALID_ARG_VALUE", msg);
        return false;
      }
    }
    *len = sizeof *in6;
    return true;
  }
  char msg[200];
  snprintf(msg, sizeof msg, "The \"address\" argument must be an IPv4 or IPv6 address. Received '%.100s'", text);
  baton_throw_type(env, "ERR_INVALID_ARG_VALUE", msg);
  return false;
}

static int set_int(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof value);
}

/* Close fd (if any) keeping errno, and throw the errno error naming `syscall`; the detail names the option
 * (for setsockopt) and the address. */
static napi_value fail(napi_env env, int fd, const char *syscall, const char *option, const char *text, int32_t port) {
  int err = errno;
  if (fd >= 0) close(fd);
  char detail[200];
  snprintf(detail, sizeof detail, "%s%s%.100s port %d", option ? option : "", option ? " on " : "", text, port);
  return baton_throw_errno(env, err, syscall, detail);
}

static bool arg_bool(napi_env env, napi_value v, const char *name, bool *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_boolean) {
    char msg[120];
    snprintf(msg, sizeof msg, "The \"%s\" argument must be a boolean", name);
    baton_throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  return napi_get_value_bool(env, v, out) == napi_ok;
}

/* Whether address:port is free of listeners (TCP) or bound sockets (UDP), whoever holds them: a bind without
 * SO_REUSEPORT (TCP: with SO_REUSEADDR, so that TIME_WAIT connections do not count) fails with EADDRINUSE
 * even against a reuseport group of our own uid, which the group's first socket would silently join. 0 free,
 * -1 with errno (and *syscall) set. */
static int check_free(const struct sockaddr_storage *ss, socklen_t len, bool stream, bool v6only,
                      const char **syscall) {
  *syscall = "socket";
  int probe = socket(ss->ss_family, (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (probe < 0) return -1;
  int r = -1;
  *syscall = "setsockopt";
  if (stream && set_int(probe, SOL_SOCKET, SO_REUSEADDR, 1) != 0) goto out;
  if (ss->ss_family == AF_INET6 && set_int(probe, IPPROTO_IPV6, IPV6_V6ONLY, v6only ? 1 : 0) != 0) goto out;
  *syscall = "bind";
  r = bind(probe, (const struct sockaddr *)ss, len);
out:;
  int err = errno;
  close(probe);
  errno = err;
  return r == 0 ? 0 : -1;
}

/* bindReusePort(stream, address, port, backlog, ipv6Only, exclusive) -> fd: a TCP listener (stream) or a
 * bound UDP socket in the SO_REUSEPORT group of address:port. Port 0 picks a free port (read it back with
 * probe). `exclusive` (a group's first socket on a given port): EADDRINUSE if anyone holds the port already,
 * so that a second service on the port fails as a plain listen() would instead of sharing its connections. */
static napi_value bind_reuseport(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 6) {
    return baton_throw_type(env, "ERR_MISSING_ARGS",
                            "bindReusePort takes (stream, address, port, backlog, ipv6Only, exclusive)");
  }
  bool stream, v6only, exclusive;
  int32_t port, backlog;
  if (!arg_bool(env, argv[0], "stream", &stream) || !arg_bool(env, argv[4], "ipv6Only", &v6only) ||
      !arg_bool(env, argv[5], "exclusive", &exclusive))
    return NULL;
  if (!baton_arg_int32(env, argv[2], "port", &port) || !baton_arg_int32(env, argv[3], "backlog", &backlog)) return NULL;
  if (port < 0 || port > 65535)
    return baton_throw_range(env, "ERR_SOCKET_BAD_PORT", "The \"port\" argument must be >= 0 and <= 65535");
  if (backlog < 0) return baton_throw_range(env, "ERR_OUT_OF_RANGE", "The \"backlog\" argument must be >= 0");
  struct sockaddr_storage ss;
  socklen_t len;
  char text[ADDRESS_MAX];
  if (!parse_address(env, argv[1], port, &ss, &len, text, sizeof text)) return NULL;

  const char *failed;
  if (exclusive && port != 0 && check_free(&ss, len, stream, v6only, &failed) != 0) {
    int err = errno;
    char detail[200];
    snprintf(detail, sizeof detail, "%.100s port %d (%s)", text, port,
             err == EADDRINUSE ? "held by another socket, checked before the group's first socket"
                               : "checking whether the port is free");
    return baton_throw_errno(env, err, failed, detail);
  }
  int fd = socket(ss.ss_family, (stream ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(env, -1, "socket", NULL, text, port);
  /* TCP only: a listener needs SO_REUSEADDR to bind while old connections are in TIME_WAIT. On UDP it would
   * also let any other socket that sets it bind this port outside the group and take its datagrams. */
  if (stream && set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1) != 0)
    return fail(env, fd, "setsockopt", "SO_REUSEADDR", text, port);
  if (set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1) != 0) return fail(env, fd, "setsockopt", "SO_REUSEPORT", text, port);
  if (ss.ss_family == AF_INET6 && set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only ? 1 : 0) != 0)
    return fail(env, fd, "setsockopt", "IPV6_V6ONLY", text, port);
  if (bind(fd, (struct sockaddr *)&ss, len) != 0) return fail(env, fd, "bind", NULL, text, port);
  if (stream && listen(fd, backlog) != 0) return fail(env, fd, "listen", NULL, text, port);
  napi_value out;
  BATON_CALL(env, napi_create_int32(env, fd, &out));
  return out;
}

napi_status baton_init_reuseport(napi_env env, napi_value exports) {
  return baton_export_fn(env, exports, "bindReusePort", bind_reuseport);
}

/* Socket options on a borrowed fd: getsockopt/setsockopt and nothing else (no dup, no fcntl), so reading
 * or raising SO_RCVBUF can never change the socket's blocking mode — the trap of Go's conn.File().
 *
 * The name table and value encoding live in TypeScript (src/fd/sockopt.ts); this file exports the
 * platform's constants, an int form, a raw Buffer form, and TCP_INFO decoded from the C struct.
 */
#include "baton.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static bool level_and_name(napi_env env, napi_value *argv, int *fd, int32_t *level, int32_t *name) {
  return baton_arg_fd(env, argv[0], "fd", fd) && baton_arg_int32(env, argv[1], "level", level) &&
         baton_arg_int32(env, argv[2], "optname", name);
}

static void describe(char *out, size_t size, int32_t level, int32_t name) {
  snprintf(out, size, "level %d, optname %d", level, name);
}

/* getsockoptInt(fd, level, name) -> number */
static napi_value get_int(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  int32_t level, name;
  if (!level_and_name(env, argv, &fd, &level, &name)) return NULL;
  int value = 0;
  socklen_t len = sizeof value;
  if (getsockopt(fd, level, name, &value, &len) != 0) {
    char d[64];
    describe(d, sizeof d, level, name);
    return baton_throw_errno(env, errno, "getsockopt", d);
  }
  napi_value out;
  napi_create_int32(env, value, &out);
  return out;
}

/* setsockoptInt(fd, level, name, value) */
static napi_value set_int(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  int32_t level, name, value;
  if (!level_and_name(env, argv, &fd, &level, &name) || !baton_arg_int32(env, argv[3], "value", &value)) return NULL;
  int v = value;
  if (setsockopt(fd, level, name, &v, sizeof v) != 0) {
    char d[64];
    describe(d, sizeof d, level, name);
    return baton_throw_errno(env, errno, "setsockopt", d);
  }
  return NULL;
}

/* getsockoptRaw(fd, level, name, maxLength) -> Buffer of the length the kernel returned */
static napi_value get_raw(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  int32_t level, name, max;
  if (!level_and_name(env, argv, &fd, &level, &name) || !baton_arg_int32(env, argv[3], "length", &max)) return NULL;
  if (max < 0 || max > 65536)
    return baton_throw_range(env, "ERR_OUT_OF_RANGE", "The \"length\" argument must be between 0 and 65536");
  char buf[65536];
  socklen_t len = (socklen_t)max;
  if (getsockopt(fd, level, name, buf, &len) != 0) {
    char d[64];
    describe(d, sizeof d, level, name);
    return baton_throw_errno(env, errno, "getsockopt", d);
  }
  napi_value out;
  BATON_CALL(env, napi_create_buffer_copy(env, len, buf, NULL, &out));
  return out;
}

/* setsockoptRaw(fd, level, name, buffer) */
static napi_value set_raw(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  int32_t level, name;
  if (!level_and_name(env, argv, &fd, &level, &name)) return NULL;
  bool is_buffer = false;
  napi_is_buffer(env, argv[3], &is_buffer);
  if (!is_buffer) return baton_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"value\" argument must be a Buffer");
  void *data;
  size_t len;
  BATON_CALL(env, napi_get_buffer_info(env, argv[3], &data, &len));
  if (setsockopt(fd, level, name, data, (socklen_t)len) != 0) {
    char d[64];
    describe(d, sizeof d, level, name);
    return baton_throw_errno(env, errno, "setsockopt", d);
  }
  return NULL;
}

#define TI(field) do { napi_value v; napi_create_double(env, (double)ti.tcpi_##field, &v); \
    napi_set_named_property(env, out, #field, v); } while (0)

static const char *tcp_state_name(int s) {
  static const char *names[] = {"", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
                                "TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING"};
  return s > 0 && s < (int)(sizeof names / sizeof names[0]) ? names[s] : "UNKNOWN";
}

/* tcpInfo(fd) -> TCP_INFO decoded, field names without the tcpi_ prefix; times are microseconds (rtt,
 * rttvar, rto, ato, rcv_rtt) or milliseconds (last_*), as the kernel reports them. */
static napi_value tcp_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  if (!baton_arg_fd(env, argv[0], "fd", &fd)) return NULL;
  struct tcp_info ti;
  memset(&ti, 0, sizeof ti);
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
    return baton_throw_errno(env, errno, "getsockopt", "TCP_INFO");
  napi_value out, s;
  BATON_CALL(env, napi_create_object(env, &out));
  napi_create_string_utf8(env, tcp_state_name(ti.tcpi_state), NAPI_AUTO_LENGTH, &s);
  napi_set_named_property(env, out, "stateName", s);
  TI(state); TI(ca_state); TI(retransmits); TI(probes); TI(backoff); TI(options);
  TI(snd_wscale); TI(rcv_wscale); TI(rto); TI(ato); TI(snd_mss); TI(rcv_mss);
  TI(unacked); TI(sacked); TI(lost); TI(retrans); TI(fackets);
  TI(last_data_sent); TI(last_ack_sent); TI(last_data_recv); TI(last_ack_recv);
  TI(pmtu); TI(rcv_ssthresh); TI(rtt); TI(rttvar); TI(snd_ssthresh); TI(snd_cwnd);
  TI(advmss); TI(reordering); TI(rcv_rtt); TI(rcv_space); TI(total_retrans);
  return out;
}

napi_status baton_init_sockopt(napi_env env, napi_value exports) {
  napi_status s;
  if ((s = baton_export_fn(env, exports, "getsockoptInt", get_int)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "setsockoptInt", set_int)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "getsockoptRaw", get_raw)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "setsockoptRaw", set_raw)) != napi_ok) return s;
  if ((s = baton_export_fn(env, exports, "tcpInfo", tcp_info)) != napi_ok) return s;

  napi_value c;
  if ((s = napi_create_object(env, &c)) != napi_ok) return s;
#define K(name) baton_export_int(env, c, #name, name)
  K(SOL_SOCKET); K(IPPROTO_TCP); K(IPPROTO_IP); K(IPPROTO_IPV6); K(IPPROTO_UDP);
  K(SO_RCVBUF); K(SO_SNDBUF); K(SO_REUSEADDR); K(SO_REUSEPORT); K(SO_KEEPALIVE); K(SO_LINGER);
  K(SO_RCVLOWAT); K(SO_BINDTODEVICE); K(SO_TYPE); K(SO_DOMAIN); K(SO_ERROR); K(SO_ACCEPTCONN);
  K(SO_PRIORITY); K(SO_BROADCAST); K(SO_RCVBUFFORCE); K(SO_SNDBUFFORCE); K(SO_MARK);
  K(TCP_NODELAY); K(TCP_KEEPIDLE); K(TCP_KEEPINTVL); K(TCP_KEEPCNT); K(TCP_USER_TIMEOUT);
  K(TCP_CONGESTION); K(TCP_DEFER_ACCEPT); K(TCP_FASTOPEN); K(TCP_INFO); K(TCP_MAXSEG); K(TCP_QUICKACK);
  K(TCP_CORK); K(TCP_NOTSENT_LOWAT);
  K(IP_TOS); K(IP_TTL); K(IP_MULTICAST_TTL); K(IP_MULTICAST_LOOP); K(IPV6_V6ONLY); K(IPV6_UNICAST_HOPS); K(IPV6_TCLASS);
  K(AF_UNIX); K(AF_INET); K(AF_INET6); K(SOCK_STREAM); K(SOCK_DGRAM); K(SOCK_SEQPACKET);
#undef K
  return napi_set_named_property(env, exports, "constants", c);
}

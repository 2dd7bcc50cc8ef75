/* probe(fd): what an fd is, without changing anything about it.
 *
 * Only read-only calls: fstat, fcntl(F_GETFL/F_GETFD), getsockopt, getsockname, getpeername. This is what
 * `adopt` uses to pick the right Node object, and what tests use to check that nothing flipped O_NONBLOCK.
 */
#include "baton.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static void set_str(napi_env env, napi_value obj, const char *key, const char *value) {
  napi_value v;
  if (value) napi_create_string_utf8(env, value, NAPI_AUTO_LENGTH, &v);
  else napi_get_null(env, &v);
  napi_set_named_property(env, obj, key, v);
}

static void set_bool(napi_env env, napi_value obj, const char *key, bool value) {
  napi_value v;
  napi_get_boolean(env, value, &v);
  napi_set_named_property(env, obj, key, v);
}

static void set_null(napi_env env, napi_value obj, const char *key) {
  napi_value v;
  napi_get_null(env, &v);
  napi_set_named_property(env, obj, key, v);
}

/* A socket address as Node prints them: { family: 'IPv4' | 'IPv6', address, port } or { family: 'unix',
 * path } with abstract names written '@name' and an unnamed socket as ''. */
static napi_value address_value(napi_env env, const struct sockaddr_storage *ss, socklen_t len) {
  napi_value obj;
  napi_create_object(env, &obj);
  char text[INET6_ADDRSTRLEN + 1];
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    set_str(env, obj, "family", "IPv4");
    set_str(env, obj, "address", text);
    baton_export_int(env, obj, "port", ntohs(in->sin_port));
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    set_str(env, obj, "family", "IPv6");
    set_str(env, obj, "address", text);
    baton_export_int(env, obj, "port", ntohs(in6->sin6_port));
    napi_value v;
    napi_create_uint32(env, in6->sin6_scope_id, &v);
    napi_set_named_property(env, obj, "scopeId", v);
  } else if (ss->ss_family == AF_UNIX) {
    const struct sockaddr_un *un = (const struct sockaddr_un *)ss;
    size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
    char path[sizeof un->sun_path + 2];
    if (n > 0 && un->sun_path[0] == '\0') {
      path[0] = '@';
      memcpy(path + 1, un->sun_path + 1, n - 1);
      path[n] = '\0';
    } else {
      memcpy(path, un->sun_path, n);
      path[n] = '\0';
      path[strnlen(path, n)] = '\0';
    }
    set_str(env, obj, "family", "unix");
    set_str(env, obj, "path", path);
  } else {
    baton_export_int(env, obj, "familyNumber", ss->ss_family);
    set_str(env, obj, "family", "other");
  }
  return obj;
}

static napi_value probe(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  BATON_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  if (!baton_arg_fd(env, argv[0], "fd", &fd)) return NULL;

  struct stat st;
  if (fstat(fd, &st) != 0) return baton_throw_errno(env, errno, "fstat", NULL);
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return baton_throw_errno(env, errno, "fcntl", "F_GETFL");
  int fdfl = fcntl(fd, F_GETFD);
  if (fdfl < 0) return baton_throw_errno(env, errno, "fcntl", "F_GETFD");

  napi_value out;
  BATON_CALL(env, napi_create_object(env, &out));
  baton_export_int(env, out, "fd", fd);
  set_bool(env, out, "nonblocking", (fl & O_NONBLOCK) != 0);
  set_bool(env, out, "cloexec", (fdfl & FD_CLOEXEC) != 0);
  int acc = fl & O_ACCMODE;
  set_str(env, out, "accessMode", acc == O_RDONLY ? "r" : acc == O_WRONLY ? "w" : "rw");

  const char *kind = "other";
  const char *family = NULL, *socket_type = NULL;
  bool listening = false;
  napi_value local = NULL, remote = NULL;

  if (S_ISSOCK(st.st_mode)) {
    int domain = 0, type = 0, acceptconn = 0;
    socklen_t l = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) != 0)
      return baton_throw_errno(env, errno, "getsockopt", "SO_DOMAIN");
    l = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) != 0)
      return baton_throw_errno(env, errno, "getsockopt", "SO_TYPE");
    l = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acceptconn, &l) != 0) acceptconn = 0;
    listening = acceptconn != 0;
    family = domain == AF_INET ? "IPv4" : domain == AF_INET6 ? "IPv6" : domain == AF_UNIX ? "unix" : "other";
    socket_type = type == SOCK_STREAM      ? "stream"
                  : type == SOCK_DGRAM     ? "dgram"
                  : type == SOCK_SEQPACKET ? "seqpacket"
                                           : "other";

    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    memset(&ss, 0, sizeof ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) local = address_value(env, &ss, sl);
    sl = sizeof ss;
    memset(&ss, 0, sizeof ss);
    bool connected = getpeername(fd, (struct sockaddr *)&ss, &sl) == 0;
    if (connected) remote = address_value(env, &ss, sl);

    bool inet = domain == AF_INET || domain == AF_INET6;
    if (inet && type == SOCK_STREAM) kind = listening ? "tcp-listener" : connected ? "tcp-connection" : "other";
    else if (inet && type == SOCK_DGRAM) kind = "udp";
    else if (domain == AF_UNIX && (type == SOCK_STREAM || type == SOCK_SEQPACKET))
      kind = listening ? "unix-listener" : connected ? "unix-connection" : "other";
    else if (domain == AF_UNIX && type == SOCK_DGRAM) kind = "unix-dgram";
  } else if (S_ISREG(st.st_mode)) {
    kind = "file";
  } else if (S_ISFIFO(st.st_mode)) {
    kind = "pipe";
  } else if (S_ISCHR(st.st_mode)) {
    kind = "char-device";
  } else if (S_ISDIR(st.st_mode)) {
    kind = "directory";
  }

  set_str(env, out, "kind", kind);
  set_str(env, out, "family", family);
  set_str(env, out, "socketType", socket_type);
  set_bool(env, out, "listening", listening);
  if (local) napi_set_named_property(env, out, "local", local);
  else set_null(env, out, "local");
  if (remote) napi_set_named_property(env, out, "remote", remote);
  else set_null(env, out, "remote");
  napi_value v;
  napi_create_double(env, (double)st.st_ino, &v);
  napi_set_named_property(env, out, "inode", v);
  napi_create_double(env, (double)st.st_size, &v);
  napi_set_named_property(env, out, "size", v);
  return out;
}

napi_status baton_init_probe(napi_env env, napi_value exports) {
  return baton_export_fn(env, exports, "probe", probe);
}

/* Sockets: one syscall per function; policy (retries, logging) lives in TypeScript. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "aludel.h"

#ifndef TCP_ULP
#define TCP_ULP 31 /* linux/tcp.h; glibc's netinet/tcp.h may lack it */
#endif

/* Parses a numeric IPv4/IPv6 address into a sockaddr; false if it is neither. */
static bool parse_addr(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons((uint16_t)port);
    *len = sizeof *v4;
    return true;
  }
  if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons((uint16_t)port);
    *len = sizeof *v6;
    return true;
  }
  return false;
}

static napi_value address_pair(napi_env env, const struct sockaddr_storage *ss) {
  char text[INET6_ADDRSTRLEN] = "";
  int port = 0;
  const char *family = "IPv4";
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    port = ntohs(v4->sin_port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    port = ntohs(v6->sin6_port);
    family = "IPv6";
  }
  napi_value obj = NULL;
  napi_create_object(env, &obj);
  napi_set_named_property(env, obj, "address", aludel_str(env, text));
  napi_set_named_property(env, obj, "port", aludel_int(env, port));
  napi_set_named_property(env, obj, "family", aludel_str(env, family));
  return obj;
}

/* listenTcp(host, port, backlog, reusePort) -> fd (non-blocking, close-on-exec). */
static napi_value listen_tcp(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char host[INET6_ADDRSTRLEN + 1];
  int32_t port, backlog;
  bool reuse_port = false;
  if (!aludel_args(env, info, 4, argv) || !aludel_arg_string(env, argv[0], host, sizeof host) ||
      !aludel_arg_int32(env, argv[1], &port) || !aludel_arg_int32(env, argv[2], &backlog))
    return NULL;
  napi_get_value_bool(env, argv[3], &reuse_port);
  struct sockaddr_storage ss;
  socklen_t len;
  if (!parse_addr(host, port, &ss, &len))
    return aludel_throw(env, "ERR_INVALID_ADDRESS", EINVAL, "inet_pton",
                        "listen address is not a numeric IPv4 or IPv6 address", false);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return aludel_throw_errno(env, errno, "socket");
  int one = 1;
  /* SO_REUSEADDR: restart while old connections sit in TIME_WAIT, as nginx does. */
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      (reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)) {
    int err = errno;
    close(fd);
    return aludel_throw_errno(env, err, "setsockopt");
  }
  if (bind(fd, (struct sockaddr *)&ss, len) != 0) {
    int err = errno;
    close(fd);
    return aludel_throw_errno(env, err, "bind");
  }
  if (listen(fd, backlog) != 0) {
    int err = errno;
    close(fd);
    return aludel_throw_errno(env, err, "listen");
  }
  return aludel_int(env, fd);
}

/* connectTcp(host, port) -> fd. A numeric address only (names are resolved in TypeScript).
   The connect is usually still in progress on return: wait for writability, then socketError(). */
static napi_value connect_tcp(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char host[INET6_ADDRSTRLEN + 1];
  int32_t port;
  if (!aludel_args(env, info, 2, argv) || !aludel_arg_string(env, argv[0], host, sizeof host) ||
      !aludel_arg_int32(env, argv[1], &port))
    return NULL;
  struct sockaddr_storage ss;
  socklen_t len;
  if (!parse_addr(host, port, &ss, &len))
    return aludel_throw(env, "ERR_INVALID_ADDRESS", EINVAL, "inet_pton", "upstream address is not a numeric IPv4 or IPv6 address", false);
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return aludel_throw_errno(env, errno, "socket");
  if (connect(fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS) {
    int err = errno;
    close(fd);
    return aludel_throw_errno(env, err, "connect");
  }
  return aludel_int(env, fd);
}

/* socketError(fd) -> SO_ERROR: 0 once a non-blocking connect has succeeded, else its errno. */
static napi_value socket_error(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (!aludel_args(env, info, 1, argv) || !aludel_arg_int32(env, argv[0], &fd)) return NULL;
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return aludel_throw_errno(env, errno, "getsockopt");
  return aludel_int(env, err);
}

/* accept(listenFd) -> fd, or ALUDEL_AGAIN when no connection is waiting. */
static napi_value accept_conn(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t lfd;
  if (!aludel_args(env, info, 1, argv) || !aludel_arg_int32(env, argv[0], &lfd)) return NULL;
  int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd >= 0) return aludel_int(env, fd);
  /* ECONNABORTED: the peer gave up while queued; nothing to report, try the next. */
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
    return aludel_int(env, ALUDEL_AGAIN);
  return aludel_throw_errno(env, errno, "accept4");
}

/*
 * acceptPeer(listenFd, out: Int32Array(3)) -> the peer's address, or null with
 * out[0] = AGAIN; else out = [fd, peer port, 4 or 6]. What accept(),
 * setNoDelay() and getPeerName() did in three addon calls: accept4(2) fills
 * in the peer's address itself (nginx takes it there too, no getpeername),
 * and TCP_NODELAY is set at once (nginx's tcp_nodelay: a head and a body
 * written apart would wait under Nagle for the client's delayed ACK). A
 * failed setsockopt (a peer that reset while queued) is left for the
 * handshake to report.
 */
static napi_value accept_peer(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t lfd;
  if (!aludel_args(env, info, 2, argv) || !aludel_arg_int32(env, argv[0], &lfd)) return NULL;
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  if (napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_int32_array || length < 3) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "acceptPeer: out must be an Int32Array of 3");
    return NULL;
  }
  int32_t *out = data;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) {
    /* ECONNABORTED: the peer gave up while queued; nothing to report, try the next. */
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) {
      out[0] = ALUDEL_AGAIN;
      napi_value none;
      napi_get_null(env, &none);
      return none;
    }
    return aludel_throw_errno(env, errno, "accept4");
  }
  int on = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  char text[INET6_ADDRSTRLEN] = "";
  out[0] = fd;
  out[1] = 0;
  out[2] = 4;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *v4 = (const struct sockaddr_in *)&ss;
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text);
    out[1] = ntohs(v4->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)&ss;
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text);
    out[1] = ntohs(v6->sin6_port);
    out[2] = 6;
  }
  return aludel_str(env, text);
}

static napi_value get_peer_name(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (!aludel_args(env, info, 1, argv) || !aludel_arg_int32(env, argv[0], &fd)) return NULL;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
    return aludel_throw_errno(env, errno, "getpeername");
  return address_pair(env, &ss);
}

static napi_value get_sock_name(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (!aludel_args(env, info, 1, argv) || !aludel_arg_int32(env, argv[0], &fd)) return NULL;
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
    return aludel_throw_errno(env, errno, "getsockname");
  return address_pair(env, &ss);
}

static napi_value set_no_delay(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  bool on = true;
  if (!aludel_args(env, info, 2, argv) || !aludel_arg_int32(env, argv[0], &fd)) return NULL;
  napi_get_value_bool(env, argv[1], &on);
  int v = on ? 1 : 0;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) != 0)
    return aludel_throw_errno(env, errno, "setsockopt");
  return NULL;
}

static napi_value close_fd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (!aludel_args(env, info, 1, argv) || !aludel_arg_int32(env, argv[0], &fd)) return NULL;
  /* Linux closes the fd even when close(2) fails (EINTR included): never retry. */
  if (close(fd) != 0 && errno != EINTR) return aludel_throw_errno(env, errno, "close");
  return NULL;
}

/*
 * probeTcpUlp() -> 0 when this kernel accepts the "tls" TCP ULP, else the errno
 * (ENOENT: no CONFIG_TLS / module not loadable). The ULP can be attached only
 * to an ESTABLISHED socket, so this makes a loopback connection to itself.
 * Attaching the ULP without keys changes nothing on the wire, and the sockets
 * are closed before returning.
 */
static napi_value probe_tcp_ulp(napi_env env, napi_callback_info info) {
  (void)info;
  int err = 0, l = -1, c = -1, a = -1;
  const char *step = "socket";
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (l < 0 || c < 0) goto fail;
  step = "bind";
  if (bind(l, (struct sockaddr *)&sa, sizeof sa) != 0) goto fail;
  step = "listen";
  if (listen(l, 1) != 0 || getsockname(l, (struct sockaddr *)&sa, &len) != 0) goto fail;
  step = "connect";
  if (connect(c, (struct sockaddr *)&sa, sizeof sa) != 0) goto fail;
  step = "accept";
  if ((a = accept(l, NULL, NULL)) < 0) goto fail;
  step = "setsockopt(TCP_ULP)";
  if (setsockopt(c, IPPROTO_TCP, TCP_ULP, "tls", sizeof "tls") != 0) goto fail;
  goto done;
fail:
  err = errno;
done:
  if (a >= 0) close(a);
  if (c >= 0) close(c);
  if (l >= 0) close(l);
  napi_value obj = NULL;
  napi_create_object(env, &obj);
  napi_set_named_property(env, obj, "errno", aludel_int(env, err));
  const char *name = err != 0 ? strerrorname_np(err) : NULL;
  napi_set_named_property(env, obj, "code", aludel_str(env, name));
  napi_set_named_property(env, obj, "syscall", aludel_str(env, err != 0 ? step : NULL));
  return obj;
}

void aludel_register_socket(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"listenTcp", NULL, listen_tcp, NULL, NULL, NULL, napi_default, NULL},
      {"accept", NULL, accept_conn, NULL, NULL, NULL, napi_default, NULL},
      {"acceptPeer", NULL, accept_peer, NULL, NULL, NULL, napi_default, NULL},
      {"connectTcp", NULL, connect_tcp, NULL, NULL, NULL, napi_default, NULL},
      {"socketError", NULL, socket_error, NULL, NULL, NULL, napi_default, NULL},
      {"getPeerName", NULL, get_peer_name, NULL, NULL, NULL, napi_default, NULL},
      {"getSockName", NULL, get_sock_name, NULL, NULL, NULL, napi_default, NULL},
      {"setNoDelay", NULL, set_no_delay, NULL, NULL, NULL, napi_default, NULL},
      {"closeFd", NULL, close_fd, NULL, NULL, NULL, napi_default, NULL},
      {"probeTcpUlp", NULL, probe_tcp_ulp, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

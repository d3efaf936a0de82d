/*
 * tlsUlpInfo(fd) -> {version, cipher, txConf, rxConf} | null: the kernel's own
 * word on a socket's kernel TLS state, from sock_diag (INET_DIAG_ULP_INFO ->
 * INET_ULP_INFO_TLS), the same source `ss -tie` prints ("tcp-ulp-tls version:
 * 1.2 cipher: aes-gcm-256 rxconf: sw txconf: sw"). OpenSSL's BIO_get_ktls_*
 * say what OpenSSL asked for; this says what the kernel runs (software, NIC
 * "hw", or "hw-record" TOE). null: no TLS ULP on the socket, or the caller
 * lacks CAP_NET_ADMIN (the kernel dumps ULP info only to net admins:
 * tcp_diag_get_aux in net/ipv4/tcp_diag.c).
 * One exact-match SOCK_DIAG_BY_FAMILY request for the socket's 4-tuple.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "aludel.h"

static const char *conf_name(unsigned v) {
  switch (v) {
    case TLS_CONF_BASE: return "none";
    case TLS_CONF_SW: return "sw";
    case TLS_CONF_HW: return "hw";
    case TLS_CONF_HW_RECORD: return "hw-record";
    default: return "unknown";
  }
}

static const char *version_name(unsigned v) {
  return v == TLS_1_2_VERSION ? "1.2" : v == TLS_1_3_VERSION ? "1.3" : "unknown";
}

static const char *cipher_name(unsigned v) {
  switch (v) {
    case TLS_CIPHER_AES_GCM_128: return "aes-gcm-128";
    case TLS_CIPHER_AES_GCM_256: return "aes-gcm-256";
    case TLS_CIPHER_AES_CCM_128: return "aes-ccm-128";
    case TLS_CIPHER_CHACHA20_POLY1305: return "chacha20-poly1305";
    default: return "unknown";
  }
}

/* Fills the request's socket id from the fd's own addresses. */
static int fill_id(int fd, struct inet_diag_req_v2 *r) {
  struct sockaddr_storage l, p;
  socklen_t ll = sizeof l, pl = sizeof p;
  if (getsockname(fd, (struct sockaddr *)&l, &ll) != 0 || getpeername(fd, (struct sockaddr *)&p, &pl) != 0) return -1;
  r->sdiag_family = (uint8_t)l.ss_family;
  if (l.ss_family == AF_INET) {
    r->id.idiag_sport = ((struct sockaddr_in *)&l)->sin_port;
    r->id.idiag_dport = ((struct sockaddr_in *)&p)->sin_port;
    memcpy(r->id.idiag_src, &((struct sockaddr_in *)&l)->sin_addr, 4);
    memcpy(r->id.idiag_dst, &((struct sockaddr_in *)&p)->sin_addr, 4);
  } else {
    r->id.idiag_sport = ((struct sockaddr_in6 *)&l)->sin6_port;
    r->id.idiag_dport = ((struct sockaddr_in6 *)&p)->sin6_port;
    memcpy(r->id.idiag_src, &((struct sockaddr_in6 *)&l)->sin6_addr, 16);
    memcpy(r->id.idiag_dst, &((struct sockaddr_in6 *)&p)->sin6_addr, 16);
  }
  r->id.idiag_cookie[0] = r->id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
  return 0;
}

/* The INET_ULP_INFO_TLS nest of one inet_diag answer as {version, cipher, txConf, rxConf}, or null. */
static napi_value ulp_object(napi_env env, struct inet_diag_msg *m, struct nlmsghdr *h) {
  napi_value result;
  napi_get_null(env, &result);
  int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
  for (struct rtattr *a = (struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if ((a->rta_type & NLA_TYPE_MASK) != INET_DIAG_ULP_INFO) continue;
    int ulen = (int)RTA_PAYLOAD(a);
    for (struct rtattr *u = RTA_DATA(a); RTA_OK(u, ulen); u = RTA_NEXT(u, ulen)) {
      if ((u->rta_type & NLA_TYPE_MASK) != INET_ULP_INFO_TLS) continue;
      unsigned version = 0, cipher = 0, tx = 0, rx = 0;
      int tlen = (int)RTA_PAYLOAD(u);
      for (struct rtattr *t = RTA_DATA(u); RTA_OK(t, tlen); t = RTA_NEXT(t, tlen)) {
        uint16_t v = 0;
        if (RTA_PAYLOAD(t) >= sizeof v) memcpy(&v, RTA_DATA(t), sizeof v);
        switch (t->rta_type & NLA_TYPE_MASK) {
          case TLS_INFO_VERSION: version = v; break;
          case TLS_INFO_CIPHER: cipher = v; break;
          case TLS_INFO_TXCONF: tx = v; break;
          case TLS_INFO_RXCONF: rx = v; break;
          default: break;
        }
      }
      napi_create_object(env, &result);
      napi_set_named_property(env, result, "version", aludel_str(env, version_name(version)));
      napi_set_named_property(env, result, "cipher", aludel_str(env, cipher_name(cipher)));
      napi_set_named_property(env, result, "txConf", aludel_str(env, conf_name(tx)));
      napi_set_named_property(env, result, "rxConf", aludel_str(env, conf_name(rx)));
      return result;
    }
  }
  return result;
}

typedef struct {
  struct nlmsghdr nlh;
  struct inet_diag_req_v2 r;
} diag_req;

/* A sock_diag request for TCP sockets in any state, asking for INET_DIAG_INFO (the ULP info rides with it). */
static void diag_req_init(diag_req *req, uint16_t flags) {
  memset(req, 0, sizeof *req);
  req->nlh.nlmsg_len = sizeof *req;
  req->nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  req->nlh.nlmsg_flags = flags;
  req->r.sdiag_protocol = IPPROTO_TCP;
  req->r.idiag_states = ~0U;
  req->r.idiag_ext = 1 << (INET_DIAG_INFO - 1);
}

static napi_value tls_ulp_info(napi_env env, napi_callback_info info) {
  napi_value argv[1], result;
  int32_t fd;
  if (!aludel_args(env, info, 1, argv) || !aludel_arg_int32(env, argv[0], &fd)) return NULL;
  diag_req req;
  diag_req_init(&req, NLM_F_REQUEST);
  if (fill_id(fd, &req.r) != 0) return aludel_throw_errno(env, errno, "getsockname");
  int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) return aludel_throw_errno(env, errno, "socket(NETLINK_SOCK_DIAG)");
  union {
    struct nlmsghdr h;
    char bytes[16384];
  } buf;
  ssize_t n = -1;
  if (send(nl, &req, sizeof req, 0) == (ssize_t)sizeof req) n = recv(nl, &buf, sizeof buf, 0);
  int err = errno;
  close(nl);
  if (n < 0) return aludel_throw_errno(env, err, "sock_diag");
  napi_get_null(env, &result);
  struct nlmsghdr *h = &buf.h;
  if (!NLMSG_OK(h, (size_t)n) || h->nlmsg_type != SOCK_DIAG_BY_FAMILY) {
    if (NLMSG_OK(h, (size_t)n) && h->nlmsg_type == NLMSG_ERROR) {
      const struct nlmsgerr *e = NLMSG_DATA(h);
      if (e->error != 0) return aludel_throw_errno(env, -e->error, "sock_diag");
    }
    return result;
  }
  return ulp_object(env, NLMSG_DATA(h), h);
}

/*
 * tcpUlpDump(family) -> [{inode, state, tls}]: every TCP socket of the
 * caller's network namespace in one NLM_F_DUMP request, with its inode (to
 * match /proc/<pid>/fd/N -> socket:[inode]), TCP state number and the same
 * ULP object (or null) as tlsUlpInfo. `aludel scan` uses it for other
 * processes' sockets, which it cannot name by fd. Only net admins see ULP info.
 */
static napi_value tcp_ulp_dump(napi_env env, napi_callback_info info) {
  napi_value argv[1], list;
  int32_t family;
  if (!aludel_args(env, info, 1, argv) || !aludel_arg_int32(env, argv[0], &family)) return NULL;
  diag_req req;
  diag_req_init(&req, NLM_F_REQUEST | NLM_F_DUMP);
  req.r.sdiag_family = (uint8_t)family;
  int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl < 0) return aludel_throw_errno(env, errno, "socket(NETLINK_SOCK_DIAG)");
  if (send(nl, &req, sizeof req, 0) != (ssize_t)sizeof req) {
    int err = errno;
    close(nl);
    return aludel_throw_errno(env, err, "sock_diag");
  }
  napi_create_array(env, &list);
  uint32_t count = 0;
  union {
    struct nlmsghdr h;
    char bytes[32768];
  } buf;
  for (;;) {
    ssize_t n = recv(nl, &buf, sizeof buf, 0);
    if (n < 0) {
      int err = errno;
      close(nl);
      return aludel_throw_errno(env, err, "sock_diag");
    }
    for (struct nlmsghdr *h = &buf.h; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        close(nl);
        return list;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        const struct nlmsgerr *e = NLMSG_DATA(h);
        close(nl);
        return aludel_throw_errno(env, e->error ? -e->error : EPROTO, "sock_diag");
      }
      if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
      struct inet_diag_msg *m = NLMSG_DATA(h);
      napi_value row;
      napi_create_object(env, &row);
      napi_set_named_property(env, row, "inode", aludel_int(env, m->idiag_inode));
      napi_set_named_property(env, row, "state", aludel_int(env, m->idiag_state));
      napi_set_named_property(env, row, "tls", ulp_object(env, m, h));
      napi_set_element(env, list, count++, row);
    }
  }
}

void aludel_register_diag(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"tlsUlpInfo", NULL, tls_ulp_info, NULL, NULL, NULL, napi_default, NULL},
      {"tcpUlpDump", NULL, tcp_ulp_dump, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

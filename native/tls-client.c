/*
 * TLS to upstreams on the system OpenSSL, so the upstream socket can be kTLS
 * in both directions and a response body can go from it to the client's kTLS
 * socket by splice(2), decrypted and re-encrypted by the kernel alone.
 *
 * OpenSSL 3.0 programs the kernel itself for TLS 1.2 (TX and RX) and for
 * TLS 1.3 TX. TLS 1.3 RX it leaves in user space, so enableRx() programs it
 * from the server's application traffic secret, taken from the keylog
 * callback (RFC 8446 §7.1, §7.3; the derivation is ktls-keys.c, shared with
 * the legacy preload). From then on the socket is read with recv/splice and,
 * for the records that are not application data, recvRecord(): OpenSSL's
 * record layer is never used again on that connection.
 *
 * As in tls.c, one OpenSSL call per function and states as numbers; the
 * choice of path, the fallback and the logging live in TypeScript
 * (src/tls/upstream-tls.ts).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/tls.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "aludel.h"
#include "ktls-keys.h"
#include "openssl-api.h"
#include "tls-conn.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

typedef struct {
  SSL_CTX *ctx;
} client_ctx;

static void client_ctx_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  client_ctx *c = (client_ctx *)data;
  if (c->ctx != NULL) aludel_ossl.SSL_CTX_free(c->ctx);
  free(c);
}

static int hex_digit(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/*
 * The keylog line "SERVER_TRAFFIC_SECRET_0 <client random> <secret>" (the
 * NSS key log format OpenSSL writes for TLS 1.3) carries the secret the
 * server's application records are protected with. Nothing is written
 * anywhere: the secret is kept in the connection until enableRx() uses it.
 */
static void keylog(const SSL *ssl, const char *line) {
  static const char label[] = "SERVER_TRAFFIC_SECRET_0 ";
  if (strncmp(line, label, sizeof label - 1) != 0) return;
  aludel_ssl *s = (aludel_ssl *)aludel_ossl.SSL_get_ex_data(ssl, 0);
  const char *p = strchr(line + sizeof label - 1, ' ');
  if (s == NULL || p == NULL) return;
  size_t n = strlen(++p) / 2;
  if (n != 32 && n != 48) return;
  for (size_t i = 0; i < n; i++) {
    int hi = hex_digit(p[2 * i]), lo = hex_digit(p[2 * i + 1]);
    if (hi < 0 || lo < 0) return;
    s->server_secret[i] = (unsigned char)(hi << 4 | lo);
  }
  s->server_secret_len = n;
}

static bool string_prop(napi_env env, napi_value obj, const char *key, char *buf, size_t size) {
  napi_value v;
  napi_valuetype t;
  buf[0] = 0;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok) return false;
  return t == napi_string ? aludel_arg_string(env, v, buf, size) : true;
}

static int64_t int_prop(napi_env env, napi_value obj, const char *key) {
  napi_value v;
  int64_t n = 0;
  if (napi_get_named_property(env, obj, key, &v) == napi_ok) napi_get_value_int64(env, v, &n);
  return n;
}

static napi_value ctx_fail(napi_env env, client_ctx *c, const char *call) {
  client_ctx_finalize(env, c, NULL);
  return aludel_throw(env, "ERR_TLS_CONTEXT", 0, call, call, true);
}

/* OpenSSL's PEM_R_NO_START_LINE: no PEM block left (the end of the bundle, not an error). */
#define ALUDEL_PEM_R_NO_START_LINE 108

/*
 * The CA bundle's certificates into the context's store, from the bytes the
 * caller read and checked (--upstream-ca: with --workers, the primary's copy,
 * not the file as it is now). PEM_read_bio_X509_AUX takes "CERTIFICATE" and
 * "TRUSTED CERTIFICATE" blocks, as SSL_CTX_load_verify_locations does; a
 * block that does not parse fails the whole bundle, as it does there.
 */
static bool load_ca_pem(SSL_CTX *ctx, const char *pem, size_t len) {
  if (len > INT32_MAX) return false;
  BIO *bio = aludel_ossl.BIO_new_mem_buf(pem, (int)len);
  if (bio == NULL) return false;
  X509_STORE *store = aludel_ossl.SSL_CTX_get_cert_store(ctx);
  int n = 0;
  bool ok = true;
  X509 *x;
  while (ok && (x = aludel_ossl.PEM_read_bio_X509_AUX(bio, NULL, NULL, NULL)) != NULL) {
    ok = aludel_ossl.X509_STORE_add_cert(store, x) == 1;
    aludel_ossl.X509_free(x);
    n++;
  }
  aludel_ossl.BIO_free(bio);
  if (!ok) return false;
  /* The loop ends on an error: "no start line" once every block is read; anything else is a bad block. */
  unsigned long e = aludel_ossl.ERR_peek_last_error();
  if (n == 0 || (e != 0 && (e & 0x7FFFFF) != ALUDEL_PEM_R_NO_START_LINE)) return false;
  aludel_ossl.ERR_clear_error();
  return true;
}

/* The buffer property `key`: its bytes, or *len 0 when it is absent or null. */
static bool buffer_prop(napi_env env, napi_value obj, const char *key, char **data, size_t *len) {
  napi_value v;
  bool is_buffer = false;
  *data = NULL;
  *len = 0;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_is_buffer(env, v, &is_buffer) != napi_ok) return false;
  return !is_buffer || napi_get_buffer_info(env, v, (void **)data, len) == napi_ok;
}

/*
 * clientCtxNew({caPem, verify, cipherList, cipherSuites, minVersion, maxVersion, ktls}) -> context.
 * caPem null = the system's trust store. verify 0 = no chain or name check (a
 * pinned certificate is compared by the caller). The suites are the caller's
 * (kTLS-capable AEADs only: CBC records cannot be offloaded).
 */
static napi_value client_ctx_new(napi_env env, napi_callback_info info) {
  napi_value argv[1], obj;
  static char list[2048], suites[1024];
  char *ca;
  size_t ca_len;
  if (!aludel_args(env, info, 1, argv)) return NULL;
  if (aludel_ossl_handle == NULL)
    return aludel_throw(env, "ERR_OPENSSL_NOT_LOADED", 0, "clientCtxNew", "call loadOpenssl() first", false);
  if (!buffer_prop(env, argv[0], "caPem", &ca, &ca_len) || !string_prop(env, argv[0], "cipherList", list, sizeof list) ||
      !string_prop(env, argv[0], "cipherSuites", suites, sizeof suites))
    return NULL;
  int64_t verify = int_prop(env, argv[0], "verify"), minv = int_prop(env, argv[0], "minVersion"),
          maxv = int_prop(env, argv[0], "maxVersion"), ktls = int_prop(env, argv[0], "ktls");
  client_ctx *c = calloc(1, sizeof *c);
  if (c == NULL) return aludel_throw_errno(env, ENOMEM, "calloc");
  aludel_ossl.ERR_clear_error();
  c->ctx = aludel_ossl.SSL_CTX_new(aludel_ossl.TLS_client_method());
  if (c->ctx == NULL) return ctx_fail(env, c, "SSL_CTX_new");
  /* ktls 0 (no TLS in the kernel, or --offload userspace): the connection stays in OpenSSL. */
  aludel_ossl.SSL_CTX_set_options(c->ctx, (ktls ? ALUDEL_SSL_OP_ENABLE_KTLS : 0) | ALUDEL_SSL_OP_NO_COMPRESSION | ALUDEL_SSL_OP_NO_RENEGOTIATION);
  if ((minv && !aludel_ossl.SSL_CTX_ctrl(c->ctx, ALUDEL_SSL_CTRL_SET_MIN_PROTO_VERSION, (long)minv, NULL)) ||
      (maxv && !aludel_ossl.SSL_CTX_ctrl(c->ctx, ALUDEL_SSL_CTRL_SET_MAX_PROTO_VERSION, (long)maxv, NULL)))
    return ctx_fail(env, c, "SSL_CTX_set_min/max_proto_version");
  if (list[0] && !aludel_ossl.SSL_CTX_set_cipher_list(c->ctx, list)) return ctx_fail(env, c, "SSL_CTX_set_cipher_list");
  if (suites[0] && !aludel_ossl.SSL_CTX_set_ciphersuites(c->ctx, suites)) return ctx_fail(env, c, "SSL_CTX_set_ciphersuites");
  if (ca_len > 0 ? !load_ca_pem(c->ctx, ca, ca_len) : !aludel_ossl.SSL_CTX_set_default_verify_paths(c->ctx))
    return ctx_fail(env, c, ca_len > 0 ? "PEM_read_bio_X509_AUX/X509_STORE_add_cert (the CA bundle)" : "SSL_CTX_set_default_verify_paths");
  aludel_ossl.SSL_CTX_set_verify(c->ctx, verify ? ALUDEL_SSL_VERIFY_PEER : ALUDEL_SSL_VERIFY_NONE, NULL);
  aludel_ossl.SSL_CTX_set_keylog_callback(c->ctx, keylog);
  napi_create_object(env, &obj);
  if (napi_wrap(env, obj, c, client_ctx_finalize, NULL, NULL) != napi_ok) {
    client_ctx_finalize(env, c, NULL);
    return NULL;
  }
  return obj;
}

/*
 * clientSslNew(ctx, fd, servername, verifyName) -> connection in connect state
 * on a socket BIO. servername "" sends no SNI; verifyName "" checks no name
 * (else a DNS name or an IP literal, RFC 6125 / OpenSSL's SSL_set1_host).
 * ALPN offers http/1.1 only: the upstream side speaks HTTP/1.1.
 */
static napi_value client_ssl_new(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t fd;
  char servername[256], name[256];
  if (!aludel_args(env, info, 4, argv) || !aludel_arg_int32(env, argv[1], &fd) ||
      !aludel_arg_string(env, argv[2], servername, sizeof servername) || !aludel_arg_string(env, argv[3], name, sizeof name))
    return NULL;
  client_ctx *c = NULL;
  if (napi_unwrap(env, argv[0], (void **)&c) != napi_ok || c == NULL || c->ctx == NULL)
    return aludel_throw(env, "ERR_INVALID_ARG", 0, "clientSslNew", "not a client context", false);
  aludel_ssl *s = calloc(1, sizeof *s);
  if (s == NULL) return aludel_throw_errno(env, ENOMEM, "calloc");
  aludel_ossl.ERR_clear_error();
  s->ssl = aludel_ossl.SSL_new(c->ctx);
  static const unsigned char alpn[] = "\x08http/1.1";
  bool ok = s->ssl != NULL && aludel_ossl.SSL_set_fd(s->ssl, fd) &&
            (servername[0] == 0 ||
             aludel_ossl.SSL_ctrl(s->ssl, ALUDEL_SSL_CTRL_SET_TLSEXT_HOSTNAME, ALUDEL_TLSEXT_NAMETYPE_host_name, servername)) &&
            (name[0] == 0 || aludel_ossl.SSL_set1_host(s->ssl, name)) &&
            aludel_ossl.SSL_set_alpn_protos(s->ssl, alpn, sizeof alpn - 1) == 0; /* 0 is success here */
  if (!ok) {
    if (s->ssl != NULL) aludel_ossl.SSL_free(s->ssl);
    free(s);
    return aludel_throw(env, "ERR_TLS_CONNECTION", 0, "SSL_new", "SSL_new/SSL_set_fd/SNI/host/ALPN failed", true);
  }
  aludel_ossl.SSL_set_connect_state(s->ssl);
  return aludel_ssl_wrap(env, s);
}

/* verifyResult(conn) -> null when the chain and name were accepted, else {code, reason} (X509_V_ERR_*). */
static napi_value client_verify_result(napi_env env, napi_callback_info info) {
  napi_value argv[1], obj;
  if (!aludel_args(env, info, 1, argv)) return NULL;
  aludel_ssl *s = aludel_ssl_unwrap(env, argv[0]);
  if (s == NULL) return NULL;
  long r = aludel_ossl.SSL_get_verify_result(s->ssl);
  if (r == ALUDEL_X509_V_OK) {
    napi_get_null(env, &obj);
    return obj;
  }
  napi_create_object(env, &obj);
  napi_set_named_property(env, obj, "code", aludel_int(env, r));
  napi_set_named_property(env, obj, "reason", aludel_str(env, aludel_ossl.X509_verify_cert_error_string(r)));
  return obj;
}

/* peerSha256(conn) -> the SHA-256 of the server certificate's DER (a Buffer), or null without one. */
static napi_value client_peer_sha256(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  if (!aludel_args(env, info, 1, argv)) return NULL;
  aludel_ssl *s = aludel_ssl_unwrap(env, argv[0]);
  if (s == NULL) return NULL;
  X509 *cert = aludel_ossl.SSL_get1_peer_certificate(s->ssl);
  unsigned char md[64];
  unsigned int len = 0;
  int ok = cert != NULL && aludel_ossl.X509_digest(cert, aludel_ossl.EVP_sha256(), md, &len);
  if (cert != NULL) aludel_ossl.X509_free(cert);
  if (!ok) {
    napi_get_null(env, &out);
    return out;
  }
  void *data;
  napi_create_buffer_copy(env, len, md, &data, &out);
  return out;
}

/*
 * enableRx(conn, fd) -> 1: kernel RX programmed for a TLS 1.3 connection
 * whose TX OpenSSL already put in the kernel (so the TLS ULP is on).
 * With read-ahead off (the default) OpenSSL has read nothing past the
 * server's Finished when SSL_do_handshake returns, so the next record the
 * kernel sees is the first under the application secret: sequence 0.
 * SSL_has_pending guards that. Throws when it cannot be done; the caller
 * then keeps the connection off the zero-copy path.
 */
static napi_value client_enable_rx(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  if (!aludel_args(env, info, 2, argv) || !aludel_arg_int32(env, argv[1], &fd)) return NULL;
  aludel_ssl *s = aludel_ssl_unwrap(env, argv[0]);
  if (s == NULL) return NULL;
  const SSL_CIPHER *cipher = aludel_ossl.SSL_get_current_cipher(s->ssl);
  uint32_t id = cipher ? aludel_ossl.SSL_CIPHER_get_id(cipher) & 0xffff : 0;
  /* RFC 8446 B.4: 0x1301 AES-128-GCM-SHA256, 0x1302 AES-256-GCM-SHA384, 0x1303 CHACHA20-POLY1305-SHA256. */
  enum aludel_cipher kc = id == 0x1301 ? ALUDEL_AES_128_GCM : id == 0x1302 ? ALUDEL_AES_256_GCM : id == 0x1303 ? ALUDEL_CHACHA20_POLY1305 : 0;
  const char *why = aludel_ossl.SSL_version(s->ssl) != ALUDEL_TLS1_3_VERSION ? "not TLS 1.3"
                    : kc == 0                                              ? "a suite the kernel cannot decrypt"
                    : s->server_secret_len != (id == 0x1302 ? 48u : 32u)   ? "no server traffic secret from the keylog callback"
                    : aludel_ossl.SSL_has_pending(s->ssl)                  ? "OpenSSL already holds records past the handshake"
                                                                           : NULL;
  if (why != NULL) return aludel_throw(env, "ERR_KTLS_RX", 0, "enableRx", why, false);
  struct aludel_dir_keys k;
  memset(&k, 0, sizeof k);
  const EVP_MD *md = id == 0x1302 ? aludel_ossl.EVP_sha384() : aludel_ossl.EVP_sha256();
  int ok = aludel_tls13_traffic_keys((aludel_hmac_fn)aludel_ossl.HMAC, md, id == 0x1302 ? 48 : 32, s->server_secret,
                                     s->server_secret_len, kc == ALUDEL_AES_128_GCM ? 16 : 32, &k);
  int r = ok ? aludel_ktls_set(fd, 0, ALUDEL_TLS1_3_VERSION, kc, &k) : -1;
  int saved = errno;
  explicit_bzero(&k, sizeof k);
  explicit_bzero(s->server_secret, sizeof s->server_secret);
  s->server_secret_len = 0;
  if (!ok) return aludel_throw(env, "ERR_KTLS_RX", 0, "HKDF-Expand-Label", "key derivation failed", true);
  if (r != 0) return aludel_throw_errno(env, saved, "setsockopt(TLS_RX)");
  return aludel_int(env, 1);
}

/*
 * recvRecord(fd, buf, offset, length) -> {type, length} for one record's
 * plaintext (or its first part), 0 at the peer's FIN, or ALUDEL_AGAIN.
 * recvmsg with room for the TLS_GET_RECORD_TYPE cmsg: without it the kernel
 * refuses a non-data record with EIO (recv) or EINVAL (splice), which is how
 * the caller knows to come here (Documentation/networking/tls.rst).
 */
static napi_value recv_record(napi_env env, napi_callback_info info) {
  napi_value argv[4], obj;
  int32_t fd;
  char *data;
  size_t len;
  if (!aludel_args(env, info, 4, argv) || !aludel_arg_int32(env, argv[0], &fd) ||
      !aludel_arg_buffer_range(env, argv[1], argv[2], argv[3], &data, &len))
    return NULL;
  char cbuf[CMSG_SPACE(sizeof(unsigned char))];
  struct iovec iov = {.iov_base = data, .iov_len = len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  ssize_t got = recvmsg(fd, &msg, 0);
  if (got < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return aludel_int(env, ALUDEL_AGAIN);
    return aludel_throw_errno(env, errno, "recvmsg");
  }
  if (got == 0) return aludel_int(env, 0);
  unsigned char type = ALUDEL_SSL3_RT_APPLICATION_DATA;
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  if (cm != NULL && cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE) type = *CMSG_DATA(cm);
  napi_create_object(env, &obj);
  napi_set_named_property(env, obj, "type", aludel_int(env, type));
  napi_set_named_property(env, obj, "length", aludel_int(env, got));
  return obj;
}

void aludel_register_tls_client(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"clientCtxNew", NULL, client_ctx_new, NULL, NULL, NULL, napi_default, NULL},
      {"clientSslNew", NULL, client_ssl_new, NULL, NULL, NULL, napi_default, NULL},
      {"verifyResult", NULL, client_verify_result, NULL, NULL, NULL, napi_default, NULL},
      {"peerSha256", NULL, client_peer_sha256, NULL, NULL, NULL, napi_default, NULL},
      {"enableRx", NULL, client_enable_rx, NULL, NULL, NULL, napi_default, NULL},
      {"recvRecord", NULL, recv_record, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

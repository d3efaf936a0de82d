/*
 * OpenSSL through the dlsym table: contexts, server connections, records.
 * Each function makes one OpenSSL call (plus the error-queue housekeeping that
 * OpenSSL requires around it) and reports states as numbers:
 *   n >= 0             bytes / done
 *   ALUDEL_WANT_READ   wait until the socket is readable, then call again
 *   ALUDEL_WANT_WRITE  wait until the socket is writable, then call again
 * Anything else is thrown as {code, errno, syscall, opensslErrors}.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "aludel.h"
#include "openssl-api.h"

/* ---------- library ---------- */

/*
 * loadOpenssl(path) -> {version, versionNumber, libssl, nodeCopy}
 * nodeCopy is true if the pointer we got for SSL_new is the one the process
 * already exports (Node's bundled copy): then kTLS can never work and the
 * TypeScript side refuses to use it.
 */
static napi_value load_openssl(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  char path[4096];
  if (!aludel_args(env, info, 1, argv) || !aludel_arg_string(env, argv[0], path, sizeof path))
    return NULL;
  const char *err = aludel_openssl_load(path);
  if (err != NULL) return aludel_throw(env, "ERR_OPENSSL_LOAD", 0, "dlopen", err, false);
  Dl_info where;
  memset(&where, 0, sizeof where);
  dladdr(*(void **)&aludel_ossl.SSL_new, &where);
  void *global_ssl_new = dlsym(RTLD_DEFAULT, "SSL_new");
  napi_value obj;
  napi_create_object(env, &obj);
  napi_set_named_property(env, obj, "version",
                          aludel_str(env, aludel_ossl.OpenSSL_version(ALUDEL_OPENSSL_VERSION)));
  napi_set_named_property(env, obj, "versionNumber",
                          aludel_int(env, (int64_t)aludel_ossl.OpenSSL_version_num()));
  napi_set_named_property(env, obj, "libssl", aludel_str(env, where.dli_fname));
  napi_value same;
  napi_get_boolean(env, global_ssl_new == *(void **)&aludel_ossl.SSL_new, &same);
  napi_set_named_property(env, obj, "nodeCopy", same);
  return obj;
}

/* ---------- contexts ---------- */

typedef struct {
  SSL_CTX *ctx;
  unsigned char alpn[256]; /* server preference list in ALPN wire format (RFC 7301 3.1) */
  unsigned int alpn_len;
} aludel_ctx;

typedef struct {
  SSL *ssl;
  bool key_update_requested; /* set by the message callback, read by keyUpdateRequested() */
} aludel_ssl;

static void ctx_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  aludel_ctx *c = (aludel_ctx *)data;
  /* SSL objects hold their own reference to the SSL_CTX, so this is safe while they live. */
  aludel_ossl.SSL_CTX_free(c->ctx);
  free(c);
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
  (void)ssl;
  aludel_ctx *c = (aludel_ctx *)arg;
  unsigned char *chosen = NULL;
  if (aludel_ossl.SSL_select_next_proto(&chosen, outlen, c->alpn, c->alpn_len, in, inlen) !=
      ALUDEL_OPENSSL_NPN_NEGOTIATED)
    return ALUDEL_SSL_TLSEXT_ERR_NOACK; /* no overlap: carry on without ALPN, as nginx does */
  *out = chosen;
  return ALUDEL_SSL_TLSEXT_ERR_OK;
}

/*
 * Why watch for KeyUpdate: OpenSSL 3.0 answers a TLS 1.3 KeyUpdate with
 * update_requested (RFC 8446 4.6.3) by re-keying only its own state; with kTLS
 * TX the kernel keeps encrypting with the old key (Linux can re-key kTLS only
 * from 6.14), so every later record would fail the peer's MAC check. The flag
 * lets the TypeScript side close such a connection before it sends anything.
 */
static void msg_callback(int write_p, int version, int content_type, const void *buf, size_t len,
                         SSL *ssl, void *arg) {
  (void)version, (void)arg;
  if (write_p || content_type != ALUDEL_SSL3_RT_HANDSHAKE || len < 5) return;
  const unsigned char *m = (const unsigned char *)buf;
  if (m[0] != ALUDEL_SSL3_MT_KEY_UPDATE || m[4] != ALUDEL_SSL_KEY_UPDATE_REQUESTED) return;
  aludel_ssl *s = (aludel_ssl *)aludel_ossl.SSL_get_ex_data(ssl, 0);
  if (s != NULL) s->key_update_requested = true;
}

static bool get_string_prop(napi_env env, napi_value obj, const char *key, char *buf, size_t size) {
  napi_value v;
  napi_valuetype t;
  buf[0] = 0;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return false;
  napi_typeof(env, v, &t);
  if (t == napi_undefined || t == napi_null) return true;
  return aludel_arg_string(env, v, buf, size);
}

static int64_t get_int_prop(napi_env env, napi_value obj, const char *key) {
  napi_value v;
  int64_t out = 0;
  if (napi_get_named_property(env, obj, key, &v) == napi_ok) napi_get_value_int64(env, v, &out);
  return out;
}

static bool get_bool_prop(napi_env env, napi_value obj, const char *key) {
  napi_value v;
  bool out = false;
  if (napi_get_named_property(env, obj, key, &v) == napi_ok) napi_get_value_bool(env, v, &out);
  return out;
}

#define CTX_FAIL(what)                                                                      \
  do {                                                                                      \
    aludel_ossl.SSL_CTX_free(c->ctx);                                                       \
    free(c);                                                                                \
    return aludel_throw(env, "ERR_TLS_CONTEXT", 0, what, what " failed", true);             \
  } while (0)

/*
 * ctxNew({certFile, keyFile, minVersion, maxVersion, cipherList, cipherSuites, ktls, alpn})
 * alpn: a Buffer in wire format. Versions: 0x0303 = TLS 1.2, 0x0304 = TLS 1.3.
 */
static napi_value ctx_new(napi_env env, napi_callback_info info) {
  napi_value argv[1], obj;
  static char cert[4096], key[4096], list[2048], suites[1024];
  if (!aludel_args(env, info, 1, argv)) return NULL;
  if (aludel_ossl_handle == NULL)
    return aludel_throw(env, "ERR_OPENSSL_NOT_LOADED", 0, "ctxNew", "call loadOpenssl() first", false);
  if (!get_string_prop(env, argv[0], "certFile", cert, sizeof cert) ||
      !get_string_prop(env, argv[0], "keyFile", key, sizeof key) ||
      !get_string_prop(env, argv[0], "cipherList", list, sizeof list) ||
      !get_string_prop(env, argv[0], "cipherSuites", suites, sizeof suites))
    return NULL;
  aludel_ctx *c = calloc(1, sizeof *c);
  if (c == NULL) return aludel_throw_errno(env, ENOMEM, "calloc");
  napi_value alpn;
  bool is_buffer = false;
  if (napi_get_named_property(env, argv[0], "alpn", &alpn) == napi_ok &&
      napi_is_buffer(env, alpn, &is_buffer) == napi_ok && is_buffer) {
    void *data;
    size_t len;
    napi_get_buffer_info(env, alpn, &data, &len);
    if (len > sizeof c->alpn) len = 0;
    memcpy(c->alpn, data, len);
    c->alpn_len = (unsigned int)len;
  }
  aludel_ossl.ERR_clear_error();
  c->ctx = aludel_ossl.SSL_CTX_new(aludel_ossl.TLS_server_method());
  if (c->ctx == NULL) {
    free(c);
    return aludel_throw(env, "ERR_TLS_CONTEXT", 0, "SSL_CTX_new", "SSL_CTX_new failed", true);
  }
  /* kTLS needs no compression (already off in 3.0) and forces no renegotiation (RFC 5746 is moot). */
  uint64_t options = ALUDEL_SSL_OP_NO_COMPRESSION | ALUDEL_SSL_OP_NO_RENEGOTIATION;
  if (get_bool_prop(env, argv[0], "ktls")) options |= ALUDEL_SSL_OP_ENABLE_KTLS;
  aludel_ossl.SSL_CTX_set_options(c->ctx, options);
  /* PARTIAL_WRITE: a write returns after each record, so large buffers stream;
     MOVING_WRITE_BUFFER: a retried write may come from another JS Buffer address;
     RELEASE_BUFFERS: idle keep-alive connections hold no 34 KiB record buffers. */
  aludel_ossl.SSL_CTX_ctrl(c->ctx, ALUDEL_SSL_CTRL_MODE,
                           ALUDEL_SSL_MODE_ENABLE_PARTIAL_WRITE |
                               ALUDEL_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                               ALUDEL_SSL_MODE_RELEASE_BUFFERS,
                           NULL);
  int64_t minv = get_int_prop(env, argv[0], "minVersion"), maxv = get_int_prop(env, argv[0], "maxVersion");
  if ((minv && !aludel_ossl.SSL_CTX_ctrl(c->ctx, ALUDEL_SSL_CTRL_SET_MIN_PROTO_VERSION, (long)minv, NULL)) ||
      (maxv && !aludel_ossl.SSL_CTX_ctrl(c->ctx, ALUDEL_SSL_CTRL_SET_MAX_PROTO_VERSION, (long)maxv, NULL)))
    CTX_FAIL("SSL_CTX_set_min/max_proto_version");
  if (list[0] && !aludel_ossl.SSL_CTX_set_cipher_list(c->ctx, list)) CTX_FAIL("SSL_CTX_set_cipher_list");
  if (suites[0] && !aludel_ossl.SSL_CTX_set_ciphersuites(c->ctx, suites)) CTX_FAIL("SSL_CTX_set_ciphersuites");
  if (!aludel_ossl.SSL_CTX_use_certificate_chain_file(c->ctx, cert))
    CTX_FAIL("SSL_CTX_use_certificate_chain_file");
  if (!aludel_ossl.SSL_CTX_use_PrivateKey_file(c->ctx, key, ALUDEL_SSL_FILETYPE_PEM))
    CTX_FAIL("SSL_CTX_use_PrivateKey_file");
  if (!aludel_ossl.SSL_CTX_check_private_key(c->ctx)) CTX_FAIL("SSL_CTX_check_private_key");
  /* A session id context lets the server session cache resume sessions (TLS 1.2 ids). */
  static const unsigned char sid[] = "aludel";
  aludel_ossl.SSL_CTX_set_session_id_context(c->ctx, sid, sizeof sid - 1);
  if (c->alpn_len > 0) aludel_ossl.SSL_CTX_set_alpn_select_cb(c->ctx, alpn_select, c);
  aludel_ossl.SSL_CTX_set_msg_callback(c->ctx, msg_callback);
  napi_create_object(env, &obj);
  if (napi_wrap(env, obj, c, ctx_finalize, NULL, NULL) != napi_ok) {
    ctx_finalize(env, c, NULL);
    return NULL;
  }
  return obj;
}

/* ---------- connections ---------- */

static void ssl_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  aludel_ssl *s = (aludel_ssl *)data;
  if (s->ssl != NULL) aludel_ossl.SSL_free(s->ssl);
  free(s);
}

static aludel_ssl *unwrap_ssl(napi_env env, napi_value v) {
  aludel_ssl *s = NULL;
  if (napi_unwrap(env, v, (void **)&s) != napi_ok || s == NULL || s->ssl == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "not an open TLS connection");
    return NULL;
  }
  return s;
}

/* The connection of a function whose only argument is the connection. */
static aludel_ssl *ssl_arg(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!aludel_args(env, info, 1, argv)) return NULL;
  return unwrap_ssl(env, argv[0]);
}

/* sslNew(ctx, fd) -> connection object in server (accept) state on a socket BIO. */
static napi_value ssl_new(napi_env env, napi_callback_info info) {
  napi_value argv[2], obj;
  int32_t fd;
  if (!aludel_args(env, info, 2, argv) || !aludel_arg_int32(env, argv[1], &fd)) return NULL;
  aludel_ctx *c = NULL;
  if (napi_unwrap(env, argv[0], (void **)&c) != napi_ok || c == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "not a TLS context");
    return NULL;
  }
  aludel_ssl *s = calloc(1, sizeof *s);
  if (s == NULL) return aludel_throw_errno(env, ENOMEM, "calloc");
  aludel_ossl.ERR_clear_error();
  s->ssl = aludel_ossl.SSL_new(c->ctx);
  /* A socket BIO (SSL_set_fd), not a memory BIO: kTLS needs the kernel to own the socket. */
  if (s->ssl == NULL || !aludel_ossl.SSL_set_fd(s->ssl, fd)) {
    ssl_finalize(env, s, NULL);
    return aludel_throw(env, "ERR_TLS_CONNECTION", 0, "SSL_new", "SSL_new/SSL_set_fd failed", true);
  }
  aludel_ossl.SSL_set_ex_data(s->ssl, 0, s);
  aludel_ossl.SSL_set_accept_state(s->ssl);
  napi_create_object(env, &obj);
  if (napi_wrap(env, obj, s, ssl_finalize, NULL, NULL) != napi_ok) {
    ssl_finalize(env, s, NULL);
    return NULL;
  }
  return obj;
}

/* Maps an OpenSSL result to a state number, or throws. */
static napi_value io_result(napi_env env, aludel_ssl *s, int ret, int saved_errno, const char *op) {
  switch (aludel_ossl.SSL_get_error(s->ssl, ret)) {
    case ALUDEL_SSL_ERROR_WANT_READ:
      return aludel_int(env, ALUDEL_WANT_READ);
    case ALUDEL_SSL_ERROR_WANT_WRITE:
      return aludel_int(env, ALUDEL_WANT_WRITE);
    case ALUDEL_SSL_ERROR_ZERO_RETURN:
      return aludel_int(env, 0); /* close_notify received */
    case ALUDEL_SSL_ERROR_SYSCALL:
      if (saved_errno == 0) return aludel_int(env, ALUDEL_EOF_NO_NOTIFY);
      return aludel_throw(env, strerrorname_np(saved_errno) ? strerrorname_np(saved_errno) : "ESYSCALL",
                          saved_errno, op, op, true);
    case ALUDEL_SSL_ERROR_SSL: {
      unsigned long e = aludel_ossl.ERR_peek_error();
      /* 3.0 reports a bare TCP FIN as this reason rather than SSL_ERROR_SYSCALL. */
      if (!(e & ALUDEL_ERR_SYSTEM_FLAG) &&
          (e & ALUDEL_ERR_REASON_MASK) == ALUDEL_SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        aludel_ossl.ERR_clear_error();
        return aludel_int(env, ALUDEL_EOF_NO_NOTIFY);
      }
      return aludel_throw(env, "ERR_SSL_PROTOCOL", saved_errno, op, "TLS error", true);
    }
    default:
      return aludel_throw(env, "ERR_SSL_UNEXPECTED", saved_errno, op, "unexpected OpenSSL state", true);
  }
}

/* handshake(conn) -> 1 when complete, or a WANT state. */
static napi_value ssl_handshake(napi_env env, napi_callback_info info) {
  aludel_ssl *s = ssl_arg(env, info);
  if (s == NULL) return NULL;
  aludel_ossl.ERR_clear_error();
  errno = 0;
  int ret = aludel_ossl.SSL_do_handshake(s->ssl);
  if (ret == 1) return aludel_int(env, 1);
  return io_result(env, s, ret, errno, "SSL_do_handshake");
}

/* Shared argument handling of read() and write(): (conn, buffer, offset, length). */
static napi_value ssl_io(napi_env env, napi_callback_info info, bool writing) {
  napi_value argv[4];
  char *data;
  size_t want, n = 0;
  const char *op = writing ? "SSL_write_ex" : "SSL_read_ex";
  if (!aludel_args(env, info, 4, argv) || !aludel_arg_buffer_range(env, argv[1], argv[2], argv[3], &data, &want))
    return NULL;
  aludel_ssl *s = unwrap_ssl(env, argv[0]);
  if (s == NULL) return NULL;
  if (want == 0) return aludel_throw(env, "ERR_OUT_OF_RANGE", EINVAL, op, "empty range", false);
  aludel_ossl.ERR_clear_error();
  errno = 0;
  int ret = writing ? aludel_ossl.SSL_write_ex(s->ssl, data, want, &n) : aludel_ossl.SSL_read_ex(s->ssl, data, want, &n);
  if (ret == 1) return aludel_int(env, (int64_t)n);
  return io_result(env, s, ret, errno, op);
}

/* read(conn, buffer, offset, length) -> bytes, 0 at close_notify, or a state. */
static napi_value ssl_read(napi_env env, napi_callback_info info) {
  return ssl_io(env, info, false);
}

/* write(conn, buffer, offset, length) -> bytes written (>= one record), or a state. */
static napi_value ssl_write(napi_env env, napi_callback_info info) {
  return ssl_io(env, info, true);
}

/*
 * sendfile(conn, fileFd, offset, length) -> bytes sent, or ALUDEL_WANT_WRITE.
 * Only valid when kTLS TX is on. OpenSSL maps EAGAIN/EINTR/EBUSY to WANT_WRITE
 * but reports any other sendfile(2) failure as an "uninitialized" error, so the
 * errno is kept beside it.
 */
static napi_value ssl_sendfile(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t fd;
  int64_t off, want;
  if (!aludel_args(env, info, 4, argv) || !aludel_arg_int32(env, argv[1], &fd) ||
      !aludel_arg_int64(env, argv[2], &off) || !aludel_arg_int64(env, argv[3], &want))
    return NULL;
  aludel_ssl *s = unwrap_ssl(env, argv[0]);
  if (s == NULL) return NULL;
  aludel_ossl.ERR_clear_error();
  errno = 0;
  ssize_t n = aludel_ossl.SSL_sendfile(s->ssl, fd, (off_t)off, (size_t)want, 0);
  if (n >= 0) return aludel_int(env, (int64_t)n);
  int saved = errno;
  if (saved == EAGAIN || saved == EINTR || saved == EBUSY) {
    aludel_ossl.ERR_clear_error();
    return aludel_int(env, ALUDEL_WANT_WRITE);
  }
  const char *name = saved ? strerrorname_np(saved) : NULL;
  return aludel_throw(env, name ? name : "ERR_SSL_SENDFILE", saved, "sendfile", "SSL_sendfile", true);
}

/* shutdown(conn) -> 1 both close_notify seen, 0 ours sent, or a state. */
static napi_value ssl_shutdown(napi_env env, napi_callback_info info) {
  aludel_ssl *s = ssl_arg(env, info);
  if (s == NULL) return NULL;
  aludel_ossl.ERR_clear_error();
  errno = 0;
  int ret = aludel_ossl.SSL_shutdown(s->ssl);
  if (ret >= 0) return aludel_int(env, ret);
  return io_result(env, s, ret, errno, "SSL_shutdown");
}

/* ktlsState(conn) -> bit 1: kernel encrypts (TX), bit 2: kernel decrypts (RX). */
static napi_value ssl_ktls_state(napi_env env, napi_callback_info info) {
  aludel_ssl *s = ssl_arg(env, info);
  if (s == NULL) return NULL;
  int state = 0;
  if (aludel_ossl.BIO_ctrl(aludel_ossl.SSL_get_wbio(s->ssl), ALUDEL_BIO_CTRL_GET_KTLS_SEND, 0, NULL) > 0)
    state |= 1;
  if (aludel_ossl.BIO_ctrl(aludel_ossl.SSL_get_rbio(s->ssl), ALUDEL_BIO_CTRL_GET_KTLS_RECV, 0, NULL) > 0)
    state |= 2;
  return aludel_int(env, state);
}

/* info(conn) -> {version, cipher, alpn, servername, reused} after the handshake. */
static napi_value ssl_info(napi_env env, napi_callback_info info) {
  napi_value obj, b;
  aludel_ssl *s = ssl_arg(env, info);
  if (s == NULL) return NULL;
  napi_create_object(env, &obj);
  napi_set_named_property(env, obj, "version", aludel_str(env, aludel_ossl.SSL_get_version(s->ssl)));
  const SSL_CIPHER *c = aludel_ossl.SSL_get_current_cipher(s->ssl);
  napi_set_named_property(env, obj, "cipher", aludel_str(env, c ? aludel_ossl.SSL_CIPHER_get_name(c) : NULL));
  const unsigned char *alpn = NULL;
  unsigned int alpn_len = 0;
  aludel_ossl.SSL_get0_alpn_selected(s->ssl, &alpn, &alpn_len);
  napi_value alpn_v;
  if (alpn_len > 0) {
    napi_create_string_latin1(env, (const char *)alpn, alpn_len, &alpn_v);
  } else {
    napi_get_null(env, &alpn_v);
  }
  napi_set_named_property(env, obj, "alpn", alpn_v);
  napi_set_named_property(env, obj, "servername",
                          aludel_str(env, aludel_ossl.SSL_get_servername(s->ssl, ALUDEL_TLSEXT_NAMETYPE_host_name)));
  napi_get_boolean(env, aludel_ossl.SSL_session_reused(s->ssl) == 1, &b);
  napi_set_named_property(env, obj, "reused", b);
  return obj;
}

/* keyUpdateRequested(conn) -> true once the peer sent KeyUpdate(update_requested). */
static napi_value ssl_key_update_requested(napi_env env, napi_callback_info info) {
  napi_value b;
  aludel_ssl *s = ssl_arg(env, info);
  if (s == NULL) return NULL;
  napi_get_boolean(env, s->key_update_requested, &b);
  return b;
}

/* free(conn): releases the SSL now (the fd is the caller's to close). */
static napi_value ssl_free(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!aludel_args(env, info, 1, argv)) return NULL;
  aludel_ssl *s = NULL;
  if (napi_unwrap(env, argv[0], (void **)&s) != napi_ok || s == NULL) return NULL;
  if (s->ssl != NULL) aludel_ossl.SSL_free(s->ssl);
  s->ssl = NULL;
  return NULL;
}

void aludel_register_tls(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"loadOpenssl", NULL, load_openssl, NULL, NULL, NULL, napi_default, NULL},
      {"ctxNew", NULL, ctx_new, NULL, NULL, NULL, napi_default, NULL},
      {"sslNew", NULL, ssl_new, NULL, NULL, NULL, napi_default, NULL},
      {"handshake", NULL, ssl_handshake, NULL, NULL, NULL, napi_default, NULL},
      {"read", NULL, ssl_read, NULL, NULL, NULL, napi_default, NULL},
      {"write", NULL, ssl_write, NULL, NULL, NULL, napi_default, NULL},
      {"sendfile", NULL, ssl_sendfile, NULL, NULL, NULL, napi_default, NULL},
      {"shutdown", NULL, ssl_shutdown, NULL, NULL, NULL, napi_default, NULL},
      {"ktlsState", NULL, ssl_ktls_state, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, ssl_info, NULL, NULL, NULL, napi_default, NULL},
      {"keyUpdateRequested", NULL, ssl_key_update_requested, NULL, NULL, NULL, napi_default, NULL},
      {"sslFree", NULL, ssl_free, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aludel.h"
#include "openssl-api.h"
#include "tls-conn.h"

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

/* An SNI table entry: a host name (lower case; "*.example.com" for a wildcard) and its context. */
typedef struct {
  char *name;
  unsigned int target;
} sni_entry;

/*
 * The table TypeScript installs on a listening context (sniTableSet). The C
 * side only looks names up in it; which names exist, which certificate group
 * each one selects, and the precedence between groups are decided in
 * TypeScript (src/tls/certificates.ts).
 */
typedef struct {
  sni_entry *entries; /* sorted by name (strcmp), for bsearch */
  size_t count;
  SSL_CTX **contexts; /* contexts[0] is the default (unknown or absent server name) */
  size_t ncontexts;
  SSL_CTX *owner; /* the listening context itself: not referenced, or it could never be freed */
} sni_table;

typedef struct {
  SSL_CTX *ctx;
  unsigned char alpn[256]; /* server preference list in ALPN wire format (RFC 7301 3.1) */
  unsigned int alpn_len;
  sni_table *sni; /* on the listening context only; NULL elsewhere */
  sni_table *acme; /* TLS-ALPN-01 challenge contexts by exact name (acmeTableSet); listening context only */
} aludel_ctx;


static void sni_table_free(sni_table *t) {
  if (t == NULL) return;
  for (size_t i = 0; i < t->count; i++) free(t->entries[i].name);
  for (size_t i = 0; i < t->ncontexts; i++)
    if (t->contexts[i] != NULL && t->contexts[i] != t->owner) aludel_ossl.SSL_CTX_free(t->contexts[i]);
  free(t->entries);
  free(t->contexts);
  free(t);
}

/*
 * Why the aludel_ctx hangs off the SSL_CTX's ex_data: OpenSSL calls our ALPN
 * and servername callbacks with it for as long as any SSL still uses the
 * context, and after a reconfigure (or an SNI switch) that can outlive the
 * JavaScript object that created it. The ex_data free callback runs when the
 * context's last reference goes (SSL_CTX_free -> CRYPTO_free_ex_data, which
 * calls free callbacks outside its lock, so freeing other contexts here is safe).
 */
static int ctx_ex_index = -1;

static void ctx_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
  (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
  aludel_ctx *c = (aludel_ctx *)ptr;
  if (c == NULL) return;
  sni_table_free(c->sni);
  sni_table_free(c->acme);
  free(c);
}

static void ctx_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  aludel_ctx *c = (aludel_ctx *)data;
  /* Drops the JavaScript object's reference only: SSLs and SNI tables hold their own. */
  aludel_ossl.SSL_CTX_free(c->ctx);
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

static int sni_entry_cmp(const void *a, const void *b) {
  return strcmp(((const sni_entry *)a)->name, ((const sni_entry *)b)->name);
}

static const sni_entry *sni_find(const sni_table *t, const char *name) {
  sni_entry key = {(char *)name, 0};
  return (const sni_entry *)bsearch(&key, t->entries, t->count, sizeof key, sni_entry_cmp);
}

/*
 * The context for a server name: the exact name, else the wildcard for its
 * parent domain ("a.example.com" -> "*.example.com": a wildcard covers exactly
 * one leftmost label, RFC 6125 6.4.3), else the default (0). DNS names compare
 * case-insensitively (RFC 4343); SNI carries A-labels, so ASCII folding will do
 * (RFC 6066 3). The same rules as lookupSni() in src/tls/certificates.ts.
 */
static bool sni_normalise(const char *servername, char name[256]) {
  size_t n = servername ? strlen(servername) : 0;
  if (n > 0 && servername[n - 1] == '.') n--; /* an absolute name: same host */
  if (n == 0 || n >= 255) return false;
  for (size_t i = 0; i < n; i++) {
    char ch = servername[i];
    name[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
  }
  name[n] = 0;
  return true;
}

static size_t sni_lookup(const sni_table *t, const char *servername) {
  char name[256];
  if (!sni_normalise(servername, name)) return 0;
  const sni_entry *e = sni_find(t, name);
  if (e != NULL) return e->target;
  char *dot = strchr(name, '.');
  if (dot != NULL && dot != name && dot[1] != 0) {
    char wild[257];
    wild[0] = '*';
    memcpy(wild + 1, dot, strlen(dot) + 1);
    e = sni_find(t, wild);
    if (e != NULL) return e->target;
  }
  return 0;
}

/*
 * TLS-ALPN-01 (RFC 8737): the CA's validation handshake offers the ALPN
 * protocol "acme-tls/1" and names the domain in SNI; it must get the
 * self-signed challenge certificate for exactly that name (no wildcard, 3),
 * and only it: ordinary clients never offer acme-tls/1, so they never see one.
 * The servername callback cannot read the ALPN list (SSL_client_hello_get0_ext
 * is valid only inside the ClientHello callback), so the ClientHello callback,
 * which OpenSSL runs first (statem_srvr.c tls_early_post_process_client_hello),
 * marks the connection, and the servername callback switches it.
 */
static const unsigned char ACME_TLS_1[] = "acme-tls/1";

static bool alpn_offers_acme(const unsigned char *p, size_t len) {
  /* ProtocolNameList: a 2-byte length, then 1-byte-length names (RFC 7301 3.1). */
  if (len < 2 || (size_t)((p[0] << 8) | p[1]) != len - 2) return false;
  for (size_t i = 2; i < len;) {
    size_t n = p[i++];
    if (n == 0 || n > len - i) return false;
    if (n == sizeof ACME_TLS_1 - 1 && memcmp(p + i, ACME_TLS_1, n) == 0) return true;
    i += n;
  }
  return false;
}

static int client_hello_cb(SSL *ssl, int *alert, void *arg) {
  (void)alert, (void)arg;
  const unsigned char *ext = NULL;
  size_t len = 0;
  aludel_ssl *s = (aludel_ssl *)aludel_ossl.SSL_get_ex_data(ssl, 0);
  if (s != NULL &&
      aludel_ossl.SSL_client_hello_get0_ext(ssl, ALUDEL_TLSEXT_TYPE_application_layer_protocol_negotiation, &ext, &len))
    s->acme_alpn = alpn_offers_acme(ext, len);
  return ALUDEL_SSL_CLIENT_HELLO_SUCCESS;
}

/* The challenge context for a connection that offered acme-tls/1 and names a pending domain, else NULL. */
static SSL_CTX *acme_context(const aludel_ctx *c, SSL *ssl) {
  aludel_ssl *s = (aludel_ssl *)aludel_ossl.SSL_get_ex_data(ssl, 0);
  char name[256];
  if (c->acme == NULL || s == NULL || !s->acme_alpn ||
      !sni_normalise(aludel_ossl.SSL_get_servername(ssl, ALUDEL_TLSEXT_NAMETYPE_host_name), name))
    return NULL;
  const sni_entry *e = sni_find(c->acme, name);
  return e == NULL ? NULL : c->acme->contexts[e->target];
}

/*
 * The servername callback (RFC 6066 3), set on listening contexts only. OpenSSL
 * calls it after parsing the ClientHello's extensions, before it picks the
 * cipher, the signature algorithm and the certificate (statem_srvr.c:
 * tls_early_post_process_client_hello -> final_server_name), whether or not
 * the client sent a name. SSL_set_SSL_CTX then swaps the certificates (the
 * whole CERT: every key type of the group, with its chain) and the session id
 * context, and takes a reference on the new context, so the connection keeps
 * it whatever TypeScript installs next.
 */
static int servername_cb(SSL *ssl, int *alert, void *arg) {
  aludel_ctx *c = (aludel_ctx *)arg;
  SSL_CTX *next = acme_context(c, ssl);
  if (next == NULL && (c->sni == NULL || c->sni->ncontexts == 0)) return ALUDEL_SSL_TLSEXT_ERR_OK;
  if (next == NULL)
    next = c->sni->contexts[sni_lookup(c->sni, aludel_ossl.SSL_get_servername(ssl, ALUDEL_TLSEXT_NAMETYPE_host_name))];
  if (aludel_ossl.SSL_set_SSL_CTX(ssl, next) == NULL) {
    *alert = ALUDEL_SSL_AD_INTERNAL_ERROR; /* only on allocation failure (ssl_cert_dup) */
    return ALUDEL_SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  return ALUDEL_SSL_TLSEXT_ERR_OK;
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

static aludel_ctx *unwrap_ctx(napi_env env, napi_value v) {
  aludel_ctx *c = NULL;
  if (napi_unwrap(env, v, (void **)&c) != napi_ok || c == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "not a TLS context");
    return NULL;
  }
  return c;
}

/* For native/tickets.c: the SSL_CTX behind a ctxNew() object (NULL with a TypeError pending). */
SSL_CTX *aludel_ssl_ctx_of(napi_env env, napi_value v) {
  aludel_ctx *c = unwrap_ctx(env, v);
  return c == NULL ? NULL : c->ctx;
}

/* The context owns c from here on (ex_data): failing paths free the context only. */
#define CTX_FAIL(what)                                                                      \
  do {                                                                                      \
    aludel_ossl.SSL_CTX_free(c->ctx);                                                       \
    return aludel_throw(env, "ERR_TLS_CONTEXT", 0, what, what " failed", true);             \
  } while (0)

/* Same, naming the file in the message. */
static napi_value ctx_fail_file(napi_env env, aludel_ctx *c, const char *call, const char *file) {
  char message[4400];
  snprintf(message, sizeof message, "%s(%s) failed", call, file);
  aludel_ossl.SSL_CTX_free(c->ctx);
  return aludel_throw(env, "ERR_TLS_CONTEXT", 0, call, message, true);
}

/*
 * Loads each {certFile, keyFile} of the array into the context. OpenSSL keeps
 * one certificate slot per key type (RSA, RSA-PSS, EC, Ed25519, Ed448), each
 * with its own chain: SSL_CTX_use_certificate_chain_file fills the slot of the
 * leaf's key type and attaches the following certificates as its chain, and
 * SSL_CTX_use_PrivateKey_file the slot of the key's type. With an RSA and an
 * ECDSA pair in one context, OpenSSL picks per handshake from the client's
 * signature_algorithms (TLS 1.3) or cipher list (TLS 1.2) (ssl/t1_lib.c
 * tls_choose_sigalg). SSL_CTX_check_private_key checks the slot just set.
 */
static napi_value ctx_use_certificates(napi_env env, aludel_ctx *c, napi_value list) {
  static char cert[4096], key[4096];
  uint32_t n = 0;
  bool is_array = false;
  if (napi_is_array(env, list, &is_array) != napi_ok || !is_array) {
    aludel_ossl.SSL_CTX_free(c->ctx);
    napi_throw_type_error(env, "ERR_INVALID_ARG", "certificates must be an array");
    return NULL;
  }
  napi_get_array_length(env, list, &n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value pair;
    if (napi_get_element(env, list, i, &pair) != napi_ok ||
        !get_string_prop(env, pair, "certFile", cert, sizeof cert) ||
        !get_string_prop(env, pair, "keyFile", key, sizeof key)) {
      aludel_ossl.SSL_CTX_free(c->ctx);
      return NULL;
    }
    if (!aludel_ossl.SSL_CTX_use_certificate_chain_file(c->ctx, cert))
      return ctx_fail_file(env, c, "SSL_CTX_use_certificate_chain_file", cert);
    if (!aludel_ossl.SSL_CTX_use_PrivateKey_file(c->ctx, key, ALUDEL_SSL_FILETYPE_PEM))
      return ctx_fail_file(env, c, "SSL_CTX_use_PrivateKey_file", key);
    if (!aludel_ossl.SSL_CTX_check_private_key(c->ctx))
      return ctx_fail_file(env, c, "SSL_CTX_check_private_key", key);
  }
  napi_value done;
  napi_get_boolean(env, true, &done);
  return done;
}

/*
 * ctxNew({certificates: [{certFile, keyFile}], minVersion, maxVersion, cipherList,
 *         cipherSuites, ktls, alpn})
 * alpn: a Buffer in wire format. Versions: 0x0303 = TLS 1.2, 0x0304 = TLS 1.3.
 */
static napi_value ctx_new(napi_env env, napi_callback_info info) {
  napi_value argv[1], obj, certs;
  static char list[2048], suites[1024];
  if (!aludel_args(env, info, 1, argv)) return NULL;
  if (aludel_ossl_handle == NULL)
    return aludel_throw(env, "ERR_OPENSSL_NOT_LOADED", 0, "ctxNew", "call loadOpenssl() first", false);
  if (!get_string_prop(env, argv[0], "cipherList", list, sizeof list) ||
      !get_string_prop(env, argv[0], "cipherSuites", suites, sizeof suites) ||
      napi_get_named_property(env, argv[0], "certificates", &certs) != napi_ok)
    return NULL;
  aludel_ossl.ERR_clear_error();
  if (ctx_ex_index < 0) {
    ctx_ex_index = aludel_ossl.CRYPTO_get_ex_new_index(ALUDEL_CRYPTO_EX_INDEX_SSL_CTX, 0, NULL, NULL, NULL, ctx_ex_free);
    if (ctx_ex_index < 0)
      return aludel_throw(env, "ERR_TLS_CONTEXT", 0, "CRYPTO_get_ex_new_index", "CRYPTO_get_ex_new_index failed", true);
  }
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
  c->ctx = aludel_ossl.SSL_CTX_new(aludel_ossl.TLS_server_method());
  if (c->ctx == NULL) {
    free(c);
    return aludel_throw(env, "ERR_TLS_CONTEXT", 0, "SSL_CTX_new", "SSL_CTX_new failed", true);
  }
  if (!aludel_ossl.SSL_CTX_set_ex_data(c->ctx, ctx_ex_index, c)) {
    aludel_ossl.SSL_CTX_free(c->ctx);
    free(c);
    return aludel_throw(env, "ERR_TLS_CONTEXT", 0, "SSL_CTX_set_ex_data", "SSL_CTX_set_ex_data failed", true);
  }
  /* kTLS needs no compression (already off in 3.0) and forces no renegotiation (RFC 5746 is moot).
     IGNORE_UNEXPECTED_EOF (as nginx sets it): a client's TCP FIN without close_notify (RFC 8446
     6.1) ends its direction only, as in OpenSSL 1.1.1. Without it OpenSSL 3 makes that FIN a fatal
     error and refuses every later SSL_write, so a client that half-closes below TLS (RFC 9293
     3.6) while still reading could never be sent the rest of the answer. */
  uint64_t options = ALUDEL_SSL_OP_NO_COMPRESSION | ALUDEL_SSL_OP_NO_RENEGOTIATION | ALUDEL_SSL_OP_IGNORE_UNEXPECTED_EOF;
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
  /* readAhead (never with ktls, see contextOptions in tls-setup.ts): SSL_new copies it to each
     connection, so the handshake's reads take whole flights (SSL_CTX_set_read_ahead). */
  if (get_bool_prop(env, argv[0], "readAhead")) aludel_ossl.SSL_CTX_ctrl(c->ctx, ALUDEL_SSL_CTRL_SET_READ_AHEAD, 1, NULL);
  int64_t minv = get_int_prop(env, argv[0], "minVersion"), maxv = get_int_prop(env, argv[0], "maxVersion");
  if ((minv && !aludel_ossl.SSL_CTX_ctrl(c->ctx, ALUDEL_SSL_CTRL_SET_MIN_PROTO_VERSION, (long)minv, NULL)) ||
      (maxv && !aludel_ossl.SSL_CTX_ctrl(c->ctx, ALUDEL_SSL_CTRL_SET_MAX_PROTO_VERSION, (long)maxv, NULL)))
    CTX_FAIL("SSL_CTX_set_min/max_proto_version");
  if (list[0] && !aludel_ossl.SSL_CTX_set_cipher_list(c->ctx, list)) CTX_FAIL("SSL_CTX_set_cipher_list");
  if (suites[0] && !aludel_ossl.SSL_CTX_set_ciphersuites(c->ctx, suites)) CTX_FAIL("SSL_CTX_set_ciphersuites");
  if (ctx_use_certificates(env, c, certs) == NULL) return NULL;
  /* A session id context lets the server session cache resume sessions (TLS 1.2 ids).
     Every context gets the same one, so a session stays valid whichever
     certificate group SNI selected (SSL_set_SSL_CTX carries it over). */
  static const unsigned char sid[] = "aludel";
  aludel_ossl.SSL_CTX_set_session_id_context(c->ctx, sid, sizeof sid - 1);
  if (c->alpn_len > 0) aludel_ossl.SSL_CTX_set_alpn_select_cb(c->ctx, alpn_select, c);
  aludel_ossl.SSL_CTX_set_msg_callback(c->ctx, msg_callback);
  napi_create_object(env, &obj);
  if (napi_wrap(env, obj, c, ctx_finalize, NULL, NULL) != napi_ok) {
    aludel_ossl.SSL_CTX_free(c->ctx);
    return NULL;
  }
  return obj;
}

static sni_table *table_fail(napi_env env, sni_table *t, bool type_error, const char *message) {
  sni_table_free(t);
  if (message == NULL) return NULL; /* the exception is already pending */
  if (type_error) napi_throw_type_error(env, "ERR_INVALID_ARG", message);
  else napi_throw_range_error(env, "ERR_INVALID_ARG", message);
  return NULL;
}

/* The table of (contexts, names, targets); NULL with an exception pending. `owner` is not referenced. */
static sni_table *table_from_js(napi_env env, const napi_value argv[3], SSL_CTX *owner, size_t min_contexts) {
  uint32_t ncontexts = 0, nnames = 0, ntargets = 0;
  bool a1 = false, a2 = false, a3 = false;
  napi_is_array(env, argv[0], &a1);
  napi_is_array(env, argv[1], &a2);
  napi_is_array(env, argv[2], &a3);
  if (!a1 || !a2 || !a3) return table_fail(env, NULL, true, "expected (ctx, contexts[], names[], targets[])");
  napi_get_array_length(env, argv[0], &ncontexts);
  napi_get_array_length(env, argv[1], &nnames);
  napi_get_array_length(env, argv[2], &ntargets);
  if (ncontexts < min_contexts || nnames != ntargets)
    return table_fail(env, NULL, false, "need the contexts and one target per name");
  sni_table *t = calloc(1, sizeof *t);
  if (t == NULL) {
    aludel_throw_errno(env, ENOMEM, "calloc");
    return NULL;
  }
  t->owner = owner;
  t->contexts = calloc(ncontexts > 0 ? ncontexts : 1, sizeof *t->contexts);
  t->entries = calloc(nnames > 0 ? nnames : 1, sizeof *t->entries);
  if (t->contexts == NULL || t->entries == NULL) {
    sni_table_free(t);
    aludel_throw_errno(env, ENOMEM, "calloc");
    return NULL;
  }
  for (uint32_t i = 0; i < ncontexts; i++) {
    napi_value v;
    napi_get_element(env, argv[0], i, &v);
    aludel_ctx *c = unwrap_ctx(env, v);
    if (c == NULL) return table_fail(env, t, false, NULL);
    if (c->ctx != t->owner) aludel_ossl.SSL_CTX_up_ref(c->ctx);
    t->contexts[i] = c->ctx;
    t->ncontexts = i + 1;
  }
  for (uint32_t i = 0; i < nnames; i++) {
    napi_value v;
    char name[256];
    int32_t target = -1;
    napi_get_element(env, argv[1], i, &v);
    if (!aludel_arg_string(env, v, name, sizeof name)) return table_fail(env, t, false, NULL);
    napi_get_element(env, argv[2], i, &v);
    if (!aludel_arg_int32(env, v, &target)) return table_fail(env, t, false, NULL);
    if (target < 0 || (uint32_t)target >= ncontexts) return table_fail(env, t, false, "target outside contexts");
    t->entries[i].name = strdup(name);
    t->entries[i].target = (unsigned int)target;
    t->count = i + 1;
    if (t->entries[i].name == NULL) {
      sni_table_free(t);
      aludel_throw_errno(env, ENOMEM, "strdup");
      return NULL;
    }
  }
  qsort(t->entries, t->count, sizeof *t->entries, sni_entry_cmp);
  return t;
}

/*
 * sniTableSet(listenCtx, contexts, names, targets): installs (or replaces) the
 * server-name table of a listening context. names[i] (lower case, exact or
 * "*.parent") selects contexts[targets[i]]; contexts[0] is the default.
 *
 * Why every context in the table is built by ctxNew with the listener's own
 * settings: SSL_set_SSL_CTX (ssl/ssl_lib.c) replaces only the certificates
 * (ssl->cert) and the session id context, and takes a reference on the new
 * context. Everything SSL_new copied from the listening context stays: the
 * options (SSL_OP_ENABLE_KTLS among them), the protocol version bounds and
 * the cipher lists, the mode, the message callback, and session_ctx, whose
 * session cache and ticket keys serve every group (so resumption works
 * across groups). The ALPN callback, on the other hand, is read from
 * ssl->ctx when the ClientHello is processed (after this switch), so each
 * group context needs its own. Building all of them from one TlsOptions keeps
 * both sources equal.
 *
 * The old table is released at once: connections that already switched hold
 * their own context reference, and those still waiting for their ClientHello
 * use the new table. All of this runs on the JavaScript thread, as do all
 * handshakes, so the swap is atomic with respect to the callback.
 */
static napi_value sni_table_set(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!aludel_args(env, info, 4, argv)) return NULL;
  aludel_ctx *listen = unwrap_ctx(env, argv[0]);
  if (listen == NULL) return NULL;
  sni_table *t = table_from_js(env, argv + 1, listen->ctx, 1);
  if (t == NULL) return NULL;
  sni_table *old = listen->sni;
  listen->sni = t;
  sni_table_free(old);
  aludel_ossl.SSL_CTX_ctrl(listen->ctx, ALUDEL_SSL_CTRL_SET_TLSEXT_SERVERNAME_ARG, 0, listen);
  aludel_ossl.SSL_CTX_callback_ctrl(listen->ctx, ALUDEL_SSL_CTRL_SET_TLSEXT_SERVERNAME_CB,
                                    (void (*)(void))(aludel_servername_cb)servername_cb);
  return NULL;
}

/*
 * acmeTableSet(listenCtx, contexts, names, targets): installs (or, with no
 * names, removes) the TLS-ALPN-01 challenge contexts of a listening context
 * whose SNI table is set (the servername callback consults both). names are
 * exact and lower case. The ClientHello callback is set only while a
 * challenge is pending, so handshakes pay nothing for it otherwise. Swapped
 * on the JavaScript thread, as sniTableSet is, for the same reasons.
 */
static napi_value acme_table_set(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!aludel_args(env, info, 4, argv)) return NULL;
  aludel_ctx *listen = unwrap_ctx(env, argv[0]);
  if (listen == NULL) return NULL;
  sni_table *t = table_from_js(env, argv + 1, listen->ctx, 0);
  if (t == NULL) return NULL;
  if (t->count == 0) {
    sni_table_free(t);
    t = NULL;
  }
  sni_table *old = listen->acme;
  listen->acme = t;
  sni_table_free(old);
  aludel_ossl.SSL_CTX_set_client_hello_cb(listen->ctx, t == NULL ? NULL : client_hello_cb, NULL);
  return NULL;
}

/* sniLookup(listenCtx, servername) -> the table index the callback would choose (for tests and logs). */
static napi_value sni_lookup_js(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  char name[1024];
  napi_valuetype t;
  if (!aludel_args(env, info, 2, argv)) return NULL;
  aludel_ctx *c = unwrap_ctx(env, argv[0]);
  if (c == NULL) return NULL;
  napi_typeof(env, argv[1], &t);
  const char *servername = NULL;
  if (t == napi_string) {
    if (!aludel_arg_string(env, argv[1], name, sizeof name)) return NULL;
    servername = name;
  }
  if (c->sni == NULL) return aludel_int(env, 0);
  return aludel_int(env, (int64_t)sni_lookup(c->sni, servername));
}

/* ---------- connections ---------- */

static void ssl_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  aludel_ssl *s = (aludel_ssl *)data;
  if (s->ssl != NULL) aludel_ossl.SSL_free(s->ssl);
  free(s);
}

/*
 * A connection's JS handle is an external (napi_create_external), not an
 * object with the struct wrapped into it (napi_wrap): every read and write
 * takes the handle, and napi_unwrap looks the pointer up as a private
 * property of the object (v8::Object::GetPrivate, about 700 instructions a
 * call, three calls per keep-alive request, counted by bench/request-cost.ts),
 * where napi_get_value_external reads it from the external itself. Either
 * is freed by its finalizer once collected; anything else passed is refused
 * (napi_invalid_arg) as before.
 */
static aludel_ssl *ssl_of_handle(napi_env env, napi_value v) {
  void *data = NULL;
  if (napi_get_value_external(env, v, &data) != napi_ok) return NULL;
  return (aludel_ssl *)data;
}

aludel_ssl *aludel_ssl_unwrap(napi_env env, napi_value v) {
  aludel_ssl *s = ssl_of_handle(env, v);
  if (s == NULL || s->ssl == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "not an open TLS connection");
    return NULL;
  }
  return s;
}

napi_value aludel_ssl_wrap(napi_env env, aludel_ssl *s) {
  napi_value obj;
  aludel_ossl.SSL_set_ex_data(s->ssl, 0, s);
  if (napi_create_external(env, s, ssl_finalize, NULL, &obj) != napi_ok) {
    ssl_finalize(env, s, NULL);
    return NULL;
  }
  return obj;
}

#define unwrap_ssl aludel_ssl_unwrap

/* The connection of a function whose only argument is the connection. */
static aludel_ssl *ssl_arg(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!aludel_args(env, info, 1, argv)) return NULL;
  return unwrap_ssl(env, argv[0]);
}

/* sslNew(ctx, fd) -> connection object in server (accept) state on a socket BIO. */
static napi_value ssl_new(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  if (!aludel_args(env, info, 2, argv) || !aludel_arg_int32(env, argv[1], &fd)) return NULL;
  aludel_ctx *c = unwrap_ctx(env, argv[0]);
  if (c == NULL) return NULL;
  aludel_ssl *s = calloc(1, sizeof *s);
  if (s == NULL) return aludel_throw_errno(env, ENOMEM, "calloc");
  aludel_ossl.ERR_clear_error();
  s->ssl = aludel_ossl.SSL_new(c->ctx);
  /* A socket BIO (SSL_set_fd), not a memory BIO: kTLS needs the kernel to own the socket. */
  if (s->ssl == NULL || !aludel_ossl.SSL_set_fd(s->ssl, fd)) {
    ssl_finalize(env, s, NULL);
    return aludel_throw(env, "ERR_TLS_CONNECTION", 0, "SSL_new", "SSL_new/SSL_set_fd failed", true);
  }
  aludel_ossl.SSL_set_accept_state(s->ssl);
  return aludel_ssl_wrap(env, s);
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
  aludel_err_clear();
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
 * The process's two scratch buffers (src/tls/ktls-connection.ts: one for
 * the plaintext of every read, one where small writes are gathered), given
 * once by scratchSet instead of with each read and write: finding a
 * Buffer's bytes (napi_get_buffer_info -> v8 JSTypedArray::GetBuffer) and
 * taking its offset and length cost about 400 instructions a call, two
 * calls per keep-alive request (bench/request-cost.ts). Held per N-API
 * environment (napi_set_instance_data: each worker thread loads its own
 * instance of the addon and has its own buffers), with a strong reference
 * each, so their bytes stay where they are for as long as the addon may
 * use them: an ArrayBuffer's backing store does not move while it lives.
 */
typedef struct {
  napi_ref refs[2];
  char *data[2];
  size_t size[2];
} io_scratch;

static void scratch_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  io_scratch *sc = (io_scratch *)data;
  for (int i = 0; i < 2; i++)
    if (sc->refs[i] != NULL) napi_delete_reference(env, sc->refs[i]);
  free(sc);
}

/*
 * scratchSet(readBuffer, writeBuffer): once per environment. Again with the
 * same two buffers (another wrapper of this addon): nothing to do. With
 * others (a second copy of the module): refused, and that copy passes its
 * buffers with each call, for the ones set stay the ones read into.
 */
static napi_value scratch_set(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  io_scratch *old = NULL;
  if (!aludel_args(env, info, 2, argv)) return NULL;
  if (napi_get_instance_data(env, (void **)&old) == napi_ok && old != NULL) {
    void *base[2] = {NULL, NULL};
    size_t size;
    for (int i = 0; i < 2; i++)
      if (napi_get_buffer_info(env, argv[i], &base[i], &size) != napi_ok) base[i] = NULL;
    if (base[0] == old->data[0] && base[1] == old->data[1]) return NULL;
    return aludel_throw(env, "ERR_INVALID_STATE", 0, "scratchSet", "other scratch buffers are already set", false);
  }
  io_scratch *sc = calloc(1, sizeof *sc);
  if (sc == NULL) return aludel_throw_errno(env, ENOMEM, "calloc");
  for (int i = 0; i < 2; i++) {
    void *base = NULL;
    if (napi_get_buffer_info(env, argv[i], &base, &sc->size[i]) != napi_ok || sc->size[i] == 0 ||
        sc->size[i] >= ALUDEL_READ_MORE) {
      scratch_finalize(env, sc, NULL);
      napi_throw_type_error(env, "ERR_INVALID_ARG", "expected a non-empty Buffer under 1 GiB");
      return NULL;
    }
    sc->data[i] = (char *)base;
    napi_create_reference(env, argv[i], 1, &sc->refs[i]);
  }
  if (napi_set_instance_data(env, sc, scratch_finalize, NULL) != napi_ok) {
    scratch_finalize(env, sc, NULL);
    return aludel_throw(env, "ERR_INVALID_STATE", 0, "scratchSet", "napi_set_instance_data failed", false);
  }
  return NULL;
}

/* The connection and length of readScratch() / writeScratch(), checked against scratch `which`. */
static aludel_ssl *scratch_args(napi_env env, napi_callback_info info, int which, char **data, size_t *want) {
  napi_value argv[2];
  io_scratch *sc = NULL;
  int64_t n;
  if (!aludel_args(env, info, 2, argv) || !aludel_arg_int64(env, argv[1], &n)) return NULL;
  if (napi_get_instance_data(env, (void **)&sc) != napi_ok || sc == NULL) {
    napi_throw_error(env, "ERR_INVALID_STATE", "scratchSet() was not called");
    return NULL;
  }
  if (n <= 0 || (uint64_t)n > sc->size[which]) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "length outside the scratch buffer");
    return NULL;
  }
  *data = sc->data[which];
  *want = (size_t)n;
  return unwrap_ssl(env, argv[0]);
}

/*
 * readScratch(conn, length) / writeScratch(conn, length): read() and write()
 * on the first `length` bytes of the read or the write scratch. A read's
 * bytes come with ALUDEL_READ_MORE added when OpenSSL still holds bytes read
 * from the socket (SSL_has_pending): the caller's next question after a
 * short read, whose answer decides between reading again and waiting for the
 * poll (a second crossing into the addon per request). SSL_has_pending makes
 * no system call and changes no state: it reads the record layer's counters.
 */
static napi_value scratch_io(napi_env env, napi_callback_info info, bool writing) {
  char *data;
  size_t want, n = 0;
  aludel_ssl *s = scratch_args(env, info, writing ? 1 : 0, &data, &want);
  if (s == NULL) return NULL;
  aludel_err_clear();
  errno = 0;
  int ret = writing ? aludel_ossl.SSL_write_ex(s->ssl, data, want, &n) : aludel_ossl.SSL_read_ex(s->ssl, data, want, &n);
  if (ret != 1) return io_result(env, s, ret, errno, writing ? "SSL_write_ex" : "SSL_read_ex");
  if (!writing && aludel_ossl.SSL_has_pending(s->ssl) == 1) return aludel_int(env, (int64_t)n + ALUDEL_READ_MORE);
  return aludel_int(env, (int64_t)n);
}

static napi_value ssl_read_scratch(napi_env env, napi_callback_info info) {
  return scratch_io(env, info, false);
}

static napi_value ssl_write_scratch(napi_env env, napi_callback_info info) {
  return scratch_io(env, info, true);
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

/*
 * readAhead(conn): from now on each read(2) takes as much as the socket
 * holds (up to OpenSSL's record buffer), not a record's 5-byte header and
 * then its body in two calls. Only for a connection whose records OpenSSL
 * decrypts itself (no kTLS RX): bytes read ahead must never be skipped by
 * the kernel. The caller then asks hasPending() before waiting for the poll.
 */
static napi_value ssl_read_ahead(napi_env env, napi_callback_info info) {
  aludel_ssl *s = ssl_arg(env, info);
  if (s == NULL) return NULL;
  aludel_ossl.SSL_ctrl(s->ssl, ALUDEL_SSL_CTRL_SET_READ_AHEAD, 1, NULL);
  return NULL;
}

/* hasPending(conn) -> true while OpenSSL holds bytes read from the socket and not yet returned (SSL_has_pending). */
static napi_value ssl_pending(napi_env env, napi_callback_info info) {
  napi_value b;
  aludel_ssl *s = ssl_arg(env, info);
  if (s == NULL) return NULL;
  napi_get_boolean(env, aludel_ossl.SSL_has_pending(s->ssl) == 1, &b);
  return b;
}

/* free(conn): releases the SSL now (the fd is the caller's to close). */
static napi_value ssl_free(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!aludel_args(env, info, 1, argv)) return NULL;
  aludel_ssl *s = ssl_of_handle(env, argv[0]);
  if (s == NULL) return NULL;
  if (s->ssl != NULL) aludel_ossl.SSL_free(s->ssl);
  s->ssl = NULL;
  return NULL;
}

void aludel_register_tls(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"loadOpenssl", NULL, load_openssl, NULL, NULL, NULL, napi_default, NULL},
      {"ctxNew", NULL, ctx_new, NULL, NULL, NULL, napi_default, NULL},
      {"sniTableSet", NULL, sni_table_set, NULL, NULL, NULL, napi_default, NULL},
      {"sniLookup", NULL, sni_lookup_js, NULL, NULL, NULL, napi_default, NULL},
      {"acmeTableSet", NULL, acme_table_set, NULL, NULL, NULL, napi_default, NULL},
      {"sslNew", NULL, ssl_new, NULL, NULL, NULL, napi_default, NULL},
      {"handshake", NULL, ssl_handshake, NULL, NULL, NULL, napi_default, NULL},
      {"read", NULL, ssl_read, NULL, NULL, NULL, napi_default, NULL},
      {"write", NULL, ssl_write, NULL, NULL, NULL, napi_default, NULL},
      {"scratchSet", NULL, scratch_set, NULL, NULL, NULL, napi_default, NULL},
      {"readScratch", NULL, ssl_read_scratch, NULL, NULL, NULL, napi_default, NULL},
      {"writeScratch", NULL, ssl_write_scratch, NULL, NULL, NULL, napi_default, NULL},
      {"sendfile", NULL, ssl_sendfile, NULL, NULL, NULL, napi_default, NULL},
      {"shutdown", NULL, ssl_shutdown, NULL, NULL, NULL, napi_default, NULL},
      {"ktlsState", NULL, ssl_ktls_state, NULL, NULL, NULL, napi_default, NULL},
      {"info", NULL, ssl_info, NULL, NULL, NULL, napi_default, NULL},
      {"keyUpdateRequested", NULL, ssl_key_update_requested, NULL, NULL, NULL, napi_default, NULL},
      {"readAhead", NULL, ssl_read_ahead, NULL, NULL, NULL, napi_default, NULL},
      {"hasPending", NULL, ssl_pending, NULL, NULL, NULL, napi_default, NULL},
      {"sslFree", NULL, ssl_free, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

/* ---------- for native/copy.c ---------- */

/* The SSL of a connection object; NULL (TypeError pending) once it is freed. */
SSL *aludel_ssl_of(napi_env env, napi_value v) {
  aludel_ssl *s = unwrap_ssl(env, v);
  return s != NULL ? s->ssl : NULL;
}

/* An SSL_*_ex result of `ssl` as a state number, or a thrown error (see io_result). */
napi_value aludel_ssl_result(napi_env env, SSL *ssl, int ret, int saved_errno, const char *op) {
  aludel_ssl s = {.ssl = ssl};
  return io_result(env, &s, ret, saved_errno, op);
}

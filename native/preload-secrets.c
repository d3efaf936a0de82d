/*
 * Record keys for the kernel, from the program's own OpenSSL:
 * - TLS 1.2 (RFC 5246 §6.3): the key block PRF(master secret, "key
 *   expansion", server_random + client_random) with the suite's PRF hash. The
 *   master secret and randoms come from the API (1.1.1, 3.x) or from the
 *   checked structures (1.0.2, preload-ossl102.c).
 * - TLS 1.3 (RFC 8446 §7.1, §7.3): the application traffic secrets come from
 *   the keylog callback (1.1.1 has no other way to get them), and key and IV
 *   are HKDF-Expand-Label(secret, "key"/"iv", "", length).
 * - Sequence numbers: the message callback sees every record header that
 *   OpenSSL writes or reads (SSL3_RT_HEADER, 1.1.0+); the counts restart at
 *   each key change (ChangeCipherSpec in TLS 1.2, the keylog line of the
 *   traffic secret in TLS 1.3, which OpenSSL emits as it switches that
 *   direction's keys). So the server's NewSessionTickets, sent under the
 *   application keys inside SSL_accept, are counted. The program's own
 *   keylog and message callbacks are kept and called after ours.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "preload.h"

/* ---- derivations ---- */

/* TLS 1.2 PRF (RFC 5246 §5): P_hash(secret, label + seed) with the suite's hash, n bytes into out. */
static int prf(const EVP_MD *md, const unsigned char *secret, size_t secret_len, const char *label, const unsigned char *seed, size_t seed_len, unsigned char *out,
               size_t n) {
  unsigned char ls[128], a[64], block[64 + 128];
  size_t label_len = strlen(label), ls_len = label_len + seed_len;
  int hlen = aludel_real.md_size(md);
  if (hlen <= 0 || hlen > 64 || ls_len > sizeof ls) return 0;
  memcpy(ls, label, label_len);
  memcpy(ls + label_len, seed, seed_len);
  unsigned int alen;
  int ok = 1;
  /* A(1) = HMAC(secret, label + seed) */
  if (aludel_real.hmac(md, secret, (int)secret_len, ls, ls_len, a, &alen) == NULL) return 0;
  for (size_t done = 0; ok && done < n;) {
    unsigned char chunk[64];
    unsigned int clen;
    memcpy(block, a, (size_t)hlen);
    memcpy(block + hlen, ls, ls_len);
    if (aludel_real.hmac(md, secret, (int)secret_len, block, (size_t)hlen + ls_len, chunk, &clen) == NULL) ok = 0;
    size_t take = !ok ? 0 : n - done < clen ? n - done : clen;
    memcpy(out + done, chunk, take);
    explicit_bzero(chunk, sizeof chunk);
    done += take;
    /* A(i+1) = HMAC(secret, A(i)) */
    if (ok && aludel_real.hmac(md, secret, (int)secret_len, a, (size_t)hlen, a, &alen) == NULL) ok = 0;
  }
  explicit_bzero(a, sizeof a);
  explicit_bzero(block, sizeof block);
  return ok;
}

/* The kernel cipher, key and IV lengths of a suite; 0 when the kernel has none for it. */
static int cipher_of_nid(int nid, enum aludel_cipher *cipher, size_t *keylen) {
  switch (nid) {
    case P_NID_aes_128_gcm: *cipher = ALUDEL_AES_128_GCM; *keylen = 16; return 1;
    case P_NID_aes_256_gcm: *cipher = ALUDEL_AES_256_GCM; *keylen = 32; return 1;
    case P_NID_chacha20_poly1305: *cipher = ALUDEL_CHACHA20_POLY1305; *keylen = 32; return 1;
    default: return 0;
  }
}

/* 1.0.2 has no SSL_CIPHER_get_cipher_nid nor get_handshake_digest: its GCM suites' names say both (…-AES128-GCM-SHA256, …-AES256-GCM-SHA384). */
static int cipher_of_102_name(const char *name, enum aludel_cipher *cipher, size_t *keylen, const EVP_MD **md) {
  if (name == NULL) return 0;
  if (strstr(name, "AES128-GCM") != NULL) *cipher = ALUDEL_AES_128_GCM, *keylen = 16;
  else if (strstr(name, "AES256-GCM") != NULL) *cipher = ALUDEL_AES_256_GCM, *keylen = 32;
  else return 0;
  size_t len = strlen(name);
  *md = len > 6 && strcmp(name + len - 6, "SHA384") == 0 ? aludel_real.sha384() : aludel_real.sha256();
  return *md != NULL;
}

static int suite(SSL *ssl, enum aludel_cipher *cipher, size_t *keylen, const EVP_MD **md) {
  const SSL_CIPHER *c = aludel_real.current_cipher(ssl);
  if (c == NULL) return 0;
  if (aludel_lib == ALUDEL_LIB_102) return cipher_of_102_name(aludel_real.cipher_name(c), cipher, keylen, md);
  *md = aludel_real.handshake_digest(c);
  return *md != NULL && cipher_of_nid(aludel_real.cipher_nid(c), cipher, keylen);
}

static int master_and_randoms(SSL *ssl, unsigned char master[48], unsigned char client[32], unsigned char server[32]) {
  if (aludel_lib == ALUDEL_LIB_102) return aludel_102_master_key(ssl, master) && aludel_102_randoms(ssl, client, server);
  SSL_SESSION *session = aludel_real.get_session(ssl);
  return session != NULL && aludel_real.master_key(session, master, 48) == 48 && aludel_real.client_random(ssl, client, 32) == 32 &&
         aludel_real.server_random(ssl, server, 32) == 32;
}

/*
 * The next record's sequence number each way. 1.0.2: OpenSSL's own counters.
 * Otherwise the records counted since ChangeCipherSpec; without a count, 1:
 * the Finished was the only record under the new keys (RFC 5246 §7.4.9).
 */
static int tls12_sequences(SSL *ssl, struct aludel_conn *c, uint64_t *rx, uint64_t *tx) {
  if (aludel_lib == ALUDEL_LIB_102) return aludel_102_sequences(ssl, rx, tx);
  *rx = c->rx_counted ? c->rx_records : 1;
  *tx = c->tx_counted ? c->tx_records : 1;
  return 1;
}

int aludel_tls12_keys(SSL *ssl, struct aludel_conn *c, struct aludel_keys *out) {
  size_t keylen;
  const EVP_MD *md;
  if (!suite(ssl, &out->cipher, &keylen, &md)) return 0;
  /* AEAD key block (§6.3, no MAC keys): client key, server key, client IV, server IV; GCM IVs are 4 bytes (RFC 5288), ChaCha20's 12 (RFC 7905). */
  size_t ivlen = out->cipher == ALUDEL_CHACHA20_POLY1305 ? 12 : 4;
  unsigned char master[48], randoms[64], block[2 * 32 + 2 * 12];
  int ok = master_and_randoms(ssl, master, randoms + 32, randoms) &&
           prf(md, master, sizeof master, "key expansion", randoms, sizeof randoms, block, 2 * keylen + 2 * ivlen) &&
           tls12_sequences(ssl, c, &out->rx.seq, &out->tx.seq);
  explicit_bzero(master, sizeof master);
  if (ok) {
    int server = aludel_real.is_server(ssl);
    const unsigned char *client_key = block, *server_key = block + keylen;
    const unsigned char *client_iv = block + 2 * keylen, *server_iv = client_iv + ivlen;
    memcpy(out->rx.key, server ? client_key : server_key, keylen);
    memcpy(out->tx.key, server ? server_key : client_key, keylen);
    memcpy(out->rx.iv, server ? client_iv : server_iv, ivlen);
    memcpy(out->tx.iv, server ? server_iv : client_iv, ivlen);
    out->version = P_TLS1_2_VERSION;
    c->md = md;
  }
  explicit_bzero(block, sizeof block);
  return ok;
}

/* The shared schedule (ktls-keys.c) over this program's own libcrypto HMAC. */
static int hkdf_expand_label(const EVP_MD *md, const unsigned char *secret, size_t secret_len, const char *label, unsigned char *out, size_t n) {
  return aludel_hkdf_expand_label((aludel_hmac_fn)aludel_real.hmac, md, aludel_real.md_size(md), secret, secret_len, label, out, n);
}

static int traffic_keys(const EVP_MD *md, const unsigned char *secret, size_t len, size_t keylen, struct aludel_dir_keys *out) {
  return aludel_tls13_traffic_keys((aludel_hmac_fn)aludel_real.hmac, md, aludel_real.md_size(md), secret, len, keylen, out);
}

static size_t key_length(enum aludel_cipher cipher) {
  return cipher == ALUDEL_AES_128_GCM ? 16 : 32;
}

/* Both directions from the keylog secrets; 0 unless both secrets and exact record counts are known. */
int aludel_tls13_keys(SSL *ssl, struct aludel_conn *c, struct aludel_keys *out) {
  size_t keylen;
  const EVP_MD *md;
  if (aludel_lib == ALUDEL_LIB_102 || !suite(ssl, &out->cipher, &keylen, &md)) return 0;
  if (c->client_secret_len == 0 || c->server_secret_len == 0 || c->headers_seen == 0 || !c->tx_counted || !c->rx_counted) return 0;
  int server = aludel_real.is_server(ssl);
  const unsigned char *rx = server ? c->client_secret : c->server_secret, *tx = server ? c->server_secret : c->client_secret;
  size_t rx_len = server ? c->client_secret_len : c->server_secret_len, tx_len = server ? c->server_secret_len : c->client_secret_len;
  if (!traffic_keys(md, rx, rx_len, keylen, &out->rx) || !traffic_keys(md, tx, tx_len, keylen, &out->tx)) return 0;
  out->rx.seq = c->rx_records;
  out->tx.seq = c->tx_records;
  out->version = P_TLS1_3_VERSION;
  c->md = md;
  return 1;
}

/* KeyUpdate (RFC 8446 §7.2): application_traffic_secret_N+1 = HKDF-Expand-Label(secret_N, "traffic upd", "", Hash.length); keys for it, sequence 0. */
int aludel_tls13_next_keys(struct aludel_conn *c, int tx, struct aludel_dir_keys *out) {
  int own_is_server = c->server;
  unsigned char *secret = (tx == own_is_server) ? c->server_secret : c->client_secret;
  size_t len = (tx == own_is_server) ? c->server_secret_len : c->client_secret_len;
  unsigned char next[48];
  if (len == 0 || c->md == NULL || !hkdf_expand_label(c->md, secret, len, "traffic upd", next, len)) return 0;
  memcpy(secret, next, len);
  explicit_bzero(next, sizeof next);
  out->seq = 0;
  return traffic_keys(c->md, secret, len, key_length(c->cipher), out);
}

/* ---- the program's callbacks, per SSL_CTX ---- */

struct ctx_callbacks {
  SSL_CTX *ctx;
  struct ctx_callbacks *next;
  aludel_keylog_cb keylog;
  aludel_msg_cb msg;
  int pha; /* SSL_CTX_set_post_handshake_auth: SSL_new copies it into each SSL */
};

static struct ctx_callbacks *contexts;
static pthread_mutex_t contexts_lock = PTHREAD_MUTEX_INITIALIZER;

/* The entry of ctx (added when `add`); entries live as long as the process (one per address; a new SSL_CTX at an old address resets it). */
static struct ctx_callbacks *callbacks_of(const SSL_CTX *ctx, int add) {
  pthread_mutex_lock(&contexts_lock);
  struct ctx_callbacks *e = contexts;
  while (e != NULL && e->ctx != ctx) e = e->next;
  if (e == NULL && add && (e = calloc(1, sizeof *e)) != NULL) {
    e->ctx = (SSL_CTX *)ctx;
    e->next = contexts;
    contexts = e;
  }
  pthread_mutex_unlock(&contexts_lock);
  return e;
}

static int secrets_on(void) {
  return aludel_keys_active && aludel_lib != ALUDEL_LIB_102;
}

static int hex_value(char ch) {
  return ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
}

/* "LABEL <client_random hex> <secret hex>" (NSS key log format); the secret into out, its length or 0. */
static size_t parse_secret(const char *line, const char *label, unsigned char out[48]) {
  size_t ll = strlen(label);
  if (strncmp(line, label, ll) != 0 || line[ll] != ' ') return 0;
  const char *hex = strchr(line + ll + 1, ' ');
  if (hex == NULL) return 0;
  size_t n = 0;
  for (hex++; hex[0] != '\0' && hex[1] != '\0' && n < 48; hex += 2) {
    int hi = hex_value(hex[0]), lo = hex_value(hex[1]);
    if (hi < 0 || lo < 0) break;
    out[n++] = (unsigned char)(hi << 4 | lo);
  }
  return (n == 32 || n == 48) && (*hex == '\0' || *hex == '\n') ? n : 0;
}

/* The traffic secret's line comes as OpenSSL switches that direction to it: the record count restarts there. */
static void keylog(const SSL *cssl, const char *line) {
  SSL *ssl = (SSL *)cssl;
  struct aludel_conn *c = aludel_conn_get(ssl);
  if (c != NULL) {
    int server = aludel_real.is_server(ssl);
    size_t n;
    if ((n = parse_secret(line, "CLIENT_TRAFFIC_SECRET_0", c->client_secret)) > 0) {
      c->client_secret_len = n;
      if (server) c->rx_records = 0, c->rx_counted = 1;
      else c->tx_records = 0, c->tx_counted = 1;
    } else if ((n = parse_secret(line, "SERVER_TRAFFIC_SECRET_0", c->server_secret)) > 0) {
      c->server_secret_len = n;
      if (server) c->tx_records = 0, c->tx_counted = 1;
      else c->rx_records = 0, c->rx_counted = 1;
    }
  }
  struct ctx_callbacks *e = callbacks_of(aludel_real.get_ssl_ctx(ssl), 0);
  if (e != NULL && e->keylog != NULL) e->keylog(ssl, line);
}

static void message(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl, void *arg) {
  struct aludel_conn *c = aludel_conn_get(ssl);
  if (c != NULL) {
    if (content_type == P_SSL3_RT_HEADER) {
      c->headers_seen++;
      if (write_p) c->tx_records++;
      else c->rx_records++;
    } else if (content_type == P_SSL3_RT_CHANGE_CIPHER_SPEC && aludel_real.version(ssl) == P_TLS1_2_VERSION) {
      /* TLS 1.2: sequence numbers restart at ChangeCipherSpec (RFC 5246 §6.1). In TLS 1.3 it is a compatibility no-op (RFC 8446 §D.4). */
      if (write_p) c->tx_records = 0, c->tx_counted = 1;
      else c->rx_records = 0, c->rx_counted = 1;
    }
    if (c->program_msg_cb != NULL) c->program_msg_cb(write_p, version, content_type, buf, len, ssl, arg);
  }
}

/* A new SSL_CTX gets our keylog and message callbacks (the program's, if it sets any later, are called from ours). */
void aludel_secrets_ctx_created(SSL_CTX *ctx) {
  if (!secrets_on() || ctx == NULL) return;
  struct ctx_callbacks *e = callbacks_of(ctx, 0);
  if (e != NULL) e->keylog = NULL, e->msg = NULL, e->pha = 0;
  aludel_real.ctx_set_keylog(ctx, keylog);
  aludel_real.ctx_set_msg_cb(ctx, message);
}

/* SSL_new copies the context's message callback: remember the program's as it was then. */
void aludel_secrets_ssl_created(SSL *ssl, SSL_CTX *ctx) {
  if (!secrets_on() || ssl == NULL) return;
  struct aludel_conn *c = aludel_conn_get(ssl);
  struct ctx_callbacks *e = callbacks_of(ctx, 0);
  if (c != NULL) c->program_msg_cb = e != NULL ? e->msg : NULL;
  if (c != NULL) c->pha_offered = e != NULL && e->pha;
}

/*
 * TLS 1.3 post-handshake authentication (RFC 8446 §4.6.2), offered by a
 * client (s_client -enable_pha): the server may send a CertificateRequest at
 * any time, which only OpenSSL can answer (Certificate, CertificateVerify and
 * Finished over the handshake transcript). Remembered, so that such a
 * connection stays with OpenSSL (preload-keys.c not_eligible); passed on.
 */
ALUDEL_EXPORT void SSL_CTX_set_post_handshake_auth(SSL_CTX *ctx, int val) {
  aludel_prepare();
  if (secrets_on()) {
    struct ctx_callbacks *e = callbacks_of(ctx, 1);
    if (e != NULL) e->pha = val != 0;
  }
  if (aludel_real.ctx_set_pha != NULL) aludel_real.ctx_set_pha(ctx, val);
}

ALUDEL_EXPORT void SSL_set_post_handshake_auth(SSL *ssl, int val) {
  aludel_prepare();
  if (secrets_on()) {
    struct aludel_conn *c = aludel_conn_get(ssl);
    if (c != NULL) c->pha_offered = val != 0;
  }
  if (aludel_real.set_pha != NULL) aludel_real.set_pha(ssl, val);
}

ALUDEL_EXPORT void SSL_CTX_set_keylog_callback(SSL_CTX *ctx, aludel_keylog_cb cb) {
  aludel_prepare();
  if (!secrets_on()) {
    if (aludel_real.ctx_set_keylog != NULL) aludel_real.ctx_set_keylog(ctx, cb);
    return;
  }
  struct ctx_callbacks *e = callbacks_of(ctx, 1);
  if (e != NULL) e->keylog = cb;
}

ALUDEL_EXPORT aludel_keylog_cb SSL_CTX_get_keylog_callback(const SSL_CTX *ctx) {
  aludel_prepare();
  if (!secrets_on()) return aludel_real.ctx_get_keylog != NULL ? aludel_real.ctx_get_keylog(ctx) : NULL;
  struct ctx_callbacks *e = callbacks_of(ctx, 0);
  return e != NULL ? e->keylog : NULL;
}

ALUDEL_EXPORT void SSL_CTX_set_msg_callback(SSL_CTX *ctx, aludel_msg_cb cb) {
  aludel_prepare();
  if (!secrets_on()) {
    if (aludel_real.ctx_set_msg_cb != NULL) aludel_real.ctx_set_msg_cb(ctx, cb);
    return;
  }
  struct ctx_callbacks *e = callbacks_of(ctx, 1);
  if (e != NULL) e->msg = cb;
}

ALUDEL_EXPORT void SSL_set_msg_callback(SSL *ssl, aludel_msg_cb cb) {
  aludel_prepare();
  if (!secrets_on()) {
    if (aludel_real.set_msg_cb != NULL) aludel_real.set_msg_cb(ssl, cb);
    return;
  }
  struct aludel_conn *c = aludel_conn_get(ssl);
  if (c != NULL) c->program_msg_cb = cb;
  aludel_real.set_msg_cb(ssl, message);
}

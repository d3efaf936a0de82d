/*
 * Session ticket keys of the process (RFC 5077 tickets for TLS 1.2, RFC 8446
 * §4.6.1 tickets for TLS 1.3), so that every worker process, or several
 * aludel processes given the same --ticket-keys files, can resume each
 * other's sessions. Without them each SSL_CTX makes random keys of its own.
 *
 * One key ring per process, replaced whole by ticketKeysSet() (rotation), and
 * a callback installed on each context by ctxUseTicketKeys(). The ring is
 * process-wide rather than per context because every handshake and every
 * ring swap runs on the JavaScript thread, and one ring serves every
 * certificate context (OpenSSL calls the callback of the connection's
 * session_ctx, the listening context, whichever context SNI switched to).
 *
 * The callback is the one nginx installs (ngx_ssl_session_ticket_key_callback,
 * SSL_CTX_set_tlsext_ticket_key_cb with an HMAC_CTX): the first key encrypts;
 * any key decrypts, and a ticket under an older key asks for a new one
 * (return 2). OpenSSL's own format: key name, IV, AES-CBC ciphertext,
 * HMAC-SHA256. Keys are in a canonical order made by src/tls/ticket-keys.ts:
 * name (16) | HMAC secret | AES key, 48 bytes (16 + 16: AES-128) or 80 bytes
 * (32 + 32: AES-256).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "aludel.h"
#include "openssl-api.h"

#define NAME_LEN 16

SSL_CTX *aludel_ssl_ctx_of(napi_env env, napi_value v); /* native/tls.c */

typedef struct {
  unsigned char name[NAME_LEN];
  unsigned char hmac[32];
  unsigned char aes[32];
  int secret_len; /* 16 or 32: the HMAC secret and the AES key are the same length */
} ticket_key;

static ticket_key *ring;
static size_t ring_len;

static int ticket_key_cb(SSL *ssl, unsigned char *key_name, unsigned char *iv, EVP_CIPHER_CTX *cctx,
                         HMAC_CTX *hctx, int enc) {
  if (ring_len == 0) return 0; /* no ticket issued, none accepted: a full handshake */
  if (enc) {
    const ticket_key *k = &ring[0];
    if (aludel_ossl.RAND_bytes(iv, ALUDEL_EVP_MAX_IV_LENGTH) != 1) return -1;
    memcpy(key_name, k->name, NAME_LEN);
    const EVP_CIPHER *cipher = k->secret_len == 32 ? aludel_ossl.EVP_aes_256_cbc() : aludel_ossl.EVP_aes_128_cbc();
    if (aludel_ossl.EVP_EncryptInit_ex(cctx, cipher, NULL, k->aes, iv) != 1) return -1;
    if (aludel_ossl.HMAC_Init_ex(hctx, k->hmac, k->secret_len, aludel_ossl.EVP_sha256(), NULL) != 1) return -1;
    return 1;
  }
  for (size_t i = 0; i < ring_len; i++) {
    const ticket_key *k = &ring[i];
    if (memcmp(key_name, k->name, NAME_LEN) != 0) continue;
    const EVP_CIPHER *cipher = k->secret_len == 32 ? aludel_ossl.EVP_aes_256_cbc() : aludel_ossl.EVP_aes_128_cbc();
    if (aludel_ossl.HMAC_Init_ex(hctx, k->hmac, k->secret_len, aludel_ossl.EVP_sha256(), NULL) != 1) return -1;
    if (aludel_ossl.EVP_DecryptInit_ex(cctx, cipher, NULL, k->aes, iv) != 1) return -1;
    /* 2: valid, but under an older key; OpenSSL then sends a ticket under ring[0]. */
    return i == 0 ? 1 : 2;
  }
  return 0; /* unknown key name (rotated out, another fleet): a full handshake */
}

/* ticketKeysSet(keys: Buffer[]): replaces the ring; each Buffer 48 or 80 bytes, canonical order. */
static napi_value ticket_keys_set(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  bool is_array = false;
  uint32_t n = 0;
  if (!aludel_args(env, info, 1, argv)) return NULL;
  napi_is_array(env, argv[0], &is_array);
  if (!is_array || napi_get_array_length(env, argv[0], &n) != napi_ok || n == 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "ticketKeysSet(keys: Buffer[]) needs at least one key");
    return NULL;
  }
  ticket_key *next = calloc(n, sizeof *next);
  if (next == NULL) return aludel_throw_errno(env, ENOMEM, "calloc");
  for (uint32_t i = 0; i < n; i++) {
    napi_value b;
    bool is_buffer = false;
    void *data = NULL;
    size_t len = 0;
    if (napi_get_element(env, argv[0], i, &b) != napi_ok || napi_is_buffer(env, b, &is_buffer) != napi_ok ||
        !is_buffer || napi_get_buffer_info(env, b, &data, &len) != napi_ok || (len != 48 && len != 80)) {
      free(next);
      napi_throw_range_error(env, "ERR_INVALID_ARG", "each ticket key is a Buffer of 48 or 80 bytes");
      return NULL;
    }
    int secret = len == 80 ? 32 : 16;
    memcpy(next[i].name, data, NAME_LEN);
    memcpy(next[i].hmac, (unsigned char *)data + NAME_LEN, secret);
    memcpy(next[i].aes, (unsigned char *)data + NAME_LEN + secret, secret);
    next[i].secret_len = secret;
  }
  if (ring != NULL) {
    memset(ring, 0, ring_len * sizeof *ring); /* secrets do not outlive their use */
    free(ring);
  }
  ring = next;
  ring_len = n;
  return NULL;
}

/* ctxUseTicketKeys(ctx): this context issues and accepts tickets under the process's ring. */
static napi_value ctx_use_ticket_keys(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!aludel_args(env, info, 1, argv)) return NULL;
  SSL_CTX *ctx = aludel_ssl_ctx_of(env, argv[0]);
  if (ctx == NULL) return NULL;
  aludel_ossl.SSL_CTX_callback_ctrl(ctx, ALUDEL_SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB, (void (*)(void))ticket_key_cb);
  return NULL;
}

void aludel_register_tickets(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"ticketKeysSet", NULL, ticket_keys_set, NULL, NULL, NULL, napi_default, NULL},
      {"ctxUseTicketKeys", NULL, ctx_use_ticket_keys, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

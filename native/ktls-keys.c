/*
 * The TLS 1.3 key schedule's last step and the kernel's key socket option,
 * shared by the preload (legacy programs under `aludel run`) and the addon
 * (TLS upstreams whose RX OpenSSL 3.0 leaves in user space). See ktls-keys.h.
 */
#define _GNU_SOURCE
#include "ktls-keys.h"

#include <errno.h>
#include <linux/tls.h>
#include <string.h>
#include <sys/socket.h>

#ifndef SOL_TLS
#define SOL_TLS 282
#endif

int aludel_hkdf_expand_label(aludel_hmac_fn hmac, const void *md, int hlen, const unsigned char *secret, size_t secret_len,
                             const char *label, unsigned char *out, size_t n) {
  unsigned char info[2 + 1 + 255 + 1], t[64 + sizeof info + 1], block[64];
  size_t label_len = strlen(label), info_len = 0;
  if (hlen <= 0 || hlen > 64 || label_len + 6 > 255 || n > 255) return 0;
  info[info_len++] = (unsigned char)(n >> 8);
  info[info_len++] = (unsigned char)n;
  info[info_len++] = (unsigned char)(label_len + 6);
  memcpy(info + info_len, "tls13 ", 6);
  memcpy(info + info_len + 6, label, label_len);
  info_len += 6 + label_len;
  info[info_len++] = 0; /* empty context */
  size_t prev = 0;
  int ok = 1;
  size_t done = 0;
  for (unsigned char i = 1; ok && done < n; i++) {
    /* T(i) = HMAC(secret, T(i-1) | info | i) */
    memcpy(t, block, prev);
    memcpy(t + prev, info, info_len);
    t[prev + info_len] = i;
    unsigned int blen;
    if (hmac(md, secret, (int)secret_len, t, prev + info_len + 1, block, &blen) == NULL) ok = 0;
    size_t take = !ok ? 0 : n - done < blen ? n - done : blen;
    memcpy(out + done, block, take);
    done += take;
    prev = blen;
  }
  explicit_bzero(t, sizeof t);
  explicit_bzero(block, sizeof block);
  return ok;
}

int aludel_tls13_traffic_keys(aludel_hmac_fn hmac, const void *md, int hlen, const unsigned char *secret, size_t secret_len,
                              size_t keylen, struct aludel_dir_keys *out) {
  return aludel_hkdf_expand_label(hmac, md, hlen, secret, secret_len, "key", out->key, keylen) &&
         aludel_hkdf_expand_label(hmac, md, hlen, secret, secret_len, "iv", out->iv, 12);
}

static void put_seq(unsigned char out[8], uint64_t seq) {
  for (int i = 7; i >= 0; i--, seq >>= 8) out[i] = (unsigned char)(seq & 0xff);
}

/*
 * TLS_TX or TLS_RX with one direction's key. Layouts (include/uapi/linux/tls.h):
 * - AES-GCM: salt[4] + iv[8]. TLS 1.2 (RFC 5288 §3): salt is the implicit
 *   part from the key block; iv is the first explicit nonce sent (TX; the
 *   kernel increments it per record as OpenSSL does), ignored on RX where each
 *   record carries its own. TLS 1.3 (RFC 8446 §5.3): the 12-byte IV split 4+8.
 * - ChaCha20-Poly1305 (RFC 7905, RFC 8446): iv[12], the whole static IV.
 * rec_seq is the sequence number of the next record in that direction.
 * A second TLS_RX/TLS_TX (TLS 1.3 KeyUpdate) is accepted from Linux 6.14 on;
 * before that it fails with EBUSY.
 */
int aludel_ktls_set(int fd, int tx, int version, enum aludel_cipher cipher, const struct aludel_dir_keys *k) {
  union {
    struct tls12_crypto_info_aes_gcm_128 g128;
    struct tls12_crypto_info_aes_gcm_256 g256;
    struct tls12_crypto_info_chacha20_poly1305 chacha;
  } info;
  memset(&info, 0, sizeof info);
  socklen_t len;
  unsigned char seq[8];
  put_seq(seq, k->seq);
  int tls13 = version == 0x0304; /* TLS1_3_VERSION */
  /* The two AES-GCM layouts differ only in the key's length. */
#define GCM(g, type, keylen)                                        \
  do {                                                              \
    (g).info.version = tls13 ? TLS_1_3_VERSION : TLS_1_2_VERSION;  \
    (g).info.cipher_type = (type);                                  \
    memcpy((g).key, k->key, (keylen));                              \
    memcpy((g).salt, k->iv, 4);                                     \
    memcpy((g).iv, tls13 ? k->iv + 4 : seq, 8);                     \
    memcpy((g).rec_seq, seq, 8);                                    \
    len = sizeof(g);                                                \
  } while (0)
  switch (cipher) {
    case ALUDEL_AES_128_GCM:
      GCM(info.g128, TLS_CIPHER_AES_GCM_128, 16);
      break;
    case ALUDEL_AES_256_GCM:
      GCM(info.g256, TLS_CIPHER_AES_GCM_256, 32);
      break;
    case ALUDEL_CHACHA20_POLY1305:
      info.chacha.info.version = tls13 ? TLS_1_3_VERSION : TLS_1_2_VERSION;
      info.chacha.info.cipher_type = TLS_CIPHER_CHACHA20_POLY1305;
      memcpy(info.chacha.key, k->key, 32);
      memcpy(info.chacha.iv, k->iv, 12);
      memcpy(info.chacha.rec_seq, seq, 8);
      len = sizeof info.chacha;
      break;
    default:
      errno = EINVAL;
      return -1;
  }
#undef GCM
  int r = setsockopt(fd, SOL_TLS, tx ? TLS_TX : TLS_RX, &info, len);
  int saved = errno;
  explicit_bzero(&info, sizeof info);
  errno = saved;
  return r;
}


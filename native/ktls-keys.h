/*
 * What both kTLS key paths share: the legacy preload (`aludel run`, keys taken
 * from an OpenSSL that cannot program the kernel) and the addon's TLS
 * upstreams (TLS 1.3 RX, which OpenSSL 3.0 leaves in user space). The
 * TLS 1.3 key schedule's last step (RFC 8446 §7.1, §7.3) and the kernel's
 * TLS_TX/TLS_RX socket option. No OpenSSL header: HMAC comes in as a pointer
 * to whichever libcrypto the caller resolved.
 */
#ifndef ALUDEL_KTLS_KEYS_H
#define ALUDEL_KTLS_KEYS_H

#include <stddef.h>
#include <stdint.h>

/* What the kernel needs for one direction: RFC 5246 §6.3 / RFC 8446 §7.3 key and IV, and the next record's sequence number. */
enum aludel_cipher { ALUDEL_AES_128_GCM = 1, ALUDEL_AES_256_GCM, ALUDEL_CHACHA20_POLY1305 };
struct aludel_dir_keys {
  unsigned char key[32];
  unsigned char iv[12]; /* TLS 1.2 AES-GCM: the 4-byte implicit part only (RFC 5288 §3) */
  uint64_t seq;
};

/* libcrypto's HMAC() (one-shot), with the digest as an opaque pointer. */
typedef unsigned char *(*aludel_hmac_fn)(const void *md, const void *key, int key_len, const unsigned char *data,
                                         size_t data_len, unsigned char *out, unsigned int *out_len);

/* HKDF-Expand-Label(secret, label, "", n) (RFC 8446 §7.1) over HKDF-Expand (RFC 5869 §2.3); hlen = the digest's size. 1 ok, 0 failed. */
int aludel_hkdf_expand_label(aludel_hmac_fn hmac, const void *md, int hlen, const unsigned char *secret, size_t secret_len,
                             const char *label, unsigned char *out, size_t n);

/* A TLS 1.3 traffic secret's record key and IV (RFC 8446 §7.3). 1 ok, 0 failed. */
int aludel_tls13_traffic_keys(aludel_hmac_fn hmac, const void *md, int hlen, const unsigned char *secret, size_t secret_len,
                              size_t keylen, struct aludel_dir_keys *out);

/* setsockopt(SOL_TLS, TLS_TX or TLS_RX) with one direction's keys; version 0x0303 or 0x0304. 0, or -1 with errno. */
int aludel_ktls_set(int fd, int tx, int version, enum aludel_cipher cipher, const struct aludel_dir_keys *k);

#endif

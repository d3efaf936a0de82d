/*
 * Kernel TLS, one small function per syscall (Documentation/networking/tls.rst).
 * Each returns what the syscall returned, errno untouched: what a failure
 * means is decided by the caller.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "preload.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

/* The TLS ULP: only on an ESTABLISHED socket; ENOENT on a kernel without CONFIG_TLS. Without keys the socket stays plain TCP. */
int aludel_ktls_ulp(int fd) {
  return setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof "tls");
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
  int tls13 = version == P_TLS1_3_VERSION;
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

/* One record of `type` (alert, handshake) through kernel TX: sendmsg with a TLS_SET_RECORD_TYPE cmsg. */
ssize_t aludel_ktls_send_record(int fd, unsigned char type, const void *buf, size_t n) {
  char cbuf[CMSG_SPACE(sizeof(unsigned char))];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = n};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_TLS;
  cm->cmsg_type = TLS_SET_RECORD_TYPE;
  cm->cmsg_len = CMSG_LEN(sizeof(unsigned char));
  *CMSG_DATA(cm) = type;
  return sendmsg(fd, &msg, MSG_NOSIGNAL);
}

/* Application data: the kernel frames and encrypts it. */
ssize_t aludel_ktls_send(int fd, const void *buf, size_t n) {
  return send(fd, buf, n, MSG_NOSIGNAL);
}

/*
 * Plaintext from kernel RX, and the record type from the TLS_GET_RECORD_TYPE
 * cmsg (application data when there is none). The kernel never mixes types in
 * one call, and a non-data record may be returned in parts.
 */
ssize_t aludel_ktls_recv(int fd, void *buf, size_t n, int peek, unsigned char *type) {
  char cbuf[CMSG_SPACE(sizeof(unsigned char))];
  struct iovec iov = {.iov_base = buf, .iov_len = n};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  ssize_t got = recvmsg(fd, &msg, peek ? MSG_PEEK : 0);
  *type = RT_APPLICATION_DATA;
  if (got > 0) {
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (cm != NULL && cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE) *type = *CMSG_DATA(cm);
  }
  return got;
}

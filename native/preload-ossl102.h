/*
 * OpenSSL 1.0.2's structures, as far as the keys strategy reads them (LP64).
 * 1.0.2 has no accessors for the randoms, the master secret or the record
 * sequence numbers (SSL_get_client_random, SSL_SESSION_get_master_key came in
 * 1.1.0), and its structs are public and fixed for the whole 1.0.2 series:
 * struct ssl_st, ssl3_state_st and ssl_session_st in ssl/ssl.h and ssl/ssl3.h.
 * Only the leading fields are declared; native/abi-check-102.c asserts each
 * offset against the 1.0.2f headers, and preload-ossl102.c cross-checks them
 * at run time against the API before anything is used.
 * No OpenSSL header here, so the ABI check can include both.
 */
#ifndef ALUDEL_PRELOAD_OSSL102_H
#define ALUDEL_PRELOAD_OSSL102_H

#include <stddef.h>

struct ossl102_buffer { /* SSL3_BUFFER */
  unsigned char *buf;
  size_t len;
  int offset;
  int left; /* bytes read from the socket and not yet processed */
};

struct ossl102_s3 { /* struct ssl3_state_st */
  long flags;
  int delay_buf_pop_ret;
  unsigned char read_sequence[8];
  int read_mac_secret_size;
  unsigned char read_mac_secret[64]; /* EVP_MAX_MD_SIZE */
  unsigned char write_sequence[8];
  int write_mac_secret_size;
  unsigned char write_mac_secret[64];
  unsigned char server_random[32]; /* SSL3_RANDOM_SIZE */
  unsigned char client_random[32];
  int need_empty_fragments;
  int empty_fragment_done;
  int init_extra;
  struct ossl102_buffer rbuf;
};

struct ossl102_ssl { /* struct ssl_st */
  int version;
  int type;
  const void *method;
  void *rbio;
  void *wbio;
  void *bbio;
  int rwstate;
  int in_handshake;
  int (*handshake_func)(void *);
  int server;
  int new_session;
  int quiet_shutdown;
  int shutdown;
  int state;
  int rstate;
  void *init_buf;
  void *init_msg;
  int init_num;
  int init_off;
  unsigned char *packet;
  unsigned int packet_length;
  void *s2;
  struct ossl102_s3 *s3;
};

struct ossl102_session { /* struct ssl_session_st */
  int ssl_version;
  unsigned int key_arg_length;
  unsigned char key_arg[8]; /* SSL_MAX_KEY_ARG_LENGTH */
  int master_key_length;
  unsigned char master_key[48]; /* SSL_MAX_MASTER_KEY_LENGTH */
};

/* 1.0.2's BIO_METHOD is a public struct too (crypto/bio/bio.h); 1.1.0 made it opaque. */
struct ossl102_bio_method {
  int type;
  const char *name;
  int (*bwrite)(void *, const char *, int);
  int (*bread)(void *, char *, int);
  int (*bputs)(void *, const char *);
  int (*bgets)(void *, char *, int);
  long (*ctrl)(void *, int, long, void *);
  int (*create)(void *);
  int (*destroy)(void *);
  long (*callback_ctrl)(void *, int, void (*)(void *, int, const char *, int, long, long));
};

#endif

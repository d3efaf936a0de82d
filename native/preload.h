/*
 * Shared by the preload's two strategies (preload.c: SSL_OP_ENABLE_KTLS;
 * preload-keys.c: keys handed to the kernel after the handshake). The
 * OpenSSL ABI is declared here, not included: node-gyp puts Node's OpenSSL
 * headers (OPENSSL_NO_KTLS) first on the include path, and the preload must
 * not depend on any OpenSSL headers or library at build time.
 */
#ifndef ALUDEL_PRELOAD_H
#define ALUDEL_PRELOAD_H

#include <stddef.h>
#include <stdint.h>

#define ALUDEL_EXPORT __attribute__((visibility("default")))

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_method_st SSL_METHOD;
typedef struct ssl_session_st SSL_SESSION;
typedef struct ssl_cipher_st SSL_CIPHER;
typedef struct bio_st BIO;
typedef struct evp_md_st EVP_MD;

/* openssl/ssl.h, prov_ssl.h, bio.h, obj_mac.h (same values in 1.1.1 and 3.x) */
#define P_SSL_ERROR_NONE 0
#define P_SSL_ERROR_SSL 1
#define P_SSL_ERROR_WANT_READ 2
#define P_SSL_ERROR_WANT_WRITE 3
#define P_SSL_ERROR_SYSCALL 5
#define P_SSL_ERROR_ZERO_RETURN 6
#define P_SSL_MODE_ENABLE_PARTIAL_WRITE 0x1L
#define P_SSL_CTRL_MODE 33
#define P_TLS1_2_VERSION 0x0303
#define P_BIO_TYPE_SOCKET (5 | 0x0400 | 0x0100)
#define P_NID_aes_128_gcm 895
#define P_NID_aes_256_gcm 901

/* Real OpenSSL functions, found with dlsym(RTLD_NEXT) at first use. */
struct aludel_real {
  int (*do_handshake)(SSL *);
  int (*accept)(SSL *);
  int (*connect)(SSL *);
  int (*read)(SSL *, void *, int);
  int (*read_ex)(SSL *, void *, size_t, size_t *);
  int (*peek)(SSL *, void *, int);
  int (*peek_ex)(SSL *, void *, size_t, size_t *);
  int (*write)(SSL *, const void *, int);
  int (*write_ex)(SSL *, const void *, size_t, size_t *);
  int (*get_error)(const SSL *, int);
  int (*shutdown)(SSL *);
  int (*pending)(const SSL *);
  int (*has_pending)(const SSL *);
  void (*free)(SSL *);
  /* Used by the keys strategy only. */
  int (*version)(const SSL *);
  int (*is_server)(const SSL *);
  int (*is_init_finished)(const SSL *);
  const SSL_CIPHER *(*current_cipher)(const SSL *);
  int (*cipher_nid)(const SSL_CIPHER *);
  const EVP_MD *(*handshake_digest)(const SSL_CIPHER *);
  SSL_SESSION *(*get_session)(const SSL *);
  size_t (*master_key)(const SSL_SESSION *, unsigned char *, size_t);
  size_t (*client_random)(const SSL *, unsigned char *, size_t);
  size_t (*server_random)(const SSL *, unsigned char *, size_t);
  BIO *(*rbio)(const SSL *);
  BIO *(*wbio)(const SSL *);
  int (*bio_type)(const BIO *);
  int (*get_fd)(const SSL *);
  long (*ctrl)(SSL *, int, long, void *);
  unsigned char *(*hmac)(const EVP_MD *, const void *, int, const unsigned char *, size_t, unsigned char *, unsigned int *);
  int (*md_size)(const EVP_MD *);
};

extern struct aludel_real aludel_real;

/* 1 when the keys strategy is on (resolved and requested); set by preload.c. */
extern int aludel_keys_active;

/* Resolves (once) and logs (once); every hook calls it first. */
void aludel_prepare(void);

/* preload-keys.c: resolves what the keys strategy needs; 0 when something is missing (why in buf). */
int aludel_keys_resolve(char *why, size_t size);

#endif

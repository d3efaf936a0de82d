/*
 * The slice of the OpenSSL 3 ABI that Aludel calls, declared here on purpose.
 *
 * Why not #include <openssl/ssl.h>: node-gyp puts Node's bundled OpenSSL
 * headers first on the include path, and those are configured with
 * OPENSSL_NO_KTLS, so BIO_get_ktls_send() would compile to a constant 0.
 * Why dlopen and not -lssl: the node binary exports its own SSL_* and EVP_*
 * symbols, so a linked addon would bind Node's copy (no kTLS, memory BIOs).
 * native/abi-check.c compares every constant below with the system
 * libssl-dev headers; CI builds it.
 */
#ifndef ALUDEL_OPENSSL_API_H
#define ALUDEL_OPENSSL_API_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_method_st SSL_METHOD;
typedef struct ssl_cipher_st SSL_CIPHER;
typedef struct bio_st BIO;
typedef struct crypto_ex_data_st CRYPTO_EX_DATA;
typedef struct evp_cipher_st EVP_CIPHER;
typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;
typedef struct evp_md_st EVP_MD;
typedef struct hmac_ctx_st HMAC_CTX;
typedef struct engine_st ENGINE;
typedef struct x509_st X509;
typedef struct x509_store_ctx_st X509_STORE_CTX;
typedef struct x509_store_st X509_STORE;

typedef int (*aludel_alpn_select_cb)(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                                     const unsigned char *in, unsigned int inlen, void *arg);
typedef void (*aludel_msg_cb)(int write_p, int version, int content_type, const void *buf,
                              size_t len, SSL *ssl, void *arg);
/* The servername callback's real type; SSL_CTX_callback_ctrl takes it as void (*)(void). */
typedef int (*aludel_servername_cb)(SSL *ssl, int *alert, void *arg);
/* The ClientHello callback (SSL_CTX_set_client_hello_cb, OpenSSL >= 1.1.1). */
typedef int (*aludel_client_hello_cb)(SSL *ssl, int *alert, void *arg);
/* The session ticket key callback (SSL_CTX_set_tlsext_ticket_key_cb), set through SSL_CTX_callback_ctrl. */
typedef int (*aludel_ticket_key_cb)(SSL *ssl, unsigned char *key_name, unsigned char *iv,
                                    EVP_CIPHER_CTX *cctx, HMAC_CTX *hctx, int enc);
/* SSL_verify_cb and SSL_CTX_keylog_cb_func of <openssl/ssl.h> (client contexts, tls-client.c). */
typedef int (*aludel_verify_cb)(int preverify_ok, X509_STORE_CTX *x509_ctx);
typedef void (*aludel_keylog_cb)(const SSL *ssl, const char *line);
/* OpenSSL's pem_password_cb (pem.h): asked for a passphrase; CA certificates are never encrypted, so NULL is passed. */
typedef int (*aludel_pem_password_cb)(char *buf, int size, int rwflag, void *u);
/* CRYPTO_EX_new/dup/free of <openssl/crypto.h>. */
typedef void aludel_ex_new_fn(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp);
typedef int aludel_ex_dup_fn(CRYPTO_EX_DATA *to, const CRYPTO_EX_DATA *from, void **from_d, int idx,
                             long argl, void *argp);
typedef void aludel_ex_free_fn(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp);

/* Constants, checked against the openssl headers by native/abi-check.c. */
#define ALUDEL_OPENSSL_VERSION 0             /* OpenSSL_version(OPENSSL_VERSION) */
#define ALUDEL_SSL_OP_ENABLE_KTLS ((uint64_t)1 << 3)
#define ALUDEL_SSL_OP_NO_RENEGOTIATION ((uint64_t)1 << 30)
#define ALUDEL_SSL_OP_NO_COMPRESSION ((uint64_t)1 << 17)
#define ALUDEL_SSL_OP_IGNORE_UNEXPECTED_EOF ((uint64_t)1 << 7) /* 3.0; older releases ignore the bit */
#define ALUDEL_SSL_MODE_ENABLE_PARTIAL_WRITE 0x1L
#define ALUDEL_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER 0x2L
#define ALUDEL_SSL_MODE_RELEASE_BUFFERS 0x10L
#define ALUDEL_SSL_CTRL_MODE 33
#define ALUDEL_SSL_CTRL_SET_READ_AHEAD 41
#define ALUDEL_SSL_CTRL_SET_MIN_PROTO_VERSION 123
#define ALUDEL_SSL_CTRL_SET_MAX_PROTO_VERSION 124
#define ALUDEL_BIO_CTRL_GET_KTLS_SEND 73
#define ALUDEL_BIO_CTRL_GET_KTLS_RECV 76
#define ALUDEL_SSL_FILETYPE_PEM 1
#define ALUDEL_TLSEXT_NAMETYPE_host_name 0
#define ALUDEL_OPENSSL_NPN_NEGOTIATED 1
#define ALUDEL_SSL_TLSEXT_ERR_OK 0
#define ALUDEL_SSL_TLSEXT_ERR_ALERT_FATAL 2
#define ALUDEL_SSL_TLSEXT_ERR_NOACK 3
#define ALUDEL_SSL_AD_INTERNAL_ERROR 80
#define ALUDEL_SSL_CTRL_SET_TLSEXT_SERVERNAME_CB 53
#define ALUDEL_SSL_CTRL_SET_TLSEXT_SERVERNAME_ARG 54
#define ALUDEL_CRYPTO_EX_INDEX_SSL_CTX 1
#define ALUDEL_SSL_CTRL_SET_TLSEXT_TICKET_KEY_CB 72
#define ALUDEL_TLSEXT_KEYNAME_LENGTH 16
#define ALUDEL_EVP_MAX_IV_LENGTH 16
#define ALUDEL_SSL_CLIENT_HELLO_SUCCESS 1
#define ALUDEL_TLSEXT_TYPE_application_layer_protocol_negotiation 16
#define ALUDEL_SSL3_RT_HANDSHAKE 22
#define ALUDEL_SSL3_MT_KEY_UPDATE 24
#define ALUDEL_SSL_KEY_UPDATE_REQUESTED 1
#define ALUDEL_SSL_R_UNEXPECTED_EOF_WHILE_READING 294
#define ALUDEL_SSL_CTRL_SET_TLSEXT_HOSTNAME 55
#define ALUDEL_SSL_VERIFY_NONE 0x00
#define ALUDEL_SSL_VERIFY_PEER 0x01
#define ALUDEL_TLS1_2_VERSION 0x0303
#define ALUDEL_TLS1_3_VERSION 0x0304
#define ALUDEL_X509_V_OK 0
#define ALUDEL_SSL3_RT_ALERT 21
#define ALUDEL_SSL3_RT_APPLICATION_DATA 23
#define ALUDEL_ERR_REASON_MASK 0x7FFFFF
#define ALUDEL_ERR_SYSTEM_FLAG 0x80000000UL   /* ((unsigned int)INT_MAX + 1) */

enum {
  ALUDEL_SSL_ERROR_NONE = 0,
  ALUDEL_SSL_ERROR_SSL = 1,
  ALUDEL_SSL_ERROR_WANT_READ = 2,
  ALUDEL_SSL_ERROR_WANT_WRITE = 3,
  ALUDEL_SSL_ERROR_SYSCALL = 5,
  ALUDEL_SSL_ERROR_ZERO_RETURN = 6,
};

/* X(return type, name, parameter list): one row per function we dlsym. */
#define ALUDEL_OPENSSL_FUNCS(X)                                                                \
  X(const char *, OpenSSL_version, (int t))                                                    \
  X(unsigned long, OpenSSL_version_num, (void))                                                \
  X(const SSL_METHOD *, TLS_server_method, (void))                                             \
  X(SSL_CTX *, SSL_CTX_new, (const SSL_METHOD *meth))                                          \
  X(void, SSL_CTX_free, (SSL_CTX *ctx))                                                        \
  X(long, SSL_CTX_ctrl, (SSL_CTX *ctx, int cmd, long larg, void *parg))                        \
  X(long, SSL_CTX_callback_ctrl, (SSL_CTX *ctx, int cmd, void (*fp)(void)))                    \
  X(int, SSL_CTX_up_ref, (SSL_CTX *ctx))                                                       \
  X(int, SSL_CTX_set_ex_data, (SSL_CTX *ctx, int idx, void *data))                             \
  X(int, CRYPTO_get_ex_new_index, (int class_index, long argl, void *argp,                     \
                                   aludel_ex_new_fn *new_func, aludel_ex_dup_fn *dup_func,     \
                                   aludel_ex_free_fn *free_func))                              \
  X(uint64_t, SSL_CTX_set_options, (SSL_CTX *ctx, uint64_t op))                                \
  X(int, SSL_CTX_set_cipher_list, (SSL_CTX *ctx, const char *str))                             \
  X(int, SSL_CTX_set_ciphersuites, (SSL_CTX *ctx, const char *str))                            \
  X(int, SSL_CTX_use_certificate_chain_file, (SSL_CTX *ctx, const char *file))                 \
  X(int, SSL_CTX_use_PrivateKey_file, (SSL_CTX *ctx, const char *file, int type))              \
  X(int, SSL_CTX_check_private_key, (const SSL_CTX *ctx))                                      \
  X(int, SSL_CTX_set_session_id_context, (SSL_CTX *ctx, const unsigned char *sid, unsigned int len)) \
  X(void, SSL_CTX_set_alpn_select_cb, (SSL_CTX *ctx, aludel_alpn_select_cb cb, void *arg))     \
  X(void, SSL_CTX_set_msg_callback, (SSL_CTX *ctx, aludel_msg_cb cb))                          \
  X(void, SSL_CTX_set_client_hello_cb, (SSL_CTX *ctx, aludel_client_hello_cb cb, void *arg))   \
  X(int, SSL_client_hello_get0_ext, (SSL *ssl, unsigned int type, const unsigned char **out,   \
                                     size_t *outlen))                                          \
  X(int, SSL_select_next_proto, (unsigned char **out, unsigned char *outlen,                   \
                                 const unsigned char *server, unsigned int server_len,         \
                                 const unsigned char *client, unsigned int client_len))        \
  X(SSL *, SSL_new, (SSL_CTX *ctx))                                                            \
  X(SSL_CTX *, SSL_set_SSL_CTX, (SSL *ssl, SSL_CTX *ctx))                                      \
  X(void, SSL_free, (SSL *ssl))                                                                \
  X(int, SSL_set_fd, (SSL *ssl, int fd))                                                       \
  X(void, SSL_set_accept_state, (SSL *ssl))                                                    \
  X(int, SSL_do_handshake, (SSL *ssl))                                                         \
  X(int, SSL_read_ex, (SSL *ssl, void *buf, size_t num, size_t *readbytes))                    \
  X(int, SSL_write_ex, (SSL *ssl, const void *buf, size_t num, size_t *written))               \
  X(ssize_t, SSL_sendfile, (SSL *ssl, int fd, off_t offset, size_t size, int flags))           \
  X(int, SSL_shutdown, (SSL *ssl))                                                             \
  X(int, SSL_get_error, (const SSL *ssl, int ret))                                             \
  X(BIO *, SSL_get_wbio, (const SSL *ssl))                                                     \
  X(BIO *, SSL_get_rbio, (const SSL *ssl))                                                     \
  X(long, BIO_ctrl, (BIO *bio, int cmd, long larg, void *parg))                                \
  X(const char *, SSL_get_version, (const SSL *ssl))                                           \
  X(const SSL_CIPHER *, SSL_get_current_cipher, (const SSL *ssl))                              \
  X(const char *, SSL_CIPHER_get_name, (const SSL_CIPHER *c))                                  \
  X(void, SSL_get0_alpn_selected, (const SSL *ssl, const unsigned char **data, unsigned int *len)) \
  X(const char *, SSL_get_servername, (const SSL *ssl, const int type))                        \
  X(int, SSL_session_reused, (const SSL *ssl))                                                 \
  X(int, SSL_set_ex_data, (SSL *ssl, int idx, void *data))                                     \
  X(void *, SSL_get_ex_data, (const SSL *ssl, int idx))                                        \
  X(unsigned long, ERR_get_error, (void))                                                      \
  X(unsigned long, ERR_peek_error, (void))                                                     \
  X(void, ERR_clear_error, (void))                                                             \
  X(void, ERR_error_string_n, (unsigned long e, char *buf, size_t len))                        \
  X(int, RAND_bytes, (unsigned char *buf, int num))                                            \
  X(const EVP_CIPHER *, EVP_aes_128_cbc, (void))                                               \
  X(const EVP_CIPHER *, EVP_aes_256_cbc, (void))                                               \
  X(const EVP_MD *, EVP_sha256, (void))                                                        \
  X(int, EVP_EncryptInit_ex, (EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, ENGINE *impl,     \
                              const unsigned char *key, const unsigned char *iv))              \
  X(int, EVP_DecryptInit_ex, (EVP_CIPHER_CTX *ctx, const EVP_CIPHER *cipher, ENGINE *impl,     \
                              const unsigned char *key, const unsigned char *iv))              \
  X(int, HMAC_Init_ex, (HMAC_CTX *ctx, const void *key, int len, const EVP_MD *md, ENGINE *impl)) \
  X(unsigned char *, HMAC, (const EVP_MD *evp_md, const void *key, int key_len,                 \
                            const unsigned char *data, size_t data_len, unsigned char *md,       \
                            unsigned int *md_len))                                               \
  X(const EVP_MD *, EVP_sha384, (void))                                                        \
  X(const SSL_METHOD *, TLS_client_method, (void))                                             \
  X(void, SSL_CTX_set_verify, (SSL_CTX *ctx, int mode, aludel_verify_cb callback))             \
  X(int, SSL_CTX_set_default_verify_paths, (SSL_CTX *ctx))                                     \
  X(X509_STORE *, SSL_CTX_get_cert_store, (const SSL_CTX *ctx))                                \
  X(int, X509_STORE_add_cert, (X509_STORE *store, X509 *x))                                   \
  X(BIO *, BIO_new_mem_buf, (const void *buf, int len))                                       \
  X(int, BIO_free, (BIO *a))                                                                  \
  X(X509 *, PEM_read_bio_X509_AUX, (BIO *bp, X509 **x, aludel_pem_password_cb cb, void *u))   \
  X(unsigned long, ERR_peek_last_error, (void))                                               \
  X(void, SSL_CTX_set_keylog_callback, (SSL_CTX *ctx, aludel_keylog_cb cb))                    \
  X(void, SSL_set_connect_state, (SSL *ssl))                                                   \
  X(long, SSL_ctrl, (SSL *ssl, int cmd, long larg, void *parg))                                \
  X(int, SSL_set1_host, (SSL *s, const char *hostname))                                        \
  X(int, SSL_set_alpn_protos, (SSL *ssl, const unsigned char *protos, unsigned int protos_len)) \
  X(long, SSL_get_verify_result, (const SSL *ssl))                                             \
  X(const char *, X509_verify_cert_error_string, (long n))                                     \
  X(X509 *, SSL_get1_peer_certificate, (const SSL *s))                                         \
  X(int, X509_digest, (const X509 *data, const EVP_MD *type, unsigned char *md, unsigned int *len)) \
  X(void, X509_free, (X509 *a))                                                                \
  X(int, SSL_version, (const SSL *ssl))                                                        \
  X(uint32_t, SSL_CIPHER_get_id, (const SSL_CIPHER *c))                                        \
  X(int, SSL_has_pending, (const SSL *s))

#define ALUDEL_DECLARE_PTR(ret, name, params) ret(*name) params;
typedef struct {
  ALUDEL_OPENSSL_FUNCS(ALUDEL_DECLARE_PTR)
} aludel_openssl_api;
#undef ALUDEL_DECLARE_PTR

/* The table, filled once by aludel_openssl_load() on the main thread. */
extern aludel_openssl_api aludel_ossl;
extern void *aludel_ossl_handle;

/* Returns NULL on success, else a message naming what failed (dlerror text). */
const char *aludel_openssl_load(const char *path);

/*
 * Empties this thread's OpenSSL error queue before an I/O call, as
 * SSL_get_error needs (its manual: the queue must be empty before the
 * call). OpenSSL 3.0's ERR_clear_error resets all 16 slots (ERR_NUM_ERRORS,
 * crypto/err/err.c) whether or not they hold anything: about 400
 * instructions a call, twice per keep-alive request (a read and a write,
 * bench/request-cost.ts). The queue is nearly always empty already, which
 * ERR_peek_error tells from the queue's two indices (get_error_values, after
 * dropping entries marked for clearing, as ERR_clear_error would); only a
 * queue that holds an error is cleared.
 */
static inline void aludel_err_clear(void) {
  if (aludel_ossl.ERR_peek_error() != 0) aludel_ossl.ERR_clear_error();
}

#endif

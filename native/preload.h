/*
 * Shared by the preload's parts:
 * - preload.c: identifies the program's OpenSSL, picks the strategy, logs;
 *   strategy `option` (SSL_OP_ENABLE_KTLS, OpenSSL 3.x).
 * - preload-keys.c: strategy `keys` (OpenSSL 1.0.2, 1.1.1; also 3.x on
 *   request): per-connection table, handshake and I/O hooks.
 * - preload-secrets.c: record keys from the handshake (TLS 1.2 PRF, TLS 1.3
 *   HKDF from the keylog callback) and record counting (message callback).
 * - preload-ktls.c: one small function per kernel TLS syscall.
 * - preload-ossl102.c: OpenSSL 1.0.2's structures, declared here and checked
 *   against the 1.0.2f headers by native/abi-check-102.c.
 * - preload-bio.c: OpenSSL's SSL BIO routed through the same path.
 * The OpenSSL ABI is declared here, not included: node-gyp puts Node's OpenSSL
 * headers (OPENSSL_NO_KTLS) first on the include path, and the preload must
 * not depend on any OpenSSL headers or library at build time.
 */
#ifndef ALUDEL_PRELOAD_H
#define ALUDEL_PRELOAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "ktls-keys.h"

#define ALUDEL_EXPORT __attribute__((visibility("default")))
#define ALUDEL_PRINTF(f, a) __attribute__((format(printf, f, a)))

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_method_st SSL_METHOD;
typedef struct ssl_session_st SSL_SESSION;
typedef struct ssl_cipher_st SSL_CIPHER;
typedef struct bio_st BIO;
typedef struct evp_md_st EVP_MD;

typedef void (*aludel_keylog_cb)(const SSL *, const char *);
typedef void (*aludel_msg_cb)(int write_p, int version, int content_type, const void *buf, size_t len, SSL *ssl, void *arg);
typedef void (*aludel_info_cb)(const SSL *ssl, int where, int ret);

/* openssl/ssl.h, prov_ssl.h, bio.h, obj_mac.h, sslerr.h (same values in 1.0.2, 1.1.1 and 3.x) */
#define P_SSL_ERROR_NONE 0
#define P_SSL_ERROR_SSL 1
#define P_SSL_ERROR_WANT_READ 2
#define P_SSL_ERROR_WANT_WRITE 3
#define P_SSL_ERROR_SYSCALL 5
#define P_SSL_ERROR_ZERO_RETURN 6
#define P_SSL_MODE_ENABLE_PARTIAL_WRITE 0x1L
#define P_SSL_CTRL_MODE 33
#define P_SSL_CTRL_GET_READ_AHEAD 40
#define P_SSL_CTRL_SET_READ_AHEAD 41
#define P_SSL_MODE_AUTO_RETRY 0x4L
#define P_SSL_ST_OK 0x03 /* 1.0.2: SSL_state() once the handshake is done */
#define P_TLS1_2_VERSION 0x0303
#define P_TLS1_3_VERSION 0x0304
#define P_BIO_TYPE_SOCKET (5 | 0x0400 | 0x0100)
#define P_NID_aes_128_gcm 895
#define P_NID_aes_256_gcm 901
#define P_NID_chacha20_poly1305 1018
#define P_SSL3_RT_HEADER 0x100 /* message callback: a record header, 1.1.0+ */
#define P_SSL3_RT_CHANGE_CIPHER_SPEC 20
#define P_ERR_LIB_SSL 20
#define P_SSL_R_UNEXPECTED_MESSAGE 244
#define P_SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC 281
#define P_SSL_R_NO_RENEGOTIATION 339
#define P_SSL_R_CANNOT_CHANGE_CIPHER 109
#define P_SSL_R_BAD_LENGTH 271
/* Function codes up to 1.1.1 (ssl.h 1.0.2f, sslerr.h 1.1.1: the same numbers), which ERR_error_string names ("ssl3_read_bytes"); 3.x has none. */
#define P_SSL_F_SSL3_GET_RECORD 143
#define P_SSL_F_SSL3_READ_BYTES 148
#define P_SSL_F_SSL3_WRITE_BYTES 158
#define P_SSL_F_SSL3_WRITE_PENDING 159
#define P_SSL_F_SSL_SHUTDOWN 224
#define P_SSL_F_SSL_KEY_UPDATE 515 /* 1.1.1 only, as the four below */
#define P_SSL_F_SSL_RENEGOTIATE 516
#define P_SSL_F_SSL_RENEGOTIATE_ABBREVIATED 546
#define P_SSL_F_SSL_VERIFY_CLIENT_POST_HANDSHAKE 616
#define P_SSL_R_BAD_WRITE_RETRY 127
#define P_SSL_R_SHUTDOWN_WHILE_IN_INIT 407 /* 1.1.0+ */
#define P_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER 0x2L
#define P_SSL3_RT_MAX_PLAIN_LENGTH 16384 /* RFC 5246 §6.2.1: 2^14 bytes of plaintext per record at most */
#define P_SSL_AD_REASON_OFFSET 1000
#define P_SSL_CB_HANDSHAKE_START 0x10
#define P_SSL_OP_NO_RENEGOTIATION 0x40000000UL /* 1.1.0h+; in 1.0.2 the bit means something else */

/* TLS record content types and alerts (RFC 8446 §5.1, §6; RFC 5246 §7.2) */
#define RT_ALERT 21
#define RT_HANDSHAKE 22
#define RT_APPLICATION_DATA 23
#define ALERT_WARNING 1
#define ALERT_FATAL 2
#define AD_CLOSE_NOTIFY 0
#define AD_UNEXPECTED_MESSAGE 10
#define AD_DECODE_ERROR 50
#define AD_INTERNAL_ERROR 80
#define AD_NO_RENEGOTIATION 100
#define HS_HELLO_REQUEST 0
#define HS_CLIENT_HELLO 1
#define HS_NEW_SESSION_TICKET 4
#define HS_KEY_UPDATE 24

/* Which OpenSSL the program loaded (preload.c decides once). */
enum aludel_lib { ALUDEL_LIB_NONE = 0, ALUDEL_LIB_102, ALUDEL_LIB_111, ALUDEL_LIB_3 };
extern enum aludel_lib aludel_lib;

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
  int (*read_early_data)(SSL *, void *, size_t, size_t *);        /* 1.1.1+ (TLS 1.3 0-RTT); NULL before */
  int (*write_early_data)(SSL *, const void *, size_t, size_t *); /* 1.1.1+ */
  int (*get_error)(const SSL *, int);
  int (*shutdown)(SSL *);
  int (*pending)(const SSL *);
  int (*has_pending)(const SSL *); /* 1.1.0+ */
  int (*clear)(SSL *);
  void (*set_connect_state)(SSL *);
  void (*set_accept_state)(SSL *);
  void (*free)(SSL *);
  long (*ctx_ctrl)(SSL_CTX *, int, long, void *);
  void (*set_read_ahead)(SSL *, int);
  /* Calls that start a handshake message after the handshake; refused once the kernel has the connection. */
  int (*verify_client_post_handshake)(SSL *); /* 1.1.1+ */
  int (*key_update)(SSL *, int);              /* 1.1.1+ */
  int (*renegotiate)(SSL *);
  int (*renegotiate_abbreviated)(SSL *);
  /* Used by the keys strategy only. */
  int (*version)(const SSL *);
  int (*is_server)(const SSL *);
  int (*is_init_finished)(const SSL *); /* 1.1.0+ */
  int (*state)(const SSL *);            /* 1.0.2 */
  const SSL_CIPHER *(*current_cipher)(const SSL *);
  int (*cipher_nid)(const SSL_CIPHER *);                /* 1.1.0+ */
  const EVP_MD *(*handshake_digest)(const SSL_CIPHER *); /* 1.1.1+ */
  const char *(*cipher_name)(const SSL_CIPHER *);
  SSL_SESSION *(*get_session)(const SSL *);
  size_t (*master_key)(const SSL_SESSION *, unsigned char *, size_t); /* 1.1.0+ */
  size_t (*client_random)(const SSL *, unsigned char *, size_t);      /* 1.1.0+ */
  size_t (*server_random)(const SSL *, unsigned char *, size_t);      /* 1.1.0+ */
  BIO *(*rbio)(const SSL *);
  BIO *(*wbio)(const SSL *);
  int (*bio_type)(const BIO *);
  int (*get_fd)(const SSL *);
  long (*ctrl)(SSL *, int, long, void *);
  SSL_CTX *(*get_ssl_ctx)(const SSL *);
  int (*get_shutdown)(const SSL *);
  void (*set_shutdown)(SSL *, int);
  int (*get_quiet_shutdown)(const SSL *);
  aludel_info_cb (*get_info_cb)(const SSL *);
  aludel_info_cb (*ctx_get_info_cb)(SSL_CTX *);
  unsigned long (*get_options)(const SSL *); /* 1.1.0+ (a macro over SSL_ctrl in 1.0.2) */
  unsigned char *(*hmac)(const EVP_MD *, const void *, int, const unsigned char *, size_t, unsigned char *, unsigned int *);
  int (*md_size)(const EVP_MD *);
  const EVP_MD *(*sha256)(void);
  const EVP_MD *(*sha384)(void);
  void (*err_put)(int lib, int func, int reason, const char *file, int line); /* up to 1.1.1 */
  void (*err_new)(void);                                                    /* 3.x */
  void (*err_set_debug)(const char *file, int line, const char *func);
  void (*err_set_error)(int lib, int reason, const char *fmt, ...);
  void (*err_add_error_data)(int num, ...); /* up to 1.1.1 (3.x: ERR_set_error's format) */
  /* 1.1.1+: the secrets of TLS 1.3 and the record headers come through these callbacks. */
  SSL *(*ssl_new)(SSL_CTX *);
  void (*ctx_set_keylog)(SSL_CTX *, aludel_keylog_cb);
  aludel_keylog_cb (*ctx_get_keylog)(const SSL_CTX *);
  void (*ctx_set_msg_cb)(SSL_CTX *, aludel_msg_cb);
  void (*set_msg_cb)(SSL *, aludel_msg_cb);
  void (*ctx_set_pha)(SSL_CTX *, int); /* 1.1.1+ */
  void (*set_pha)(SSL *, int);
};

extern struct aludel_real aludel_real;

/* 1 when the keys strategy is on (resolved and chosen); set by preload.c. */
extern int aludel_keys_active;

/* ALUDEL_PRELOAD_DEBUG, read when the library is loaded (nginx empties its environment before it serves). */
extern int aludel_debug;

/* Resolves (once) and logs (once); every hook calls it first. */
void aludel_prepare(void);

/* One event line ("aludel-preload: pid N: ..."), rate-limited so that a flood of bad clients cannot fill the log. */
void aludel_event(const char *fmt, ...) ALUDEL_PRINTF(1, 2);

/* preload-keys.c: resolves what the keys strategy needs for `lib`; 0 when something is missing (its name in why). */
int aludel_keys_resolve(enum aludel_lib lib, char *why, size_t size);

struct aludel_keys {
  int version; /* P_TLS1_2_VERSION or P_TLS1_3_VERSION */
  enum aludel_cipher cipher;
  struct aludel_dir_keys rx, tx;
};

/*
 * Per SSL, from SSL_new (or the first callback that sees it) to SSL_free.
 * Written by the thread that drives that SSL; OpenSSL's own rule is that one
 * SSL is used by one thread at a time.
 */
struct aludel_conn {
  SSL *ssl;
  struct aludel_conn *next;
  int fd;
  int examined;       /* looked at after its handshake (once) */
  int offloaded;      /* the kernel has both directions */
  int broken;         /* nothing more may go through (RX went in and TX did not, or a fatal record): every call fails */
  int fatal_alert;    /* broken by the peer's fatal alert: reads end as OpenSSL's do then (see alert_received) */
  int closed;         /* close_notify received */
  int eof;            /* the last read met a TCP FIN without close_notify */
  int shutdown_sent;  /* close_notify sent */
  int shutdown_pending; /* SSL_shutdown's close_notify could not go out (EAGAIN): the next call sends it */
  int last_error;     /* what SSL_get_error says after our last call */
  int fatal;          /* 1.1.1+: a refused write retry put OpenSSL's state machine in its error state (SSLfatal): see write_retry_refused */
  size_t write_done;  /* bytes of an unfinished SSL_write already with the kernel (no partial-write mode) */
  /* The SSL_write that returned WANT_WRITE, as OpenSSL keeps it (wpend_buf, wnum + wpend_tot) to check the retry: see write_retry_refused. */
  int write_pending;
  const void *write_buf;
  size_t write_committed;
  /* Records seen by the message callback since the last key change, per direction (preload-secrets.c). */
  uint64_t tx_records, rx_records;
  int tx_counted, rx_counted; /* a key change was seen in that direction, so the count is exact */
  uint64_t headers_seen;      /* record headers seen at all: the message callback really ran for this SSL */
  aludel_msg_cb program_msg_cb; /* the program's own message callback for this SSL, called after ours */
  int pha_offered;              /* a client offering TLS 1.3 post-handshake authentication (SSL_set_post_handshake_auth) */
  /* TLS 1.3 application traffic secrets from the keylog callback (RFC 8446 §7.1), kept for KeyUpdate. */
  unsigned char client_secret[48], server_secret[48];
  size_t client_secret_len, server_secret_len;
  int server;
  int version;
  enum aludel_cipher cipher;
  const EVP_MD *md;
  /* A control record (alert or handshake message) being read from the kernel, whole messages only. */
  unsigned char *ctrl;
  size_t ctrl_len;
  unsigned char ctrl_type;
};

/* preload-keys.c */
struct aludel_conn *aludel_conn_find(const SSL *ssl);
struct aludel_conn *aludel_conn_get(SSL *ssl); /* found or added */
void aludel_conn_drop(SSL *ssl);

/* preload-secrets.c */
int aludel_tls12_keys(SSL *ssl, struct aludel_conn *c, struct aludel_keys *out);
int aludel_tls13_keys(SSL *ssl, struct aludel_conn *c, struct aludel_keys *out);
int aludel_tls13_next_keys(struct aludel_conn *c, int tx, struct aludel_dir_keys *out);
void aludel_secrets_ctx_created(SSL_CTX *ctx);
void aludel_secrets_ssl_created(SSL *ssl, SSL_CTX *ctx);

/* preload-ktls.c: each returns 0 or -1 with errno, as the syscall does. */
int aludel_ktls_ulp(int fd);
int aludel_ktls_ulp_present(void); /* 1, 0, or -1 when it cannot tell: the kernel's answer, errno kept */
ssize_t aludel_ktls_send_record(int fd, unsigned char type, const void *buf, size_t n, int flags);
ssize_t aludel_ktls_recv(int fd, void *buf, size_t n, int peek, unsigned char *type);
ssize_t aludel_ktls_send(int fd, const void *buf, size_t n);

/* preload-ossl102.c: 1.0.2 fields read through its (checked) structure layout. */
int aludel_102_randoms(const SSL *ssl, unsigned char client[32], unsigned char server[32]);
int aludel_102_master_key(const SSL *ssl, unsigned char out[48]);
int aludel_102_sequences(const SSL *ssl, uint64_t *read_seq, uint64_t *write_seq);
int aludel_102_buffered(const SSL *ssl);
int aludel_102_sane(const SSL *ssl, char *why, size_t size);

/* preload-keys.c, for preload-bio.c: the kernel side of one offloaded connection. */
int aludel_finish_handshake(SSL *ssl);
void aludel_examine(SSL *ssl);
int aludel_is_init_finished(const SSL *ssl);
struct aludel_conn *aludel_offloaded(const SSL *ssl);
size_t aludel_kernel_read(struct aludel_conn *c, void *buf, size_t n, int peek);
int aludel_kernel_write(struct aludel_conn *c, const void *buf, size_t n, size_t *written);
/* What SSL_read returns for `got` bytes from aludel_kernel_read: got, or 0 at the end of the connection, -1 otherwise. */
int aludel_read_result(const struct aludel_conn *c, size_t got);

#endif

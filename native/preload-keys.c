/*
 * The keys strategy: for an OpenSSL that cannot program kTLS itself (1.0.2,
 * 1.1.1; on request also 3.x). Once a handshake on a socket BIO is done, the
 * record keys (preload-secrets.c) go to the kernel (preload-ktls.c), and from
 * then on that connection's SSL_read/SSL_write/SSL_shutdown go to the kernel:
 * plaintext by send/recvmsg, alerts and post-handshake messages as records of
 * their own type.
 *
 * Why at the end of SSL_do_handshake and not in an info callback: with
 * read-ahead off (OpenSSL's default) nothing past the peer's last handshake
 * record has been read from the socket then, and every record OpenSSL wrote or
 * read under the application keys is counted (TLS 1.3 NewSessionTickets). A
 * handshake hidden inside SSL_read/SSL_write is first finished by
 * SSL_do_handshake here, so it ends at the same point. OpenSSL's own record
 * state is never used again for that connection; every call that could write
 * a record through it is routed here.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "preload.h"

#define P_SSL_SENT_SHUTDOWN 1
#define P_SSL_RECEIVED_SHUTDOWN 2

/* ---- connections, by SSL pointer ---- */

#define BUCKETS 1024
static struct aludel_conn *table[BUCKETS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t bucket(const SSL *ssl) {
  return ((uintptr_t)ssl >> 4) % BUCKETS;
}

struct aludel_conn *aludel_conn_find(const SSL *ssl) {
  pthread_mutex_lock(&table_lock);
  struct aludel_conn *c = table[bucket(ssl)];
  while (c != NULL && c->ssl != ssl) c = c->next;
  pthread_mutex_unlock(&table_lock);
  return c;
}

struct aludel_conn *aludel_conn_get(SSL *ssl) {
  struct aludel_conn *c = aludel_conn_find(ssl);
  if (c != NULL || ssl == NULL || (c = calloc(1, sizeof *c)) == NULL) return c;
  c->ssl = ssl;
  c->fd = -1;
  pthread_mutex_lock(&table_lock);
  c->next = table[bucket(ssl)];
  table[bucket(ssl)] = c;
  pthread_mutex_unlock(&table_lock);
  return c;
}

static void forget(struct aludel_conn *c) {
  free(c->ctrl);
  explicit_bzero(c, sizeof *c);
  free(c);
}

void aludel_conn_drop(SSL *ssl) {
  struct aludel_conn *gone = NULL;
  pthread_mutex_lock(&table_lock);
  for (struct aludel_conn **p = &table[bucket(ssl)]; *p != NULL; p = &(*p)->next) {
    if ((*p)->ssl == ssl) {
      gone = *p;
      *p = gone->next;
      break;
    }
  }
  pthread_mutex_unlock(&table_lock);
  if (gone != NULL) forget(gone);
}

/* The offloaded connection of ssl, or NULL (keys strategy off, not yet examined, or left to OpenSSL). */
struct aludel_conn *aludel_offloaded(const SSL *ssl) {
  if (!aludel_keys_active) return NULL;
  struct aludel_conn *c = aludel_conn_find(ssl);
  return c != NULL && c->offloaded ? c : NULL;
}

/* ---- resolving ---- */

#define RESOLVE(field, name) (*(void **)&aludel_real.field = dlsym(RTLD_NEXT, name))

static void resolve_all(void) {
  RESOLVE(version, "SSL_version");
  RESOLVE(is_server, "SSL_is_server");
  RESOLVE(is_init_finished, "SSL_is_init_finished");
  RESOLVE(state, "SSL_state");
  RESOLVE(current_cipher, "SSL_get_current_cipher");
  RESOLVE(cipher_nid, "SSL_CIPHER_get_cipher_nid");
  RESOLVE(handshake_digest, "SSL_CIPHER_get_handshake_digest");
  RESOLVE(cipher_name, "SSL_CIPHER_get_name");
  RESOLVE(get_session, "SSL_get_session");
  RESOLVE(master_key, "SSL_SESSION_get_master_key");
  RESOLVE(client_random, "SSL_get_client_random");
  RESOLVE(server_random, "SSL_get_server_random");
  RESOLVE(rbio, "SSL_get_rbio");
  RESOLVE(wbio, "SSL_get_wbio");
  RESOLVE(bio_type, "BIO_method_type");
  RESOLVE(get_fd, "SSL_get_fd");
  RESOLVE(get_ssl_ctx, "SSL_get_SSL_CTX");
  RESOLVE(get_shutdown, "SSL_get_shutdown");
  RESOLVE(set_shutdown, "SSL_set_shutdown");
  RESOLVE(get_quiet_shutdown, "SSL_get_quiet_shutdown");
  RESOLVE(get_info_cb, "SSL_get_info_callback");
  RESOLVE(ctx_get_info_cb, "SSL_CTX_get_info_callback");
  RESOLVE(get_options, "SSL_get_options");
  RESOLVE(hmac, "HMAC");
  RESOLVE(md_size, "EVP_MD_get_size"); /* 3.x name */
  if (aludel_real.md_size == NULL) RESOLVE(md_size, "EVP_MD_size");
  RESOLVE(sha256, "EVP_sha256");
  RESOLVE(sha384, "EVP_sha384");
  RESOLVE(err_put, "ERR_put_error");
  RESOLVE(err_new, "ERR_new");
  RESOLVE(err_set_debug, "ERR_set_debug");
  RESOLVE(err_set_error, "ERR_set_error");
  RESOLVE(err_add_error_data, "ERR_add_error_data");
}

int aludel_keys_resolve(enum aludel_lib lib, char *why, size_t size) {
  resolve_all();
  const char *missing = NULL;
#define NEED(field, name) \
  if (missing == NULL && aludel_real.field == NULL) missing = name
  NEED(version, "SSL_version");
  NEED(is_server, "SSL_is_server");
  NEED(current_cipher, "SSL_get_current_cipher");
  NEED(get_session, "SSL_get_session");
  NEED(rbio, "SSL_get_rbio");
  NEED(wbio, "SSL_get_wbio");
  NEED(bio_type, "BIO_method_type");
  NEED(get_fd, "SSL_get_fd");
  NEED(ctrl, "SSL_ctrl");
  NEED(get_ssl_ctx, "SSL_get_SSL_CTX");
  NEED(get_shutdown, "SSL_get_shutdown");
  NEED(set_shutdown, "SSL_set_shutdown");
  NEED(get_quiet_shutdown, "SSL_get_quiet_shutdown");
  NEED(hmac, "HMAC");
  NEED(md_size, "EVP_MD_size");
  if (lib == ALUDEL_LIB_102) {
    NEED(state, "SSL_state");
    NEED(cipher_name, "SSL_CIPHER_get_name");
    NEED(sha256, "EVP_sha256");
    NEED(sha384, "EVP_sha384");
  } else {
    NEED(is_init_finished, "SSL_is_init_finished");
    NEED(has_pending, "SSL_has_pending");
    NEED(cipher_nid, "SSL_CIPHER_get_cipher_nid");
    NEED(handshake_digest, "SSL_CIPHER_get_handshake_digest");
    NEED(master_key, "SSL_SESSION_get_master_key");
    NEED(client_random, "SSL_get_client_random");
    NEED(server_random, "SSL_get_server_random");
    NEED(ctx_set_keylog, "SSL_CTX_set_keylog_callback");
    NEED(ctx_set_msg_cb, "SSL_CTX_set_msg_callback");
    NEED(set_msg_cb, "SSL_set_msg_callback");
  }
#undef NEED
  if (missing != NULL) {
    strncpy(why, missing, size - 1);
    why[size - 1] = '\0';
    return 0;
  }
  return 1;
}

int aludel_is_init_finished(const SSL *ssl) {
  if (aludel_real.is_init_finished != NULL) return aludel_real.is_init_finished(ssl);
  return aludel_real.state != NULL && aludel_real.state(ssl) == P_SSL_ST_OK; /* 1.0.2: SSL_is_init_finished was a macro */
}

/*
 * The OpenSSL function an error is put in, as OpenSSL itself names it: the
 * function code up to 1.1.1, which ERR_error_string prints
 * ("error:140943FC:SSL routines:ssl3_read_bytes:sslv3 alert bad record mac";
 * code 0 printed "func(0)"), and the C name that 3.x keeps with ERR_set_debug
 * instead. Programs log that string (nginx: "SSL_read() failed (SSL: ...)").
 */
struct ossl_func {
  int code;
  const char *name;
};
static const struct ossl_func F_GET_RECORD = {P_SSL_F_SSL3_GET_RECORD, "ssl3_get_record"}; /* a record that fails authentication */
static const struct ossl_func F_READ_BYTES = {P_SSL_F_SSL3_READ_BYTES, "ssl3_read_bytes"}; /* alerts and unexpected records read */
static const struct ossl_func F_WRITE_BYTES = {P_SSL_F_SSL3_WRITE_BYTES, "ssl3_write_bytes"};
static const struct ossl_func F_WRITE_PENDING = {P_SSL_F_SSL3_WRITE_PENDING, "ssl3_write_pending"};
static const struct ossl_func F_SHUTDOWN = {P_SSL_F_SSL_SHUTDOWN, "SSL_shutdown"};
/*
 * Where 1.1.1 and 3.x refuse a handshake message after the handshake (see
 * refuse_handshake_message): 1.1.1 in the call itself (SSL_renegotiate,
 * SSL_renegotiate_abbreviated, SSL_key_update, SSL_verify_client_post_handshake:
 * "error:14204153:SSL routines:SSL_renegotiate:no renegotiation", seen with
 * 1.1.1w), 3.x renegotiation in its helper can_renegotiate (ssl_lib.c). 1.0.2f
 * has neither KeyUpdate nor post-handshake authentication.
 */
static const struct ossl_func F_RENEGOTIATE = {P_SSL_F_SSL_RENEGOTIATE, "can_renegotiate"};
static const struct ossl_func F_RENEGOTIATE_ABBREVIATED = {P_SSL_F_SSL_RENEGOTIATE_ABBREVIATED, "can_renegotiate"};
static const struct ossl_func F_KEY_UPDATE = {P_SSL_F_SSL_KEY_UPDATE, "SSL_key_update"};
static const struct ossl_func F_VERIFY_CLIENT_POST_HANDSHAKE = {P_SSL_F_SSL_VERIFY_CLIENT_POST_HANDSHAKE, "SSL_verify_client_post_handshake"};

/*
 * Puts reason on OpenSSL's error queue, as OpenSSL would for the same record
 * or call, so the program logs what it always logs. alert >= 0: a fatal
 * alert received, with the data OpenSSL adds to it ("SSL alert number 20":
 * ERR_add_error_data in ssl3_read_bytes up to 1.1.1, SSLfatal_data in 3.x),
 * which nginx prints after the error string.
 */
static void push_error_alert(const struct ossl_func *f, int reason, int alert) {
  char number[16];
  snprintf(number, sizeof number, "%d", alert);
  if (aludel_real.err_new != NULL && aludel_real.err_set_debug != NULL && aludel_real.err_set_error != NULL) {
    aludel_real.err_new();
    aludel_real.err_set_debug("aludel-preload", 0, f->name);
    if (alert >= 0) aludel_real.err_set_error(P_ERR_LIB_SSL, reason, "SSL alert number %s", number);
    else aludel_real.err_set_error(P_ERR_LIB_SSL, reason, NULL);
  } else if (aludel_real.err_put != NULL) {
    aludel_real.err_put(P_ERR_LIB_SSL, f->code, reason, "aludel-preload", 0);
    if (alert >= 0 && aludel_real.err_add_error_data != NULL) aludel_real.err_add_error_data(2, "SSL alert number ", number);
  }
}

static void push_error_in(const struct ossl_func *f, int reason) {
  push_error_alert(f, reason, -1);
}


/* ---- hand-over after the handshake ---- */

/* Why the connection stays with OpenSSL, or NULL: one socket BIO both ways, nothing read ahead, a sane 1.0.2 layout, no handshake message only OpenSSL could answer. */
static const char *not_eligible(SSL *ssl, const struct aludel_conn *c, char *why, size_t size) {
  BIO *r = aludel_real.rbio(ssl);
  int version = aludel_real.version(ssl);
  if (version != P_TLS1_2_VERSION && !(version == P_TLS1_3_VERSION && aludel_lib != ALUDEL_LIB_102)) return "protocol version without kernel TLS here";
  if (version == P_TLS1_3_VERSION && c->pha_offered && !aludel_real.is_server(ssl))
    return "TLS 1.3 post-handshake authentication offered (a CertificateRequest from the server can only be answered by OpenSSL)";
  if (r == NULL || r != aludel_real.wbio(ssl) || aludel_real.bio_type(r) != P_BIO_TYPE_SOCKET) return "not one socket BIO";
  if (aludel_real.get_fd(ssl) < 0) return "no descriptor";
  if (aludel_lib == ALUDEL_LIB_102) {
    if (!aludel_102_sane(ssl, why, size)) return why;
    if (aludel_102_buffered(ssl) || aludel_real.pending(ssl) > 0) return "bytes read ahead"; /* the kernel would never see them */
  } else if (aludel_real.has_pending(ssl)) {
    return "bytes read ahead";
  }
  return NULL;
}

/* RX first, so a kernel without RX (4.13-4.16) refuses before anything changed. 1: done; 0: nothing changed; -1: RX in, TX not. */
static int install(int fd, const struct aludel_keys *k) {
  if (aludel_ktls_ulp(fd) != 0) return 0;
  if (aludel_ktls_set(fd, 0, k->version, k->cipher, &k->rx) != 0) return 0;
  return aludel_ktls_set(fd, 1, k->version, k->cipher, &k->tx) == 0 ? 1 : -1;
}

static const char *cipher_text(enum aludel_cipher c) {
  return c == ALUDEL_AES_128_GCM ? "AES-128-GCM" : c == ALUDEL_AES_256_GCM ? "AES-256-GCM" : "ChaCha20-Poly1305";
}

static const char *version_text(int version) {
  switch (version) {
    case P_TLS1_3_VERSION: return "TLS 1.3";
    case P_TLS1_2_VERSION: return "TLS 1.2";
    case 0x0302: return "TLS 1.1";
    case 0x0301: return "TLS 1.0";
    case 0x0300: return "SSL 3.0";
    default: return "an unknown protocol version";
  }
}

#define FALLBACK_REASONS 16

/*
 * Without ALUDEL_PRELOAD_DEBUG, the first connection of each reason to stay
 * with OpenSSL (a CBC suite, TLS 1.0/1.1, a memory BIO, bytes read ahead, a
 * key the kernel refused) gets one line per process, naming the protocol and
 * suite, so an admin can tell why kTLS is off for some clients without one
 * line per connection. A kernel without the TLS ULP (ENOENT) is left out:
 * aludel run said so before the program started. Reasons are the constant
 * strings of aludel_examine, compared by address; a forked worker inherits
 * what its parent logged (nginx's master never serves, so each worker logs).
 */
static void log_first_fallback(SSL *ssl, int fd, const char *reason, int refused_errno) {
  static const char *logged[FALLBACK_REASONS];
  static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
  if (refused_errno == ENOENT) return;
  int fresh = 1;
  pthread_mutex_lock(&lock);
  for (int i = 0; i < FALLBACK_REASONS && fresh; i++) {
    if (logged[i] == reason) fresh = 0;
    else if (logged[i] == NULL) logged[i] = reason, i = FALLBACK_REASONS;
  }
  pthread_mutex_unlock(&lock);
  if (!fresh) return;
  const SSL_CIPHER *cipher = aludel_real.current_cipher(ssl);
  const char *name = cipher != NULL && aludel_real.cipher_name != NULL ? aludel_real.cipher_name(cipher) : NULL;
  aludel_event("fd %d stays with OpenSSL: %s (%s %s%s%s); later connections that stay with OpenSSL for this reason are not logged (ALUDEL_PRELOAD_DEBUG=1 logs each)",
               fd, reason, version_text(aludel_real.version(ssl)), name != NULL ? name : "?", refused_errno != 0 ? ": " : "", refused_errno != 0 ? strerror(refused_errno) : "");
}

/*
 * Why install() failed. The kernel sets the TLS ULP only on an ESTABLISHED
 * socket (tls_init: ENOTCONN otherwise): a peer whose FIN (or reset) came
 * before this side read its Finished, as a TLS health check or port scanner
 * that closes right after the handshake, leaves it in CLOSE_WAIT. That
 * connection is ending and rightly stays with OpenSSL, but it is no refusal
 * of the keys: its own reason, so the once-a-process line about keys the
 * kernel refuses (a suite this kernel lacks) is not spent on it, nor worded
 * as a kernel problem.
 */
static const char *refused_reason(SSL *ssl, int err) {
  if (err != ENOTCONN) return "the kernel refused the keys";
  return aludel_real.is_server(ssl) ? "the client had already closed the connection (the kernel takes TLS keys only on an established TCP connection)"
                                    : "the server had already closed the connection (the kernel takes TLS keys only on an established TCP connection)";
}

/* After a finished handshake: hand the connection to the kernel where it qualifies; otherwise leave it to OpenSSL. Examined once per SSL. */
void aludel_examine(SSL *ssl) {
  if (!aludel_keys_active || !aludel_is_init_finished(ssl)) return;
  struct aludel_conn *c = aludel_conn_get(ssl);
  if (c == NULL || c->examined) return;
  c->examined = 1;
  char why[160];
  const char *no = not_eligible(ssl, c, why, sizeof why);
  struct aludel_keys k;
  memset(&k, 0, sizeof k);
  if (no == NULL) {
    int version = aludel_real.version(ssl);
    int ok = version == P_TLS1_3_VERSION ? aludel_tls13_keys(ssl, c, &k) : aludel_tls12_keys(ssl, c, &k);
    if (!ok) no = version == P_TLS1_3_VERSION ? "suite without kernel TLS, or the traffic secrets or record counts were not seen" : "suite without kernel TLS";
  }
  int fd = aludel_real.get_fd(ssl);
  errno = 0;
  int set = no == NULL ? install(fd, &k) : 0;
  int refused_errno = 0;
  if (no == NULL && set == 0) no = refused_reason(ssl, errno), refused_errno = errno;
  /* One reason for the once-a-process line, whatever field of 1.0.2's layout differed. */
  const char *reason = no == why ? "the OpenSSL 1.0.2 structure layout does not match" : no;
  if (aludel_debug) { /* ALUDEL_PRELOAD_DEBUG: one line per connection, for tests and bug reports */
    if (no != NULL) aludel_event("fd %d stays with OpenSSL: %s (%s)", fd, no, refused_errno != 0 ? strerror(refused_errno) : "-");
    else aludel_event("fd %d: TLS %s %s to the kernel, rx seq %llu, tx seq %llu", fd, k.version == P_TLS1_3_VERSION ? "1.3" : "1.2", cipher_text(k.cipher),
                      (unsigned long long)k.rx.seq, (unsigned long long)k.tx.seq);
  } else if (no != NULL) {
    log_first_fallback(ssl, fd, reason, refused_errno);
  }
  explicit_bzero(&k.rx, sizeof k.rx);
  explicit_bzero(&k.tx, sizeof k.tx);
  if (set == 0) return;
  c->fd = fd;
  c->offloaded = 1;
  c->server = aludel_real.is_server(ssl);
  c->version = k.version;
  c->cipher = k.cipher;
  c->broken = set < 0;
  if (c->version != P_TLS1_3_VERSION) {
    explicit_bzero(c->client_secret, sizeof c->client_secret);
    explicit_bzero(c->server_secret, sizeof c->server_secret);
  }
}

int aludel_finish_handshake(SSL *ssl) {
  /* The kernel has it: OpenSSL's handshake code must not write again (see refuse_handshake_message). */
  if (aludel_offloaded(ssl) != NULL) return 1;
  int r = aludel_real.do_handshake(ssl);
  if (r == 1) aludel_examine(ssl);
  return r;
}

ALUDEL_EXPORT int SSL_do_handshake(SSL *ssl) {
  aludel_prepare();
  return aludel_finish_handshake(ssl);
}

ALUDEL_EXPORT int SSL_accept(SSL *ssl) {
  aludel_prepare();
  int r = aludel_real.accept(ssl);
  if (r == 1) aludel_examine(ssl);
  return r;
}

ALUDEL_EXPORT int SSL_connect(SSL *ssl) {
  aludel_prepare();
  int r = aludel_real.connect(ssl);
  if (r == 1) aludel_examine(ssl);
  return r;
}

/*
 * Before data moves: a handshake still under way (the program relies on
 * SSL_read/SSL_write to do it) is finished here, so that it ends before any
 * application record is read; a connection finished elsewhere (an SSL BIO's
 * own state machine) is examined now. One table lookup per call once
 * examined. Returns the offloaded connection or NULL; *h <= 0 is the
 * handshake's result.
 */
/*
 * The SSL whose TLS 1.3 early data (0-RTT, RFC 8446 §2.3) OpenSSL is moving
 * on this thread, or NULL. OpenSSL 1.1.1's SSL_read_early_data and
 * SSL_write_early_data drive the handshake with SSL_accept/SSL_connect and
 * move the data with SSL_read_ex/SSL_write_ex, called through libssl's PLT,
 * so they reach the hooks below. Those calls must reach OpenSSL untouched:
 * route() would finish the handshake first, and OpenSSL would then read the
 * client's early data record where it expects its Finished ("unexpected
 * record"). Per thread, because OpenSSL lets different SSLs run on different
 * threads at once; an SSL pointer rather than a flag, so that a callback run
 * meanwhile for another connection (nginx's SNI or ALPN callbacks) is routed
 * as usual. The handshake ends later in SSL_do_handshake/SSL_read/SSL_write,
 * outside these functions, and is taken there as any other.
 */
static __thread SSL *early_data_ssl;

static struct aludel_conn *route(SSL *ssl, int *h) {
  *h = 1;
  if (!aludel_keys_active || ssl == early_data_ssl) return NULL;
  if (!aludel_is_init_finished(ssl) && (*h = aludel_finish_handshake(ssl)) <= 0) return NULL;
  struct aludel_conn *c = aludel_conn_find(ssl);
  if (c == NULL || !c->examined) {
    aludel_examine(ssl);
    c = aludel_conn_find(ssl);
  }
  return c != NULL && c->offloaded ? c : NULL;
}

/* ---- kernel reads: application data, alerts, post-handshake messages ---- */

#define CTRL_MAX (4 + 16384) /* one handshake message of up to a record's plaintext (RFC 8446 §5.1) */

/* flags: 0 for an alert OpenSSL would send too (SIGPIPE as its write(2) would raise, see preload-ktls.c), MSG_NOSIGNAL for one of our own. */
static void send_alert(struct aludel_conn *c, int level, int description, int flags) {
  unsigned char alert[2] = {(unsigned char)level, (unsigned char)description};
  ssize_t w = aludel_ktls_send_record(c->fd, RT_ALERT, alert, sizeof alert, flags);
  (void)w; /* best effort: the connection is ending either way */
}

/* The connection cannot go on: a fatal alert to the peer (under keys it can still decrypt), the reason on the error queue (in ssl3_read_bytes, where OpenSSL finds what the kernel passed up), one event line. */
static int fail_in(struct aludel_conn *c, const struct ossl_func *f, int alert, int reason, const char *what) {
  if (alert >= 0) send_alert(c, ALERT_FATAL, alert, 0);
  push_error_in(f, reason);
  aludel_event("fd %d: %s: connection ended", c->fd, what);
  c->broken = 1;
  c->last_error = P_SSL_ERROR_SSL;
  return 0;
}

static int fail(struct aludel_conn *c, int alert, int reason, const char *what) {
  return fail_in(c, &F_READ_BYTES, alert, reason, what);
}

/* A failed recvmsg/send: WANT_READ/WANT_WRITE, SSL (a record the kernel rejected), or SYSCALL with errno kept. */
static int io_failed(struct aludel_conn *c, ssize_t got, int want) {
  int err = errno;
  if (got == 0) {
    /* TCP FIN without close_notify (RFC 5246 §7.2.1): OpenSSL reports SYSCALL with errno 0, and SSL_read returns 0 (see aludel_read_result). */
    errno = 0;
    c->eof = 1;
    c->last_error = P_SSL_ERROR_SYSCALL;
  } else if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR) {
    c->last_error = want;
  } else if (err == EBADMSG) {
    /* The kernel could not authenticate a record (tls_sw: TlsDecryptError) and has failed the socket. */
    return fail_in(c, &F_GET_RECORD, -1, P_SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC, "a record failed authentication in the kernel (EBADMSG: garbage or a forged record)");
  } else {
    c->last_error = P_SSL_ERROR_SYSCALL;
    errno = err;
  }
  return 0;
}

static size_t control_need(const struct aludel_conn *c) {
  if (c->ctrl_type == RT_ALERT) return 2;
  if (c->ctrl_len < 4) return 4;
  return 4 + ((size_t)c->ctrl[1] << 16 | (size_t)c->ctrl[2] << 8 | c->ctrl[3]);
}

/* Reads until one whole alert or handshake message is in c->ctrl; 1 then, else 0 with last_error set. */
static int fill_control(struct aludel_conn *c) {
  for (;;) {
    size_t need = control_need(c);
    if (need > CTRL_MAX) return fail(c, AD_UNEXPECTED_MESSAGE, P_SSL_R_UNEXPECTED_MESSAGE, "a post-handshake message too large to take");
    if (c->ctrl_len >= need) return 1;
    unsigned char type;
    ssize_t got = aludel_ktls_recv(c->fd, c->ctrl + c->ctrl_len, need - c->ctrl_len, 0, &type);
    if (got <= 0) return io_failed(c, got, P_SSL_ERROR_WANT_READ);
    if (type != c->ctrl_type) return fail(c, AD_UNEXPECTED_MESSAGE, P_SSL_R_UNEXPECTED_MESSAGE, "a message interleaved with another record type");
    c->ctrl_len += (size_t)got;
  }
}

/* RFC 8446 §4.6.3: follow the peer's KeyUpdate where the kernel can (Linux >= 6.14); else end the connection with close_notify, still under keys the peer can decrypt. */
static int key_update(struct aludel_conn *c, const unsigned char *body, size_t len) {
  if (len != 1 || body[0] > 1) return fail(c, AD_DECODE_ERROR, P_SSL_R_UNEXPECTED_MESSAGE, "a malformed KeyUpdate");
  int requested = body[0] == 1;
  struct aludel_dir_keys k;
  int ok = aludel_tls13_next_keys(c, 0, &k) && aludel_ktls_set(c->fd, 0, c->version, c->cipher, &k) == 0;
  int err = errno;
  explicit_bzero(&k, sizeof k);
  if (!ok) {
    send_alert(c, ALERT_WARNING, AD_CLOSE_NOTIFY, MSG_NOSIGNAL); /* OpenSSL would follow the KeyUpdate: no write of its own here */
    c->shutdown_sent = 1;
    char what[200];
    snprintf(what, sizeof what, "the peer sent a TLS 1.3 KeyUpdate%s and this kernel cannot take a new receive key (%s; Linux >= 6.14 can)",
             requested ? " (update_requested)" : "", strerror(err));
    return fail(c, -1, P_SSL_R_UNEXPECTED_MESSAGE, what);
  }
  if (requested) {
    /* Our own KeyUpdate (update_not_requested) under the old key, then the new key for everything after it. */
    static const unsigned char ku[5] = {HS_KEY_UPDATE, 0, 0, 1, 0};
    ok = aludel_ktls_send_record(c->fd, RT_HANDSHAKE, ku, sizeof ku, 0) == (ssize_t)sizeof ku && aludel_tls13_next_keys(c, 1, &k) &&
         aludel_ktls_set(c->fd, 1, c->version, c->cipher, &k) == 0;
    explicit_bzero(&k, sizeof k);
    if (!ok) return fail(c, -1, P_SSL_R_UNEXPECTED_MESSAGE, "could not answer a KeyUpdate with our own");
  }
  return 1;
}

/*
 * A client's ClientHello after the handshake: OpenSSL 1.0.2 (and 1.1.x
 * without SSL_OP_NO_RENEGOTIATION) starts a new handshake and first calls the
 * program's info callback with SSL_CB_HANDSHAKE_START (ssl3_accept). Servers
 * on those versions refuse client-initiated renegotiation there
 * (CVE-2009-3555, CVE-2011-1473): nginx before 1.13 marks the connection and,
 * once SSL_read returns, closes it with "[notice] SSL renegotiation disabled"
 * (ngx_ssl_info_callback, ngx_ssl_handle_recv); Apache's mod_ssl and HAProxy
 * do the same. The kernel cannot renegotiate, so the preload refuses anyway,
 * but tells the callback as OpenSSL would, so that such a program ends the
 * connection as it does without aludel run instead of keeping it. Where
 * OpenSSL itself refuses (SSL_OP_NO_RENEGOTIATION: nginx >= 1.13 on 1.1.x) it
 * calls no callback, and neither does this. 1: a callback was told.
 */
static int tell_handshake_start(struct aludel_conn *c) {
  if (aludel_lib != ALUDEL_LIB_102 && aludel_real.get_options != NULL && (aludel_real.get_options(c->ssl) & P_SSL_OP_NO_RENEGOTIATION)) return 0;
  aludel_info_cb cb = aludel_real.get_info_cb != NULL ? aludel_real.get_info_cb(c->ssl) : NULL;
  if (cb == NULL && aludel_real.ctx_get_info_cb != NULL) cb = aludel_real.ctx_get_info_cb(aludel_real.get_ssl_ctx(c->ssl));
  if (cb == NULL) return 0;
  cb(c->ssl, P_SSL_CB_HANDSHAKE_START, 1);
  return 1;
}

/* A post-handshake message: 1 taken (read on), 0 the connection stops (last_error set). */
static int handshake_message(struct aludel_conn *c, const unsigned char *m, size_t len) {
  int tls13 = c->version == P_TLS1_3_VERSION;
  switch (m[0]) {
    case HS_NEW_SESSION_TICKET:
      /* RFC 8446 §4.6.1: a client may ignore tickets; this one is dropped (the next connection does a full handshake). */
      if (tls13 && !c->server) return 1;
      break;
    case HS_KEY_UPDATE:
      if (tls13) return key_update(c, m + 4, len - 4);
      break;
    case HS_HELLO_REQUEST:
    case HS_CLIENT_HELLO:
      /* RFC 5246 §7.2.2: renegotiation refused with a warning no_renegotiation; the connection goes on with its keys (the kernel cannot re-key TLS 1.2). */
      if (!tls13 && (m[0] == HS_CLIENT_HELLO) == (c->server != 0)) {
        send_alert(c, ALERT_WARNING, AD_NO_RENEGOTIATION, 0);
        if (c->server && tell_handshake_start(c))
          aludel_event("fd %d: TLS 1.2 renegotiation refused (no_renegotiation); the program's info callback was told a handshake started, as OpenSSL tells it, and may close the connection", c->fd);
        else
          aludel_event("fd %d: TLS 1.2 renegotiation refused (no_renegotiation): the connection goes on", c->fd);
        return 1;
      }
      break;
  }
  char what[96];
  snprintf(what, sizeof what, "an unexpected handshake message (type %u) after the handshake", m[0]);
  return fail(c, AD_UNEXPECTED_MESSAGE, P_SSL_R_UNEXPECTED_MESSAGE, what);
}

static int alert_received(struct aludel_conn *c, const unsigned char *a) {
  if (a[1] == AD_CLOSE_NOTIFY) {
    c->closed = 1;
    aludel_real.set_shutdown(c->ssl, aludel_real.get_shutdown(c->ssl) | P_SSL_RECEIVED_SHUTDOWN);
    c->last_error = P_SSL_ERROR_ZERO_RETURN;
    return 0;
  }
  /* TLS 1.2 warnings are ignored, as OpenSSL does; in TLS 1.3 every alert but close_notify and user_canceled is fatal (RFC 8446 §6). */
  if ((c->version != P_TLS1_3_VERSION && a[0] == ALERT_WARNING) || a[1] == 90 /* user_canceled */) return 1;
  push_error_alert(&F_READ_BYTES, P_SSL_AD_REASON_OFFSET + a[1], a[1]);
  /*
   * As close_notify: OpenSSL's ssl3_read_bytes marks the peer's side shut on
   * a fatal alert too ("s->shutdown |= SSL_RECEIVED_SHUTDOWN", 1.0.2f and
   * 1.1.1) and returns 0: SSL_read returns 0 (SSL_get_error: SSL, the alert
   * queued), a waiting SSL_shutdown returns 1, and a later SSL_read returns 0
   * again, which SSL_get_error calls ZERO_RETURN (RECEIVED_SHUTDOWN with
   * warn_alert 0, close_notify's number). Seen with 1.0.2f and 1.1.1w.
   */
  aludel_real.set_shutdown(c->ssl, aludel_real.get_shutdown(c->ssl) | P_SSL_RECEIVED_SHUTDOWN);
  c->broken = 1;
  c->fatal_alert = 1;
  c->last_error = P_SSL_ERROR_SSL;
  return 0;
}

/* Takes every whole unit in c->ctrl; 1: all taken, read on; 0: stop. */
static int take_control(struct aludel_conn *c) {
  if (!fill_control(c)) return 0;
  size_t need = control_need(c);
  int go_on = c->ctrl_type == RT_ALERT ? alert_received(c, c->ctrl) : c->ctrl_type == RT_HANDSHAKE ? handshake_message(c, c->ctrl, need)
                                                                                                  : fail(c, AD_UNEXPECTED_MESSAGE, P_SSL_R_UNEXPECTED_MESSAGE, "a record of an unknown type");
  memmove(c->ctrl, c->ctrl + need, c->ctrl_len - need);
  c->ctrl_len -= need;
  return go_on;
}

/* Starts a control record: what the first read brought (none when it only peeked) goes to c->ctrl. */
static int start_control(struct aludel_conn *c, unsigned char type, const void *first, size_t got) {
  if (c->ctrl == NULL && (c->ctrl = malloc(CTRL_MAX)) == NULL) return fail(c, AD_INTERNAL_ERROR, P_SSL_R_UNEXPECTED_MESSAGE, "out of memory for a control record");
  if (got > CTRL_MAX) return fail(c, AD_UNEXPECTED_MESSAGE, P_SSL_R_UNEXPECTED_MESSAGE, "a post-handshake message too large to take");
  c->ctrl_type = type;
  memcpy(c->ctrl, first, got);
  c->ctrl_len = got;
  return 1;
}

/* Reads plaintext from the kernel: > 0 bytes; 0 with last_error set otherwise. */
size_t aludel_kernel_read(struct aludel_conn *c, void *buf, size_t n, int peek) {
  c->last_error = P_SSL_ERROR_NONE;
  c->eof = 0;
  if (n == 0) return 0; /* nothing asked: not an end of file */
  if (c->fatal) { /* OpenSSL 1.1.1's state machine in its error state: -1, nothing queued, SSL_ERROR_SYSCALL */
    c->last_error = P_SSL_ERROR_SYSCALL;
    return 0;
  }
  for (;;) {
    if (c->broken) {
      c->last_error = c->fatal_alert ? P_SSL_ERROR_ZERO_RETURN : P_SSL_ERROR_SSL; /* see alert_received */
      return 0;
    }
    if (c->closed) {
      c->last_error = P_SSL_ERROR_ZERO_RETURN;
      return 0;
    }
    if (c->ctrl_len > 0) {
      if (!take_control(c)) return 0;
      if (c->ctrl_len > 0) continue;
    }
    unsigned char type;
    ssize_t got = aludel_ktls_recv(c->fd, buf, n, peek, &type);
    if (got <= 0) return (size_t)io_failed(c, got, P_SSL_ERROR_WANT_READ);
    if (type == RT_APPLICATION_DATA) return (size_t)got;
    if (!start_control(c, type, buf, peek ? 0 : (size_t)got)) return 0;
    if (!take_control(c)) return 0;
    /*
     * A post-handshake message was taken. Without SSL_MODE_AUTO_RETRY (off in
     * 1.0.2, and switched off by programs such as s_client that wait in
     * select()), OpenSSL returns WANT_READ here rather than read on, which on a
     * blocking socket would wait for data that may never come.
     */
    if (c->ctrl_len == 0 && !(aludel_real.ctrl(c->ssl, P_SSL_CTRL_MODE, 0, NULL) & P_SSL_MODE_AUTO_RETRY)) {
      c->last_error = P_SSL_ERROR_WANT_READ;
      return 0;
    }
  }
}

/*
 * A retry of the SSL_write that returned WANT_WRITE (or failed), checked as
 * OpenSSL checks it (ssl3_write_bytes and ssl3_write_pending: 1.0.2f
 * s3_pkt.c, 1.1.1 rec_layer_s3.c). OpenSSL keeps the bytes of that call in
 * records already written (wnum) and in the record it had built and not yet
 * written out (wpend_tot, at most 2^14 bytes: RFC 5246 §6.2.1), and the
 * buffer's address (wpend_buf); here the bytes the kernel took stand for
 * wnum, and at most one record's worth after them for wpend_tot
 * (write_committed). Refused, with the call failing (-1, SSL_ERROR_SSL):
 * - a retry shorter than that, SSL_R_BAD_LENGTH, rather than report more
 *   written than asked: "len < tot" in 1.0.2f, "len < wnum + wpend_tot" in
 *   1.1.1, which so refuses a shorter retry in partial-write mode too, where
 *   1.0.2f takes it;
 * - a retry from another buffer, SSL_R_BAD_WRITE_RETRY, unless the program
 *   set SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER. nginx sets no such mode and
 *   retries from the same buffer (ngx_ssl_send_chain keeps c->ssl->buf).
 * 1.0.2f only queues the error: what was taken stays counted and a right
 * retry finishes the write. 1.1.1 fails both with SSLfatal: its state
 * machine goes to its error state, where SSL_read and SSL_write return -1
 * with nothing queued (SSL_ERROR_SYSCALL) and SSL_shutdown fails with
 * SSL_R_SHUTDOWN_WHILE_IN_INIT; the fatal alert waits behind the unwritten
 * record (ssl3_send_alert) and never goes out, and none goes out here.
 */
static int write_retry_refused(struct aludel_conn *c, const void *buf, size_t n, size_t done) {
  if (!c->write_pending) return 0;
  int sslfatal = aludel_lib != ALUDEL_LIB_102;
  long mode = aludel_real.ctrl(c->ssl, P_SSL_CTRL_MODE, 0, NULL);
  if (n < (sslfatal ? c->write_committed : done)) push_error_in(&F_WRITE_BYTES, P_SSL_R_BAD_LENGTH);
  else if (buf != c->write_buf && !(mode & P_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)) push_error_in(&F_WRITE_PENDING, P_SSL_R_BAD_WRITE_RETRY);
  else return 0;
  c->last_error = P_SSL_ERROR_SSL;
  c->fatal = sslfatal;
  return 1;
}

/* Writes plaintext to the kernel, which frames and encrypts it; OpenSSL's all-or-retry semantics unless partial writes are on. */
int aludel_kernel_write(struct aludel_conn *c, const void *buf, size_t n, size_t *written) {
  int partial = (aludel_real.ctrl(c->ssl, P_SSL_CTRL_MODE, 0, NULL) & P_SSL_MODE_ENABLE_PARTIAL_WRITE) != 0;
  c->last_error = P_SSL_ERROR_NONE;
  if (c->fatal) { /* OpenSSL 1.1.1's state machine in its error state (write_retry_refused) */
    c->last_error = P_SSL_ERROR_SYSCALL;
    return 0;
  }
  if (c->broken && !(c->fatal_alert && aludel_lib == ALUDEL_LIB_102)) {
    /*
     * After the peer's fatal alert (alert_received), as OpenSSL: 1.1.1 took
     * it with SSLfatal, and its SSL_write meets the state machine's error
     * state (-1, nothing queued), which SSL_get_error calls ZERO_RETURN
     * (RECEIVED_SHUTDOWN with warn_alert 0, as after alert_received's read);
     * 1.0.2f only queued the alert and marked the peer's side shut, and
     * writes on (below). Seen with both alone (ssl-return-probe.c
     * write-read-write).
     */
    c->last_error = c->fatal_alert ? P_SSL_ERROR_ZERO_RETURN : P_SSL_ERROR_SSL;
    return 0;
  }
  size_t done = partial ? 0 : c->write_done;
  if (write_retry_refused(c, buf, n, done)) return 0;
  while (done < n) {
    ssize_t w = aludel_ktls_send(c->fd, (const char *)buf + done, n - done);
    if (w < 0) {
      if (partial && done > 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
      if (!partial) c->write_done = done;
      c->write_pending = 1;
      c->write_buf = buf;
      c->write_committed = done + (n - done < P_SSL3_RT_MAX_PLAIN_LENGTH ? n - done : P_SSL3_RT_MAX_PLAIN_LENGTH);
      if (errno == EBADMSG) errno = ECONNRESET; /* the socket failed on a bad record it read: as dead as a reset one */
      return io_failed(c, -1, P_SSL_ERROR_WANT_WRITE);
    }
    done += (size_t)w;
    if (partial) break;
  }
  c->write_done = 0;
  c->write_pending = 0;
  c->last_error = P_SSL_ERROR_NONE;
  *written = done;
  return 1;
}

/* ---- the SSL_* calls of an offloaded connection ---- */

/*
 * What SSL_read/SSL_peek return when aludel_kernel_read got nothing. OpenSSL
 * 1.0.2 and 1.1.1 return 0 for an end of the connection, close_notify
 * (ZERO_RETURN) or a bare TCP FIN (SYSCALL), and -1 otherwise; their manuals
 * (SSL_read, SSL_get_error) tell programs that SYSCALL with 0 is an EOF and
 * with -1 an I/O error to look up in errno, and programs act on it (stunnel
 * logs "TLS socket closed" for one, a socket error for the other). The
 * peer's fatal alert ends a read with 0 too (see alert_received).
 */
int aludel_read_result(const struct aludel_conn *c, size_t got) {
  if (got > 0) return (int)got;
  if (c->last_error == P_SSL_ERROR_SSL && c->fatal_alert) return 0; /* the read that met the peer's fatal alert (alert_received) */
  return c->last_error == P_SSL_ERROR_ZERO_RETURN || (c->last_error == P_SSL_ERROR_SYSCALL && c->eof) ? 0 : -1;
}

ALUDEL_EXPORT int SSL_read_ex(SSL *ssl, void *buf, size_t n, size_t *readbytes) {
  aludel_prepare();
  int h;
  struct aludel_conn *c = route(ssl, &h);
  if (h <= 0) return 0;
  if (c == NULL) return aludel_real.read_ex(ssl, buf, n, readbytes);
  size_t got = aludel_kernel_read(c, buf, n, 0);
  if (readbytes != NULL) *readbytes = got;
  return got > 0;
}

ALUDEL_EXPORT int SSL_read(SSL *ssl, void *buf, int n) {
  aludel_prepare();
  int h;
  struct aludel_conn *c = route(ssl, &h);
  if (h <= 0) return h;
  if (c == NULL) return aludel_real.read(ssl, buf, n);
  return aludel_read_result(c, aludel_kernel_read(c, buf, n < 0 ? 0 : (size_t)n, 0));
}

ALUDEL_EXPORT int SSL_peek_ex(SSL *ssl, void *buf, size_t n, size_t *readbytes) {
  aludel_prepare();
  int h;
  struct aludel_conn *c = route(ssl, &h);
  if (h <= 0) return 0;
  if (c == NULL) return aludel_real.peek_ex(ssl, buf, n, readbytes);
  size_t got = aludel_kernel_read(c, buf, n, 1);
  if (readbytes != NULL) *readbytes = got;
  return got > 0;
}

ALUDEL_EXPORT int SSL_peek(SSL *ssl, void *buf, int n) {
  aludel_prepare();
  int h;
  struct aludel_conn *c = route(ssl, &h);
  if (h <= 0) return h;
  if (c == NULL) return aludel_real.peek(ssl, buf, n);
  return aludel_read_result(c, aludel_kernel_read(c, buf, n < 0 ? 0 : (size_t)n, 1));
}

ALUDEL_EXPORT int SSL_write_ex(SSL *ssl, const void *buf, size_t n, size_t *written) {
  aludel_prepare();
  int h;
  struct aludel_conn *c = route(ssl, &h);
  if (h <= 0) return 0;
  if (c == NULL) return aludel_real.write_ex(ssl, buf, n, written);
  size_t w = 0;
  int ok = aludel_kernel_write(c, buf, n, &w);
  if (written != NULL) *written = w;
  return ok;
}

ALUDEL_EXPORT int SSL_write(SSL *ssl, const void *buf, int n) {
  aludel_prepare();
  int h;
  struct aludel_conn *c = route(ssl, &h);
  if (h <= 0) return h;
  if (c == NULL) return aludel_real.write(ssl, buf, n);
  size_t w = 0;
  return aludel_kernel_write(c, buf, n < 0 ? 0 : (size_t)n, &w) ? (int)w : -1;
}

ALUDEL_EXPORT int SSL_get_error(const SSL *ssl, int ret) {
  aludel_prepare();
  struct aludel_conn *c = aludel_offloaded(ssl);
  if (c == NULL) return aludel_real.get_error(ssl, ret);
  /* As OpenSSL: a result <= 0 with nothing more specific is SYSCALL (e.g. SSL_write of 0 bytes, which s_client uses to drive the handshake). */
  return ret > 0 ? P_SSL_ERROR_NONE : c->last_error != P_SSL_ERROR_NONE ? c->last_error : P_SSL_ERROR_SYSCALL;
}

/* Data waits in the kernel, not in OpenSSL: nothing is pending in user space. */
ALUDEL_EXPORT int SSL_pending(const SSL *ssl) {
  aludel_prepare();
  return aludel_offloaded(ssl) != NULL ? 0 : aludel_real.pending(ssl);
}

ALUDEL_EXPORT int SSL_has_pending(const SSL *ssl) {
  aludel_prepare();
  return aludel_offloaded(ssl) != NULL ? 0 : aludel_real.has_pending(ssl);
}

/*
 * Waits for the peer's close_notify, as OpenSSL's ssl3_shutdown does on a
 * call after ours went out (1.0.2f s3_lib.c, 1.1.1 the same): it reads one
 * record with ssl3_read_bytes(type 0), which throws application data away
 * once our close_notify is sent ("if (s->shutdown & SSL_SENT_SHUTDOWN)") and
 * returns 0, and SSL_shutdown then returns -1 (SSL_get_error: SYSCALL, as
 * rwstate is SSL_NOTHING). 1: the peer's close_notify came, or a fatal
 * alert (OpenSSL marks the peer's side shut on it and so returns 1, the
 * alert's error left on the queue: "error:140943FC:SSL
 * routines:ssl3_read_bytes:sslv3 alert bad record mac", seen with 1.0.2f and
 * 1.1.1w); -1 otherwise, last_error as the read left it (WANT_READ, SYSCALL
 * for a FIN, SSL).
 */
static int wait_close_notify(struct aludel_conn *c) {
  unsigned char scrap[16384]; /* one record's plaintext at most (RFC 5246 §6.2.1) */
  size_t got = aludel_kernel_read(c, scrap, sizeof scrap, 0);
  explicit_bzero(scrap, got);
  /* A fatal alert marks the peer's side shut as close_notify does (alert_received): 1, with the alert's error queued, as OpenSSL returns. */
  if (c->closed || (aludel_real.get_shutdown(c->ssl) & P_SSL_RECEIVED_SHUTDOWN)) return 1;
  if (got > 0) {
    errno = 0;
    c->last_error = P_SSL_ERROR_SYSCALL;
  }
  return -1;
}

/*
 * SSL_shutdown as OpenSSL's ssl3_shutdown answers it (1.0.2f and 1.1.1):
 * - quiet shutdown: nothing sent, both directions marked shut, 1;
 * - the first call sends close_notify (RFC 5246 §7.2.1, RFC 8446 §6.1) and
 *   returns 0 ("sent, the peer's not yet received"), or 1 when the peer's
 *   close_notify had already come; -1 (WANT_WRITE) when it could not go out,
 *   and the next call sends it again;
 * - a later call (or the first when the program marked ours sent with
 *   SSL_set_shutdown) waits for the peer's close_notify: 1 once it came, -1
 *   otherwise (see wait_close_notify).
 * Programs act on the 0: nginx frees the SSL on 0 or 1 alike (a 0 with an
 * empty error queue is no error in ngx_ssl_shutdown), and sets
 * SSL_RECEIVED_SHUTDOWN itself (no_wait_shutdown) when it will not wait, so
 * it gets 1; others call SSL_shutdown again to wait for the peer.
 */
static int kernel_shutdown(struct aludel_conn *c) {
  SSL *ssl = c->ssl;
  int mode = aludel_real.get_shutdown(ssl);
  c->last_error = P_SSL_ERROR_NONE;
  if (c->fatal) { /* 1.1.1's SSL_shutdown refuses an SSL in its error state (SSL_in_init) before anything else */
    push_error_in(&F_SHUTDOWN, P_SSL_R_SHUTDOWN_WHILE_IN_INIT);
    c->last_error = P_SSL_ERROR_SSL;
    return -1;
  }
  if (aludel_real.get_quiet_shutdown(ssl)) {
    aludel_real.set_shutdown(ssl, P_SSL_SENT_SHUTDOWN | P_SSL_RECEIVED_SHUTDOWN);
    return 1;
  }
  if (c->broken) { /* nothing more may go through this connection */
    aludel_real.set_shutdown(ssl, mode | P_SSL_SENT_SHUTDOWN);
    return 1;
  }
  if (!(mode & P_SSL_SENT_SHUTDOWN) || c->shutdown_pending) {
    aludel_real.set_shutdown(ssl, mode |= P_SSL_SENT_SHUTDOWN);
    unsigned char alert[2] = {ALERT_WARNING, AD_CLOSE_NOTIFY};
    if (aludel_ktls_send_record(c->fd, RT_ALERT, alert, sizeof alert, 0) < 0) {
      c->shutdown_pending = 1; /* OpenSSL's s3->alert_dispatch: sent again by the next call */
      return io_failed(c, -1, P_SSL_ERROR_WANT_WRITE) - 1;
    }
    c->shutdown_pending = 0;
    c->shutdown_sent = 1;
  } else if (!(mode & P_SSL_RECEIVED_SHUTDOWN)) {
    if (wait_close_notify(c) < 0) return -1;
    mode = aludel_real.get_shutdown(ssl);
  }
  c->last_error = P_SSL_ERROR_NONE;
  return mode == (P_SSL_SENT_SHUTDOWN | P_SSL_RECEIVED_SHUTDOWN) ? 1 : 0;
}

ALUDEL_EXPORT int SSL_shutdown(SSL *ssl) {
  aludel_prepare();
  struct aludel_conn *c = aludel_offloaded(ssl);
  if (c == NULL) return aludel_real.shutdown(ssl);
  return kernel_shutdown(c);
}

/*
 * Read-ahead lets OpenSSL take records from the socket past the handshake (a
 * TLS 1.3 client sends its first request right behind its Finished, and nginx
 * turns read-ahead on): those records would then never reach the kernel and
 * the connection would have to stay with OpenSSL. Under the keys strategy it
 * stays off, OpenSSL's default; it changes how OpenSSL reads, never what.
 */
ALUDEL_EXPORT long SSL_CTX_ctrl(SSL_CTX *ctx, int cmd, long larg, void *parg) {
  aludel_prepare();
  if (aludel_keys_active && cmd == P_SSL_CTRL_SET_READ_AHEAD) larg = 0;
  return aludel_real.ctx_ctrl(ctx, cmd, larg, parg);
}

ALUDEL_EXPORT long SSL_ctrl(SSL *ssl, int cmd, long larg, void *parg) {
  aludel_prepare();
  if (aludel_keys_active && cmd == P_SSL_CTRL_SET_READ_AHEAD) larg = 0;
  return aludel_real.ctrl(ssl, cmd, larg, parg);
}

ALUDEL_EXPORT void SSL_set_read_ahead(SSL *ssl, int yes) {
  aludel_prepare();
  if (aludel_real.set_read_ahead != NULL) aludel_real.set_read_ahead(ssl, aludel_keys_active ? 0 : yes);
}

/*
 * The SSL starts a new connection: forget the old one's kernel state, keep
 * what belongs to the SSL's settings (the program's message callback, TLS 1.3
 * post-handshake authentication offered), which OpenSSL keeps too.
 */
static void start_afresh(SSL *ssl) {
  if (!aludel_keys_active || ssl == NULL) return;
  struct aludel_conn *c = aludel_conn_find(ssl);
  if (c == NULL) return;
  aludel_msg_cb keep = c->program_msg_cb;
  int pha = c->pha_offered;
  aludel_conn_drop(ssl);
  if ((keep != NULL || pha) && (c = aludel_conn_get(ssl)) != NULL) c->program_msg_cb = keep, c->pha_offered = pha;
}

ALUDEL_EXPORT int SSL_clear(SSL *ssl) {
  aludel_prepare();
  start_afresh(ssl);
  return aludel_real.clear(ssl);
}

/*
 * SSL_set_connect_state and SSL_set_accept_state put an SSL back before its
 * handshake (OpenSSL resets its state machine and cipher state, ssl_lib.c),
 * and programs use that to reuse one SSL for a new connection on a new
 * socket: `openssl s_client -reconnect` calls SSL_shutdown, then
 * SSL_set_connect_state, then SSL_set_bio with the next socket, never
 * SSL_clear. Without forgetting the old connection here, the new one was
 * taken for it: already in the kernel, so its handshake was skipped and the
 * program's bytes went to a socket without keys (the client waited for an
 * answer to a ClientHello it never sent). nginx calls SSL_set_accept_state
 * on each new SSL: one table lookup there.
 */
ALUDEL_EXPORT void SSL_set_connect_state(SSL *ssl) {
  aludel_prepare();
  start_afresh(ssl);
  if (aludel_real.set_connect_state != NULL) aludel_real.set_connect_state(ssl);
}

ALUDEL_EXPORT void SSL_set_accept_state(SSL *ssl) {
  aludel_prepare();
  start_afresh(ssl);
  if (aludel_real.set_accept_state != NULL) aludel_real.set_accept_state(ssl);
}

ALUDEL_EXPORT void SSL_free(SSL *ssl) {
  aludel_prepare();
  if (aludel_keys_active && ssl != NULL) aludel_conn_drop(ssl);
  aludel_real.free(ssl);
}

/*
 * ---- calls that start a handshake message after the handshake ----
 * Once the kernel has a connection, OpenSSL's record layer must never write
 * to its socket again: it would write an already encrypted record, which
 * kernel TX takes as plaintext and encrypts once more, so the peer's program
 * reads OpenSSL's ciphertext as application data. Seen with s_server 1.1.1's
 * `c` command (SSL_verify_client_post_handshake, then SSL_do_handshake): its
 * CertificateRequest reached s_client as garbage bytes, and the server said
 * the request had gone out. The kernel cannot carry the handshake those calls
 * start either (new keys for renegotiation or KeyUpdate: Linux < 6.14 cannot
 * re-key, and the peer's Certificate/Finished would have to be verified by
 * OpenSSL). So they fail as OpenSSL fails them when the connection cannot
 * (0, nothing sent, and the reason queued in the function that OpenSSL
 * version names, or nothing queued where it queues nothing), with one event line; the
 * connection goes on with its keys. A program that asks gets the failure it
 * already handles for a client that did not offer post-handshake
 * authentication (RFC 8446 §4.6.2) or a peer that refuses renegotiation.
 */
static int refuse_handshake_message(struct aludel_conn *c, const struct ossl_func *f, int reason, const char *what) {
  /*
   * 1.0.2f's SSL_renegotiate refuses (ssl3_renegotiate, under
   * SSL3_FLAGS_NO_RENEGOTIATE_CIPHERS) with 0 and nothing queued, which
   * SSL_get_error calls SYSCALL; 1.1.1 and 3.x queue the reason, SSL_get_error
   * then says SSL. Seen with both alone (ssl-return-probe.c renegotiate-refused).
   */
  if (aludel_lib == ALUDEL_LIB_102) {
    c->last_error = P_SSL_ERROR_SYSCALL;
  } else {
    push_error_in(f, reason);
    c->last_error = P_SSL_ERROR_SSL;
  }
  aludel_event("fd %d: %s refused: the connection is in kernel TLS, which cannot carry a handshake after the first; the connection goes on", c->fd, what);
  return 0;
}

ALUDEL_EXPORT int SSL_verify_client_post_handshake(SSL *ssl) {
  aludel_prepare();
  struct aludel_conn *c = aludel_offloaded(ssl);
  if (c != NULL) return refuse_handshake_message(c, &F_VERIFY_CLIENT_POST_HANDSHAKE, P_SSL_R_NO_RENEGOTIATION, "TLS 1.3 post-handshake client authentication (SSL_verify_client_post_handshake)");
  return aludel_real.verify_client_post_handshake != NULL ? aludel_real.verify_client_post_handshake(ssl) : 0;
}

ALUDEL_EXPORT int SSL_key_update(SSL *ssl, int type) {
  aludel_prepare();
  struct aludel_conn *c = aludel_offloaded(ssl);
  if (c != NULL) return refuse_handshake_message(c, &F_KEY_UPDATE, P_SSL_R_CANNOT_CHANGE_CIPHER, "a TLS 1.3 KeyUpdate from this side (SSL_key_update)");
  return aludel_real.key_update != NULL ? aludel_real.key_update(ssl, type) : 0;
}

ALUDEL_EXPORT int SSL_renegotiate(SSL *ssl) {
  aludel_prepare();
  struct aludel_conn *c = aludel_offloaded(ssl);
  if (c != NULL) return refuse_handshake_message(c, &F_RENEGOTIATE, P_SSL_R_NO_RENEGOTIATION, "a TLS 1.2 renegotiation from this side (SSL_renegotiate)");
  return aludel_real.renegotiate != NULL ? aludel_real.renegotiate(ssl) : 0;
}

ALUDEL_EXPORT int SSL_renegotiate_abbreviated(SSL *ssl) {
  aludel_prepare();
  struct aludel_conn *c = aludel_offloaded(ssl);
  if (c != NULL) return refuse_handshake_message(c, &F_RENEGOTIATE_ABBREVIATED, P_SSL_R_NO_RENEGOTIATION, "a TLS 1.2 renegotiation from this side (SSL_renegotiate_abbreviated)");
  return aludel_real.renegotiate_abbreviated != NULL ? aludel_real.renegotiate_abbreviated(ssl) : 0;
}

/* ---- TLS 1.3 early data: OpenSSL's own calls pass through (see early_data_ssl) ---- */

ALUDEL_EXPORT int SSL_read_early_data(SSL *ssl, void *buf, size_t n, size_t *readbytes) {
  aludel_prepare();
  if (aludel_real.read_early_data == NULL) { /* OpenSSL 1.0.2 has no early data: SSL_READ_EARLY_DATA_ERROR, nothing read */
    if (readbytes != NULL) *readbytes = 0;
    return 0;
  }
  SSL *outer = early_data_ssl; /* kept, so nested calls restore what they found */
  early_data_ssl = ssl;
  int r = aludel_real.read_early_data(ssl, buf, n, readbytes);
  early_data_ssl = outer;
  return r;
}

ALUDEL_EXPORT int SSL_write_early_data(SSL *ssl, const void *buf, size_t n, size_t *written) {
  aludel_prepare();
  if (aludel_real.write_early_data == NULL) { /* before 1.1.1: failure (0), nothing written */
    if (written != NULL) *written = 0;
    return 0;
  }
  SSL *outer = early_data_ssl;
  early_data_ssl = ssl;
  int r = aludel_real.write_early_data(ssl, buf, n, written);
  early_data_ssl = outer;
  return r;
}

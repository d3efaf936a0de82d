/*
 * The keys strategy (`aludel run --strategy keys`, ALUDEL_PRELOAD_STRATEGY=keys),
 * for an OpenSSL that cannot program kTLS itself (1.1.1; proven on 3.0, whose
 * API is the same): once a TLS 1.2 AES-GCM handshake on a socket BIO is done,
 * the record keys are derived from the session (RFC 5246 §6.3 key block from
 * SSL_SESSION_get_master_key and the two randoms, with the suite's PRF hash),
 * TLS_TX/TLS_RX are set on the socket (Documentation/networking/tls.rst), and
 * from then on that connection's SSL_read/SSL_write/SSL_shutdown go to the
 * kernel: read(2)/write(2) of plaintext, recvmsg(2) with a TLS_GET_RECORD_TYPE
 * cmsg to see alerts, sendmsg(2) with TLS_SET_RECORD_TYPE for close_notify.
 *
 * Why at the end of SSL_do_handshake and not in an info callback: with
 * read-ahead off (OpenSSL's default) nothing past the peer's Finished has been
 * read from the socket then, and the Finished in each direction was the only
 * record under the new keys, so both sequence numbers are 1 (RFC 5246 §6.1:
 * they reset to 0 at ChangeCipherSpec; §7.4.9: Finished is the first record
 * after it). A handshake hidden inside SSL_read/SSL_write is first finished by
 * SSL_do_handshake here, so it ends at the same point. OpenSSL's own record
 * state is never used again for that connection; every call that could write
 * a record through it is routed here.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "preload.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

#define RT_ALERT 21
#define RT_HANDSHAKE 22
#define RT_APPLICATION_DATA 23

/* Per connection, once examined after its handshake. */
struct conn {
  SSL *ssl;
  struct conn *next;
  int fd;
  int offloaded;      /* the kernel has both directions */
  int last_error;     /* what SSL_get_error says after our last call */
  size_t write_done;  /* bytes of an unfinished SSL_write already with the kernel (no partial-write mode) */
  int closed;         /* close_notify received */
  int broken;         /* RX went to the kernel and TX did not: every call fails */
};

#define BUCKETS 1024
static struct conn *table[BUCKETS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t bucket(const SSL *ssl) {
  return ((uintptr_t)ssl >> 4) % BUCKETS;
}

static struct conn *find(const SSL *ssl) {
  pthread_mutex_lock(&table_lock);
  struct conn *c = table[bucket(ssl)];
  while (c != NULL && c->ssl != ssl) c = c->next;
  pthread_mutex_unlock(&table_lock);
  return c;
}

static struct conn *add(SSL *ssl) {
  struct conn *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->ssl = ssl;
  c->fd = -1;
  pthread_mutex_lock(&table_lock);
  c->next = table[bucket(ssl)];
  table[bucket(ssl)] = c;
  pthread_mutex_unlock(&table_lock);
  return c;
}

static void drop(SSL *ssl) {
  pthread_mutex_lock(&table_lock);
  for (struct conn **p = &table[bucket(ssl)]; *p != NULL; p = &(*p)->next) {
    if ((*p)->ssl == ssl) {
      struct conn *c = *p;
      *p = c->next;
      free(c);
      break;
    }
  }
  pthread_mutex_unlock(&table_lock);
}

/* The offloaded connection of ssl, or NULL (keys strategy off, not yet examined, or left to OpenSSL). */
static struct conn *offloaded(const SSL *ssl) {
  if (!aludel_keys_active) return NULL;
  struct conn *c = find(ssl);
  return c != NULL && c->offloaded ? c : NULL;
}

#define RESOLVE(field, name) (*(void **)&aludel_real.field = dlsym(RTLD_NEXT, name))

int aludel_keys_resolve(char *why, size_t size) {
  RESOLVE(version, "SSL_version");
  RESOLVE(is_server, "SSL_is_server");
  RESOLVE(is_init_finished, "SSL_is_init_finished");
  RESOLVE(current_cipher, "SSL_get_current_cipher");
  RESOLVE(cipher_nid, "SSL_CIPHER_get_cipher_nid");
  RESOLVE(handshake_digest, "SSL_CIPHER_get_handshake_digest");
  RESOLVE(get_session, "SSL_get_session");
  RESOLVE(master_key, "SSL_SESSION_get_master_key");
  RESOLVE(client_random, "SSL_get_client_random");
  RESOLVE(server_random, "SSL_get_server_random");
  RESOLVE(rbio, "SSL_get_rbio");
  RESOLVE(wbio, "SSL_get_wbio");
  RESOLVE(bio_type, "BIO_method_type");
  RESOLVE(get_fd, "SSL_get_fd");
  RESOLVE(ctrl, "SSL_ctrl");
  RESOLVE(hmac, "HMAC");
  RESOLVE(md_size, "EVP_MD_get_size"); /* 3.x name */
  if (aludel_real.md_size == NULL) RESOLVE(md_size, "EVP_MD_size"); /* 1.1.1 */
  const char *missing = NULL;
#define NEED(field, name) \
  if (missing == NULL && aludel_real.field == NULL) missing = name
  NEED(version, "SSL_version");
  NEED(is_server, "SSL_is_server");
  NEED(is_init_finished, "SSL_is_init_finished");
  NEED(current_cipher, "SSL_get_current_cipher");
  NEED(cipher_nid, "SSL_CIPHER_get_cipher_nid");
  NEED(handshake_digest, "SSL_CIPHER_get_handshake_digest (OpenSSL >= 1.1.1)");
  NEED(get_session, "SSL_get_session");
  NEED(master_key, "SSL_SESSION_get_master_key");
  NEED(client_random, "SSL_get_client_random");
  NEED(server_random, "SSL_get_server_random");
  NEED(rbio, "SSL_get_rbio");
  NEED(wbio, "SSL_get_wbio");
  NEED(bio_type, "BIO_method_type");
  NEED(get_fd, "SSL_get_fd");
  NEED(ctrl, "SSL_ctrl");
  NEED(hmac, "HMAC");
  NEED(md_size, "EVP_MD_get_size");
#undef NEED
  if (missing != NULL) {
    strncpy(why, missing, size - 1);
    why[size - 1] = '\0';
    return 0;
  }
  return 1;
}

/* TLS 1.2 PRF (RFC 5246 §5): P_hash(secret, label + seed) with the suite's hash, n bytes into out. */
static int prf(const EVP_MD *md, const unsigned char *secret, size_t secret_len, const char *label,
               const unsigned char *seed, size_t seed_len, unsigned char *out, size_t n) {
  unsigned char ls[128], a[64], block[64 + 128];
  size_t label_len = strlen(label), ls_len = label_len + seed_len;
  int hlen = aludel_real.md_size(md);
  if (hlen <= 0 || hlen > 64 || ls_len > sizeof ls) return 0;
  memcpy(ls, label, label_len);
  memcpy(ls + label_len, seed, seed_len);
  unsigned int alen;
  /* A(1) = HMAC(secret, label + seed) */
  if (aludel_real.hmac(md, secret, (int)secret_len, ls, ls_len, a, &alen) == NULL) return 0;
  for (size_t done = 0; done < n;) {
    unsigned char chunk[64];
    unsigned int clen;
    memcpy(block, a, (size_t)hlen);
    memcpy(block + hlen, ls, ls_len);
    if (aludel_real.hmac(md, secret, (int)secret_len, block, (size_t)hlen + ls_len, chunk, &clen) == NULL) return 0;
    size_t take = n - done < clen ? n - done : clen;
    memcpy(out + done, chunk, take);
    explicit_bzero(chunk, sizeof chunk);
    done += take;
    /* A(i+1) = HMAC(secret, A(i)) */
    if (aludel_real.hmac(md, secret, (int)secret_len, a, (size_t)hlen, a, &alen) == NULL) return 0;
  }
  explicit_bzero(a, sizeof a);
  explicit_bzero(block, sizeof block);
  return 1;
}

/* Both directions' crypto_info from the key block: 1 done; 0 nothing changed (not TLS 1.2 AES-GCM, no kTLS); -1 half done. */
static int set_keys(SSL *ssl, int fd) {
  const SSL_CIPHER *cipher = aludel_real.current_cipher(ssl);
  if (cipher == NULL) return 0;
  int nid = aludel_real.cipher_nid(cipher);
  size_t keylen = nid == P_NID_aes_128_gcm ? 16 : nid == P_NID_aes_256_gcm ? 32 : 0;
  const EVP_MD *md = aludel_real.handshake_digest(cipher);
  if (keylen == 0 || md == NULL) return 0;
  unsigned char master[48], seed[64], block[2 * 32 + 2 * 4];
  SSL_SESSION *session = aludel_real.get_session(ssl);
  if (session == NULL || aludel_real.master_key(session, master, sizeof master) != sizeof master) return 0;
  /* key_block = PRF(master, "key expansion", server_random + client_random): client key, server key, client IV, server IV (§6.3; AEAD: no MAC keys). */
  if (aludel_real.server_random(ssl, seed, 32) != 32 || aludel_real.client_random(ssl, seed + 32, 32) != 32) return 0;
  int ok = prf(md, master, sizeof master, "key expansion", seed, sizeof seed, block, 2 * keylen + 8);
  explicit_bzero(master, sizeof master);
  if (!ok) return 0;
  int server = aludel_real.is_server(ssl);
  const unsigned char *client_key = block, *server_key = block + keylen;
  const unsigned char *client_iv = block + 2 * keylen, *server_iv = block + 2 * keylen + 4;
  /* [0] RX, [1] TX: RX first, so a kernel without RX (4.13-4.16) leaves the connection wholly to OpenSSL. */
  const unsigned char *keys[2] = {server ? client_key : server_key, server ? server_key : client_key};
  const unsigned char *salts[2] = {server ? client_iv : server_iv, server ? server_iv : client_iv};
  /* Sequence 1 both ways (the Finished records); TX's explicit nonce starts there too, as OpenSSL's own kTLS does. */
  const unsigned char seq[8] = {0, 0, 0, 0, 0, 0, 0, 1};
  int rx_set = 0;
  if (setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof "tls") != 0) ok = 0;
  for (int dir = 0; ok && dir < 2; dir++) {
    union {
      struct tls12_crypto_info_aes_gcm_128 g128;
      struct tls12_crypto_info_aes_gcm_256 g256;
    } info;
    memset(&info, 0, sizeof info);
    socklen_t len;
    if (keylen == 16) {
      info.g128.info.version = TLS_1_2_VERSION;
      info.g128.info.cipher_type = TLS_CIPHER_AES_GCM_128;
      memcpy(info.g128.key, keys[dir], 16);
      memcpy(info.g128.salt, salts[dir], 4);
      memcpy(info.g128.iv, seq, 8);
      memcpy(info.g128.rec_seq, seq, 8);
      len = sizeof info.g128;
    } else {
      info.g256.info.version = TLS_1_2_VERSION;
      info.g256.info.cipher_type = TLS_CIPHER_AES_GCM_256;
      memcpy(info.g256.key, keys[dir], 32);
      memcpy(info.g256.salt, salts[dir], 4);
      memcpy(info.g256.iv, seq, 8);
      memcpy(info.g256.rec_seq, seq, 8);
      len = sizeof info.g256;
    }
    if (setsockopt(fd, SOL_TLS, dir == 0 ? TLS_RX : TLS_TX, &info, len) != 0) ok = 0;
    else if (dir == 0) rx_set = 1;
    explicit_bzero(&info, sizeof info);
  }
  explicit_bzero(block, sizeof block);
  /* RX in the kernel but TX refused: neither side can carry on alone, so the connection only fails from now on. */
  return ok ? 1 : rx_set ? -1 : 0;
}

/*
 * After a finished handshake: hand the connection to the kernel if it is TLS
 * 1.2 AES-GCM on one socket BIO with nothing buffered; otherwise leave it to
 * OpenSSL. Examined once per SSL.
 */
static void examine(SSL *ssl) {
  if (!aludel_keys_active || !aludel_real.is_init_finished(ssl) || find(ssl) != NULL) return;
  struct conn *c = add(ssl);
  if (c == NULL) return;
  BIO *r = aludel_real.rbio(ssl);
  if (aludel_real.version(ssl) != P_TLS1_2_VERSION || r == NULL || r != aludel_real.wbio(ssl) || aludel_real.bio_type(r) != P_BIO_TYPE_SOCKET) return;
  if (aludel_real.has_pending != NULL && aludel_real.has_pending(ssl)) return; /* bytes OpenSSL read ahead: the kernel would miss them */
  int fd = aludel_real.get_fd(ssl);
  if (fd < 0) return;
  /* The TLS ULP without keys leaves the socket plain TCP, so a refusal before RX changes nothing. */
  int set = set_keys(ssl, fd);
  if (set == 0) return;
  c->fd = fd;
  c->offloaded = 1;
  c->broken = set < 0;
}

static int finish_handshake(SSL *ssl) {
  int r = aludel_real.do_handshake(ssl);
  if (r == 1) examine(ssl);
  return r;
}

ALUDEL_EXPORT int SSL_do_handshake(SSL *ssl) {
  aludel_prepare();
  return finish_handshake(ssl);
}

ALUDEL_EXPORT int SSL_accept(SSL *ssl) {
  aludel_prepare();
  int r = aludel_real.accept(ssl);
  if (r == 1) examine(ssl);
  return r;
}

ALUDEL_EXPORT int SSL_connect(SSL *ssl) {
  aludel_prepare();
  int r = aludel_real.connect(ssl);
  if (r == 1) examine(ssl);
  return r;
}

/*
 * Before data moves on a connection whose handshake is still under way (the
 * program relies on SSL_read/SSL_write to do it): finish it here, so that it
 * ends before any application record is read. <= 0: the handshake's result.
 */
static int ensure_handshake(SSL *ssl) {
  if (!aludel_keys_active || aludel_real.is_init_finished(ssl)) return 1;
  return finish_handshake(ssl);
}

static int error_for_errno(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == EINTR ? -1 : P_SSL_ERROR_SYSCALL;
}

/* Reads plaintext from the kernel: > 0 bytes, 0 with last_error set otherwise. */
static size_t kernel_read(struct conn *c, void *buf, size_t n, int peek, int want_error_on_again) {
  char cbuf[CMSG_SPACE(sizeof(unsigned char))];
  struct iovec iov = {.iov_base = buf, .iov_len = n};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  c->last_error = P_SSL_ERROR_NONE;
  if (c->broken) {
    c->last_error = P_SSL_ERROR_SSL;
    return 0;
  }
  if (c->closed) {
    c->last_error = P_SSL_ERROR_ZERO_RETURN;
    return 0;
  }
  ssize_t got = recvmsg(c->fd, &msg, peek ? MSG_PEEK : 0);
  if (got < 0) {
    int e = error_for_errno(errno);
    c->last_error = e == -1 ? want_error_on_again : e;
    return 0;
  }
  if (got == 0) {
    /* TCP FIN without close_notify (RFC 5246 §7.2.1): OpenSSL reports SYSCALL with errno 0. */
    errno = 0;
    c->last_error = P_SSL_ERROR_SYSCALL;
    return 0;
  }
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  unsigned char type = RT_APPLICATION_DATA;
  if (cm != NULL && cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE) type = *CMSG_DATA(cm);
  if (type == RT_APPLICATION_DATA) return (size_t)got;
  if (type == RT_ALERT && got >= 2 && ((unsigned char *)buf)[1] == 0 /* close_notify */) {
    c->closed = 1;
    c->last_error = P_SSL_ERROR_ZERO_RETURN;
    return 0;
  }
  /* A fatal alert, or a handshake message (renegotiation, which kTLS cannot follow): the connection is over. */
  c->last_error = P_SSL_ERROR_SSL;
  return 0;
}

/* Writes plaintext to the kernel, which frames and encrypts it; OpenSSL's all-or-retry semantics unless partial writes are on. */
static int kernel_write(struct conn *c, const void *buf, size_t n, size_t *written) {
  int partial = (aludel_real.ctrl(c->ssl, P_SSL_CTRL_MODE, 0, NULL) & P_SSL_MODE_ENABLE_PARTIAL_WRITE) != 0;
  c->last_error = P_SSL_ERROR_NONE;
  if (c->broken) {
    c->last_error = P_SSL_ERROR_SSL;
    return 0;
  }
  size_t done = partial ? 0 : c->write_done;
  while (done < n) {
    ssize_t w = send(c->fd, (const char *)buf + done, n - done, MSG_NOSIGNAL);
    if (w < 0) {
      int e = error_for_errno(errno);
      c->last_error = e == -1 ? P_SSL_ERROR_WANT_WRITE : e;
      if (partial && done > 0) break;
      if (!partial) c->write_done = done;
      return 0;
    }
    done += (size_t)w;
    if (partial) break;
  }
  c->write_done = 0;
  c->last_error = P_SSL_ERROR_NONE;
  *written = done;
  return 1;
}

ALUDEL_EXPORT int SSL_read_ex(SSL *ssl, void *buf, size_t n, size_t *readbytes) {
  aludel_prepare();
  int h = ensure_handshake(ssl);
  if (h <= 0) return 0;
  struct conn *c = offloaded(ssl);
  if (c == NULL) return aludel_real.read_ex(ssl, buf, n, readbytes);
  size_t got = kernel_read(c, buf, n, 0, P_SSL_ERROR_WANT_READ);
  if (readbytes != NULL) *readbytes = got;
  return got > 0;
}

ALUDEL_EXPORT int SSL_read(SSL *ssl, void *buf, int n) {
  aludel_prepare();
  int h = ensure_handshake(ssl);
  if (h <= 0) return h;
  struct conn *c = offloaded(ssl);
  if (c == NULL) return aludel_real.read(ssl, buf, n);
  size_t got = kernel_read(c, buf, n < 0 ? 0 : (size_t)n, 0, P_SSL_ERROR_WANT_READ);
  return got > 0 ? (int)got : c->last_error == P_SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

ALUDEL_EXPORT int SSL_peek_ex(SSL *ssl, void *buf, size_t n, size_t *readbytes) {
  aludel_prepare();
  int h = ensure_handshake(ssl);
  if (h <= 0) return 0;
  struct conn *c = offloaded(ssl);
  if (c == NULL) return aludel_real.peek_ex(ssl, buf, n, readbytes);
  size_t got = kernel_read(c, buf, n, 1, P_SSL_ERROR_WANT_READ);
  if (readbytes != NULL) *readbytes = got;
  return got > 0;
}

ALUDEL_EXPORT int SSL_peek(SSL *ssl, void *buf, int n) {
  aludel_prepare();
  int h = ensure_handshake(ssl);
  if (h <= 0) return h;
  struct conn *c = offloaded(ssl);
  if (c == NULL) return aludel_real.peek(ssl, buf, n);
  size_t got = kernel_read(c, buf, n < 0 ? 0 : (size_t)n, 1, P_SSL_ERROR_WANT_READ);
  return got > 0 ? (int)got : c->last_error == P_SSL_ERROR_ZERO_RETURN ? 0 : -1;
}

ALUDEL_EXPORT int SSL_write_ex(SSL *ssl, const void *buf, size_t n, size_t *written) {
  aludel_prepare();
  int h = ensure_handshake(ssl);
  if (h <= 0) return 0;
  struct conn *c = offloaded(ssl);
  if (c == NULL) return aludel_real.write_ex(ssl, buf, n, written);
  size_t w = 0;
  int ok = kernel_write(c, buf, n, &w);
  if (written != NULL) *written = w;
  return ok;
}

ALUDEL_EXPORT int SSL_write(SSL *ssl, const void *buf, int n) {
  aludel_prepare();
  int h = ensure_handshake(ssl);
  if (h <= 0) return h;
  struct conn *c = offloaded(ssl);
  if (c == NULL) return aludel_real.write(ssl, buf, n);
  size_t w = 0;
  return kernel_write(c, buf, n < 0 ? 0 : (size_t)n, &w) ? (int)w : -1;
}

ALUDEL_EXPORT int SSL_get_error(const SSL *ssl, int ret) {
  aludel_prepare();
  struct conn *c = offloaded(ssl);
  if (c == NULL) return aludel_real.get_error(ssl, ret);
  return ret > 0 ? P_SSL_ERROR_NONE : c->last_error;
}

/* Data waits in the kernel, not in OpenSSL: nothing is pending in user space. */
ALUDEL_EXPORT int SSL_pending(const SSL *ssl) {
  aludel_prepare();
  return offloaded(ssl) != NULL ? 0 : aludel_real.pending(ssl);
}

ALUDEL_EXPORT int SSL_has_pending(const SSL *ssl) {
  aludel_prepare();
  return offloaded(ssl) != NULL ? 0 : aludel_real.has_pending(ssl);
}

/* close_notify as a warning alert record (RFC 5246 §7.2.1) through the kernel; 1: done, without waiting for the peer's. */
ALUDEL_EXPORT int SSL_shutdown(SSL *ssl) {
  aludel_prepare();
  struct conn *c = offloaded(ssl);
  if (c == NULL) return aludel_real.shutdown(ssl);
  if (c->broken) return 1;
  unsigned char alert[2] = {1 /* warning */, 0 /* close_notify */};
  char cbuf[CMSG_SPACE(sizeof(unsigned char))];
  struct iovec iov = {.iov_base = alert, .iov_len = sizeof alert};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_TLS;
  cm->cmsg_type = TLS_SET_RECORD_TYPE;
  cm->cmsg_len = CMSG_LEN(sizeof(unsigned char));
  *CMSG_DATA(cm) = RT_ALERT;
  if (sendmsg(c->fd, &msg, MSG_NOSIGNAL) < 0) {
    int e = error_for_errno(errno);
    c->last_error = e == -1 ? P_SSL_ERROR_WANT_WRITE : e;
    return -1;
  }
  c->last_error = P_SSL_ERROR_NONE;
  return 1;
}

ALUDEL_EXPORT void SSL_free(SSL *ssl) {
  aludel_prepare();
  if (aludel_keys_active && ssl != NULL) drop(ssl);
  aludel_real.free(ssl);
}

/*
 * BIO_f_ssl: OpenSSL's SSL BIO reads and writes through internal functions
 * (ssl_read_internal), which no preload can interpose, so programs that talk
 * TLS through an SSL BIO (openssl s_server -WWW) get a copy of its method with
 * read and write replaced: they finish the handshake first (so it ends before
 * application data), then use the kernel for an offloaded connection and the
 * real method otherwise. Every other operation stays the real one.
 */
#define P_BIO_TYPE_SSL (7 | 0x0200)
#define P_BIO_C_GET_SSL 110
#define P_BIO_FLAGS_READ 0x01
#define P_BIO_FLAGS_WRITE 0x02
#define P_BIO_FLAGS_RWS 0x07
#define P_BIO_FLAGS_SHOULD_RETRY 0x08

typedef struct bio_method_st BIO_METHOD;

static struct {
  const BIO_METHOD *(*f_ssl)(void);
  BIO_METHOD *(*meth_new)(int, const char *);
  int (*set_read_ex)(BIO_METHOD *, int (*)(BIO *, char *, size_t, size_t *));
  int (*set_write_ex)(BIO_METHOD *, int (*)(BIO *, const char *, size_t, size_t *));
  int (*set_puts)(BIO_METHOD *, int (*)(BIO *, const char *));
  int (*set_ctrl)(BIO_METHOD *, long (*)(BIO *, int, long, void *));
  int (*set_create)(BIO_METHOD *, int (*)(BIO *));
  int (*set_destroy)(BIO_METHOD *, int (*)(BIO *));
  int (*set_callback_ctrl)(BIO_METHOD *, long (*)(BIO *, int, void (*)(BIO *, int, const char *, int, long, long)));
  int (*(*meth_get_read_ex)(const BIO_METHOD *))(BIO *, char *, size_t, size_t *);
  int (*(*meth_get_write_ex)(const BIO_METHOD *))(BIO *, const char *, size_t, size_t *);
  long (*(*meth_get_ctrl)(const BIO_METHOD *))(BIO *, int, long, void *);
  int (*(*meth_get_create)(const BIO_METHOD *))(BIO *);
  int (*(*meth_get_destroy)(const BIO_METHOD *))(BIO *);
  long (*(*meth_get_callback_ctrl)(const BIO_METHOD *))(BIO *, int, void (*)(BIO *, int, const char *, int, long, long));
  long (*bio_ctrl)(BIO *, int, long, void *);
  void (*set_flags)(BIO *, int);
  void (*clear_flags)(BIO *, int);
  /* The real method's read and write; the copy with ours. */
  int (*real_read)(BIO *, char *, size_t, size_t *);
  int (*real_write)(BIO *, const char *, size_t, size_t *);
  BIO_METHOD *wrapped;
} sb;

static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

/* Finishes a pending handshake for a BIO call; 1 when done, else 0 with the BIO's retry flags as the real SSL BIO would set them. */
static int bio_handshake(BIO *b, SSL *ssl) {
  if (aludel_real.is_init_finished(ssl)) return 1;
  int r = finish_handshake(ssl);
  if (r == 1) return 1;
  int e = aludel_real.get_error(ssl, r);
  if (e == P_SSL_ERROR_WANT_READ) sb.set_flags(b, P_BIO_FLAGS_READ | P_BIO_FLAGS_SHOULD_RETRY);
  if (e == P_SSL_ERROR_WANT_WRITE) sb.set_flags(b, P_BIO_FLAGS_WRITE | P_BIO_FLAGS_SHOULD_RETRY);
  return 0;
}

static SSL *bio_ssl(BIO *b) {
  SSL *ssl = NULL;
  sb.bio_ctrl(b, P_BIO_C_GET_SSL, 0, &ssl);
  return ssl;
}

static int ssl_bio_read(BIO *b, char *buf, size_t n, size_t *got) {
  SSL *ssl = bio_ssl(b);
  *got = 0;
  if (ssl == NULL) return sb.real_read(b, buf, n, got);
  sb.clear_flags(b, P_BIO_FLAGS_RWS | P_BIO_FLAGS_SHOULD_RETRY);
  if (!bio_handshake(b, ssl)) return 0;
  struct conn *c = offloaded(ssl);
  if (c == NULL) return sb.real_read(b, buf, n, got);
  *got = kernel_read(c, buf, n, 0, P_SSL_ERROR_WANT_READ);
  if (*got > 0) return 1;
  if (c->last_error == P_SSL_ERROR_WANT_READ) sb.set_flags(b, P_BIO_FLAGS_READ | P_BIO_FLAGS_SHOULD_RETRY);
  return 0;
}

static int ssl_bio_write(BIO *b, const char *buf, size_t n, size_t *written) {
  SSL *ssl = bio_ssl(b);
  *written = 0;
  if (ssl == NULL) return sb.real_write(b, buf, n, written);
  sb.clear_flags(b, P_BIO_FLAGS_RWS | P_BIO_FLAGS_SHOULD_RETRY);
  if (!bio_handshake(b, ssl)) return 0;
  struct conn *c = offloaded(ssl);
  if (c == NULL) return sb.real_write(b, buf, n, written);
  if (kernel_write(c, buf, n, written)) return 1;
  if (c->last_error == P_SSL_ERROR_WANT_WRITE) sb.set_flags(b, P_BIO_FLAGS_WRITE | P_BIO_FLAGS_SHOULD_RETRY);
  return 0;
}

/* The real SSL BIO's puts writes through its internal ssl_write: route it through ours. */
static int ssl_bio_puts(BIO *b, const char *s) {
  size_t w = 0;
  return ssl_bio_write(b, s, strlen(s), &w) ? (int)w : -1;
}

static void make_method(void) {
#define SB(field, name) (*(void **)&sb.field = dlsym(RTLD_NEXT, name))
  SB(meth_new, "BIO_meth_new");
  SB(set_read_ex, "BIO_meth_set_read_ex");
  SB(set_write_ex, "BIO_meth_set_write_ex");
  SB(set_puts, "BIO_meth_set_puts");
  SB(set_ctrl, "BIO_meth_set_ctrl");
  SB(set_create, "BIO_meth_set_create");
  SB(set_destroy, "BIO_meth_set_destroy");
  SB(set_callback_ctrl, "BIO_meth_set_callback_ctrl");
  SB(meth_get_read_ex, "BIO_meth_get_read_ex");
  SB(meth_get_write_ex, "BIO_meth_get_write_ex");
  SB(meth_get_ctrl, "BIO_meth_get_ctrl");
  SB(meth_get_create, "BIO_meth_get_create");
  SB(meth_get_destroy, "BIO_meth_get_destroy");
  SB(meth_get_callback_ctrl, "BIO_meth_get_callback_ctrl");
  SB(bio_ctrl, "BIO_ctrl");
  SB(set_flags, "BIO_set_flags");
  SB(clear_flags, "BIO_clear_flags");
#undef SB
  if (!sb.meth_new || !sb.set_read_ex || !sb.set_write_ex || !sb.set_puts || !sb.set_ctrl || !sb.set_create || !sb.set_destroy || !sb.set_callback_ctrl ||
      !sb.meth_get_read_ex || !sb.meth_get_write_ex || !sb.meth_get_ctrl || !sb.meth_get_create || !sb.meth_get_destroy || !sb.meth_get_callback_ctrl ||
      !sb.bio_ctrl || !sb.set_flags || !sb.clear_flags)
    return;
  const BIO_METHOD *real = sb.f_ssl();
  sb.real_read = sb.meth_get_read_ex(real);
  sb.real_write = sb.meth_get_write_ex(real);
  BIO_METHOD *m = sb.meth_new(P_BIO_TYPE_SSL, "ssl");
  if (m == NULL || sb.real_read == NULL || sb.real_write == NULL) return;
  sb.set_read_ex(m, ssl_bio_read);
  sb.set_write_ex(m, ssl_bio_write);
  sb.set_puts(m, ssl_bio_puts);
  sb.set_ctrl(m, sb.meth_get_ctrl(real));
  sb.set_create(m, sb.meth_get_create(real));
  sb.set_destroy(m, sb.meth_get_destroy(real));
  sb.set_callback_ctrl(m, sb.meth_get_callback_ctrl(real));
  sb.wrapped = m;
}

ALUDEL_EXPORT const BIO_METHOD *BIO_f_ssl(void) {
  aludel_prepare();
  if (sb.f_ssl == NULL) *(void **)&sb.f_ssl = dlsym(RTLD_NEXT, "BIO_f_ssl");
  if (sb.f_ssl == NULL) return NULL;
  if (!aludel_keys_active) return sb.f_ssl();
  pthread_once(&bio_once, make_method);
  return sb.wrapped != NULL ? sb.wrapped : sb.f_ssl();
}

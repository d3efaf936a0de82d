/*
 * BIO_f_ssl: OpenSSL's SSL BIO (used by `openssl s_server -WWW`) reads and
 * writes through functions inside libssl that no preload can interpose:
 * ssl_read_internal in 1.1.1/3.x, and SSL_read itself in 1.0.2 because libssl
 * is linked -Bsymbolic, so its internal calls never reach LD_PRELOAD. Programs
 * that talk TLS through an SSL BIO therefore get a copy of its method with
 * read, write and puts replaced: they finish the handshake first (so it ends
 * before application data), then use the kernel for an offloaded connection
 * and the real method otherwise. Every other operation stays the real one.
 * 1.1.1/3.x build the copy with BIO_meth_new and the getters; 1.0.2's
 * BIO_METHOD is a public struct (preload-ossl102.h), copied as it is.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include "preload-ossl102.h"
#include "preload.h"

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
  /* 1.1.1/3.x: the real method's read and write; the copy with ours. */
  int (*real_read)(BIO *, char *, size_t, size_t *);
  int (*real_write)(BIO *, const char *, size_t, size_t *);
  BIO_METHOD *wrapped;
  /* 1.0.2: the copy of the public struct. */
  struct ossl102_bio_method m102;
  int (*real_read102)(void *, char *, int);
  int (*real_write102)(void *, const char *, int);
  int have102;
} sb;

static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

/*
 * Finishes a pending handshake for a BIO call: 1 when done, else the
 * handshake's result (<= 0, what SSL_read/SSL_write would have returned while
 * driving it) with the BIO's retry flags as the real SSL BIO would set them.
 */
static int bio_handshake(BIO *b, SSL *ssl) {
  if (aludel_is_init_finished(ssl)) {
    aludel_examine(ssl); /* finished by the BIO's own state machine: examined now, still before any application record */
    return 1;
  }
  int r = aludel_finish_handshake(ssl);
  if (r == 1) return 1;
  int e = aludel_real.get_error(ssl, r);
  if (e == P_SSL_ERROR_WANT_READ) sb.set_flags(b, P_BIO_FLAGS_READ | P_BIO_FLAGS_SHOULD_RETRY);
  if (e == P_SSL_ERROR_WANT_WRITE) sb.set_flags(b, P_BIO_FLAGS_WRITE | P_BIO_FLAGS_SHOULD_RETRY);
  return r;
}

static SSL *bio_ssl(BIO *b) {
  SSL *ssl = NULL;
  sb.bio_ctrl(b, P_BIO_C_GET_SSL, 0, &ssl);
  return ssl;
}

#define NOT_OURS (-2) /* bio_io: the connection is not offloaded, the real method does the call */

/*
 * One read or write for either library, with the result the real SSL BIO
 * passes on from SSL_read/SSL_write (1.0.2 bio_ssl.c ssl_read/ssl_write
 * return it as it is; 1.1.1 from ssl_read_internal/ssl_write_internal, and
 * BIO_read/BIO_write return it when it is <= 0): 1 done by the kernel (*done
 * bytes); 0 at the end of the connection (close_notify, or a FIN without
 * it), -1 for a retry or an error, retry flags set; NOT_OURS otherwise.
 * A reader tells the end of the stream (0) from a retry by that value.
 */
static int bio_io(BIO *b, void *buf, size_t n, size_t *done, int write) {
  SSL *ssl = bio_ssl(b);
  *done = 0;
  if (ssl == NULL) return NOT_OURS;
  sb.clear_flags(b, P_BIO_FLAGS_RWS | P_BIO_FLAGS_SHOULD_RETRY);
  int h = bio_handshake(b, ssl);
  if (h <= 0) return h;
  struct aludel_conn *c = aludel_offloaded(ssl);
  if (c == NULL) return NOT_OURS;
  if (write ? aludel_kernel_write(c, buf, n, done) : (*done = aludel_kernel_read(c, buf, n, 0)) > 0) return 1;
  if (c->last_error == P_SSL_ERROR_WANT_READ) sb.set_flags(b, P_BIO_FLAGS_READ | P_BIO_FLAGS_SHOULD_RETRY);
  if (c->last_error == P_SSL_ERROR_WANT_WRITE) sb.set_flags(b, P_BIO_FLAGS_WRITE | P_BIO_FLAGS_SHOULD_RETRY);
  return write ? -1 : aludel_read_result(c, 0);
}

static int ssl_bio_read(BIO *b, char *buf, size_t n, size_t *got) {
  int r = bio_io(b, buf, n, got, 0);
  return r != NOT_OURS ? r : sb.real_read(b, buf, n, got);
}

static int ssl_bio_write(BIO *b, const char *buf, size_t n, size_t *written) {
  int r = bio_io(b, (void *)buf, n, written, 1);
  return r != NOT_OURS ? r : sb.real_write(b, buf, n, written);
}

/* The real SSL BIO's puts writes through its internal ssl_write: route it through ours. */
static int ssl_bio_puts(BIO *b, const char *s) {
  size_t w = 0;
  int r = ssl_bio_write(b, s, strlen(s), &w);
  return r > 0 ? (int)w : r;
}

/* 1.0.2 signatures: int counts, <= 0 on failure. */
static int ssl_bio_read102(void *b, char *buf, int n) {
  size_t got = 0;
  int r = bio_io(b, buf, n < 0 ? 0 : (size_t)n, &got, 0);
  return r == NOT_OURS ? sb.real_read102(b, buf, n) : r > 0 ? (int)got : r;
}

static int ssl_bio_write102(void *b, const char *buf, int n) {
  size_t w = 0;
  int r = bio_io(b, (void *)buf, n < 0 ? 0 : (size_t)n, &w, 1);
  return r == NOT_OURS ? sb.real_write102(b, buf, n) : r > 0 ? (int)w : r;
}

static int ssl_bio_puts102(void *b, const char *s) {
  return ssl_bio_write102(b, s, (int)strlen(s));
}

/*
 * The SSL BIO frees its SSL on destroy when it owns it (BIO_CLOSE), through
 * libssl's internal SSL_free that never reaches the SSL_free hook: forget the
 * connection first.
 */
#define P_BIO_CTRL_GET_CLOSE 8

static int (*real_destroy)(BIO *);
static int (*real_destroy102)(void *);

static void forget_owned(BIO *b) {
  SSL *ssl = bio_ssl(b);
  if (ssl != NULL && sb.bio_ctrl(b, P_BIO_CTRL_GET_CLOSE, 0, NULL)) aludel_conn_drop(ssl);
}

static int ssl_bio_destroy(BIO *b) {
  if (b != NULL) forget_owned(b);
  return real_destroy != NULL ? real_destroy(b) : 1;
}

static int ssl_bio_destroy102(void *b) {
  if (b != NULL) forget_owned(b);
  return real_destroy102 != NULL ? real_destroy102(b) : 1;
}

#define SB(field, name) (*(void **)&sb.field = dlsym(RTLD_NEXT, name))

static void make_method102(void) {
  const struct ossl102_bio_method *real = (const struct ossl102_bio_method *)(const void *)sb.f_ssl();
  if (real == NULL || real->type != P_BIO_TYPE_SSL || real->bread == NULL || real->bwrite == NULL) return;
  sb.m102 = *real;
  sb.real_read102 = real->bread;
  sb.real_write102 = real->bwrite;
  sb.m102.bread = ssl_bio_read102;
  sb.m102.bwrite = ssl_bio_write102;
  sb.m102.bputs = ssl_bio_puts102;
  real_destroy102 = real->destroy;
  sb.m102.destroy = ssl_bio_destroy102;
  sb.have102 = 1;
}

static void make_method(void) {
  SB(bio_ctrl, "BIO_ctrl");
  SB(set_flags, "BIO_set_flags");
  SB(clear_flags, "BIO_clear_flags");
  if (!sb.bio_ctrl || !sb.set_flags || !sb.clear_flags) return;
  if (aludel_lib == ALUDEL_LIB_102) {
    make_method102();
    return;
  }
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
  if (!sb.meth_new || !sb.set_read_ex || !sb.set_write_ex || !sb.set_puts || !sb.set_ctrl || !sb.set_create || !sb.set_destroy || !sb.set_callback_ctrl ||
      !sb.meth_get_read_ex || !sb.meth_get_write_ex || !sb.meth_get_ctrl || !sb.meth_get_create || !sb.meth_get_destroy || !sb.meth_get_callback_ctrl)
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
  real_destroy = sb.meth_get_destroy(real);
  sb.set_destroy(m, ssl_bio_destroy);
  sb.set_callback_ctrl(m, sb.meth_get_callback_ctrl(real));
  sb.wrapped = m;
}

ALUDEL_EXPORT const BIO_METHOD *BIO_f_ssl(void) {
  aludel_prepare();
  if (sb.f_ssl == NULL) SB(f_ssl, "BIO_f_ssl");
  if (sb.f_ssl == NULL) return NULL;
  if (!aludel_keys_active) return sb.f_ssl();
  pthread_once(&bio_once, make_method);
  if (sb.have102) return (const BIO_METHOD *)(const void *)&sb.m102;
  return sb.wrapped != NULL ? sb.wrapped : sb.f_ssl();
}

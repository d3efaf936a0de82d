/*
 * aludel-preload.so: loaded by `aludel run` through LD_PRELOAD into a program
 * that links the system's OpenSSL 3, it sets SSL_OP_ENABLE_KTLS on every
 * SSL_CTX and SSL the program creates. OpenSSL then programs the kernel's TLS
 * ULP itself after each handshake on a socket BIO (ssl/record/methods/ktls or
 * ssl/ktls.c, 3.0: TLS 1.2 AES-GCM/ChaCha20 both ways, TLS 1.3 TX), which
 * is what `Options = KTLS` in openssl.cnf or nginx's `ssl_conf_command
 * Options KTLS` would do. Memory BIOs never get kTLS (OpenSSL checks the BIO
 * before it calls setsockopt), so programs using them are unchanged.
 *
 * Nothing here links libssl: the real functions are found with
 * dlsym(RTLD_NEXT) at first use, so a process without OpenSSL never calls in.
 * The program may carry its own OpenSSL (node exports its bundled SSL_*
 * symbols, and RTLD_NEXT finds them): the hooks act only when the real symbol
 * lives in a file named libssl.so.* and OpenSSL_version_num() (from a
 * libcrypto.so.*) says 3.x, where bit 3 means ENABLE_KTLS; elsewhere they
 * pass the call through unchanged.
 *
 * With ALUDEL_PRELOAD_STRATEGY=keys (aludel run --strategy keys) the option is
 * left alone and preload-keys.c hands TLS 1.2 AES-GCM connections to the
 * kernel itself, for an OpenSSL that cannot (1.1.1).
 *
 * One line per process goes to stderr (or to the file named by
 * ALUDEL_PRELOAD_LOG, appended): at the first hooked call, saying what the
 * preload does in this process. At the first call and not at exit, because
 * daemons usually die by signal and never run destructors. A forked child
 * (nginx workers) inherits the decision and does not repeat the line.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "preload.h"

#define SSL_OP_ENABLE_KTLS ((uint64_t)1 << 3) /* openssl/ssl.h, 3.0 */

typedef struct ossl_lib_ctx_st OSSL_LIB_CTX;

struct aludel_real aludel_real;
int aludel_keys_active;

static struct {
  SSL_CTX *(*ctx_new)(const SSL_METHOD *);
  SSL_CTX *(*ctx_new_ex)(OSSL_LIB_CTX *, const char *, const SSL_METHOD *);
  SSL *(*ssl_new)(SSL_CTX *);
  uint64_t (*ctx_set_options)(SSL_CTX *, uint64_t);
  uint64_t (*set_options)(SSL *, uint64_t);
  int active;               /* the hooks set the option */
  char why[512];            /* what the log line says */
} real;

static pthread_once_t resolve_once = PTHREAD_ONCE_INIT;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;

/* The file (basename) that defines `sym`, or NULL. */
static const char *defining_file(void *sym) {
  Dl_info info;
  if (sym == NULL || dladdr(sym, &info) == 0 || info.dli_fname == NULL) return NULL;
  const char *slash = strrchr(info.dli_fname, '/');
  return slash ? slash + 1 : info.dli_fname;
}

static int is_lib(const char *file, const char *prefix) {
  return file != NULL && strncmp(file, prefix, strlen(prefix)) == 0;
}

#define NEXT(field, name) (*(void **)&(field) = dlsym(RTLD_NEXT, name))

static void resolve(void) {
  /* Every hooked function first, so each hook can always pass its call through. */
  NEXT(real.ctx_new, "SSL_CTX_new");
  NEXT(real.ctx_new_ex, "SSL_CTX_new_ex");
  NEXT(real.ssl_new, "SSL_new");
  NEXT(aludel_real.do_handshake, "SSL_do_handshake");
  NEXT(aludel_real.accept, "SSL_accept");
  NEXT(aludel_real.connect, "SSL_connect");
  NEXT(aludel_real.read, "SSL_read");
  NEXT(aludel_real.read_ex, "SSL_read_ex");
  NEXT(aludel_real.peek, "SSL_peek");
  NEXT(aludel_real.peek_ex, "SSL_peek_ex");
  NEXT(aludel_real.write, "SSL_write");
  NEXT(aludel_real.write_ex, "SSL_write_ex");
  NEXT(aludel_real.get_error, "SSL_get_error");
  NEXT(aludel_real.shutdown, "SSL_shutdown");
  NEXT(aludel_real.pending, "SSL_pending");
  NEXT(aludel_real.has_pending, "SSL_has_pending");
  NEXT(aludel_real.free, "SSL_free");
  const char *ssl_file = defining_file((void *)real.ssl_new);
  if (!is_lib(ssl_file, "libssl.so")) {
    snprintf(real.why, sizeof real.why, "SSL_new comes from %s, not a shared libssl: nothing changed (a bundled OpenSSL, e.g. node's, is left alone)",
             ssl_file ? ssl_file : "nowhere");
    return;
  }
  unsigned long (*version_num)(void);
  const char *(*version_text)(int);
  NEXT(version_num, "OpenSSL_version_num");
  NEXT(version_text, "OpenSSL_version");
  const char *crypto_file = defining_file((void *)version_num);
  if (!is_lib(crypto_file, "libcrypto.so") || version_text == NULL) {
    snprintf(real.why, sizeof real.why, "%s found but no libcrypto OpenSSL_version_num: nothing changed", ssl_file);
    return;
  }
  unsigned long v = version_num();
  const char *text = version_text(0 /* OPENSSL_VERSION */);
  const char *strategy = getenv("ALUDEL_PRELOAD_STRATEGY");
  if (strategy != NULL && strcmp(strategy, "keys") == 0) {
    char missing[128];
    if ((v >> 20) < 0x111) {
      snprintf(real.why, sizeof real.why, "keys strategy: %s is %s, older than 1.1.1: nothing changed", ssl_file, text);
    } else if (!aludel_keys_resolve(missing, sizeof missing)) {
      snprintf(real.why, sizeof real.why, "keys strategy: %s (%s) lacks %s: nothing changed", ssl_file, text, missing);
    } else {
      aludel_keys_active = 1;
      snprintf(real.why, sizeof real.why, "keys strategy: TLS 1.2 AES-GCM connections handed to kernel TLS after the handshake (%s, %s)", text, ssl_file);
    }
    return;
  }
  if ((v >> 28) < 3) {
    /* Before 3.0 bit 3 is no KTLS switch (1.1.1 has no kTLS in Debian builds). */
    snprintf(real.why, sizeof real.why, "%s is %s, older than 3.0: nothing changed (see aludel run --strategy keys)", ssl_file, text);
    return;
  }
  NEXT(real.ctx_set_options, "SSL_CTX_set_options");
  NEXT(real.set_options, "SSL_set_options");
  if (real.ctx_set_options == NULL || real.set_options == NULL) {
    snprintf(real.why, sizeof real.why, "%s (%s) has no SSL_CTX_set_options: nothing changed", ssl_file, text);
    return;
  }
  real.active = 1;
  snprintf(real.why, sizeof real.why, "SSL_OP_ENABLE_KTLS set on every SSL_CTX and SSL (%s, %s)", text, ssl_file);
}

static void write_log(void) {
  char line[640];
  int n = snprintf(line, sizeof line, "aludel-preload: pid %ld: %s\n", (long)getpid(), real.why);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) n = sizeof line - 1;
  const char *path = getenv("ALUDEL_PRELOAD_LOG");
  int fd = 2, opened = -1;
  if (path != NULL && *path != '\0') {
    opened = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (opened >= 0) fd = opened;
  }
  /* One write(2) with O_APPEND: lines from several processes do not interleave. */
  ssize_t w = write(fd, line, (size_t)n);
  (void)w;
  if (opened >= 0) close(opened);
}

void aludel_prepare(void) {
  pthread_once(&resolve_once, resolve);
  pthread_once(&log_once, write_log);
}

ALUDEL_EXPORT SSL_CTX *SSL_CTX_new(const SSL_METHOD *method) {
  aludel_prepare();
  if (real.ctx_new == NULL) return NULL;
  SSL_CTX *ctx = real.ctx_new(method);
  if (ctx != NULL && real.active) real.ctx_set_options(ctx, SSL_OP_ENABLE_KTLS);
  return ctx;
}

ALUDEL_EXPORT SSL_CTX *SSL_CTX_new_ex(OSSL_LIB_CTX *libctx, const char *propq, const SSL_METHOD *method) {
  aludel_prepare();
  if (real.ctx_new_ex == NULL) return NULL;
  SSL_CTX *ctx = real.ctx_new_ex(libctx, propq, method);
  if (ctx != NULL && real.active) real.ctx_set_options(ctx, SSL_OP_ENABLE_KTLS);
  return ctx;
}

/* Again per SSL: a program may clear the context's options after creating it. */
ALUDEL_EXPORT SSL *SSL_new(SSL_CTX *ctx) {
  aludel_prepare();
  if (real.ssl_new == NULL) return NULL;
  SSL *ssl = real.ssl_new(ctx);
  if (ssl != NULL && real.active) real.set_options(ssl, SSL_OP_ENABLE_KTLS);
  return ssl;
}

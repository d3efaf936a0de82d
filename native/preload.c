/*
 * aludel-preload.so: loaded by `aludel run` through LD_PRELOAD. At the first
 * hooked call it identifies the program's OpenSSL and picks a strategy:
 * - `option` for a shared OpenSSL 3.x: SSL_OP_ENABLE_KTLS on every SSL_CTX
 *   and SSL the program creates. OpenSSL then programs the kernel's TLS ULP
 *   itself after each handshake on a socket BIO (3.0: TLS 1.2 AES-GCM/ChaCha20
 *   both ways, TLS 1.3 TX), which is what `Options = KTLS` in openssl.cnf or
 *   nginx's `ssl_conf_command Options KTLS` would do.
 * - `keys` for OpenSSL 1.1.1 and 1.0.2 (the libssl.so.1.1 and
 *   libssl.so.1.0.0 ABIs), which cannot: preload-keys.c hands each connection
 *   to the kernel itself after its handshake.
 * ALUDEL_PRELOAD_STRATEGY=option|keys (aludel run --strategy) overrides the
 * choice. Any other library (1.1.0, 1.0.1 and older, LibreSSL, BoringSSL, a
 * static or bundled OpenSSL such as node's) gets one log line and an untouched
 * program: it is identified (OpenSSL_version_num, or SSLeay before 1.1.0, and
 * the version text) before any structure or option is touched.
 *
 * Nothing here links libssl: the real functions are found with
 * dlsym(RTLD_NEXT) at first use, so a process without OpenSSL never calls in,
 * and every hook can pass its call through unchanged.
 *
 * One line per process goes to stderr (or to the file named by
 * ALUDEL_PRELOAD_LOG, appended): at the first hooked call, saying which
 * strategy it took and why. At the first call and not at exit, because
 * daemons usually die by signal and never run destructors. A forked child
 * (nginx workers) inherits the decision and does not repeat the line. Events
 * (bad records, refused renegotiations, KeyUpdates the kernel cannot follow)
 * get one line each, at most EVENTS_PER_SECOND a second.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "preload.h"

#define SSL_OP_ENABLE_KTLS ((uint64_t)1 << 3) /* openssl/ssl.h, 3.0 */
#define EVENTS_PER_SECOND 10

typedef struct ossl_lib_ctx_st OSSL_LIB_CTX;

struct aludel_real aludel_real;
int aludel_keys_active;
enum aludel_lib aludel_lib;
int aludel_debug;

/*
 * The environment as it was when the program started: nginx replaces its own
 * environment early (keeping only TZ and its `env` directives), before its
 * first TLS connection, so ALUDEL_PRELOAD_* are read here, once, at load time.
 */
static struct {
  char log[4096];
  char strategy[16];
} env;

/*
 * ALUDEL_PRELOAD_LOG, opened once when the library is loaded and kept: nginx
 * started as root opens it in the master, before it forks workers that
 * setuid() to `user` (nobody) and could not open a 0600 root file themselves
 * (ngx_worker_process_init); fork keeps the descriptor, so every worker's
 * lines land in the file. O_CLOEXEC: a program the process execs (nginx's
 * binary upgrade, a CGI) does not inherit it; a preloaded one opens its own.
 * Its device and inode are kept to tell, before each line, that the number
 * still names this file: a daemon that closes every descriptor at start-up
 * may have reused it for one of its own, which must never receive our lines.
 */
static struct {
  int fd; /* -1: none, or given up (closed or reused by the program) */
  dev_t dev;
  ino_t ino;
} kept_log = {-1, 0, 0};

/* Never 0-2: a program started with stdin/stdout/stderr closed would take our descriptor for one of them. */
static int open_log_file(const char *file) {
  int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0 || fd > 2) return fd;
  int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  close(fd);
  return high;
}

static void keep_log(const char *file) {
  struct stat st;
  int fd = open_log_file(file);
  if (fd < 0) return;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return;
  }
  kept_log.dev = st.st_dev;
  kept_log.ino = st.st_ino;
  kept_log.fd = fd;
}

__attribute__((constructor)) static void capture_env(void) {
  const char *log = getenv("ALUDEL_PRELOAD_LOG"), *strategy = getenv("ALUDEL_PRELOAD_STRATEGY");
  if (log != NULL && strlen(log) < sizeof env.log) strcpy(env.log, log);
  if (strategy != NULL && strlen(strategy) < sizeof env.strategy) strcpy(env.strategy, strategy);
  aludel_debug = getenv("ALUDEL_PRELOAD_DEBUG") != NULL;
  if (env.log[0] != '\0') keep_log(env.log);
}

static struct {
  SSL_CTX *(*ctx_new)(const SSL_METHOD *);
  SSL_CTX *(*ctx_new_ex)(OSSL_LIB_CTX *, const char *, const SSL_METHOD *);
  uint64_t (*ctx_set_options)(SSL_CTX *, uint64_t);
  uint64_t (*set_options)(SSL *, uint64_t);
  int option_active;        /* the hooks set SSL_OP_ENABLE_KTLS */
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

static void resolve_hooked(void) {
  /* Every hooked function first, so each hook can always pass its call through. */
  NEXT(real.ctx_new, "SSL_CTX_new");
  NEXT(real.ctx_new_ex, "SSL_CTX_new_ex");
  NEXT(aludel_real.ssl_new, "SSL_new");
  NEXT(aludel_real.do_handshake, "SSL_do_handshake");
  NEXT(aludel_real.accept, "SSL_accept");
  NEXT(aludel_real.connect, "SSL_connect");
  NEXT(aludel_real.read, "SSL_read");
  NEXT(aludel_real.read_ex, "SSL_read_ex");
  NEXT(aludel_real.peek, "SSL_peek");
  NEXT(aludel_real.peek_ex, "SSL_peek_ex");
  NEXT(aludel_real.write, "SSL_write");
  NEXT(aludel_real.write_ex, "SSL_write_ex");
  NEXT(aludel_real.read_early_data, "SSL_read_early_data"); /* absent before 1.1.1: stays NULL */
  NEXT(aludel_real.write_early_data, "SSL_write_early_data");
  NEXT(aludel_real.get_error, "SSL_get_error");
  NEXT(aludel_real.shutdown, "SSL_shutdown");
  NEXT(aludel_real.pending, "SSL_pending");
  NEXT(aludel_real.has_pending, "SSL_has_pending");
  NEXT(aludel_real.clear, "SSL_clear");
  NEXT(aludel_real.set_connect_state, "SSL_set_connect_state");
  NEXT(aludel_real.set_accept_state, "SSL_set_accept_state");
  NEXT(aludel_real.free, "SSL_free");
  NEXT(aludel_real.ctrl, "SSL_ctrl");
  NEXT(aludel_real.ctx_ctrl, "SSL_CTX_ctrl");
  NEXT(aludel_real.set_read_ahead, "SSL_set_read_ahead");
  NEXT(aludel_real.verify_client_post_handshake, "SSL_verify_client_post_handshake"); /* absent before 1.1.1: stays NULL */
  NEXT(aludel_real.key_update, "SSL_key_update");
  NEXT(aludel_real.renegotiate, "SSL_renegotiate");
  NEXT(aludel_real.renegotiate_abbreviated, "SSL_renegotiate_abbreviated");
  NEXT(aludel_real.ctx_set_keylog, "SSL_CTX_set_keylog_callback");
  NEXT(aludel_real.ctx_get_keylog, "SSL_CTX_get_keylog_callback");
  NEXT(aludel_real.ctx_set_msg_cb, "SSL_CTX_set_msg_callback");
  NEXT(aludel_real.set_msg_cb, "SSL_set_msg_callback");
  NEXT(aludel_real.ctx_set_pha, "SSL_CTX_set_post_handshake_auth"); /* absent before 1.1.1: stays NULL */
  NEXT(aludel_real.set_pha, "SSL_set_post_handshake_auth");
}

/*
 * Which OpenSSL this is, from its own answer: OpenSSL_version_num (1.1.0+)
 * or SSLeay (up to 1.0.2, where OpenSSL_version_num does not exist), and the
 * version text, which names LibreSSL and BoringSSL (both report an OpenSSL
 * number). ALUDEL_LIB_NONE with the reason in why otherwise.
 */
static enum aludel_lib identify(const char *ssl_file, char *text_out, size_t text_size) {
  unsigned long (*num)(void);
  const char *(*text)(int);
  NEXT(num, "OpenSSL_version_num");
  NEXT(text, "OpenSSL_version");
  if (num == NULL) {
    NEXT(num, "SSLeay");
    NEXT(text, "SSLeay_version");
  }
  const char *crypto_file = defining_file((void *)num);
  if (!is_lib(crypto_file, "libcrypto.so") || text == NULL) {
    snprintf(real.why, sizeof real.why, "%s found but no libcrypto OpenSSL_version_num or SSLeay: nothing changed", ssl_file);
    return ALUDEL_LIB_NONE;
  }
  unsigned long v = num();
  const char *t = text(0 /* OPENSSL_VERSION, SSLEAY_VERSION */);
  snprintf(text_out, text_size, "%s", t != NULL ? t : "?");
  /* BoringSSL and AWS-LC say "OpenSSL 1.1.1 (compatible; BoringSSL)" with 1.1.1's number; LibreSSL says "LibreSSL x.y.z". */
  if (t == NULL || strncmp(t, "OpenSSL ", 8) != 0 || strstr(t, "(compatible") != NULL) {
    snprintf(real.why, sizeof real.why, "%s is %s, not OpenSSL: nothing changed (use aludel proxy)", ssl_file, text_out);
    return ALUDEL_LIB_NONE;
  }
  if ((v >> 28) >= 3) return ALUDEL_LIB_3;
  if ((v >> 12) == 0x10101) return ALUDEL_LIB_111;
  if ((v >> 12) == 0x10002) return ALUDEL_LIB_102;
  snprintf(real.why, sizeof real.why, "%s is %s: only OpenSSL 1.0.2, 1.1.1 and 3.x are supported: nothing changed (use aludel proxy)", ssl_file, text_out);
  return ALUDEL_LIB_NONE;
}

/*
 * What the strategy line says when this kernel has no TLS ULP (its answer,
 * aludel_ktls_ulp_present), else NULL: the connections then stay in
 * OpenSSL's userspace TLS whatever the strategy does, and the line says so
 * rather than what would happen with kTLS (aludel run warns the same).
 * The strategy stays active: a module loaded later serves later connections.
 */
static const char *kernel_tls_absent(void) {
  return aludel_ktls_ulp_present() == 0 ? "kernel TLS is not available here (setsockopt TCP_ULP \"tls\": ENOENT, no CONFIG_TLS or tls module)" : NULL;
}

static void choose_keys(enum aludel_lib lib, const char *ssl_file, const char *text, const char *because) {
  char missing[128];
  if (!aludel_keys_resolve(lib, missing, sizeof missing)) {
    snprintf(real.why, sizeof real.why, "strategy keys (%s): %s (%s) lacks %s: nothing changed", because, ssl_file, text, missing);
    return;
  }
  aludel_lib = lib;
  aludel_keys_active = 1;
  const char *what = lib == ALUDEL_LIB_102 ? "TLS 1.2 AES-GCM connections" : "TLS 1.2 (AES-GCM, ChaCha20-Poly1305) and TLS 1.3 connections";
  const char *absent = kernel_tls_absent();
  if (absent != NULL) snprintf(real.why, sizeof real.why, "strategy keys (%s): %s: %s stay in OpenSSL's userspace TLS (%s, %s)", because, absent, what, text, ssl_file);
  else snprintf(real.why, sizeof real.why, "strategy keys (%s): %s handed to kernel TLS after the handshake, both directions (%s, %s)", because, what, text, ssl_file);
}

static void choose_option(const char *ssl_file, const char *text, const char *because) {
  NEXT(real.ctx_set_options, "SSL_CTX_set_options");
  NEXT(real.set_options, "SSL_set_options");
  if (real.ctx_set_options == NULL || real.set_options == NULL) {
    snprintf(real.why, sizeof real.why, "strategy option (%s): %s (%s) has no SSL_CTX_set_options: nothing changed", because, ssl_file, text);
    return;
  }
  aludel_lib = ALUDEL_LIB_3;
  real.option_active = 1;
  const char *absent = kernel_tls_absent();
  if (absent != NULL) snprintf(real.why, sizeof real.why, "strategy option (%s): SSL_OP_ENABLE_KTLS set on every SSL_CTX and SSL, but %s: connections stay in OpenSSL's userspace TLS (%s, %s)", because, absent, text, ssl_file);
  else snprintf(real.why, sizeof real.why, "strategy option (%s): SSL_OP_ENABLE_KTLS set on every SSL_CTX and SSL (%s, %s)", because, text, ssl_file);
}

static void resolve(void) {
  resolve_hooked();
  const char *ssl_file = defining_file((void *)aludel_real.ssl_new);
  if (!is_lib(ssl_file, "libssl.so")) {
    snprintf(real.why, sizeof real.why, "SSL_new comes from %s, not a shared libssl: nothing changed (a bundled or static OpenSSL, e.g. node's, is left alone)",
             ssl_file ? ssl_file : "nowhere");
    return;
  }
  char text[128];
  enum aludel_lib lib = identify(ssl_file, text, sizeof text);
  if (lib == ALUDEL_LIB_NONE) return;
  const char *forced = env.strategy;
  if (strcmp(forced, "keys") == 0) {
    choose_keys(lib, ssl_file, text, "--strategy keys");
  } else if (strcmp(forced, "option") == 0) {
    /* Before 3.0 bit 3 is no KTLS switch (and 1.1.1 has no kTLS in Debian's builds). */
    if (lib == ALUDEL_LIB_3) choose_option(ssl_file, text, "--strategy option");
    else snprintf(real.why, sizeof real.why, "strategy option (--strategy option): %s is %s, older than 3.0, where the option does not exist: nothing changed (drop --strategy)", ssl_file, text);
  } else if (lib == ALUDEL_LIB_3) {
    choose_option(ssl_file, text, "OpenSSL 3.x programs kTLS itself");
  } else {
    choose_keys(lib, ssl_file, text, lib == ALUDEL_LIB_111 ? "OpenSSL 1.1.1 cannot program kTLS" : "OpenSSL 1.0.2 cannot program kTLS");
  }
}

/* The kept log descriptor while it still names the file opened at load time, else -1 (and it is given up, never closed: it is no longer ours). */
static int kept_log_fd(void) {
  int fd = __atomic_load_n(&kept_log.fd, __ATOMIC_RELAXED);
  struct stat st;
  if (fd < 0) return -1;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_dev == kept_log.dev && st.st_ino == kept_log.ino) return fd;
  __atomic_store_n(&kept_log.fd, -1, __ATOMIC_RELAXED);
  return -1;
}

/* One write(2) with O_APPEND, so lines from several processes do not interleave; 0600: it is the program's log, not the world's. */
static void write_line(const char *text) {
  char line[768];
  int n = snprintf(line, sizeof line, "aludel-preload: pid %ld: %s\n", (long)getpid(), text);
  if (n < 0) return;
  if ((size_t)n >= sizeof line) {
    n = sizeof line - 1;
    line[n - 1] = '\n';
  }
  int fd = 2, opened = -1;
  if (env.log[0] != '\0' && (fd = kept_log_fd()) < 0) {
    /* The kept descriptor is gone: opened for this line only, as this process's rights allow. */
    opened = open_log_file(env.log);
    fd = opened >= 0 ? opened : 2;
  }
  ssize_t w = write(fd, line, (size_t)n);
  (void)w;
  if (opened >= 0) close(opened);
}

static void write_log(void) {
  write_line(real.why);
}

void aludel_prepare(void) {
  pthread_once(&resolve_once, resolve);
  pthread_once(&log_once, write_log);
}

static pthread_mutex_t event_lock = PTHREAD_MUTEX_INITIALIZER;

void aludel_event(const char *fmt, ...) {
  static time_t second;
  static unsigned in_second, suppressed;
  char text[600];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  time_t now = time(NULL);
  pthread_mutex_lock(&event_lock);
  if (now != second) second = now, in_second = 0;
  int write_it = in_second++ < EVENTS_PER_SECOND;
  unsigned dropped = write_it ? suppressed : 0;
  if (write_it) suppressed = 0;
  else suppressed++;
  pthread_mutex_unlock(&event_lock);
  if (!write_it) return;
  if (dropped > 0) {
    size_t len = strlen(text);
    snprintf(text + len, sizeof text - len, " (%u similar lines suppressed)", dropped);
  }
  write_line(text);
}

ALUDEL_EXPORT SSL_CTX *SSL_CTX_new(const SSL_METHOD *method) {
  aludel_prepare();
  if (real.ctx_new == NULL) return NULL;
  SSL_CTX *ctx = real.ctx_new(method);
  if (ctx != NULL && real.option_active) real.ctx_set_options(ctx, SSL_OP_ENABLE_KTLS);
  aludel_secrets_ctx_created(ctx);
  return ctx;
}

ALUDEL_EXPORT SSL_CTX *SSL_CTX_new_ex(OSSL_LIB_CTX *libctx, const char *propq, const SSL_METHOD *method) {
  aludel_prepare();
  if (real.ctx_new_ex == NULL) return NULL;
  SSL_CTX *ctx = real.ctx_new_ex(libctx, propq, method);
  if (ctx != NULL && real.option_active) real.ctx_set_options(ctx, SSL_OP_ENABLE_KTLS);
  aludel_secrets_ctx_created(ctx);
  return ctx;
}

/* Again per SSL: a program may clear the context's options after creating it. */
ALUDEL_EXPORT SSL *SSL_new(SSL_CTX *ctx) {
  aludel_prepare();
  if (aludel_real.ssl_new == NULL) return NULL;
  SSL *ssl = aludel_real.ssl_new(ctx);
  if (ssl != NULL && real.option_active) real.set_options(ssl, SSL_OP_ENABLE_KTLS);
  /* An SSL freed inside libssl (an SSL BIO's BIO_free: -Bsymbolic calls never reach SSL_free here) may leave its entry: a new SSL at that address starts clean. */
  if (ssl != NULL && aludel_keys_active) aludel_conn_drop(ssl);
  aludel_secrets_ssl_created(ssl, ctx);
  return ssl;
}

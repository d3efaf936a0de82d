/*
 * A minimal OpenSSL 1.0.2/1.1.1 server for the tests of `aludel run` that compare
 * return values with OpenSSL's own (test/ktls/run-returns-ktls.test.ts): it
 * accepts one TLS connection on 127.0.0.1:PORT (blocking socket), prints
 * "handshake", reads the client's 5 bytes ("read 5"), then does what MODE
 * says and prints one line starting with "end: ":
 * - shutdown: SSL_shutdown twice (the second waits for the peer's
 *   close_notify), each with its return value, SSL_get_error and
 *   SSL_get_shutdown. OpenSSL: 0 = ours sent, theirs not yet received;
 *   1 = both (ssl3_shutdown).
 * - peer-first: reads until the client's close_notify, then SSL_shutdown once.
 * - quiet: SSL_set_quiet_shutdown, then SSL_shutdown once.
 * - bio: reads through an SSL BIO (BIO_f_ssl) until BIO_read returns <= 0,
 *   and prints that value, BIO_should_retry and SSL_get_error.
 * - write-shorter: non-blocking, an SSL_write larger than the socket can take
 *   while the client does not read (WANT_WRITE), then the same SSL_write
 *   retried with 1 byte: its result, SSL_get_error and the error's reason.
 * - write-moved: as write-shorter, but the retry has the same length and
 *   another buffer (a copy): OpenSSL refuses it (SSL_R_BAD_WRITE_RETRY)
 *   unless SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER is set; then retried once
 *   more with the first buffer.
 * - write-moved-accepted: write-moved with SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
 *   (nginx sets it): the moved retry is taken.
 * - write-partial-shorter: SSL_MODE_ENABLE_PARTIAL_WRITE, SSL_write until it
 *   returns WANT_WRITE, then the same call retried with 1 byte.
 * Each failed call prints its first queued error as ERR_error_string (library,
 * function, reason) and the error's data ("SSL alert number 20"), which is
 * what programs log (nginx: "SSL_write() failed (SSL: error:...)").
 * - write-read: SSL_write of 1 byte, then SSL_read twice: with the test's
 *   relay corrupting that record, the client answers with a fatal alert.
 * - write-after-reset: SSL_read until the client's reset fails it (ECONNRESET),
 *   then SSL_write: OpenSSL's socket BIO writes with write(2), which raises
 *   SIGPIPE on a reset connection, so with SIGPIPE's default disposition the
 *   probe is killed there and prints no "end: " line.
 * - write-read-write: write-read's SSL_write and SSL_read (the peer's fatal
 *   alert), then one more SSL_write of 1 byte.
 * - renegotiate, renegotiate-refused: SSL_renegotiate, then
 *   SSL_renegotiate_abbreviated; -refused first makes OpenSSL refuse them as
 *   it can (1.1.1: SSL_OP_NO_RENEGOTIATION; 1.0.2f, which has no such
 *   option: SSL3_FLAGS_NO_RENEGOTIATE_CIPHERS, which ssl3_renegotiate obeys).
 * - key-update, key-update-bad (TLS 1.3, 1.1.1 only): SSL_key_update with
 *   SSL_KEY_UPDATE_NOT_REQUESTED, or with a type that is none (refused).
 * - pha (TLS 1.3, 1.1.1 only): SSL_verify_client_post_handshake.
 * Built by the test against OpenSSL 1.0.2f and against 1.1.1w (with the
 * system's 3.x headers: Debian 11's libssl1.1 ships none).
 */
#include <fcntl.h>
#include <openssl/bio.h>

#include "ssl-probe-server.h"

/* The first error on the queue as programs log it: ERR_error_string, then its data (ERR_TXT_STRING) after a colon, as nginx's ngx_ssl_error. */
static const char *first_error(void) {
  static char text[512];
  const char *data = NULL;
  int flags = 0;
  unsigned long e = ERR_peek_error_line_data(NULL, NULL, &data, &flags);
  if (e == 0) return "none";
  ERR_error_string_n(e, text, sizeof text);
  if ((flags & ERR_TXT_STRING) && data != NULL && *data != '\0') {
    size_t len = strlen(text);
    snprintf(text + len, sizeof text - len, ":%s", data);
  }
  return text;
}

static void shutdown_twice(SSL *ssl) {
  int r1 = SSL_shutdown(ssl);
  int e1 = SSL_get_error(ssl, r1), m1 = SSL_get_shutdown(ssl);
  printf("first shutdown %d\n", r1);
  int r2 = SSL_shutdown(ssl);
  int e2 = SSL_get_error(ssl, r2), m2 = SSL_get_shutdown(ssl);
  printf("end: SSL_shutdown=%d SSL_get_error=%d shutdown=%d then SSL_shutdown=%d SSL_get_error=%d shutdown=%d error=%s\n", r1, e1, m1, r2, e2, m2, first_error());
}

static void shutdown_once(SSL *ssl, const char *before) {
  int r = SSL_shutdown(ssl);
  printf("end: %sSSL_shutdown=%d SSL_get_error=%d shutdown=%d\n", before, r, SSL_get_error(ssl, r), SSL_get_shutdown(ssl));
}

static void peer_first(SSL *ssl) {
  char buf[4096];
  int n;
  while ((n = SSL_read(ssl, buf, sizeof buf)) > 0) continue;
  char before[64];
  snprintf(before, sizeof before, "SSL_read=%d SSL_get_error=%d ", n, SSL_get_error(ssl, n));
  shutdown_once(ssl, before);
}

static void bio_read(SSL *ssl) {
  BIO *b = BIO_new(BIO_f_ssl());
  BIO_set_ssl(b, ssl, BIO_NOCLOSE);
  char buf[4096];
  int n;
  while ((n = BIO_read(b, buf, sizeof buf)) > 0) continue;
  printf("end: BIO_read=%d BIO_should_retry=%d SSL_get_error=%d\n", n, BIO_should_retry(b) ? 1 : 0, SSL_get_error(ssl, n));
  BIO_free(b);
}

/* After a write of `big` that returned w1 (WANT_WRITE), the same call retried with 1 byte: what each returned, and the error queued. */
static void retry_one_byte(SSL *ssl, const char *big, int w1) {
  int e1 = SSL_get_error(ssl, w1);
  printf("first write %d %d\n", w1, e1);
  ERR_clear_error();
  int w2 = SSL_write(ssl, big, 1);
  int e2 = SSL_get_error(ssl, w2);
  printf("end: SSL_write=%d SSL_get_error=%d then SSL_write(1)=%d SSL_get_error=%d error=%s\n", w1, e1, w2, e2, first_error());
}

/* ssl3_write_bytes (1.0.2f, 1.1.1): a retry shorter than what the earlier call already wrote is SSL_R_BAD_LENGTH. */
static void write_shorter(SSL *ssl, int fd) {
  size_t size = 64 << 20;
  char *big = calloc(1, size);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  retry_one_byte(ssl, big, SSL_write(ssl, big, (int)size));
  free(big);
}

/*
 * ssl3_write_pending (1.0.2f s3_pkt.c, 1.1.1 rec_layer_s3.c): a retry whose
 * buffer is not the one of the call that returned WANT_WRITE is
 * SSL_R_BAD_WRITE_RETRY, unless SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER.
 */
static void write_moved(SSL *ssl, int fd, int accept_moving) {
  size_t size = 64 << 20;
  char *big = calloc(1, size), *moved = calloc(1, size);
  if (accept_moving) SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  int w1 = SSL_write(ssl, big, (int)size);
  int e1 = SSL_get_error(ssl, w1);
  printf("first write %d %d\n", w1, e1);
  ERR_clear_error();
  int w2 = SSL_write(ssl, moved, (int)size);
  int e2 = SSL_get_error(ssl, w2);
  char error[512];
  snprintf(error, sizeof error, "%s", first_error());
  ERR_clear_error();
  int w3 = SSL_write(ssl, big, (int)size);
  int e3 = SSL_get_error(ssl, w3);
  char error3[512];
  snprintf(error3, sizeof error3, "%s", first_error());
  ERR_clear_error();
  /* 1.1.1 made the refusal fatal (SSLfatal): its state machine is in its error state, which SSL_shutdown refuses. */
  int s4 = SSL_shutdown(ssl);
  int e4 = SSL_get_error(ssl, s4);
  printf("end: SSL_write=%d SSL_get_error=%d then moved SSL_write=%d SSL_get_error=%d error=%s then SSL_write=%d SSL_get_error=%d error=%s then SSL_shutdown=%d SSL_get_error=%d error=%s\n",
         w1, e1, w2, e2, error, w3, e3, error3, s4, e4, first_error());
  free(big);
  free(moved);
}

/* ssl3_write_bytes with SSL_MODE_ENABLE_PARTIAL_WRITE: what a shorter retry of the call that returned WANT_WRITE gets. */
static void write_partial_shorter(SSL *ssl, int fd) {
  size_t size = 1 << 20;
  char *big = calloc(1, size);
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  int w1;
  while ((w1 = SSL_write(ssl, big, (int)size)) > 0) continue;
  retry_one_byte(ssl, big, w1);
  free(big);
}

/* SSL_read meeting the peer's fatal alert (the client's answer to a record the test corrupted), then SSL_read once more. */
static void write_then_read(SSL *ssl) {
  char buf[16];
  int w = SSL_write(ssl, "x", 1);
  int n = SSL_read(ssl, buf, sizeof buf);
  int e = SSL_get_error(ssl, n), m = SSL_get_shutdown(ssl);
  char error[512];
  snprintf(error, sizeof error, "%s", first_error());
  ERR_clear_error();
  int n2 = SSL_read(ssl, buf, sizeof buf);
  int e2 = SSL_get_error(ssl, n2);
  printf("end: SSL_write=%d then SSL_read=%d SSL_get_error=%d shutdown=%d error=%s then SSL_read=%d SSL_get_error=%d error=%s\n", w, n, e, m, error, n2, e2, first_error());
}

static void write_after_reset(SSL *ssl) {
  char buf[16];
  int n = SSL_read(ssl, buf, sizeof buf);
  int e = SSL_get_error(ssl, n);
  printf("read again %d %d\n", n, e);
  int w = SSL_write(ssl, "x", 1);
  printf("end: SSL_read=%d SSL_get_error=%d then SSL_write=%d SSL_get_error=%d, no SIGPIPE\n", n, e, w, SSL_get_error(ssl, w));
}

/* write-read, then SSL_write once more: what a program writing after the peer's fatal alert gets. */
static void write_read_write(SSL *ssl) {
  char buf[16];
  int w = SSL_write(ssl, "x", 1);
  int n = SSL_read(ssl, buf, sizeof buf);
  int e = SSL_get_error(ssl, n);
  ERR_clear_error();
  int w2 = SSL_write(ssl, "y", 1);
  int e2 = SSL_get_error(ssl, w2);
  printf("end: SSL_write=%d then SSL_read=%d SSL_get_error=%d then SSL_write=%d SSL_get_error=%d error=%s\n", w, n, e, w2, e2, first_error());
}

/* One call that starts a handshake message after the handshake: its result, SSL_get_error and the error queued, as "NAME=r SSL_get_error=e error=...". */
static void after_handshake(char *out, size_t size, SSL *ssl, const char *name, int r) {
  int e = SSL_get_error(ssl, r);
  snprintf(out, size, "%s=%d SSL_get_error=%d error=%s", name, r, e, first_error());
  ERR_clear_error();
}

static void renegotiate(SSL *ssl, int refused) {
  if (refused) {
#if OPENSSL_VERSION_NUMBER < 0x10100000L
    ssl->s3->flags |= SSL3_FLAGS_NO_RENEGOTIATE_CIPHERS;
#else
    SSL_set_options(ssl, SSL_OP_NO_RENEGOTIATION);
#endif
  }
  char full[512], abbreviated[512];
  ERR_clear_error();
  after_handshake(full, sizeof full, ssl, "SSL_renegotiate", SSL_renegotiate(ssl));
  after_handshake(abbreviated, sizeof abbreviated, ssl, "SSL_renegotiate_abbreviated", SSL_renegotiate_abbreviated(ssl));
  printf("end: %s then %s\n", full, abbreviated);
}

#if OPENSSL_VERSION_NUMBER >= 0x10101000L
static void key_update(SSL *ssl, int type) {
  char line[512];
  ERR_clear_error();
  after_handshake(line, sizeof line, ssl, "SSL_key_update", SSL_key_update(ssl, type));
  printf("end: %s\n", line);
}

static void post_handshake_auth(SSL *ssl) {
  char line[512];
  ERR_clear_error();
  after_handshake(line, sizeof line, ssl, "SSL_verify_client_post_handshake", SSL_verify_client_post_handshake(ssl));
  printf("end: %s\n", line);
}
#endif

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s PORT CERT KEY MODE\n", argv[0]);
    return 2;
  }
  const char *mode = argv[4];
  struct probe_conn c = accept_one(argv[1], argv[2], argv[3]);
  SSL *ssl = c.ssl;
  int fd = c.fd;
  char buf[5];
  int n = SSL_read(ssl, buf, sizeof buf);
  printf("read %d\n", n);
  if (strcmp(mode, "shutdown") == 0) shutdown_twice(ssl);
  else if (strcmp(mode, "peer-first") == 0) peer_first(ssl);
  else if (strcmp(mode, "quiet") == 0) SSL_set_quiet_shutdown(ssl, 1), shutdown_once(ssl, "");
  else if (strcmp(mode, "bio") == 0) bio_read(ssl);
  else if (strcmp(mode, "write-shorter") == 0) write_shorter(ssl, fd);
  else if (strcmp(mode, "write-read") == 0) write_then_read(ssl);
  else if (strcmp(mode, "write-moved") == 0) write_moved(ssl, fd, 0);
  else if (strcmp(mode, "write-moved-accepted") == 0) write_moved(ssl, fd, 1);
  else if (strcmp(mode, "write-partial-shorter") == 0) write_partial_shorter(ssl, fd);
  else if (strcmp(mode, "write-after-reset") == 0) write_after_reset(ssl);
  else if (strcmp(mode, "write-read-write") == 0) write_read_write(ssl);
  else if (strcmp(mode, "renegotiate") == 0) renegotiate(ssl, 0);
  else if (strcmp(mode, "renegotiate-refused") == 0) renegotiate(ssl, 1);
#if OPENSSL_VERSION_NUMBER >= 0x10101000L
  else if (strcmp(mode, "key-update") == 0) key_update(ssl, SSL_KEY_UPDATE_NOT_REQUESTED);
  else if (strcmp(mode, "key-update-bad") == 0) key_update(ssl, 7);
  else if (strcmp(mode, "pha") == 0) post_handshake_auth(ssl);
#endif
  else fprintf(stderr, "unknown mode %s\n", mode);
  SSL_free(ssl);
  close(fd);
  close(c.listener);
  SSL_CTX_free(c.ctx);
  return 0;
}

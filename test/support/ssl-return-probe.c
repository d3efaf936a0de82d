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
 * - write-after-reset: SSL_read until the client's reset fails it (ECONNRESET),
 *   then SSL_write: OpenSSL's socket BIO writes with write(2), which raises
 *   SIGPIPE on a reset connection, so with SIGPIPE's default disposition the
 *   probe is killed there and prints no "end: " line.
 * Built by the test against OpenSSL 1.0.2f and against 1.1.1w (with the
 * system's 3.x headers: Debian 11's libssl1.1 ships none).
 */
#include <fcntl.h>
#include <openssl/bio.h>

#include "ssl-probe-server.h"

static void shutdown_twice(SSL *ssl) {
  int r1 = SSL_shutdown(ssl);
  int e1 = SSL_get_error(ssl, r1), m1 = SSL_get_shutdown(ssl);
  printf("first shutdown %d\n", r1);
  int r2 = SSL_shutdown(ssl);
  int e2 = SSL_get_error(ssl, r2), m2 = SSL_get_shutdown(ssl);
  printf("end: SSL_shutdown=%d SSL_get_error=%d shutdown=%d then SSL_shutdown=%d SSL_get_error=%d shutdown=%d\n", r1, e1, m1, r2, e2, m2);
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

/* ssl3_write_bytes (1.0.2f, 1.1.1): a retry shorter than what the earlier call already wrote is SSL_R_BAD_LENGTH. */
static void write_shorter(SSL *ssl, int fd) {
  size_t size = 64 << 20;
  char *big = calloc(1, size);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  int w1 = SSL_write(ssl, big, (int)size);
  int e1 = SSL_get_error(ssl, w1);
  printf("first write %d %d\n", w1, e1);
  ERR_clear_error();
  int w2 = SSL_write(ssl, big, 1);
  int e2 = SSL_get_error(ssl, w2);
  unsigned long err = ERR_peek_error();
  int reason = (int)(err & 0xFFF); /* ERR_PACK of 1.0.2 and 1.1.1 (3.x headers' ERR_GET_REASON reads a wider field) */
  printf("end: SSL_write=%d SSL_get_error=%d then SSL_write(1)=%d SSL_get_error=%d reason=%d (%s)\n", w1, e1, w2, e2, reason,
         err != 0 ? ERR_reason_error_string(err) : "none");
  free(big);
}

static void write_after_reset(SSL *ssl) {
  char buf[16];
  int n = SSL_read(ssl, buf, sizeof buf);
  int e = SSL_get_error(ssl, n);
  printf("read again %d %d\n", n, e);
  int w = SSL_write(ssl, "x", 1);
  printf("end: SSL_read=%d SSL_get_error=%d then SSL_write=%d SSL_get_error=%d, no SIGPIPE\n", n, e, w, SSL_get_error(ssl, w));
}

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
  else if (strcmp(mode, "write-after-reset") == 0) write_after_reset(ssl);
  else fprintf(stderr, "unknown mode %s\n", mode);
  SSL_free(ssl);
  close(fd);
  close(c.listener);
  SSL_CTX_free(c.ctx);
  return 0;
}

/*
 * A minimal OpenSSL 1.0.2 server, as legacy programs are written, for the
 * tests of `aludel run`: it accepts one TLS connection on 127.0.0.1:PORT
 * (blocking socket), then reads until SSL_read fails, and prints one line per
 * step: "handshake", "read N" per SSL_read, and at the end what SSL_read
 * and then SSL_peek returned, SSL_get_error for each, and SSL_get_shutdown.
 * OpenSSL 1.0.2's manual (SSL_read, SSL_get_error) tells programs to tell an
 * EOF (ret 0) from an I/O error (ret -1, consult errno) by that value.
 * Built by the test against the 1.0.2f headers and library.
 */

#include "ssl-probe-server.h"

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s PORT CERT KEY\n", argv[0]);
    return 2;
  }
  struct probe_conn c = accept_one(argv[1], argv[2], argv[3]);
  SSL *ssl = c.ssl;
  int fd = c.fd;
  char buf[4096];
  for (;;) {
    int n = SSL_read(ssl, buf, sizeof buf);
    if (n > 0) {
      printf("read %d\n", n);
      continue;
    }
    int err = SSL_get_error(ssl, n);
    int p = SSL_peek(ssl, buf, sizeof buf);
    printf("end: SSL_read=%d SSL_get_error=%d SSL_peek=%d SSL_get_error=%d shutdown=%d\n", n, err, p, SSL_get_error(ssl, p), SSL_get_shutdown(ssl));
    break;
  }
  SSL_free(ssl);
  close(fd);
  close(c.listener);
  SSL_CTX_free(c.ctx);
  return 0;
}

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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static int listen_on(int port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (s < 0 || setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 1) != 0) {
    perror("listen");
    exit(2);
  }
  return s;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s PORT CERT KEY\n", argv[0]);
    return 2;
  }
  setvbuf(stdout, NULL, _IONBF, 0);
  SSL_library_init();
  SSL_load_error_strings();
  SSL_CTX *ctx = SSL_CTX_new(SSLv23_server_method());
  if (ctx == NULL || SSL_CTX_use_certificate_file(ctx, argv[2], SSL_FILETYPE_PEM) != 1 || SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM) != 1) {
    ERR_print_errors_fp(stderr);
    return 2;
  }
  SSL_CTX_set_ecdh_auto(ctx, 1); /* 1.0.2: ECDHE (and so an ECDSA certificate) only when asked for */
  int l = listen_on(atoi(argv[1]));
  printf("listening\n");
  int fd = accept(l, NULL, NULL);
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) != 1) {
    ERR_print_errors_fp(stderr);
    return 1;
  }
  printf("handshake\n");
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
  close(l);
  SSL_CTX_free(ctx);
  return 0;
}

/*
 * What the OpenSSL probes share (ssl-eof-probe.c, ssl-return-probe.c): one
 * blocking TLS connection accepted on 127.0.0.1:PORT with the given
 * certificate and key, as a legacy server program sets it up, printing
 * "listening" and then "handshake" for the test to follow
 * (test/support/ssl-probe.ts). Compiles against OpenSSL 1.0.2 and 1.1.1.
 */
#ifndef SSL_PROBE_SERVER_H
#define SSL_PROBE_SERVER_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

struct probe_conn {
  SSL_CTX *ctx;
  SSL *ssl;
  int fd;
  int listener;
};

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

/* Listens, accepts one connection and completes its handshake; exits 2 (set-up) or 1 (handshake) on failure. */
static struct probe_conn accept_one(const char *port, const char *cert, const char *key) {
  struct probe_conn c;
  setvbuf(stdout, NULL, _IONBF, 0);
  SSL_library_init();
  SSL_load_error_strings();
  c.ctx = SSL_CTX_new(SSLv23_server_method());
  if (c.ctx == NULL || SSL_CTX_use_certificate_file(c.ctx, cert, SSL_FILETYPE_PEM) != 1 || SSL_CTX_use_PrivateKey_file(c.ctx, key, SSL_FILETYPE_PEM) != 1) {
    ERR_print_errors_fp(stderr);
    exit(2);
  }
  SSL_CTX_set_ecdh_auto(c.ctx, 1); /* 1.0.2: ECDHE (and so an ECDSA certificate) only when asked for */
  c.listener = listen_on(atoi(port));
  printf("listening\n");
  c.fd = accept(c.listener, NULL, NULL);
  c.ssl = SSL_new(c.ctx);
  SSL_set_fd(c.ssl, c.fd);
  if (SSL_accept(c.ssl) != 1) {
    ERR_print_errors_fp(stderr);
    exit(1);
  }
  printf("handshake\n");
  return c;
}

#endif

/*
 * OpenSSL 1.0.2: what the keys strategy needs and 1.0.2 has no accessor for,
 * read through the structures of preload-ossl102.h (offsets checked against
 * the 1.0.2f headers at build time by abi-check-102.c). Before any of it is
 * trusted for a connection, aludel_102_sane() compares the fields that the
 * API can also answer; a library whose layout differs (a vendor patch) is
 * then left alone for that connection.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>

#include "preload-ossl102.h"
#include "preload.h"

static const struct ossl102_ssl *as102(const SSL *ssl) {
  return (const struct ossl102_ssl *)(const void *)ssl;
}

static uint64_t be64(const unsigned char b[8]) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | b[i];
  return v;
}

int aludel_102_randoms(const SSL *ssl, unsigned char client[32], unsigned char server[32]) {
  const struct ossl102_s3 *s3 = as102(ssl)->s3;
  if (s3 == NULL) return 0;
  memcpy(client, s3->client_random, 32);
  memcpy(server, s3->server_random, 32);
  return 1;
}

int aludel_102_master_key(const SSL *ssl, unsigned char out[48]) {
  const struct ossl102_session *s = (const struct ossl102_session *)(const void *)aludel_real.get_session(ssl);
  if (s == NULL || s->master_key_length != 48) return 0;
  memcpy(out, s->master_key, 48);
  return 1;
}

/* The sequence numbers of the next record each way (RFC 5246 §6.1), as OpenSSL keeps them. */
int aludel_102_sequences(const SSL *ssl, uint64_t *read_seq, uint64_t *write_seq) {
  const struct ossl102_s3 *s3 = as102(ssl)->s3;
  if (s3 == NULL) return 0;
  *read_seq = be64(s3->read_sequence);
  *write_seq = be64(s3->write_sequence);
  return 1;
}

/* Bytes OpenSSL has read from the socket and not processed (read-ahead): the kernel would never see them. */
int aludel_102_buffered(const SSL *ssl) {
  const struct ossl102_s3 *s3 = as102(ssl)->s3;
  return s3 == NULL || s3->rbuf.left != 0;
}

/*
 * Fields the API can also give must agree with the layout: version, server
 * side, handshake state, the session's protocol and master secret length.
 * After a TLS 1.2 handshake both sequence numbers are small (1: the Finished
 * each way, §7.4.9), which random memory almost never is.
 */
int aludel_102_sane(const SSL *ssl, char *why, size_t size) {
  const struct ossl102_ssl *s = as102(ssl);
  const struct ossl102_session *session = (const struct ossl102_session *)(const void *)aludel_real.get_session(ssl);
  uint64_t r = 0, w = 0;
  const char *bad = NULL;
  if (s->version != aludel_real.version(ssl)) bad = "version";
  else if (s->server != aludel_real.is_server(ssl)) bad = "server";
  else if (s->state != aludel_real.state(ssl)) bad = "state";
  else if (s->s3 == NULL) bad = "s3";
  else if (session == NULL || session->ssl_version != s->version || session->master_key_length != 48) bad = "session";
  else if (!aludel_102_sequences(ssl, &r, &w) || r < 1 || r > 16 || w < 1 || w > 16) bad = "sequence numbers";
  if (bad == NULL) return 1;
  snprintf(why, size, "the OpenSSL 1.0.2 structure layout does not match (%s)", bad);
  return 0;
}

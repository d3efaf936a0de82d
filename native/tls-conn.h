/* One TLS connection of the addon, server (tls.c) or client (tls-client.c): the functions of tls.c serve both. */
#ifndef ALUDEL_TLS_CONN_H
#define ALUDEL_TLS_CONN_H

#include "aludel.h"
#include "openssl-api.h"

typedef struct {
  SSL *ssl;
  bool key_update_requested; /* set by the message callback, read by keyUpdateRequested() */
  bool acme_alpn;            /* the ClientHello offered "acme-tls/1" (RFC 8737 3) */
  /* Client connections: the server's first application traffic secret (RFC 8446 §7.1), from the keylog callback, for kernel RX. */
  unsigned char server_secret[48];
  size_t server_secret_len;
} aludel_ssl;

/* A new connection as a JS external that frees it when collected (ex_data 0 points back to it); NULL with an exception pending. */
napi_value aludel_ssl_wrap(napi_env env, aludel_ssl *s);
/* The open connection behind a JS object, or NULL with a TypeError pending. */
aludel_ssl *aludel_ssl_unwrap(napi_env env, napi_value v);

#endif

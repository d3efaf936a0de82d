/*
 * Build-time guard for the OpenSSL 1.0.2 ABI that the keys strategy reads by
 * layout (native/preload-ossl102.h): every declared field must sit at the
 * offset, and have the size, that the real 1.0.2 headers give it. Compiled
 * (not run) by the test suite against the 1.0.2f headers that
 * ../shared/legacy/build installs:
 *   cc -fsyntax-only -Wall -Werror -I$LEGACY_PREFIX/openssl-1.0.2f/include native/abi-check-102.c
 */
#include <openssl/opensslv.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "preload-ossl102.h"

#if OPENSSL_VERSION_NUMBER < 0x10002000L || OPENSSL_VERSION_NUMBER >= 0x10100000L
#error "these are not OpenSSL 1.0.2 headers"
#endif

#define FIELD(real, ours, f)                                                                            \
  _Static_assert(offsetof(real, f) == offsetof(ours, f), "offset of " #f " in " #real " differs"); \
  _Static_assert(sizeof(((real *)0)->f) == sizeof(((ours *)0)->f), "size of " #f " in " #real " differs")

FIELD(struct ssl_st, struct ossl102_ssl, version);
FIELD(struct ssl_st, struct ossl102_ssl, server);
FIELD(struct ssl_st, struct ossl102_ssl, state);
FIELD(struct ssl_st, struct ossl102_ssl, s3);

FIELD(SSL3_STATE, struct ossl102_s3, read_sequence);
FIELD(SSL3_STATE, struct ossl102_s3, write_sequence);
FIELD(SSL3_STATE, struct ossl102_s3, server_random);
FIELD(SSL3_STATE, struct ossl102_s3, client_random);
FIELD(SSL3_STATE, struct ossl102_s3, rbuf);
FIELD(SSL3_BUFFER, struct ossl102_buffer, left);

FIELD(SSL_SESSION, struct ossl102_session, ssl_version);
FIELD(SSL_SESSION, struct ossl102_session, master_key_length);
FIELD(SSL_SESSION, struct ossl102_session, master_key);

FIELD(BIO_METHOD, struct ossl102_bio_method, type);
FIELD(BIO_METHOD, struct ossl102_bio_method, bwrite);
FIELD(BIO_METHOD, struct ossl102_bio_method, bread);
FIELD(BIO_METHOD, struct ossl102_bio_method, bputs);
FIELD(BIO_METHOD, struct ossl102_bio_method, callback_ctrl);
_Static_assert(sizeof(BIO_METHOD) == sizeof(struct ossl102_bio_method), "BIO_METHOD size differs");

/* Constants the preload uses with 1.0.2 (native/preload.h). */
_Static_assert(SSL_ST_OK == 0x03, "SSL_ST_OK");
_Static_assert(SSL_CTRL_GET_READ_AHEAD == 40, "SSL_CTRL_GET_READ_AHEAD");
_Static_assert(BIO_TYPE_SOCKET == (5 | 0x0400 | 0x0100), "BIO_TYPE_SOCKET");
_Static_assert(BIO_TYPE_SSL == (7 | 0x0200), "BIO_TYPE_SSL");
_Static_assert(BIO_C_GET_SSL == 110, "BIO_C_GET_SSL");
_Static_assert(BIO_FLAGS_READ == 0x01 && BIO_FLAGS_WRITE == 0x02 && BIO_FLAGS_RWS == 0x07 && BIO_FLAGS_SHOULD_RETRY == 0x08, "BIO flags");
_Static_assert(SSL_R_UNEXPECTED_MESSAGE == 244 && SSL_R_DECRYPTION_FAILED_OR_BAD_RECORD_MAC == 281 && SSL_R_NO_RENEGOTIATION == 339 && SSL_R_BAD_LENGTH == 271, "reason codes");
_Static_assert(SSL_F_SSL3_WRITE_BYTES == 158, "function codes");
_Static_assert(SSL_AD_REASON_OFFSET == 1000 && ERR_LIB_SSL == 20, "error codes");
_Static_assert(SSL_MAX_MASTER_KEY_LENGTH == 48 && SSL3_RANDOM_SIZE == 32, "sizes");

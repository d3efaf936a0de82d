/* Shared helpers of the addon: N-API argument access and error objects. */
#ifndef ALUDEL_H
#define ALUDEL_H

#define NAPI_VERSION 8
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>

/* Results that are states, not errors (the TypeScript side waits on them). */
#define ALUDEL_WANT_READ (-1)
#define ALUDEL_WANT_WRITE (-2)
#define ALUDEL_EOF_NO_NOTIFY (-3) /* TCP FIN without close_notify (RFC 8446 6.1) */
#define ALUDEL_READ_MORE 0x40000000 /* readScratch(): OpenSSL holds more bytes (SSL_has_pending) */
#define ALUDEL_AGAIN (-1)         /* accept(2): no connection waiting */

#define ALUDEL_CALL(env, call)                 \
  do {                                         \
    if ((call) != napi_ok) return NULL;        \
  } while (0)

/* Reads up to n arguments; returns false (with a JS TypeError pending) if fewer were passed. */
bool aludel_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv);
bool aludel_arg_int32(napi_env env, napi_value v, int32_t *out);
bool aludel_arg_int64(napi_env env, napi_value v, int64_t *out);
/* Copies a JS string into buf (NUL-terminated); false if not a string or too long. */
bool aludel_arg_string(napi_env env, napi_value v, char *buf, size_t size);
/* A Buffer and an (offset, length) range inside it; false (RangeError/TypeError pending) otherwise. */
bool aludel_arg_buffer_range(napi_env env, napi_value buf, napi_value off, napi_value len, char **data, size_t *n);
napi_value aludel_int(napi_env env, int64_t v);
napi_value aludel_str(napi_env env, const char *s);

/*
 * Throws an Error shaped {code, errno, syscall, message, opensslErrors} and
 * returns NULL. drain_openssl also empties OpenSSL's thread error queue into
 * opensslErrors (an array of strings), so the next call starts clean.
 */
napi_value aludel_throw(napi_env env, const char *code, int err, const char *syscall,
                        const char *message, bool drain_openssl);
/* Same, for an errno value: code = "E..." name, message from strerror. */
napi_value aludel_throw_errno(napi_env env, int err, const char *syscall);

/* Registration of each file's exports. */
void aludel_register_socket(napi_env env, napi_value exports);
void aludel_register_poll(napi_env env, napi_value exports);
void aludel_register_tls(napi_env env, napi_value exports);
void aludel_register_file(napi_env env, napi_value exports);
void aludel_register_diag(napi_env env, napi_value exports);
void aludel_register_stream(napi_env env, napi_value exports);
void aludel_register_ethtool(napi_env env, napi_value exports);
void aludel_register_tickets(napi_env env, napi_value exports);
void aludel_register_tls_client(napi_env env, napi_value exports);
void aludel_register_copy(napi_env env, napi_value exports);
void aludel_register_process(napi_env env, napi_value exports);

#endif

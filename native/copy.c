/*
 * The copy path (kTLS TX off): upstream bytes into SSL_write with as few
 * crossings of the N-API boundary as the data allows. The TypeScript side
 * (src/transport/copy-body.ts) peeks the upstream socket into one scratch
 * buffer, hands the whole span to writeRecords(), and then drops from the
 * socket exactly the bytes OpenSSL took (recvDiscard). Nothing is held in
 * user space while the client's socket is full: the unsent bytes wait in the
 * upstream socket, as they do on the splice path. Each function still makes
 * one kind of call, and "would block" comes back as a state, never thrown.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/socket.h>

#include "aludel.h"
#include "openssl-api.h"

/* In native/tls.c. */
SSL *aludel_ssl_of(napi_env env, napi_value v);
napi_value aludel_ssl_result(napi_env env, SSL *ssl, int ret, int saved_errno, const char *op);

/*
 * writeRecords(conn, buffer, offset, length) -> bytes taken (> 0), or a WANT
 * state when none were.
 *
 * SSL_write_ex with SSL_MODE_ENABLE_PARTIAL_WRITE (set on every context)
 * returns after each record of at most 16 KiB (ssl3_write_bytes in OpenSSL
 * 3.0 returns once a record is out when the mode is set), so a 256 KiB span
 * was 16 calls from JavaScript. Here the records of the span are written in
 * one call, each still whole (16 KiB of plaintext, RFC 8446 5.1), each by
 * its own write(2) on the socket BIO, as nginx does with ssl_buffer_size 16k.
 *
 * When the socket fills after some records, the count so far is returned:
 * the record that could not be sent is already encrypted in OpenSSL's write
 * buffer, and the caller's retry must pass at least its length again
 * (ssl3_write_pending checks wpend_tot <= len; the address may change, as
 * SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER is set). A failure after progress is
 * thrown: the connection cannot send any more, whatever was taken.
 */
static napi_value write_records(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  char *data;
  size_t want, done = 0;
  if (!aludel_args(env, info, 4, argv) || !aludel_arg_buffer_range(env, argv[1], argv[2], argv[3], &data, &want))
    return NULL;
  SSL *ssl = aludel_ssl_of(env, argv[0]);
  if (ssl == NULL) return NULL;
  if (want == 0) return aludel_throw(env, "ERR_OUT_OF_RANGE", EINVAL, "SSL_write_ex", "empty range", false);
  aludel_err_clear();
  while (done < want) {
    size_t n = 0;
    errno = 0;
    int ret = aludel_ossl.SSL_write_ex(ssl, data + done, want - done, &n);
    if (ret != 1) {
      int saved = errno;
      if (done == 0) return aludel_ssl_result(env, ssl, ret, saved, "SSL_write_ex");
      int err = aludel_ossl.SSL_get_error(ssl, ret);
      if (err == ALUDEL_SSL_ERROR_WANT_WRITE || err == ALUDEL_SSL_ERROR_WANT_READ) break;
      return aludel_ssl_result(env, ssl, ret, saved, "SSL_write_ex");
    }
    done += n;
  }
  return aludel_int(env, (int64_t)done);
}

/*
 * recvDiscard(fd, length) -> bytes dropped (> 0), 0 at the peer's FIN, or
 * ALUDEL_AGAIN. recv(2) with MSG_TRUNC on a TCP socket discards the bytes
 * without copying them (tcp(7), since Linux 2.4.4; tcp_recvmsg skips
 * skb_copy_datagram_msg), so bytes first looked at with MSG_PEEK are taken
 * out of the socket for the price of the syscall alone.
 */
static napi_value recv_discard(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t fd;
  int64_t len;
  if (!aludel_args(env, info, 2, argv) || !aludel_arg_int32(env, argv[0], &fd) || !aludel_arg_int64(env, argv[1], &len))
    return NULL;
  if (len <= 0) return aludel_throw(env, "ERR_OUT_OF_RANGE", EINVAL, "recv", "empty range", false);
  ssize_t r = recv(fd, NULL, (size_t)len, MSG_TRUNC | MSG_DONTWAIT);
  if (r >= 0) return aludel_int(env, r);
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return aludel_int(env, ALUDEL_AGAIN);
  return aludel_throw_errno(env, errno, "recv");
}

void aludel_register_copy(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"writeRecords", NULL, write_records, NULL, NULL, NULL, napi_default, NULL},
      {"recvDiscard", NULL, recv_discard, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

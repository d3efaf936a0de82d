/*
 * Plain TCP streams and splice(2): what the proxy needs to move upstream
 * bytes into a kTLS socket without copying them through user space. One
 * syscall per function; every fd is non-blocking, so "would block" comes back
 * as ALUDEL_AGAIN (a state for the TypeScript side to wait on), never as an
 * error. Timeouts, retries and the choice of path live in TypeScript.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "aludel.h"

/* A byte count, ALUDEL_AGAIN for "would block" (a state), or a thrown error. */
static napi_value io_result(napi_env env, ssize_t r, const char *syscall) {
  if (r >= 0) return aludel_int(env, r);
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return aludel_int(env, ALUDEL_AGAIN);
  return aludel_throw_errno(env, errno, syscall);
}

/*
 * recv(fd, buf, offset, length, peek) -> bytes (> 0), 0 at the peer's FIN, ALUDEL_AGAIN.
 * peek (MSG_PEEK) leaves the bytes in the socket: the proxy looks at a response
 * head that way and then takes exactly the head, so the body stays in the
 * kernel for splice.
 */
static napi_value recv_bytes(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  int32_t fd;
  char *data;
  size_t len;
  bool peek = false;
  if (!aludel_args(env, info, 5, argv) || !aludel_arg_int32(env, argv[0], &fd) ||
      !aludel_arg_buffer_range(env, argv[1], argv[2], argv[3], &data, &len))
    return NULL;
  napi_get_value_bool(env, argv[4], &peek);
  return io_result(env, recv(fd, data, len, peek ? MSG_PEEK : 0), "recv");
}

/* send(fd, buf, offset, length) -> bytes accepted, or ALUDEL_AGAIN. MSG_NOSIGNAL: a gone peer is EPIPE, not a signal. */
static napi_value send_bytes(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t fd;
  char *data;
  size_t len;
  if (!aludel_args(env, info, 4, argv) || !aludel_arg_int32(env, argv[0], &fd) ||
      !aludel_arg_buffer_range(env, argv[1], argv[2], argv[3], &data, &len))
    return NULL;
  return io_result(env, send(fd, data, len, MSG_NOSIGNAL), "send");
}

/* shutdownWrite(fd): our FIN, keeping the read side open (half-close, RFC 9293 3.6). */
static napi_value shutdown_write(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (!aludel_args(env, info, 1, argv) || !aludel_arg_int32(env, argv[0], &fd)) return NULL;
  if (shutdown(fd, SHUT_WR) != 0 && errno != ENOTCONN) return aludel_throw_errno(env, errno, "shutdown");
  return NULL;
}

/*
 * pipeNew(size) -> {read, write, size}: a non-blocking pipe for splice, grown
 * to `size` bytes when the kernel allows (F_SETPIPE_SZ is capped by
 * /proc/sys/fs/pipe-max-size and the per-user pipe page limits; a refusal
 * leaves the default 64 KiB, which still works, only in smaller steps).
 */
static napi_value pipe_new(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t want;
  if (!aludel_args(env, info, 1, argv) || !aludel_arg_int32(env, argv[0], &want)) return NULL;
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0) return aludel_throw_errno(env, errno, "pipe2");
  int size = fcntl(fds[1], F_SETPIPE_SZ, want);
  if (size < 0) size = fcntl(fds[1], F_GETPIPE_SZ);
  napi_value obj = NULL;
  napi_create_object(env, &obj);
  napi_set_named_property(env, obj, "read", aludel_int(env, fds[0]));
  napi_set_named_property(env, obj, "write", aludel_int(env, fds[1]));
  napi_set_named_property(env, obj, "size", aludel_int(env, size));
  return obj;
}

/*
 * splice(fdIn, fdOut, length) -> bytes moved (> 0), 0 at end of input, ALUDEL_AGAIN.
 * One side must be a pipe. Into a kTLS TX socket the kernel frames and encrypts
 * the records itself. SPLICE_F_NONBLOCK makes the pipe side non-blocking (the
 * socket side already is); EAGAIN then means "input empty or output full",
 * which the caller tells apart by what it has put in the pipe.
 */
static napi_value splice_bytes(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t in, out;
  int64_t len;
  if (!aludel_args(env, info, 3, argv) || !aludel_arg_int32(env, argv[0], &in) || !aludel_arg_int32(env, argv[1], &out) ||
      !aludel_arg_int64(env, argv[2], &len))
    return NULL;
  return io_result(env, splice(in, NULL, out, NULL, (size_t)len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK), "splice");
}

void aludel_register_stream(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"recv", NULL, recv_bytes, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, send_bytes, NULL, NULL, NULL, napi_default, NULL},
      {"shutdownWrite", NULL, shutdown_write, NULL, NULL, NULL, napi_default, NULL},
      {"pipeNew", NULL, pipe_new, NULL, NULL, NULL, napi_default, NULL},
      {"splice", NULL, splice_bytes, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

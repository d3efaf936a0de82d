/*
 * sendfileAsync(socketFd, fileFd, offset, length, callback(bytes, errno)):
 * one sendfile(2) on libuv's thread pool. Why: sendfile from a cold page cache
 * blocks the calling thread on disk reads, which on the event loop would stall
 * every connection (nginx solves the same with `aio threads`, running
 * sendfile in its thread pool). The socket is non-blocking, so the call
 * returns as soon as the socket buffer is full (errno EAGAIN): it never waits
 * for the peer. With kTLS TX on the socket, the kernel frames and encrypts the
 * records, so the crypto of the body also runs off the event loop.
 * The caller must keep both fds open until the callback has run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <uv.h>

#include "aludel.h"

typedef struct {
  uv_work_t req;
  napi_env env;
  napi_ref callback;
  int sock, file;
  int64_t offset, length;
  ssize_t sent;
  int err;
} sendfile_job;

static void sendfile_work(uv_work_t *req) {
  sendfile_job *j = (sendfile_job *)req->data;
  off_t off = (off_t)j->offset;
  j->sent = sendfile(j->sock, j->file, &off, (size_t)j->length);
  j->err = j->sent < 0 ? errno : 0;
}

static void sendfile_done(uv_work_t *req, int status) {
  sendfile_job *j = (sendfile_job *)req->data;
  napi_env env = j->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) == napi_ok) {
    napi_value fn = NULL, recv, argv[2], result;
    napi_get_reference_value(env, j->callback, &fn);
    napi_get_global(env, &recv);
    argv[0] = aludel_int(env, status == UV_ECANCELED ? -1 : j->sent);
    argv[1] = aludel_int(env, status == UV_ECANCELED ? ECANCELED : j->err);
    if (fn != NULL) napi_make_callback(env, NULL, recv, fn, 2, argv, &result);
    napi_close_handle_scope(env, scope);
  }
  napi_delete_reference(env, j->callback);
  free(j);
}

static napi_value sendfile_async(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  int32_t sock, file;
  int64_t off, len;
  if (!aludel_args(env, info, 5, argv) || !aludel_arg_int32(env, argv[0], &sock) ||
      !aludel_arg_int32(env, argv[1], &file) || !aludel_arg_int64(env, argv[2], &off) ||
      !aludel_arg_int64(env, argv[3], &len))
    return NULL;
  if (off < 0 || len <= 0)
    return aludel_throw(env, "ERR_OUT_OF_RANGE", EINVAL, "sendfile", "sendfileAsync needs offset >= 0, length > 0", false);
  uv_loop_t *loop = NULL;
  ALUDEL_CALL(env, napi_get_uv_event_loop(env, &loop));
  sendfile_job *j = calloc(1, sizeof *j);
  if (j == NULL) return aludel_throw_errno(env, ENOMEM, "calloc");
  j->env = env;
  j->sock = sock;
  j->file = file;
  j->offset = off;
  j->length = len;
  j->req.data = j;
  napi_create_reference(env, argv[4], 1, &j->callback);
  int rc = uv_queue_work(loop, &j->req, sendfile_work, sendfile_done);
  if (rc != 0) {
    napi_delete_reference(env, j->callback);
    free(j);
    return aludel_throw(env, uv_err_name(rc), -rc, "uv_queue_work", uv_strerror(rc), false);
  }
  return NULL;
}

void aludel_register_file(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"sendfileAsync", NULL, sendfile_async, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

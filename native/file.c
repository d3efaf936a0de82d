/*
 * warmFile(fd, offset, length, callback(errno)): pulls a file range into the
 * page cache on libuv's thread pool. Why: sendfile(2) from a cold page cache
 * blocks the calling thread on disk reads, which would stall every connection
 * on the event loop. After this completes, sendfile of the range finds its
 * pages resident (unless evicted meanwhile, which only costs time).
 * mmap(MAP_POPULATE) faults the pages in with one syscall and no copy.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <uv.h>

#include "aludel.h"

typedef struct {
  uv_work_t req;
  napi_env env;
  napi_ref callback;
  int fd;
  int64_t offset, length;
  int err;
} warm_job;

static void warm_work(uv_work_t *req) {
  warm_job *j = (warm_job *)req->data;
  long page = sysconf(_SC_PAGESIZE);
  int64_t start = j->offset - (j->offset % page);
  size_t len = (size_t)(j->offset + j->length - start);
  void *p = mmap(NULL, len, PROT_READ, MAP_SHARED | MAP_POPULATE, j->fd, (off_t)start);
  if (p == MAP_FAILED) {
    j->err = errno;
    return;
  }
  munmap(p, len);
}

static void warm_done(uv_work_t *req, int status) {
  warm_job *j = (warm_job *)req->data;
  napi_env env = j->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) == napi_ok) {
    napi_value fn = NULL, recv, argv[1], result;
    napi_get_reference_value(env, j->callback, &fn);
    napi_get_global(env, &recv);
    argv[0] = aludel_int(env, status == UV_ECANCELED ? ECANCELED : j->err);
    if (fn != NULL) napi_make_callback(env, NULL, recv, fn, 1, argv, &result);
    napi_close_handle_scope(env, scope);
  }
  napi_delete_reference(env, j->callback);
  free(j);
}

static napi_value warm_file(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t fd;
  int64_t off, len;
  if (!aludel_args(env, info, 4, argv) || !aludel_arg_int32(env, argv[0], &fd) ||
      !aludel_arg_int64(env, argv[1], &off) || !aludel_arg_int64(env, argv[2], &len))
    return NULL;
  if (off < 0 || len <= 0)
    return aludel_throw(env, "ERR_OUT_OF_RANGE", EINVAL, "mmap", "warmFile needs offset >= 0, length > 0", false);
  uv_loop_t *loop = NULL;
  ALUDEL_CALL(env, napi_get_uv_event_loop(env, &loop));
  warm_job *j = calloc(1, sizeof *j);
  if (j == NULL) return aludel_throw_errno(env, ENOMEM, "calloc");
  j->env = env;
  j->fd = fd;
  j->offset = off;
  j->length = len;
  j->req.data = j;
  napi_create_reference(env, argv[3], 1, &j->callback);
  int rc = uv_queue_work(loop, &j->req, warm_work, warm_done);
  if (rc != 0) {
    napi_delete_reference(env, j->callback);
    free(j);
    return aludel_throw(env, uv_err_name(rc), -rc, "uv_queue_work", uv_strerror(rc), false);
  }
  return NULL;
}

void aludel_register_file(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"warmFile", NULL, warm_file, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

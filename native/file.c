/*
 * Regular files: sendfile on the thread pool, and reads that never wait for the disk.
 *
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
#include <stdbool.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <unistd.h>
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

/*
 * preadNowait(fd, buffer, length, position): one preadv2(2) with RWF_NOWAIT
 * (Linux 4.14) on the calling thread: the bytes read (0 at end of file), or
 * AGAIN (-1) when they are not all in the page cache and a read would wait
 * for the disk (it may also return fewer bytes: those that were cached), or
 * UNSUPPORTED (-2) when the kernel or the filesystem has no RWF_NOWAIT
 * (EOPNOTSUPP; ENOSYS from a libc without preadv2). Why: a cached read is a
 * few microseconds of copying, while a round trip through libuv's thread
 * pool costs a wake-up of a worker thread and of the event loop; the caller
 * sends only the AGAIN and UNSUPPORTED cases to the thread pool.
 */
static napi_value pread_nowait(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t fd;
  int64_t len, pos;
  void *data = NULL;
  size_t cap = 0;
  if (!aludel_args(env, info, 4, argv) || !aludel_arg_int32(env, argv[0], &fd) ||
      !aludel_arg_int64(env, argv[2], &len) || !aludel_arg_int64(env, argv[3], &pos))
    return NULL;
  if (napi_get_buffer_info(env, argv[1], &data, &cap) != napi_ok || len < 0 || pos < 0 || (uint64_t)len > cap)
    return aludel_throw(env, "ERR_OUT_OF_RANGE", EINVAL, "preadv2", "preadNowait needs a Buffer of at least length bytes, position >= 0", false);
  struct iovec iov = {.iov_base = data, .iov_len = (size_t)len};
  ssize_t n = preadv2(fd, &iov, 1, (off_t)pos, RWF_NOWAIT);
  if (n >= 0) return aludel_int(env, n);
  if (errno == EAGAIN) return aludel_int(env, -1);
  if (errno == EOPNOTSUPP || errno == ENOSYS) return aludel_int(env, -2);
  return aludel_throw_errno(env, errno, "preadv2");
}

/*
 * openBeneath(dirFd, path) -> fd, or -errno: one openat2(2) (Linux >= 5.6)
 * read-only, non-blocking (a FIFO swapped in never parks the caller), with
 * RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS: the kernel refuses (EXDEV) any
 * resolution that leaves dirFd, through "..", an absolute path or a symlink,
 * in the same walk that opens the file, so no check-then-open window exists.
 * RESOLVE_CACHED (Linux >= 5.12): the walk uses only the dentry cache and
 * fails with EAGAIN where it would have to read a directory from disk, so
 * this call on the event loop never waits for the disk (as preadNowait).
 * ENOSYS (no openat2), EINVAL (no RESOLVE_CACHED), EAGAIN (not cached): the
 * caller then resolves by realpath on the thread pool.
 * Errors are returned as states, not thrown: the caller decides per errno.
 */
static napi_value open_beneath(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t dir;
  char rel[4096];
  if (!aludel_args(env, info, 2, argv) || !aludel_arg_int32(env, argv[0], &dir) || !aludel_arg_string(env, argv[1], rel, sizeof rel))
    return NULL;
  struct open_how how = {
      .flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY,
      .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_CACHED,
  };
  long fd = syscall(SYS_openat2, dir, rel, &how, sizeof how);
  return aludel_int(env, fd < 0 ? -errno : fd);
}

/*
 * openBeneathStat(dirFd, path, out) -> fd, or -errno: openBeneath, then
 * fstat(2) of the fd it opened, written into `out` (a Float64Array of at
 * least STAT_SLOTS): st_mode, st_size, st_mtim.tv_sec, st_mtim.tv_nsec,
 * st_ino, st_dev, and with 8 slots st_ctim.tv_sec, st_ctim.tv_nsec, as
 * node's fs.fstatSync reads them (node_file.cc FillStatsArray: doubles). One crossing into the addon where openBeneath
 * and fs.fstatSync made two, without node's FSReqWrapSync and its fs.Stats
 * object (both among serve's costs in a profile of 1 KiB keep-alive GETs).
 * A failed fstat closes the fd and says -errno, as a failed open does.
 */
#define STAT_SLOTS 6

/* The slots: st_mode, st_size, st_mtim (sec, nsec), st_ino, st_dev; then st_ctim (sec, nsec) where there are 8. */
static void fill_stat_slots(double *out, size_t length, const struct stat *st) {
  out[0] = (double)st->st_mode;
  out[1] = (double)st->st_size;
  out[2] = (double)st->st_mtim.tv_sec;
  out[3] = (double)st->st_mtim.tv_nsec;
  out[4] = (double)st->st_ino;
  out[5] = (double)st->st_dev;
  if (length >= 8) {
    out[6] = (double)st->st_ctim.tv_sec;
    out[7] = (double)st->st_ctim.tv_nsec;
  }
}
/* The (dirFd, path, out) arguments of openBeneathStat and statAt; false with an exception pending. */
struct stat_args {
  int32_t dir;
  char rel[4096];
  double *out;
  size_t length;
};
static bool get_stat_args(napi_env env, napi_callback_info info, const char *fn, struct stat_args *a) {
  napi_value argv[3];
  napi_typedarray_type type;
  void *data = NULL;
  if (!aludel_args(env, info, 3, argv) || !aludel_arg_int32(env, argv[0], &a->dir) || !aludel_arg_string(env, argv[1], a->rel, sizeof a->rel))
    return false;
  if (napi_get_typedarray_info(env, argv[2], &type, &a->length, &data, NULL, NULL) != napi_ok || type != napi_float64_array || a->length < STAT_SLOTS) {
    aludel_throw(env, "ERR_INVALID_ARG", EINVAL, fn, "needs a Float64Array of at least 6 slots", false);
    return false;
  }
  a->out = (double *)data;
  return true;
}

static napi_value open_beneath_stat(napi_env env, napi_callback_info info) {
  struct stat_args a;
  if (!get_stat_args(env, info, "openBeneathStat", &a)) return NULL;
  struct open_how how = {
      .flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY,
      .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_CACHED,
  };
  long fd = syscall(SYS_openat2, a.dir, a.rel, &how, sizeof how);
  if (fd < 0) return aludel_int(env, -errno);
  struct stat st;
  if (fstat((int)fd, &st) != 0) {
    int err = errno;
    close((int)fd);
    return aludel_int(env, -err);
  }
  fill_stat_slots(a.out, a.length, &st);
  return aludel_int(env, fd);
}

/*
 * statAt(dirFd, path, out) -> 0, or -errno: fstatat(2) of path relative to
 * dirFd, not following a symlink in the last component, into `out` as
 * openBeneathStat writes it (ctime included with 8 slots). For a file
 * descriptor serve keeps open (src/http/open-files.ts): one syscall asks
 * whether the path still names the same unchanged inode. The walk is not
 * kept beneath dirFd (fstatat has no RESOLVE_BENEATH): the caller only
 * compares the identity with a descriptor openBeneath opened, and anything
 * else goes the guarded way. Nor is it RESOLVE_CACHED: the kept descriptor
 * pins its dentry and every ancestor's (a dentry holds its parent), so the
 * same names are found in the dentry cache; only a tree renamed meanwhile
 * may be read from disk.
 */
static napi_value stat_at(napi_env env, napi_callback_info info) {
  struct stat_args a;
  if (!get_stat_args(env, info, "statAt", &a)) return NULL;
  struct stat st;
  if (fstatat(a.dir, a.rel, &st, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT) != 0) return aludel_int(env, -errno);
  fill_stat_slots(a.out, a.length, &st);
  return aludel_int(env, 0);
}

/*
 * statSlots() -> the Float64Array (8 slots) that statAtShared fills, made
 * once per environment (napi_get_cb_info's data), with its own off-heap
 * ArrayBuffer: its data pointer stays put for as long as the reference held
 * here keeps it alive (an ArrayBuffer's backing store does not move; only a
 * typed array made on V8's heap would, until its buffer is asked for).
 *
 * statAtShared(dirFd, path) -> statAt into those slots. Taking the typed
 * array as an argument on every call cost napi_get_typedarray_info (V8's
 * JSTypedArray::GetBuffer, a handle): about 0.5k of statAt's 1.2k
 * instructions per kept-descriptor check, counted by
 * bench/request-cost.ts. One environment, one array: a worker thread (its
 * own environment) gets its own, so no two threads write the same slots.
 */
struct shared_stat {
  napi_ref array;
  double *slots;
};

static struct shared_stat *shared_stat_of(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  size_t argc = n;
  void *data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, &data) != napi_ok) return NULL;
  if (argc < n) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "missing arguments");
    return NULL;
  }
  return (struct shared_stat *)data;
}

static napi_value stat_slots(napi_env env, napi_callback_info info) {
  struct shared_stat *s = shared_stat_of(env, info, 0, NULL);
  if (s == NULL) return NULL;
  napi_value out = NULL;
  if (s->array != NULL) {
    napi_get_reference_value(env, s->array, &out);
    return out;
  }
  void *data = NULL;
  napi_value ab;
  if (napi_create_arraybuffer(env, 8 * sizeof(double), &data, &ab) != napi_ok) return NULL;
  if (napi_create_typedarray(env, napi_float64_array, 8, ab, 0, &out) != napi_ok) return NULL;
  if (napi_create_reference(env, out, 1, &s->array) != napi_ok) return NULL;
  s->slots = (double *)data;
  return out;
}

static napi_value stat_at_shared(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  struct shared_stat *s = shared_stat_of(env, info, 2, argv);
  if (s == NULL) return NULL;
  int32_t dir;
  char rel[4096];
  if (!aludel_arg_int32(env, argv[0], &dir) || !aludel_arg_string(env, argv[1], rel, sizeof rel)) return NULL;
  if (s->slots == NULL) return aludel_throw(env, "ERR_INVALID_STATE", EINVAL, "statAtShared", "statSlots() was not called", false);
  struct stat st;
  if (fstatat(dir, rel, &st, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT) != 0) return aludel_int(env, -errno);
  fill_stat_slots(s->slots, 8, &st);
  return aludel_int(env, 0);
}

/* The environment is going away: its references with it; the struct is ours. */
static void shared_stat_free(void *arg) {
  free(arg);
}

/*
 * linkCount(fd) -> st_nlink of what fd refers to, or -errno: 0 once the file
 * was unlinked (fstat(2) on an open descriptor still works then). For a body
 * descriptor the cache keeps open between hits (src/cache/open-bodies.ts):
 * one syscall, without node's fs.Stats object.
 */
static napi_value link_count(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t fd;
  if (!aludel_args(env, info, 1, argv) || !aludel_arg_int32(env, argv[0], &fd)) return NULL;
  struct stat st;
  if (fstat(fd, &st) != 0) return aludel_int(env, -errno);
  return aludel_int(env, (int64_t)st.st_nlink);
}

void aludel_register_file(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"sendfileAsync", NULL, sendfile_async, NULL, NULL, NULL, napi_default, NULL},
      {"preadNowait", NULL, pread_nowait, NULL, NULL, NULL, napi_default, NULL},
      {"openBeneath", NULL, open_beneath, NULL, NULL, NULL, napi_default, NULL},
      {"openBeneathStat", NULL, open_beneath_stat, NULL, NULL, NULL, napi_default, NULL},
      {"linkCount", NULL, link_count, NULL, NULL, NULL, napi_default, NULL},
      {"statAt", NULL, stat_at, NULL, NULL, NULL, napi_default, NULL},
      {"statSlots", NULL, stat_slots, NULL, NULL, NULL, napi_default, NULL},
      {"statAtShared", NULL, stat_at_shared, NULL, NULL, NULL, napi_default, NULL},
  };
  struct shared_stat *shared = calloc(1, sizeof *shared);
  if (shared == NULL || napi_add_env_cleanup_hook(env, shared_stat_free, shared) != napi_ok) {
    free(shared);
    napi_throw_error(env, "ERR_NO_MEMORY", "aludel: no memory for the shared stat slots");
    return;
  }
  /* statSlots and statAtShared, the last two above: their shared_stat, per environment. */
  props[sizeof props / sizeof props[0] - 2].data = shared;
  props[sizeof props / sizeof props[0] - 1].data = shared;
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

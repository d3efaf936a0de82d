/*
 * Readiness of a socket fd through libuv's uv_poll_t, so the non-blocking
 * OpenSSL calls are driven from Node's own event loop. libuv polling is
 * level-triggered: the TypeScript side stops it whenever no operation waits.
 *
 * Lifetime: the JS object owns the struct. pollClose() uv_close()s the handle;
 * the struct is freed when both the close callback ran and the JS object was
 * finalized (either order), so neither side touches freed memory.
 */
#include <stdlib.h>
#include <uv.h>

#include "aludel.h"

typedef struct {
  uv_poll_t handle;
  napi_env env;
  napi_ref callback; /* strong while open; the owner must call pollClose() */
  bool closing, closed, finalized;
} aludel_poll;

static void on_closed(uv_handle_t *h) {
  aludel_poll *p = (aludel_poll *)h->data;
  p->closed = true;
  if (p->finalized) free(p);
}

static void release_refs(aludel_poll *p) {
  if (p->callback != NULL) napi_delete_reference(p->env, p->callback);
  p->callback = NULL;
}

static void start_close(aludel_poll *p) {
  if (p->closing) return;
  p->closing = true;
  uv_close((uv_handle_t *)&p->handle, on_closed);
}

static void on_finalize(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  aludel_poll *p = (aludel_poll *)data;
  p->finalized = true;
  if (!p->closing) {
    /* Collected without pollClose(): references may not be deleted from a finalizer
       on every Node version, and the callback ref normally keeps the object alive (its
       closure holds the owner), so it is left as it is. */
    start_close(p);
  } else if (p->closed) {
    free(p);
  }
}

static void on_ready(uv_poll_t *h, int status, int events) {
  aludel_poll *p = (aludel_poll *)h->data;
  if (p->closing || p->callback == NULL) return;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value fn = NULL, argv[2], result;
  napi_get_reference_value(env, p->callback, &fn);
  argv[0] = aludel_int(env, status); /* UV_EBADF after a peer reset: retry the op to learn why */
  argv[1] = aludel_int(env, events);
  /* napi_make_callback needs an object as receiver (undefined: napi_object_expected, and the
     callback never runs); the callback is one, and its `this` is unused (an arrow function).
     A weak reference to the handle object as receiver was a second napi_get_reference_value
     per wake-up, and a reference to create and delete per connection. */
  if (fn != NULL && napi_make_callback(env, NULL, fn, fn, 2, argv, &result) != napi_ok) {
    /* An exception thrown by the callback is left pending: Node reports it as uncaught. */
  }
  napi_close_handle_scope(env, scope);
}

static aludel_poll *unwrap(napi_env env, napi_value v) {
  aludel_poll *p = NULL;
  if (napi_unwrap(env, v, (void **)&p) != napi_ok || p == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "not a poll handle");
    return NULL;
  }
  return p;
}

/* pollNew(fd, callback(status, events)) -> handle object */
static napi_value poll_new(napi_env env, napi_callback_info info) {
  napi_value argv[2], obj;
  int32_t fd;
  if (!aludel_args(env, info, 2, argv) || !aludel_arg_int32(env, argv[0], &fd)) return NULL;
  uv_loop_t *loop = NULL;
  ALUDEL_CALL(env, napi_get_uv_event_loop(env, &loop));
  aludel_poll *p = calloc(1, sizeof *p);
  if (p == NULL) return aludel_throw_errno(env, 12 /* ENOMEM */, "calloc");
  int rc = uv_poll_init_socket(loop, &p->handle, fd);
  if (rc != 0) {
    free(p);
    return aludel_throw(env, uv_err_name(rc), -rc, "uv_poll_init", uv_strerror(rc), false);
  }
  p->handle.data = p;
  p->env = env;
  napi_create_object(env, &obj);
  if (napi_wrap(env, obj, p, on_finalize, NULL, NULL) != napi_ok) {
    start_close(p);
    p->finalized = true; /* freed by on_closed */
    return NULL;
  }
  napi_create_reference(env, argv[1], 1, &p->callback);
  return obj;
}

/* pollStart(handle, events): events = 1 readable | 2 writable; 0 stops polling. */
static napi_value poll_start(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int32_t events;
  if (!aludel_args(env, info, 2, argv) || !aludel_arg_int32(env, argv[1], &events)) return NULL;
  aludel_poll *p = unwrap(env, argv[0]);
  if (p == NULL) return NULL;
  if (p->closing) return NULL;
  int rc = events == 0 ? uv_poll_stop(&p->handle)
                       : uv_poll_start(&p->handle, events & (UV_READABLE | UV_WRITABLE), on_ready);
  if (rc != 0) return aludel_throw(env, uv_err_name(rc), -rc, "uv_poll_start", uv_strerror(rc), false);
  return NULL;
}

/* pollClose(handle): stops polling now (the fd may be closed right after), frees later. */
static napi_value poll_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!aludel_args(env, info, 1, argv)) return NULL;
  aludel_poll *p = unwrap(env, argv[0]);
  if (p == NULL) return NULL;
  if (p->closing) return NULL;
  /* uv_close() stops the handle before it returns (uv__poll_close -> uv__poll_stop ->
     uv__platform_invalidate_fd), so the fd is out of epoll at once and may be closed right
     after. A uv_poll_stop() first made that EPOLL_CTL_DEL twice, the second failing with
     ENOENT: one wasted system call per connection. */
  release_refs(p);
  start_close(p);
  return NULL;
}

void aludel_register_poll(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"pollNew", NULL, poll_new, NULL, NULL, NULL, napi_default, NULL},
      {"pollStart", NULL, poll_start, NULL, NULL, NULL, napi_default, NULL},
      {"pollClose", NULL, poll_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

/* Module entry and the helpers every other file uses. */
#define _GNU_SOURCE
#include "aludel.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "openssl-api.h"

bool aludel_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  if (argc < n) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "missing arguments");
    return false;
  }
  return true;
}

bool aludel_arg_int32(napi_env env, napi_value v, int32_t *out) {
  if (napi_get_value_int32(env, v, out) == napi_ok) return true;
  napi_throw_type_error(env, "ERR_INVALID_ARG", "expected a number");
  return false;
}

bool aludel_arg_int64(napi_env env, napi_value v, int64_t *out) {
  if (napi_get_value_int64(env, v, out) == napi_ok) return true;
  napi_throw_type_error(env, "ERR_INVALID_ARG", "expected a number");
  return false;
}

bool aludel_arg_string(napi_env env, napi_value v, char *buf, size_t size) {
  size_t len = 0;
  if (napi_get_value_string_utf8(env, v, buf, size, &len) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "expected a string");
    return false;
  }
  if (len + 1 >= size) {
    napi_throw_range_error(env, "ERR_INVALID_ARG", "string too long");
    return false;
  }
  return true;
}

bool aludel_arg_buffer_range(napi_env env, napi_value buf, napi_value off, napi_value len, char **data, size_t *n) {
  void *base;
  size_t size;
  int64_t o, l;
  if (napi_get_buffer_info(env, buf, &base, &size) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG", "expected a Buffer");
    return false;
  }
  if (!aludel_arg_int64(env, off, &o) || !aludel_arg_int64(env, len, &l)) return false;
  if (o < 0 || l < 0 || (uint64_t)o + (uint64_t)l > size) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "offset/length outside the buffer");
    return false;
  }
  *data = (char *)base + o;
  *n = (size_t)l;
  return true;
}

napi_value aludel_int(napi_env env, int64_t v) {
  napi_value out = NULL;
  napi_create_int64(env, v, &out);
  return out;
}

napi_value aludel_str(napi_env env, const char *s) {
  napi_value out = NULL;
  if (s == NULL) {
    napi_get_null(env, &out);
  } else {
    napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out);
  }
  return out;
}

static void set_prop(napi_env env, napi_value obj, const char *key, napi_value v) {
  napi_set_named_property(env, obj, key, v);
}

napi_value aludel_throw(napi_env env, const char *code, int err, const char *syscall,
                        const char *message, bool drain_openssl) {
  char text[768];
  napi_value list = NULL;
  napi_create_array(env, &list);
  size_t n = 0;
  const char *first = NULL;
  char firstbuf[256];
  if (drain_openssl && aludel_ossl_handle != NULL) {
    unsigned long e;
    while ((e = aludel_ossl.ERR_get_error()) != 0) {
      char buf[256];
      aludel_ossl.ERR_error_string_n(e, buf, sizeof buf);
      if (n == 0) {
        memcpy(firstbuf, buf, sizeof buf);
        first = firstbuf;
      }
      napi_set_element(env, list, (uint32_t)n++, aludel_str(env, buf));
    }
  }
  if (first != NULL) {
    snprintf(text, sizeof text, "%s: %s", message, first);
  } else if (err != 0) {
    snprintf(text, sizeof text, "%s: %s", message, strerror(err));
  } else {
    snprintf(text, sizeof text, "%s", message);
  }
  napi_value msg = aludel_str(env, text), code_v = aludel_str(env, code), error = NULL;
  napi_create_error(env, code_v, msg, &error);
  set_prop(env, error, "errno", aludel_int(env, err));
  set_prop(env, error, "syscall", aludel_str(env, syscall));
  set_prop(env, error, "opensslErrors", list);
  napi_throw(env, error);
  return NULL;
}

napi_value aludel_throw_errno(napi_env env, int err, const char *syscall) {
  const char *name = strerrorname_np(err);
  return aludel_throw(env, name != NULL ? name : "EUNKNOWN", err, syscall, syscall, false);
}

NAPI_MODULE_INIT() {
  aludel_register_socket(env, exports);
  aludel_register_poll(env, exports);
  aludel_register_tls(env, exports);
  aludel_register_file(env, exports);
  aludel_register_diag(env, exports);
  aludel_register_stream(env, exports);
  aludel_register_ethtool(env, exports);
  aludel_register_tickets(env, exports);
  aludel_register_tls_client(env, exports);
  aludel_register_copy(env, exports);
  aludel_register_process(env, exports);
  return exports;
}

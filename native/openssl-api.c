/*
 * Loads the system libssl into its own symbol scope and fills the dlsym table.
 * RTLD_DEEPBIND: without it, 629 libssl and 3031 libcrypto references resolve
 * into the copy that the node binary exports (TLS 1.3 handshakes then fail and
 * kTLS never engages); with it, libssl and its libcrypto bind to each other.
 * RTLD_LOCAL keeps our copy out of the global scope, so node:tls is unaffected.
 */
#define _GNU_SOURCE
#include "openssl-api.h"

#include <dlfcn.h>
#include <stdio.h>

aludel_openssl_api aludel_ossl;
void *aludel_ossl_handle;

static char load_error[512];

const char *aludel_openssl_load(const char *path) {
  if (aludel_ossl_handle != NULL) return NULL; /* once per process: see ktls-notes on DEEPBIND */
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (h == NULL) {
    snprintf(load_error, sizeof load_error, "dlopen(%s): %s", path, dlerror());
    return load_error;
  }
  aludel_openssl_api api;
#define ALUDEL_LOAD_PTR(ret, name, params)                                                 \
  *(void **)(&api.name) = dlsym(h, #name);                                                 \
  if (api.name == NULL) {                                                                  \
    snprintf(load_error, sizeof load_error, "%s has no symbol %s (OpenSSL >= 3.0 needed)", \
             path, #name);                                                                 \
    dlclose(h);                                                                            \
    return load_error;                                                                     \
  }
  ALUDEL_OPENSSL_FUNCS(ALUDEL_LOAD_PTR)
#undef ALUDEL_LOAD_PTR
  aludel_ossl = api;
  aludel_ossl_handle = h;
  return NULL;
}

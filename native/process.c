/*
 * What `aludel run` needs to end as its program ended and node has no call
 * for (the decisions are in src/run/run-program.ts):
 * - signalDefault(signo): the signal's disposition back to SIG_DFL and the
 *   signal unblocked in this thread. Node sets SIGPIPE to SIG_IGN at start-up
 *   (node.cc, so that writes to closed sockets fail with EPIPE), and a
 *   process.kill() of an ignored signal does nothing (POSIX kill(2),
 *   sigaction(2): an ignored signal is discarded).
 * - disableCoreDumps(): soft RLIMIT_CORE 0, so that dying of a core-dumping
 *   signal (SIGSEGV, SIGABRT, ...) writes no core of node (core(5): no core
 *   file when RLIMIT_CORE is 0), which would replace the program's own core
 *   where core_pattern names a file in the working directory ("core").
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>

#include "aludel.h"

static napi_value signal_default(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t signo;
  if (!aludel_args(env, info, 1, argv) || !aludel_arg_int32(env, argv[0], &signo)) return NULL;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  sigset_t set;
  sigemptyset(&set);
  if (sigaddset(&set, signo) != 0 || sigaction(signo, &sa, NULL) != 0) return aludel_throw_errno(env, errno, "sigaction");
  int err = pthread_sigmask(SIG_UNBLOCK, &set, NULL);
  if (err != 0) return aludel_throw_errno(env, err, "pthread_sigmask");
  return NULL;
}

static napi_value disable_core_dumps(napi_env env, napi_callback_info info) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_CORE, &rl) != 0) return aludel_throw_errno(env, errno, "getrlimit");
  rl.rlim_cur = 0;
  if (setrlimit(RLIMIT_CORE, &rl) != 0) return aludel_throw_errno(env, errno, "setrlimit");
  return NULL;
}

void aludel_register_process(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"signalDefault", NULL, signal_default, NULL, NULL, NULL, napi_default, NULL},
      {"disableCoreDumps", NULL, disable_core_dumps, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
}

/*
 * A program that re-executes itself keeps the preload.
 *
 * nginx's binary upgrade (SIGUSR2 to the master, "Upgrading executable on
 * the fly") forks and execve()s its own binary with an environment it builds
 * itself: only TZ, NGINX (the listening sockets) and its `env` directives
 * (src/core/nginx.c: ngx_exec_new_binary, ngx_set_environment). LD_PRELOAD
 * and ALUDEL_PRELOAD_* are not in it, so the new master and its workers ran
 * without the preload, silently. execve is therefore hooked: when the path
 * names this process's own executable and the new environment lacks this
 * library, LD_PRELOAD and the ALUDEL_PRELOAD_* variables the process started
 * with are added back. Any other exec, or one whose environment already has
 * the library, is passed through untouched.
 *
 * execve runs in a child after fork (in a multi-threaded program only
 * async-signal-safe calls are allowed there; after vfork the memory is the
 * parent's): everything it needs is taken when the library is loaded, and
 * the hook itself uses only stat, readlink and the stack.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "preload.h"

#define KEPT_MAX 8                  /* ALUDEL_PRELOAD_* variables kept */
#define KEPT_BYTES 16384            /* their "NAME=value" text, and LD_PRELOAD's */
#define ENV_MAX 1024                /* a larger environment is passed through untouched: the copy lives on the stack, */
                                    /* which after vfork or in a small thread stack must stay small */
#define EXTENDED_BYTES 4096         /* a program's own LD_PRELOAD with this library appended (on the stack) */
#define PRELOAD_PREFIX "LD_PRELOAD="

extern char **environ;

static struct {
  int (*execve)(const char *, char *const[], char *const[]);
  char self[4096];                  /* this library's path, as LD_PRELOAD names it (dladdr) */
  char ld_preload[KEPT_BYTES];      /* "LD_PRELOAD=..." at load, naming this library */
  char vars[KEPT_BYTES];            /* the ALUDEL_PRELOAD_* "NAME=value" strings, one after another */
  char *var[KEPT_MAX];
  int vars_n;
} at_load;

/* Copies "NAME=value" into the pool at *used; NULL when it does not fit. */
static char *keep_string(const char *s, size_t *used) {
  size_t n = strlen(s) + 1;
  if (*used + n > sizeof at_load.vars) return NULL;
  char *out = memcpy(at_load.vars + *used, s, n);
  *used += n;
  return out;
}

/* Whether the LD_PRELOAD value `list` (entries separated by ':' or ' ', as ld.so reads it) names this library. */
static int names_self(const char *list) {
  size_t len = strlen(at_load.self);
  for (const char *p = list; *p != '\0';) {
    size_t n = strcspn(p, ": ");
    if (n == len && strncmp(p, at_load.self, len) == 0) return 1;
    p += n;
    if (*p != '\0') p++;
  }
  return 0;
}

/* At load: the real execve (dlsym is not async-signal-safe), this library's path, and the variables to give back. */
__attribute__((constructor)) static void keep_exec_env(void) {
  Dl_info info;
  *(void **)&at_load.execve = dlsym(RTLD_NEXT, "execve");
  if (dladdr((void *)keep_exec_env, &info) == 0 || info.dli_fname == NULL || strlen(info.dli_fname) >= sizeof at_load.self) return;
  strcpy(at_load.self, info.dli_fname);
  const char *pre = getenv("LD_PRELOAD");
  if (pre == NULL || !names_self(pre) || strlen(PRELOAD_PREFIX) + strlen(pre) >= sizeof at_load.ld_preload) return;
  strcpy(at_load.ld_preload, PRELOAD_PREFIX);
  strcat(at_load.ld_preload, pre);
  size_t used = 0;
  for (char **e = environ; e != NULL && *e != NULL && at_load.vars_n < KEPT_MAX; e++) {
    if (strncmp(*e, "ALUDEL_PRELOAD_", 15) != 0) continue;
    char *kept = keep_string(*e, &used);
    if (kept != NULL) at_load.var[at_load.vars_n++] = kept;
  }
}

/* The entry of envp that sets `name` ("NAME=" included), or NULL. */
static char *const *env_entry(char *const envp[], const char *name, size_t len) {
  for (char *const *e = envp; e != NULL && *e != NULL; e++)
    if (strncmp(*e, name, len) == 0) return e;
  return NULL;
}

/*
 * Whether `path` is this process's own executable: the same file as
 * /proc/self/exe, or, when that file was replaced since (an upgrade installs
 * the new binary under the old name and then sends USR2; the link then reads
 * "PATH (deleted)"), the file now at its old path.
 */
static int is_self(const char *path) {
  struct stat target, self;
  if (stat(path, &target) != 0) return 0;
  if (stat("/proc/self/exe", &self) == 0 && self.st_dev == target.st_dev && self.st_ino == target.st_ino) return 1;
  char link[4096];
  static const char deleted[] = " (deleted)";
  ssize_t n = readlink("/proc/self/exe", link, sizeof link - 1);
  size_t dl = sizeof deleted - 1;
  if (n <= (ssize_t)dl || strncmp(link + n - dl, deleted, dl) != 0) return 0;
  link[n - dl] = '\0';
  return stat(link, &self) == 0 && self.st_dev == target.st_dev && self.st_ino == target.st_ino;
}

/* "LD_PRELOAD=<the program's entries>:<this library>" in buf, or NULL when it does not fit. */
static char *extended_preload(const char *own, char *buf, size_t size) {
  size_t len = strlen(own), self = strlen(at_load.self);
  int sep = len > strlen(PRELOAD_PREFIX); /* an empty LD_PRELOAD= needs no ':' */
  if (len + sep + self + 1 > size) return NULL;
  memcpy(buf, own, len);
  if (sep) buf[len] = ':';
  memcpy(buf + len + sep, at_load.self, self + 1);
  return buf;
}

/*
 * envp with LD_PRELOAD and the kept ALUDEL_PRELOAD_* added, into out (room
 * for n + KEPT_MAX + 2 pointers). A program's own LD_PRELOAD (nginx's `env
 * LD_PRELOAD=...`) keeps its entries first and gets this library appended,
 * as `aludel run` composes it (too long to extend: the one from the start
 * replaces it); its own ALUDEL_PRELOAD_* values win.
 */
static void with_preload(char *const envp[], size_t n, char **out, char *buf, size_t size) {
  size_t k = 0;
  int preload_set = 0;
  for (size_t i = 0; i < n; i++) {
    if (strncmp(envp[i], PRELOAD_PREFIX, strlen(PRELOAD_PREFIX)) != 0) {
      out[k++] = envp[i];
    } else if (!preload_set && (out[k] = extended_preload(envp[i], buf, size)) != NULL) {
      k++;
      preload_set = 1;
    }
  }
  if (!preload_set) out[k++] = at_load.ld_preload;
  for (int v = 0; v < at_load.vars_n; v++) {
    size_t name = strcspn(at_load.var[v], "=") + 1;
    if (env_entry(envp, at_load.var[v], name) == NULL) out[k++] = at_load.var[v];
  }
  out[k] = NULL;
}

ALUDEL_EXPORT int execve(const char *path, char *const argv[], char *const envp[]) {
  if (at_load.execve == NULL) { /* no execve after this library: cannot happen with a libc */
    errno = ENOSYS;
    return -1;
  }
  if (at_load.ld_preload[0] == '\0') return at_load.execve(path, argv, envp);
  char *const *pre = env_entry(envp, PRELOAD_PREFIX, strlen(PRELOAD_PREFIX));
  if (pre != NULL && names_self(*pre + strlen(PRELOAD_PREFIX))) return at_load.execve(path, argv, envp);
  size_t n = 0;
  while (envp != NULL && envp[n] != NULL && n < ENV_MAX) n++;
  if (n >= ENV_MAX || !is_self(path)) return at_load.execve(path, argv, envp);
  char *out[n + KEPT_MAX + 2];
  char buf[EXTENDED_BYTES];
  with_preload(envp, n, out, buf, sizeof buf);
  return at_load.execve(path, argv, out);
}

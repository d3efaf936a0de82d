/*
 * For the counted benches only (bench/counted.ts): valgrind 3.19 knows no
 * openat2(2) (it answers ENOSYS), so under callgrind `aludel serve` would
 * take its realpath way on the thread pool (src/http/safe-path.ts) instead
 * of the openat2 one it takes natively, and the count would be of a path no
 * production request takes. Preloaded into the front under valgrind, this
 * answers libc's syscall(SYS_openat2, ...) with openat(2) and the same open
 * flags, refusing what RESOLVE_BENEATH refuses lexically (an absolute path,
 * a ".." segment); the bench's root is one flat directory with no symlink.
 * Every other syscall() goes to libc's. Never used outside the benches.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

long syscall(long n, ...) {
  va_list ap;
  long a[6];
  va_start(ap, n);
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
  va_end(ap);
  if (n == SYS_openat2) {
    const char *rel = (const char *)a[1];
    const struct open_how *how = (const struct open_how *)a[2];
    if (rel[0] == '/' || strcmp(rel, "..") == 0 || strncmp(rel, "../", 3) == 0 || strstr(rel, "/..") != NULL) {
      errno = EXDEV;
      return -1;
    }
    return openat((int)a[0], rel, (int)how->flags | O_NOFOLLOW, (mode_t)how->mode);
  }
  static long (*real)(long, ...);
  if (real == NULL) real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
  return real(n, a[0], a[1], a[2], a[3], a[4], a[5]);
}

/*
 * Kernel TLS, one small function per syscall (Documentation/networking/tls.rst).
 * Each returns what the syscall returned, errno untouched: what a failure
 * means is decided by the caller.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/tls.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "preload.h"

#ifndef SOL_TLS
#define SOL_TLS 282
#endif
#ifndef TCP_ULP
#define TCP_ULP 31
#endif

/* The TLS ULP: only on an ESTABLISHED socket; ENOENT on a kernel without CONFIG_TLS. Without keys the socket stays plain TCP. */
int aludel_ktls_ulp(int fd) {
  return setsockopt(fd, SOL_TCP, TCP_ULP, "tls", sizeof "tls");
}

/*
 * Whether this kernel has the TLS ULP, from its own answer on a fresh TCP
 * socket that never connects: setsockopt(TCP_ULP, "tls") fails with ENOENT
 * when no "tls" ULP is registered or can be loaded (no CONFIG_TLS, no
 * module); otherwise the ULP exists and tls_init refuses the unconnected
 * socket (ENOTCONN, ENOTSUPP on 4.13-era kernels). 1: present, 0: absent,
 * -1: no socket to ask with. errno is left as it was (the program's).
 */
int aludel_ktls_ulp_present(void) {
  int saved = errno;
  int present = -1;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    present = aludel_ktls_ulp(fd) == 0 || errno != ENOENT;
    close(fd);
  }
  errno = saved;
  return present;
}

/* One record of `type` (alert, handshake) through kernel TX: sendmsg with a TLS_SET_RECORD_TYPE cmsg. */
ssize_t aludel_ktls_send_record(int fd, unsigned char type, const void *buf, size_t n) {
  char cbuf[CMSG_SPACE(sizeof(unsigned char))];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = n};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_TLS;
  cm->cmsg_type = TLS_SET_RECORD_TYPE;
  cm->cmsg_len = CMSG_LEN(sizeof(unsigned char));
  *CMSG_DATA(cm) = type;
  return sendmsg(fd, &msg, MSG_NOSIGNAL);
}

/* Application data: the kernel frames and encrypts it. */
ssize_t aludel_ktls_send(int fd, const void *buf, size_t n) {
  return send(fd, buf, n, MSG_NOSIGNAL);
}

/*
 * Plaintext from kernel RX, and the record type from the TLS_GET_RECORD_TYPE
 * cmsg (application data when there is none). The kernel never mixes types in
 * one call, and a non-data record may be returned in parts.
 */
ssize_t aludel_ktls_recv(int fd, void *buf, size_t n, int peek, unsigned char *type) {
  char cbuf[CMSG_SPACE(sizeof(unsigned char))];
  struct iovec iov = {.iov_base = buf, .iov_len = n};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  ssize_t got = recvmsg(fd, &msg, peek ? MSG_PEEK : 0);
  *type = RT_APPLICATION_DATA;
  if (got > 0) {
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (cm != NULL && cm->cmsg_level == SOL_TLS && cm->cmsg_type == TLS_GET_RECORD_TYPE) *type = *CMSG_DATA(cm);
  }
  return got;
}

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

/*
 * No MSG_NOSIGNAL on either send: they stand for the write(2) that OpenSSL's
 * socket BIO makes for the same bytes (1.0.2f and 1.1.1 BIO_s_socket:
 * writesocket/write, no flags), and on a connection the peer has closed or
 * reset, write(2) raises SIGPIPE (EPIPE otherwise). A program therefore gets
 * under `aludel run` what it gets alone: nginx, stunnel, HAProxy and
 * OpenSSL's own s_server/s_client ignore SIGPIPE (ngx_signals SIG_IGN,
 * do_pipe_sig in apps.h) and see EPIPE either way; a program that keeps the
 * default disposition is ended by the signal, as it would be alone, rather
 * than sent down an error path it never takes without aludel; one with a
 * SIGPIPE handler sees it called. That holds where OpenSSL would write the
 * same record (application data, close_notify, alerts, a KeyUpdate answer);
 * the one record the preload adds of its own (close_notify when this kernel
 * cannot follow the peer's KeyUpdate) goes with MSG_NOSIGNAL.
 */

/* One record of `type` (alert, handshake) through kernel TX: sendmsg with a TLS_SET_RECORD_TYPE cmsg; flags 0, or MSG_NOSIGNAL for a record OpenSSL would not have written. */
ssize_t aludel_ktls_send_record(int fd, unsigned char type, const void *buf, size_t n, int flags) {
  char cbuf[CMSG_SPACE(sizeof(unsigned char))];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov = {.iov_base = (void *)buf, .iov_len = n};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_TLS;
  cm->cmsg_type = TLS_SET_RECORD_TYPE;
  cm->cmsg_len = CMSG_LEN(sizeof(unsigned char));
  *CMSG_DATA(cm) = type;
  return sendmsg(fd, &msg, flags);
}

/* Application data: the kernel frames and encrypts it. */
ssize_t aludel_ktls_send(int fd, const void *buf, size_t n) {
  return send(fd, buf, n, 0);
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

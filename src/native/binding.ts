/**
 * Typed view of the C addon (native/). Mechanisms only: every function maps to
 * one OpenSSL call or syscall; states come back as numbers, failures as thrown
 * errors shaped {code, errno, syscall, opensslErrors}.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** Results that are states, not errors: wait for readiness and call again. */
export const WANT_READ = -1;
export const WANT_WRITE = -2;
/** The peer closed TCP without a close_notify alert (RFC 8446 §6.1). */
export const EOF_NO_NOTIFY = -3;
/** readScratch(): added to the bytes read while OpenSSL holds more bytes read from the socket (SSL_has_pending). */
export const READ_MORE = 0x40000000;
/** accept(), recv(), send(), splice(): would block (wait for readiness and call again). */
export const AGAIN = -1;
/** preadNowait(): the kernel or the filesystem has no RWF_NOWAIT (read on the thread pool instead). */
export const NOWAIT_UNSUPPORTED = -2;
/** uv_poll event bits. */
export const READABLE = 1;
export const WRITABLE = 2;

declare const opaque: unique symbol;
export type PollHandle = { readonly [opaque]: 'poll' };
export type ContextHandle = { readonly [opaque]: 'ctx' };
export type SslHandle = { readonly [opaque]: 'ssl' };
export type ClientContextHandle = { readonly [opaque]: 'client-ctx' };

/** A TLS upstream's context (native/tls-client.c). */
export interface ClientContextOptions {
  /** The PEM CA bundle's bytes, as read and checked with the settings (--upstream-ca); null = the system trust store. */
  caPem: Buffer | null;
  /** 1: check the chain and (per connection) the name; 0: the caller compares a pinned certificate. */
  verify: 0 | 1;
  cipherList: string;
  cipherSuites: string;
  /** 0x0303 = TLS 1.2, 0x0304 = TLS 1.3; 0 = OpenSSL's default. */
  minVersion: number;
  maxVersion: number;
  /** 1: SSL_OP_ENABLE_KTLS (OpenSSL moves the record state into the kernel where it can); 0: all in user space. */
  ktls: 0 | 1;
}

export interface OpensslProbe {
  version: string;
  versionNumber: number;
  /** Path of the shared object that really provides SSL_new. */
  libssl: string | null;
  /** True when dlopen handed back the copy the node binary exports (no kTLS possible). */
  nodeCopy: boolean;
}

export interface SockAddr { address: string; port: number; family: 'IPv4' | 'IPv6' }

export interface ContextOptions {
  /**
   * Loaded in order into one context: leaf then intermediates per file
   * (SSL_CTX_use_certificate_chain_file), at most one pair per key type
   * (RSA, EC, ...); OpenSSL picks the type per handshake from what the client supports.
   */
  certificates: ReadonlyArray<{ certFile: string; keyFile: string }>;
  minVersion: number;
  maxVersion: number;
  cipherList: string;
  cipherSuites: string;
  ktls: boolean;
  /**
   * SSL_CTX_set_read_ahead from the first handshake message on: each read(2)
   * takes what the socket holds, not a record's 5-byte header and then its
   * body. Only where `ktls` is false (see contextOptions in tls/tls-setup.ts).
   */
  readAhead?: boolean;
  alpn?: Buffer;
}

export interface TlsParams {
  version: string | null;
  cipher: string | null;
  alpn: string | null;
  servername: string | null;
  reused: boolean;
}

/** sock_diag INET_DIAG_ULP_INFO: what the kernel runs for this socket ("none" = base, no kTLS that way). */
export interface UlpInfo {
  version: string;
  cipher: string;
  txConf: 'none' | 'sw' | 'hw' | 'hw-record' | 'unknown';
  rxConf: 'none' | 'sw' | 'hw' | 'hw-record' | 'unknown';
}

/** ETHTOOL_GFEATURES: 32-bit words per block; feature bit i is word i >>> 5, bit i & 31 (names from ethtoolFeatureNames). */
export interface EthtoolFeatureWords {
  /** hw_features: the driver lets the user toggle these (`ethtool -K`). */
  available: number[];
  /** wanted_features: what was asked for. */
  requested: number[];
  /** features: what is on now. */
  active: number[];
  /** NETIF_F_NEVER_CHANGE: fixed whatever the driver says. */
  neverChanged: number[];
}

export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string | null;
  opensslErrors: string[];
}

export interface Native {
  loadOpenssl(path: string): OpensslProbe;
  probeTcpUlp(): { errno: number; code: string | null; syscall: string | null };
  listenTcp(host: string, port: number, backlog: number, reusePort: boolean): number;
  accept(listenFd: number): number;
  /**
   * accept() with TCP_NODELAY set and the peer's address from accept4 itself
   * (no getpeername): null with out[0] = AGAIN, else the address, with
   * out = [fd, port, 4 | 6]. Absent from an older addon.
   */
  acceptPeer?(listenFd: number, out: Int32Array): string | null;
  getPeerName(fd: number): SockAddr;
  getSockName(fd: number): SockAddr;
  setNoDelay(fd: number, on: boolean): void;
  closeFd(fd: number): void;
  pollNew(fd: number, onReady: (status: number, events: number) => void): PollHandle;
  pollStart(poll: PollHandle, events: number): void;
  pollClose(poll: PollHandle): void;
  ctxNew(options: ContextOptions): ContextHandle;
  /**
   * Installs (or replaces) the server-name table of a listening context: names[i]
   * (lower case, exact or "*.parent") selects contexts[targets[i]]; contexts[0]
   * is the default. A servername callback switches each handshake to its
   * context (SSL_set_SSL_CTX); connections already switched keep theirs.
   */
  sniTableSet(listen: ContextHandle, contexts: readonly ContextHandle[], names: readonly string[], targets: readonly number[]): void;
  /**
   * Installs (or, with no names, removes) the TLS-ALPN-01 challenge contexts
   * of a listening context (RFC 8737): a handshake whose ClientHello offers
   * "acme-tls/1" and names names[i] (exact, lower case) is switched to
   * contexts[targets[i]]; every other handshake is unaffected.
   */
  acmeTableSet(listen: ContextHandle, contexts: readonly ContextHandle[], names: readonly string[], targets: readonly number[]): void;
  /** The index of `contexts` the servername callback would choose for this name (null: no SNI). */
  sniLookup(listen: ContextHandle, servername: string | null): number;
  /**
   * Replaces the process's session ticket key ring (each key 48 or 80 bytes in
   * the canonical order of src/tls/ticket-keys.ts: name | HMAC secret | AES key).
   * The first encrypts, all decrypt.
   */
  ticketKeysSet(keys: readonly Buffer[]): void;
  /** This context issues and accepts tickets under the ring of ticketKeysSet (instead of random keys of its own). */
  ctxUseTicketKeys(ctx: ContextHandle): void;
  sslNew(ctx: ContextHandle, fd: number): SslHandle;
  handshake(ssl: SslHandle): number;
  read(ssl: SslHandle, buf: Buffer, offset: number, length: number): number;
  write(ssl: SslHandle, buf: Buffer, offset: number, length: number): number;
  /**
   * The process's read and write scratch buffers, given once (per thread) so readScratch and
   * writeScratch need not pass them. Again with the same two: nothing; with others: throws.
   * Absent from older builds.
   */
  scratchSet?(read: Buffer, write: Buffer): void;
  /** read() into the read scratch's first `length` bytes; bytes come back plus READ_MORE while OpenSSL holds more (hasPending). */
  readScratch?(ssl: SslHandle, length: number): number;
  /** write() of the write scratch's first `length` bytes. */
  writeScratch?(ssl: SslHandle, length: number): number;
  sendfile(ssl: SslHandle, fileFd: number, offset: number, length: number): number;
  shutdown(ssl: SslHandle): number;
  /** Bit 1: the kernel encrypts (kTLS TX); bit 2: the kernel decrypts (kTLS RX). */
  ktlsState(ssl: SslHandle): number;
  info(ssl: SslHandle): TlsParams;
  keyUpdateRequested(ssl: SslHandle): boolean;
  /** SSL read-ahead on: a read(2) takes all the socket holds, not a record header and then its body. Only without kTLS RX. */
  readAhead?(ssl: SslHandle): void;
  /** SSL_has_pending: OpenSSL holds bytes read from the socket that no read has returned yet. */
  hasPending?(ssl: SslHandle): boolean;
  sslFree(ssl: SslHandle): void;
  clientCtxNew(o: ClientContextOptions): ClientContextHandle;
  /** A client connection on `fd` (connected): SNI `servername` and name check `verifyName` ('' = none); ALPN http/1.1. */
  clientSslNew(ctx: ClientContextHandle, fd: number, servername: string, verifyName: string): SslHandle;
  /** null when the peer's chain and name were accepted, else OpenSSL's X509_V_ERR code and text. */
  verifyResult(ssl: SslHandle): { code: number; reason: string } | null;
  /** SHA-256 of the peer certificate's DER, or null. */
  peerSha256(ssl: SslHandle): Buffer | null;
  /** TLS 1.3 only: programs kernel RX from the server's traffic secret (OpenSSL 3.0 does not); 1, or throws why not. */
  enableRx(ssl: SslHandle, fd: number): number;
  /** recvmsg with the TLS_GET_RECORD_TYPE cmsg (kTLS RX): one record's plaintext and its type, 0 at FIN, or AGAIN. */
  recvRecord(fd: number, buf: Buffer, offset: number, length: number): { type: number; length: number } | number;
  /** null: no TLS ULP on the socket, or no CAP_NET_ADMIN (the kernel shows ULP info to net admins only). */
  tlsUlpInfo(fd: number): UlpInfo | null;
  /** Every TCP socket of this network namespace (family AF_INET=2 or AF_INET6=10): inode, TCP state, ULP info as tlsUlpInfo. */
  tcpUlpDump(family: number): Array<{ inode: number; state: number; tls: UlpInfo | null }>;
  /**
   * openat2(2) of `path` relative to `dirFd`, read-only and non-blocking, refused by the kernel
   * (-EXDEV) if its resolution leaves dirFd, from the dentry cache only (-EAGAIN where a directory would be read from
   * disk, -EINVAL before Linux 5.12); an fd, or -errno (-ENOSYS before Linux 5.6).
   */
  openBeneath(dirFd: number, path: string): number;
  /** openBeneath, then fstat(2) of the fd it opened into `out` (STAT_SLOTS, http/file-stat.ts); a failed fstat closes it and says -errno. Absent from older builds. */
  openBeneathStat?(dirFd: number, path: string, out: Float64Array): number;
  /** fstat(2)'s st_nlink of fd (0: unlinked), or -errno. Absent from older builds. */
  linkCount?(fd: number): number;
  /** fstatat(2) of path relative to dirFd, no symlink followed last, into `out` as openBeneathStat (8 slots: ctime too); 0 or -errno. Absent from older builds. */
  statAt?(dirFd: number, path: string, out: Float64Array): number;
  /** The 8 slots statAtShared fills: one Float64Array per environment, the same each call. Absent from older builds. */
  statSlots?(): Float64Array;
  /** statAt into statSlots()'s array (no typed array to look up per call); 0 or -errno. Absent from older builds. */
  statAtShared?(dirFd: number, path: string): number;
  /** sendfile(2) on the thread pool; the socket is non-blocking, so errno EAGAIN means "wait until writable". */
  sendfileAsync(socketFd: number, fileFd: number, offset: number, length: number, done: (sent: number, errno: number) => void): void;
  /** preadv2(RWF_NOWAIT) into buf[0, length): bytes read (0: end of file), AGAIN when not all cached, NOWAIT_UNSUPPORTED. */
  preadNowait(fd: number, buf: Buffer, length: number, position: number): number;
  /** Non-blocking connect to a numeric address; completes when writable, then socketError() says how. */
  connectTcp(host: string, port: number): number;
  /** SO_ERROR: 0, or the errno of a failed non-blocking connect. */
  socketError(fd: number): number;
  /** Bytes received (> 0), 0 at the peer's FIN, or AGAIN; `peek` (MSG_PEEK) leaves them in the socket. */
  recv(fd: number, buf: Buffer, offset: number, length: number, peek: boolean): number;
  /** Bytes accepted by the socket, or AGAIN. */
  send(fd: number, buf: Buffer, offset: number, length: number): number;
  shutdownWrite(fd: number): void;
  /** A non-blocking pipe grown to `size` bytes where the kernel allows; `size` is what it got. */
  pipeNew(size: number): { read: number; write: number; size: number };
  /** splice(2) between a pipe and a socket: bytes moved (> 0), 0 at end of input, or AGAIN. */
  splice(fdIn: number, fdOut: number, length: number): number;
  /**
   * SSL_write of buf[offset, offset + length) as whole records (16 KiB each) in one call: the bytes
   * taken (> 0; fewer than `length` when the socket filled), or WANT_READ / WANT_WRITE when none were.
   */
  writeRecords(ssl: SslHandle, buf: Buffer, offset: number, length: number): number;
  /** recv(MSG_TRUNC): drops up to `length` waiting bytes without copying them; count, 0 at FIN, or AGAIN. */
  recvDiscard(fd: number, length: number): number;
  /** if_nameindex(3): every interface of this network namespace, up or down. */
  netInterfaces(): Array<{ index: number; name: string }>;
  /** The kernel's feature bit names (ETH_SS_FEATURES), bit i = names[i]; [] when it has none. */
  ethtoolFeatureNames(ifname: string): string[];
  /** The interface's feature bits (SIOCETHTOOL ETHTOOL_GFEATURES); ENODEV when it is gone. */
  ethtoolFeatures(ifname: string): EthtoolFeatureWords;
  /** sigaction(2) SIG_DFL for `signo` and unblocks it in this thread (node ignores SIGPIPE). Absent from older builds. */
  signalDefault?(signo: number): void;
  /** setrlimit(2): soft RLIMIT_CORE 0, no core file of this process. Absent from older builds. */
  disableCoreDumps?(): void;
}

const here = path.dirname(fileURLToPath(import.meta.url));
/** build/ sits beside dist/ at the package root (dist/src/native -> ../../..). */
export const ADDON_PATH = path.resolve(here, '../../../build/Release/aludel.node');

let cached: Native | Error | undefined;

/** The addon, or the reason it could not be loaded (not built, not Linux). */
export function loadAddon(): Native | Error {
  if (cached === undefined) {
    try {
      cached = createRequire(import.meta.url)(ADDON_PATH) as Native;
    } catch (err) {
      cached = err instanceof Error ? err : new Error(String(err));
    }
  }
  return cached;
}

export function isNativeError(err: unknown): err is NativeError {
  return err instanceof Error && typeof (err as Partial<NativeError>).code === 'string';
}

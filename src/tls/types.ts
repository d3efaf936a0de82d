import type { Duplex } from 'node:stream';
import type { EventEmitter } from 'node:events';
import type { BodyPath } from '../transport/copy-file.js';
import type { UlpInfo } from '../native/binding.js';

export type OffloadMode = 'auto' | 'kernel' | 'userspace';
/** default: TLS settings as given; prefer-hw: TLS 1.2 AES-128-GCM where the NIC offloads TLS (src/tls/hw-offload-policy.ts). */
export type OffloadPolicy = 'default' | 'prefer-hw';
export type TlsEngine = 'system-openssl' | 'node-tls';

/** What was negotiated, and where the record crypto of this connection runs. */
export interface TlsInfo {
  engine: TlsEngine;
  version: string | null;
  cipher: string | null;
  alpn: string | null;
  servername: string | null;
  reused: boolean;
  /** The kernel encrypts this connection's records (OpenSSL's BIO_get_ktls_send). */
  ktlsTx: boolean;
  /** The kernel decrypts this connection's records (BIO_get_ktls_recv). */
  ktlsRx: boolean;
  /**
   * The kernel's own answer (sock_diag ULP info, as `ss -tie` shows it): sw, hw
   * (NIC offload), hw-record (TOE) or none per direction. null when there is no
   * kernel TLS on the socket or the process lacks CAP_NET_ADMIN to ask.
   */
  kernel: UlpInfo | null;
}

/** A TLS connection as a Duplex of plaintext, with a file-sending fast path. */
export interface SecureConnection extends Duplex {
  readonly id: number;
  readonly tls: TlsInfo;
  readonly remoteAddress?: string;
  readonly remotePort?: number;
  /** Writes length bytes of fd from offset, after all earlier writes. */
  sendFile(fd: number, offset: number, length: number): Promise<BodyPath>;
  /**
   * Moves `length` bytes already in a pipe into the socket by splice(2), after
   * earlier writes. Only on system-OpenSSL connections, and only meaningful
   * with kTLS TX on (the kernel encrypts them); absent on node:tls ones.
   */
  spliceFromPipe?(pipeRead: number, length: number): Promise<void>;
}

/** How the listener resolved --offload, decided once at start-up. */
export interface OffloadDecision {
  requested: OffloadMode;
  engine: TlsEngine;
  /** SSL_OP_ENABLE_KTLS is set: connections get kTLS wherever the kernel takes the suite. */
  ktls: boolean;
  openssl: { version: string; libssl: string | null } | null;
  /** Why kTLS is off, when it is (null when on or when userspace was asked for). */
  reason: string | null;
}

export interface ListenOptions {
  host: string;
  port: number;
  backlog?: number;
  reusePort?: boolean;
}

export interface SecureServer extends EventEmitter {
  readonly offload: OffloadDecision;
  listen(options: ListenOptions): Promise<{ address: string; port: number }>;
  close(): Promise<void>;
  /** Live connections (handshaking or open). */
  readonly connectionCount: number;
}

import type { Duplex } from 'node:stream';
import type { EventEmitter } from 'node:events';
import type { BodyPath } from '../transport/copy-file.js';
import type { UlpInfo } from '../native/binding.js';
import type { OffloadMode, TlsVersionName } from '../config/tls-settings.js';
import type { CertificatePlan } from './certificates.js';

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
  /**
   * The copy path (src/transport/copy-body.ts), on system-OpenSSL connections
   * only: SSL_write of a span as whole records in one native call (bytes
   * taken, or a WANT state), the wait after one, and the wait for earlier
   * stream writes (a response head) to be out.
   */
  writeRecords?(buf: Buffer, offset: number, length: number): number;
  /**
   * A whole small response (a head and its body) at once, past the stream's
   * queue, on system-OpenSSL connections without kTLS TX (ktls-connection.ts):
   * false having done nothing; else `done(arg)` once it is handed to the socket,
   * or, asked with `inCall`, 'taken' when the socket took it all within the
   * call (`done` is then not called).
   */
  writeWhole?<T>(head: string, body: Buffer | string | undefined, done: (arg: T) => void, arg: T, inCall?: boolean): boolean | 'taken';
  writeReady?(state: number): Promise<void>;
  /**
   * Direct reads (ktls-connection.ts readInto), on system-OpenSSL connections:
   * each read's plaintext to `reader` as buf[start, end), valid during the
   * call only, no 'data'; the end of input is still the stream's 'end'. null
   * gives reads back to the stream. false: not taken (the stream was read).
   */
  readInto?(reader: ((buf: Buffer, start: number, end: number) => void) | null): boolean;
  /** With a direct reader: stops (true) and restarts (false) reads. */
  holdReads?(held: boolean): void;
  whenFlushed?(): Promise<void>;
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
  /**
   * An already listening socket to accept on (a worker's, inherited from the
   * primary): host, port, backlog and reusePort are then not used.
   */
  fd?: number;
  /**
   * With `fd`: other workers accept on the same socket (the default). False:
   * the socket is this worker's own (--reuse-port), so nothing is gained by
   * leaving its queue to others.
   */
  shared?: boolean;
}

/**
 * The TLS settings of a listener: what createKtlsServer() starts with and what
 * SecureServer.reconfigure() replaces. Absent fields take the defaults of
 * src/tls/policy.ts (TLS 1.2-1.3, kernel-offloadable AEAD suites, ALPN http/1.1).
 */
export interface TlsOptions {
  /**
   * Certificate/key pairs, in order; the first is the default (unknown or no
   * SNI). Each certFile: PEM, leaf first, then its intermediates. Which names
   * each pair serves comes from its certificate (docs/certificates.md).
   */
  certificates: ReadonlyArray<{ certFile: string; keyFile: string }>;
  minVersion?: TlsVersionName;
  maxVersion?: TlsVersionName;
  /** TLS 1.2 cipher list (OpenSSL syntax); default: kernel-offloadable AEAD suites. */
  cipherList?: string;
  /** TLS 1.3 suites; default: TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256. */
  cipherSuites?: string;
  /** ALPN protocols in server preference order; [] = no ALPN. Default ['http/1.1']. */
  alpn?: readonly string[];
}

export interface SecureServer extends EventEmitter {
  readonly offload: OffloadDecision;
  listen(options: ListenOptions): Promise<{ address: string; port: number }>;
  /** Closes the listening socket only: connections in flight go on (a graceful stop drains them). */
  stopAccepting(): void;
  close(): Promise<void>;
  /**
   * Replaces the TLS settings (certificates, versions, ciphers, ALPN) for
   * connections accepted from now on (e.g. on SIGHUP); connections already
   * accepted, handshaking or open, keep theirs (OpenSSL holds a reference on
   * their contexts). Synchronous and all-or-nothing: when anything is
   * invalid it throws (a CertificateError names the file) and nothing changed.
   * The offload decision (kTLS on or off) stays as it was at start-up.
   */
  reconfigure(options: TlsOptions): void;
  /**
   * Session ticket keys for new handshakes (canonical form, src/tls/ticket-keys.ts):
   * the first encrypts, all decrypt. Until called, the engine's own random keys.
   */
  setTicketKeys(keys: readonly Buffer[]): void;
  /** Live connections (handshaking or open). */
  readonly connectionCount: number;
  /**
   * Whether this engine can answer TLS-ALPN-01 (RFC 8737): the system
   * OpenSSL can; node:tls cannot choose a certificate by ALPN.
   */
  readonly answersTlsAlpn01: boolean;
  /** The certificates new handshakes get (the last reconfigure()'s), for the warnings its owner logs about them. */
  readonly certificatePlan: CertificatePlan;
  /**
   * The TLS-ALPN-01 challenge certificates pending now (the whole set; [] when
   * none), for handshakes that offer "acme-tls/1". Kept across reconfigure().
   */
  setAcmeChallenges(challenges: readonly AcmeChallengeCertificate[]): void;
}

/** A TLS-ALPN-01 challenge certificate (RFC 8737 §3) for one name: chain and key in PEM files. */
export interface AcmeChallengeCertificate {
  /** The domain being validated, lower case. */
  name: string;
  certFile: string;
  keyFile: string;
}

/** The ALPN protocol id of a TLS-ALPN-01 validation handshake (RFC 8737 §6.2). */
export const ALPN_ACME_TLS = 'acme-tls/1';

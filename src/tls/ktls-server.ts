/**
 * TLS listener on the system OpenSSL: the addon owns the listening socket,
 * this class accepts, runs each handshake under a timeout, and hands finished
 * connections out as 'secureConnection'. Failed handshakes become
 * 'tlsClientError' (garbage, stalls, resets), never a crash.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from '../log/logger.js';
import { performance } from 'node:perf_hooks';
import { AGAIN, READABLE, type Native, type PollHandle, type SockAddr } from '../native/binding.js';
import { describePlan, type CertificatePlan } from './certificates.js';
import { ConnectionLimit } from '../transport/connection-limit.js';
import { answerPlainHttp, isPlainHttp } from './plain-http.js';
import { KtlsConnection, type KnownAddresses } from './ktls-connection.js';
import { installAcmeChallenges, type NativeTls } from './tls-setup.js';
import { ALPN_ACME_TLS, type AcmeChallengeCertificate, type ListenOptions, type OffloadDecision, type SecureServer, type TlsOptions } from './types.js';
import { cutAtShutdown } from './shutdown-cut.js';

/** Accept at most this many per wake-up, so a connection flood cannot starve open connections. */
const ACCEPT_BATCH = 64;
/**
 * On a socket shared by --workers (an inherited fd), one per wake-up, as
 * nginx's default `multi_accept off`: every worker polling the socket wakes
 * for a new connection, and a worker that took a whole batch would leave the
 * others idle. The level-triggered poll wakes this worker again at once while
 * connections are still queued. A worker's own --reuse-port socket takes
 * whole batches again: its queue is no one else's.
 */
const SHARED_ACCEPT_BATCH = 1;
/** Back-off after EMFILE/ENFILE (as nginx: stop accepting briefly instead of spinning). */
const ACCEPT_PAUSE_MS = 100;

let nextId = 1;
export function nextConnectionId(): number {
  return nextId++;
}

export interface KtlsServerOptions {
  native: Native;
  /** The contexts and SNI table new connections start on. */
  tls: NativeTls;
  /** Builds the contexts of a new configuration (reconfigure); throws, changing nothing, when it is invalid. */
  build: (options: TlsOptions) => NativeTls;
  offload: OffloadDecision;
  handshakeTimeoutMs: number;
  /** --max-connections: live connections (handshaking or open) beyond which new ones are closed unread; null = no limit. */
  maxConnections?: number | null;
  /** What a client speaking plain HTTP to this TLS port is answered (plain-http.ts); null: it is closed unanswered. */
  plainHttpAnswer: Buffer | null;
  log: Logger;
}

export class KtlsServer extends EventEmitter implements SecureServer {
  readonly offload: OffloadDecision;
  private readonly o: KtlsServerOptions;
  private listenFd = -1;
  private poll: PollHandle | null = null;
  private readonly live = new Set<KtlsConnection>();
  /**
   * Called by each connection as it is released (KtlsConnection's onReleased),
   * one function for all, rather than a 'close' listener: node's http.Server
   * and the front listen for 'close' too, and a third listener grows the
   * emitter's array from two slots to about forty (V8's backing-store growth,
   * old + old / 2 + 16), some 150 bytes more per idle connection.
   */
  private readonly forget: (conn: KtlsConnection) => void;
  private pauseTimer: NodeJS.Timeout | null = null;
  private acceptBatchSize = ACCEPT_BATCH;
  /** acceptPeer()'s out slots: fd, the peer's port, its family (4 or 6). */
  private readonly accepted = new Int32Array(3);
  /** The listening socket's own address when it is bound to one (not 0.0.0.0 or ::): every connection's local address. */
  private fixedLocal: SockAddr | null = null;
  private readonly limit: ConnectionLimit;
  /** Replaced whole by reconfigure(): each accepted connection takes the listening context of the moment. */
  private tls: NativeTls;
  /** setTicketKeys() was called: every context built from now on takes the process's key ring too. */
  private sharedTickets = false;
  /** TLS-ALPN-01 challenges pending (setAcmeChallenges), installed again on each new listening context. */
  private challenges: readonly AcmeChallengeCertificate[] = [];
  readonly answersTlsAlpn01 = true;

  constructor(options: KtlsServerOptions) {
    super();
    this.o = options;
    this.offload = options.offload;
    this.tls = options.tls;
    const live = this.live;
    this.forget = (conn) => { live.delete(conn); };
    this.limit = new ConnectionLimit(options.maxConnections ?? null, options.log, () => this.live.size);
  }

  /** Connections closed unread because --max-connections was reached. */
  get refusedConnections(): number {
    return this.limit.total;
  }

  get connectionCount(): number {
    return this.live.size;
  }

  async listen(options: ListenOptions): Promise<{ address: string; port: number }> {
    const { native } = this.o;
    this.listenFd = options.fd ?? native.listenTcp(options.host, options.port, options.backlog ?? 511, options.reusePort ?? false);
    this.acceptBatchSize = options.fd !== undefined && options.shared !== false ? SHARED_ACCEPT_BATCH : ACCEPT_BATCH;
    this.poll = native.pollNew(this.listenFd, () => this.acceptBatch());
    native.pollStart(this.poll, READABLE);
    const a = native.getSockName(this.listenFd);
    // As nginx (ngx_connection_local_sockaddr): a socket accepted on a specific address has
    // that address; only a wildcard listener's connections need getsockname to say which.
    this.fixedLocal = a.address === '0.0.0.0' || a.address === '::' ? null : a;
    return { address: a.address, port: a.port };
  }

  private acceptBatch(): void {
    const { native, log } = this.o;
    for (let i = 0; i < this.acceptBatchSize; i++) {
      let fd: number;
      let peer: SockAddr | undefined;
      try {
        if (native.acceptPeer !== undefined) {
          const address = native.acceptPeer(this.listenFd, this.accepted);
          fd = this.accepted[0]!;
          if (address !== null) peer = { address, port: this.accepted[1]!, family: this.accepted[2] === 6 ? 'IPv6' : 'IPv4' };
        } else {
          fd = native.accept(this.listenFd);
        }
      } catch (err) {
        log.error({ err }, 'accept failed; pausing accepts for 100 ms');
        this.pauseAccepting();
        return;
      }
      if (fd === AGAIN) return;
      if (!this.limit.admits()) {
        // Closed before any read: no SSL object, no buffer (see connection-limit.ts).
        native.closeFd(fd);
        this.limit.refused();
        continue;
      }
      this.startConnection(fd, peer === undefined ? undefined : { remote: peer, local: this.fixedLocal });
    }
  }

  private pauseAccepting(): void {
    if (!this.poll || this.pauseTimer) return;
    this.o.native.pollStart(this.poll, 0);
    this.pauseTimer = setTimeout(() => {
      this.pauseTimer = null;
      if (this.poll) this.o.native.pollStart(this.poll, READABLE);
    }, ACCEPT_PAUSE_MS);
  }

  /** `addresses` from acceptPeer(), which set TCP_NODELAY too; undefined from an older addon's accept(). */
  private startConnection(fd: number, addresses: KnownAddresses | undefined): void {
    const { native, log } = this.o;
    // TCP_NODELAY on every connection, as nginx's tcp_nodelay: a response written as a head
    // and then a body would otherwise wait under Nagle for the client's delayed ACK (~40 ms).
    // (http.Server's noDelay option acts only on sockets its own net.Server accepted.)
    if (addresses === undefined) {
      try {
        native.setNoDelay(fd, true);
      } catch {
        // A peer that reset already: the handshake reports it.
      }
    }
    let conn: KtlsConnection;
    try {
      conn = new KtlsConnection(native, native.sslNew(this.tls.listen, fd), fd, nextConnectionId(), log, this.forget, addresses);
    } catch (err) {
      log.error({ err }, 'cannot set up TLS for an accepted connection');
      native.closeFd(fd);
      return;
    }
    this.live.add(conn);
    // performance.now(): the same monotonic clock in ms, without two BigInts per connection.
    const started = performance.now();
    conn.handshake(this.o.handshakeTimeoutMs).then(
      () => {
        if (conn.tls.alpn === ALPN_ACME_TLS) return this.endValidation(conn);
        const ms = performance.now() - started;
        this.emit('secureConnection', conn, ms);
      },
      (err: Error) => {
        this.emit('tlsClientError', err, conn);
        if (this.o.plainHttpAnswer !== null && isPlainHttp(err)) answerPlainHttp(native, fd, this.o.plainHttpAnswer);
        conn.destroy();
      },
    );
  }

  /**
   * A TLS-ALPN-01 validation handshake is the whole exchange: the CA checks
   * the certificate and closes (RFC 8737 §3), and no application data may
   * follow, so the connection never reaches HTTP.
   */
  private endValidation(conn: KtlsConnection): void {
    this.o.log.info({ domain: conn.tls.servername, version: conn.tls.version }, 'acme: TLS-ALPN-01 challenge answered');
    conn.destroy();
  }

  setAcmeChallenges(challenges: readonly AcmeChallengeCertificate[]): void {
    installAcmeChallenges(this.o.native, this.tls, challenges);
    this.challenges = challenges;
  }

  /**
   * New contexts and SNI table for connections accepted from now on. Built
   * completely before the swap, so a failure leaves everything as it was.
   * Connections accepted earlier keep the SSL_CTX they started on (OpenSSL
   * holds a reference), handshaking or not.
   */
  get certificatePlan(): CertificatePlan {
    return this.tls.resolved.plan;
  }

  reconfigure(options: TlsOptions): void {
    const next = this.o.build(options);
    if (this.sharedTickets) for (const ctx of next.contexts) this.o.native.ctxUseTicketKeys(ctx);
    if (this.challenges.length > 0) installAcmeChallenges(this.o.native, next, this.challenges);
    this.tls = next;
    this.o.log.info({ contexts: describePlan(next.resolved.plan) }, 'TLS configuration replaced');
  }

  /**
   * The ring is process-wide in the addon (native/tickets.c): every listener
   * and certificate context of this process issues and accepts the same
   * tickets, so a session resumes whichever address or SNI name it returns to.
   */
  setTicketKeys(keys: readonly Buffer[]): void {
    this.o.native.ticketKeysSet(keys);
    for (const ctx of this.tls.contexts) this.o.native.ctxUseTicketKeys(ctx);
    this.sharedTickets = true;
  }

  stopAccepting(): void {
    if (this.pauseTimer) clearTimeout(this.pauseTimer);
    this.pauseTimer = null;
    if (this.poll) this.o.native.pollClose(this.poll);
    this.poll = null;
    if (this.listenFd >= 0) this.o.native.closeFd(this.listenFd);
    this.listenFd = -1;
  }

  async close(): Promise<void> {
    this.stopAccepting();
    this.limit.close();
    for (const c of this.live) cutAtShutdown(c);
  }
}

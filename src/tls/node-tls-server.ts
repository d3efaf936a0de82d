/**
 * Fallback behind the same interface when the system libssl cannot be loaded
 * (no libssl.so.3, not Linux, addon not built): node:tls, whose bundled
 * OpenSSL uses memory BIOs and is built without kTLS, so every connection
 * reports userspace crypto and file bodies take the write path.
 *
 * Certificates: one SecureContext per certificate context of the plan
 * (src/tls/certificates.ts), chosen in SNICallback by the same lookupSni()
 * whose rules the C servername callback follows; no SNI gets the server's
 * default context, built from the same first context.
 *
 * One limit of node:tls: after SNICallback it does not switch the whole
 * context (SSL_set_SSL_CTX) but copies the SNI context's *current* pair (the
 * last one loaded) over the default's certificate slots (src/crypto/
 * crypto_tls.cc, UseSNIContext). So a name gets one key type here; the other
 * slots keep the default's certificates. The pair of the default's key type
 * is therefore loaded last, which overwrites exactly that slot; a name's
 * pairs of other key types are not served, and the start-up log says so.
 */
import { EventEmitter } from 'node:events';
import tls from 'node:tls';
import type { Logger } from '../log/logger.js';
import { copyFileToStream, type BodyPath } from '../transport/copy-file.js';
import { describePlan, lookupSni, type CertificatePlan } from './certificates.js';
import { ConnectionLimit } from '../transport/connection-limit.js';
import { nextConnectionId } from './ktls-server.js';
import { alpnWire } from './policy.js';
import { resolveTls, type ResolvedTls } from './tls-setup.js';
import { nodeTlsTicketKey } from './ticket-keys.js';
import type { AcmeChallengeCertificate, ListenOptions, OffloadDecision, SecureConnection, SecureServer, TlsInfo, TlsOptions } from './types.js';
import { cutAtShutdown } from './shutdown-cut.js';

export interface NodeTlsServerOptions {
  /** Defaults applied and certificates checked (resolveTls). */
  tls: ResolvedTls;
  handshakeTimeoutMs: number;
  /** --max-connections; null = no limit. */
  maxConnections?: number | null;
  offload: OffloadDecision;
  log: Logger;
}

type Decorated = tls.TLSSocket & { id: number; tls: TlsInfo; sendFile: SecureConnection['sendFile'] };

function decorate(sock: tls.TLSSocket): SecureConnection {
  const s = sock as Decorated;
  s.id = nextConnectionId();
  const cipher = sock.getCipher();
  s.tls = {
    engine: 'node-tls',
    version: sock.getProtocol() ?? null,
    cipher: cipher?.standardName ?? cipher?.name ?? null,
    alpn: typeof sock.alpnProtocol === 'string' ? sock.alpnProtocol : null,
    servername: (sock as tls.TLSSocket & { servername?: string | false }).servername || null,
    reused: sock.isSessionReused(),
    ktlsTx: false,
    ktlsRx: false,
    kernel: null,
  };
  s.sendFile = async (fd: number, offset: number, length: number): Promise<BodyPath> => {
    await copyFileToStream(sock, fd, offset, length);
    return 'write';
  };
  return s as unknown as SecureConnection;
}

/**
 * One SSL_CTX's worth: the pairs of certificate context `combo`, with the
 * listener's settings; the pair of the default's key type last (see above).
 */
function contextOptions(r: ResolvedTls, combo: readonly number[]): tls.SecureContextOptions {
  const defaultType = r.plan.certificates[0]!.keyType;
  const pairs = combo.map((i) => r.plan.certificates[i]!).sort((a, b) => Number(a.keyType === defaultType) - Number(b.keyType === defaultType));
  return {
    // One chain (leaf, intermediates) per key, in the same order (node: "one cert chain per private key").
    cert: pairs.map((c) => c.chainPem),
    key: pairs.map((c) => c.keyPem),
    minVersion: r.minVersion,
    maxVersion: r.maxVersion,
    ciphers: `${r.cipherSuites}:${r.cipherList}`,
    // The same everywhere, as in native/tls.c: a session resumes whichever context SNI chose.
    sessionIdContext: 'aludel',
  };
}

interface NodeTls {
  resolved: ResolvedTls;
  /** One per certificate context; [0] is the default. */
  contexts: tls.SecureContext[];
}

/** Throws (node's message, e.g. "No cipher match") before anything is installed. */
function buildNodeTls(r: ResolvedTls): NodeTls {
  return { resolved: r, contexts: r.plan.contexts.map((combo) => tls.createSecureContext(contextOptions(r, combo))) };
}

/** The pairs node:tls will not serve (SNI contexts with several key types, or without the default's). */
function nodeTlsLimits(r: ResolvedTls): Array<{ names: string[]; certFile: string; keyType: string; why: string }> {
  const out: Array<{ names: string[]; certFile: string; keyType: string; why: string }> = [];
  const defaultType = r.plan.certificates[0]!.keyType;
  r.plan.contexts.forEach((combo, i) => {
    if (i === 0) return;
    const names = [...r.plan.table].filter(([, t]) => t === i).map(([n]) => n);
    const pairs = combo.map((ci) => r.plan.certificates[ci]!);
    const served = pairs.find((c) => c.keyType === defaultType) ?? pairs[pairs.length - 1]!;
    for (const c of pairs) {
      if (c !== served) out.push({ names, certFile: c.certFile, keyType: c.keyType, why: 'node:tls serves one certificate per SNI name' });
    }
    if (served.keyType !== defaultType) {
      out.push({ names, certFile: r.plan.certificates[0]!.certFile, keyType: defaultType, why: `clients that prefer ${defaultType} keys get the default certificate for these names under node:tls` });
    }
  });
  return out;
}

export class NodeTlsServer extends EventEmitter implements SecureServer {
  readonly offload: OffloadDecision;
  private readonly server: tls.Server;
  private readonly log: Logger;
  /** Replaced whole by reconfigure(); SNICallback reads it at each ClientHello. */
  private tls: NodeTls;
  private readonly live = new Set<tls.TLSSocket>();
  private readonly limit: ConnectionLimit;

  constructor(o: NodeTlsServerOptions) {
    super();
    this.offload = o.offload;
    this.log = o.log;
    this.tls = buildNodeTls(o.tls);
    for (const l of nodeTlsLimits(o.tls)) o.log.warn(l, 'certificate not served by the node:tls fallback (the system OpenSSL engine serves it)');
    this.server = tls.createServer({
      ...contextOptions(o.tls, o.tls.plan.contexts[0]!),
      ALPNProtocols: [...o.tls.alpn],
      SNICallback: (servername, cb) => {
        const current = this.tls;
        cb(null, current.contexts[lookupSni(current.resolved.plan.table, servername)]);
      },
      handshakeTimeout: o.handshakeTimeoutMs,
      // As nginx's tcp_nodelay: no Nagle wait for the client's delayed ACK between a head and its body.
      noDelay: true,
    });
    this.server.on('secureConnection', (sock: tls.TLSSocket) => {
      this.live.add(sock);
      sock.once('close', () => this.live.delete(sock));
      this.emit('secureConnection', decorate(sock), 0);
    });
    this.server.on('tlsClientError', (err: Error, sock: tls.TLSSocket) => this.emit('tlsClientError', err, sock));
    // net.Server counts every accepted socket (handshaking ones too) and, at maxConnections,
    // closes new ones right after accept(2) without reading, then emits 'drop' (node >= 18.6).
    this.limit = new ConnectionLimit(o.maxConnections ?? null, o.log, () => (this.server as unknown as { _connections?: number })._connections ?? this.live.size);
    if (this.limit.max !== null) this.server.maxConnections = this.limit.max;
    this.server.on('drop', () => this.limit.refused());
  }

  /** Connections closed unread because --max-connections was reached. */
  get refusedConnections(): number {
    return this.limit.total;
  }

  get connectionCount(): number {
    return this.live.size;
  }

  listen(options: ListenOptions): Promise<{ address: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      const where = options.fd === undefined ? { host: options.host, port: options.port, backlog: options.backlog ?? 511 } : { fd: options.fd };
      this.server.listen(where, () => {
        this.server.off('error', reject);
        const a = this.server.address();
        if (a && typeof a === 'object') resolve({ address: a.address, port: a.port });
        else reject(new Error('listener has no address'));
      });
    });
  }

  /**
   * New contexts for connections from now on: the server's default context
   * (no SNI) by setSecureContext, keeping the ticket keys so sessions still
   * resume, the SNI contexts and ALPN list by swapping what the callbacks read.
   */
  get certificatePlan(): CertificatePlan {
    return this.tls.resolved.plan;
  }

  reconfigure(options: TlsOptions): void {
    const next = buildNodeTls(resolveTls(options));
    const r = next.resolved;
    this.server.setSecureContext({ ...contextOptions(r, r.plan.contexts[0]!), ticketKeys: this.server.getTicketKeys() });
    // What tls.Server hands each new TLSSocket (tls.convertALPNProtocols stores the same wire format).
    (this.server as unknown as { ALPNProtocols?: Buffer }).ALPNProtocols = alpnWire(r.alpn);
    this.tls = next;
    this.log.info({ contexts: describePlan(r.plan) }, 'TLS configuration replaced');
    for (const l of nodeTlsLimits(r)) this.log.warn(l, 'certificate not served by the node:tls fallback (the system OpenSSL engine serves it)');
  }

  /**
   * node:tls takes one 48-byte key (no older keys to decrypt with): the first
   * key, in node's form (nodeTlsTicketKey). reconfigure() keeps it.
   */
  setTicketKeys(keys: readonly Buffer[]): void {
    this.server.setTicketKeys(nodeTlsTicketKey(keys[0]!));
  }

  /**
   * node:tls picks the certificate in SNICallback, which is not told the
   * client's ALPN list, so it cannot serve a challenge certificate to the
   * CA's acme-tls/1 handshake alone; orders use HTTP-01 with this engine.
   */
  readonly answersTlsAlpn01 = false;

  setAcmeChallenges(challenges: readonly AcmeChallengeCertificate[]): void {
    if (challenges.length > 0) throw new Error('TLS-ALPN-01 needs the system OpenSSL engine (node:tls cannot choose a certificate by ALPN)');
  }

  stopAccepting(): void {
    // net.Server.close() stops accepting; the connections it accepted go on.
    if (this.server.listening) this.server.close();
  }

  close(): Promise<void> {
    this.limit.close();
    for (const s of this.live) cutAtShutdown(s);
    if (!this.server.listening) return Promise.resolve();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

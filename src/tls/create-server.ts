/**
 * createKtlsServer(): one entry point, whatever this host can do. System
 * OpenSSL with kTLS where the kernel takes it; the same OpenSSL without kTLS
 * for --offload userspace (the honest baseline); node:tls when the system
 * library cannot be loaded. Certificates are read and checked here first
 * (src/tls/certificates.ts), so a bad file is reported by name whatever the
 * engine; SNI selection works the same in both (docs/certificates.md).
 */
import { silentLogger, type Logger } from '../log/logger.js';
import { NodeTlsServer } from './node-tls-server.js';
import { describePlan } from './certificates.js';
import { KtlsServer } from './ktls-server.js';
import { probeCapabilities } from '../offload/capabilities.js';
import { decideOffload } from './offload.js';
import { buildNativeTls, resolveTls } from './tls-setup.js';
import type { SecureServer, TlsOptions } from './types.js';
import type { OffloadMode } from '../config/tls-settings.js';

export type { TlsOptions } from './types.js';

/** The TLS part (TlsOptions: certificates, versions, ciphers, ALPN) plus how the listener runs. */
export interface CreateServerOptions extends TlsOptions {
  offload?: OffloadMode;
  handshakeTimeoutMs?: number;
  /** --max-connections per listener (handshakes in progress included); null or absent = no limit. */
  maxConnections?: number | null;
  /**
   * The clear-text answer to plain HTTP sent to the TLS port (http/h1-wire.ts
   * PLAIN_HTTP_ANSWER, passed in by the commands: tls/ sits below http/);
   * absent: such a client is closed unanswered.
   */
  plainHttpAnswer?: Buffer;
  log?: Logger;
}

export function createKtlsServer(options: CreateServerOptions): SecureServer {
  const log = options.log ?? silentLogger;
  const caps = probeCapabilities();
  const offload = decideOffload(options.offload ?? 'auto', caps);
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10_000;
  const maxConnections = options.maxConnections ?? null;
  const tls = resolveTls(options);
  log.debug({ contexts: describePlan(tls.plan) }, 'certificates');
  if (offload.engine === 'node-tls' || !caps.native) {
    return new NodeTlsServer({ tls, handshakeTimeoutMs, maxConnections, offload, log });
  }
  const native = caps.native;
  return new KtlsServer({
    native,
    tls: buildNativeTls(native, tls, offload.ktls),
    build: (next) => buildNativeTls(native, resolveTls(next), offload.ktls),
    offload,
    handshakeTimeoutMs,
    maxConnections,
    plainHttpAnswer: options.plainHttpAnswer ?? null,
    log,
  });
}

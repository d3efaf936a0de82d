/**
 * createKtlsServer(): one entry point, whatever this host can do. System
 * OpenSSL with kTLS where the kernel takes it; the same OpenSSL without kTLS
 * for --offload userspace (the honest baseline); node:tls when the system
 * library cannot be loaded.
 */
import { silentLogger, type Logger } from '../log/logger.js';
import { NodeTlsServer } from '../native/node-tls-server.js';
import { KtlsServer } from './ktls-server.js';
import { decideOffload, probeCapabilities } from './offload.js';
import { TLS12_CIPHERS, TLS13_SUITES, alpnWire, versionNumber, type TlsVersionName } from './policy.js';
import type { OffloadMode, SecureServer } from './types.js';

export interface CreateServerOptions {
  certFile: string;
  keyFile: string;
  offload?: OffloadMode;
  minVersion?: TlsVersionName;
  maxVersion?: TlsVersionName;
  /** TLS 1.2 cipher list (OpenSSL syntax); default: kernel-offloadable AEAD suites. */
  cipherList?: string;
  /** TLS 1.3 suites; default: TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256. */
  cipherSuites?: string;
  alpn?: readonly string[];
  handshakeTimeoutMs?: number;
  log?: Logger;
}

export function createKtlsServer(options: CreateServerOptions): SecureServer {
  const log = options.log ?? silentLogger;
  const caps = probeCapabilities();
  const offload = decideOffload(options.offload ?? 'auto', caps);
  const minVersion = options.minVersion ?? 'TLSv1.2';
  const maxVersion = options.maxVersion ?? 'TLSv1.3';
  const cipherList = options.cipherList ?? TLS12_CIPHERS;
  const cipherSuites = options.cipherSuites ?? TLS13_SUITES;
  const alpn = options.alpn ?? ['http/1.1'];
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? 10_000;
  if (offload.engine === 'node-tls' || !caps.native) {
    return new NodeTlsServer({ certFile: options.certFile, keyFile: options.keyFile, minVersion, maxVersion, cipherList, cipherSuites, alpn, handshakeTimeoutMs, offload, log });
  }
  const context = caps.native.ctxNew({
    certFile: options.certFile,
    keyFile: options.keyFile,
    minVersion: versionNumber(minVersion),
    maxVersion: versionNumber(maxVersion),
    cipherList,
    cipherSuites,
    ktls: offload.ktls,
    alpn: alpnWire(alpn),
  });
  return new KtlsServer({ native: caps.native, context, offload, handshakeTimeoutMs, log });
}

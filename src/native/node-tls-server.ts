/**
 * Fallback behind the same interface when the system libssl cannot be loaded
 * (no libssl.so.3, not Linux, addon not built): node:tls, whose bundled
 * OpenSSL uses memory BIOs and is built without kTLS, so every connection
 * reports userspace crypto and file bodies take the write path.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import tls from 'node:tls';
import type { Logger } from '../log/logger.js';
import { copyFileToStream, type BodyPath } from '../transport/copy-file.js';
import { nextConnectionId } from '../tls/ktls-server.js';
import type { ListenOptions, OffloadDecision, SecureConnection, SecureServer, TlsInfo } from '../tls/types.js';

export interface NodeTlsServerOptions {
  certFile: string;
  keyFile: string;
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  maxVersion: 'TLSv1.2' | 'TLSv1.3';
  cipherList: string;
  cipherSuites: string;
  alpn: readonly string[];
  handshakeTimeoutMs: number;
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

export class NodeTlsServer extends EventEmitter implements SecureServer {
  readonly offload: OffloadDecision;
  private readonly server: tls.Server;
  private readonly live = new Set<tls.TLSSocket>();

  constructor(o: NodeTlsServerOptions) {
    super();
    this.offload = o.offload;
    this.server = tls.createServer({
      cert: fs.readFileSync(o.certFile),
      key: fs.readFileSync(o.keyFile),
      minVersion: o.minVersion,
      maxVersion: o.maxVersion,
      ciphers: `${o.cipherSuites}:${o.cipherList}`,
      ALPNProtocols: [...o.alpn],
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
  }

  get connectionCount(): number {
    return this.live.size;
  }

  listen(options: ListenOptions): Promise<{ address: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ host: options.host, port: options.port, backlog: options.backlog ?? 511 }, () => {
        this.server.off('error', reject);
        const a = this.server.address();
        if (a && typeof a === 'object') resolve({ address: a.address, port: a.port });
        else reject(new Error('listener has no address'));
      });
    });
  }

  close(): Promise<void> {
    for (const s of this.live) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

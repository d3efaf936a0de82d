/**
 * Counters of one proxy process: body bytes by the path they took (splice
 * keeps them in the kernel, write copies them through user space), handshakes
 * and upstream errors. Logged as totals at shutdown; the metrics endpoint of
 * the doctor issue will export the same numbers.
 */
import type { SecureConnection } from '../tls/types.js';

export class ProxyStats {
  readonly bodyBytes = { splice: 0, write: 0, none: 0 };
  readonly responses = { splice: 0, write: 0, none: 0 };
  handshakes = 0;
  handshakeFailures = 0;
  kernelTx = 0;
  readonly upstreamErrors = new Map<string, number>();

  countBody(path: 'splice' | 'write' | 'none', bytes: number): void {
    this.bodyBytes[path] += bytes;
    this.responses[path]++;
  }

  handshake(conn: SecureConnection, _ms: number): void {
    this.handshakes++;
    if (conn.tls.ktlsTx) this.kernelTx++;
  }

  handshakeFailed(_err: Error): void {
    this.handshakeFailures++;
  }

  upstreamError(upstream: string, code: string): void {
    const key = `${upstream} ${code}`;
    this.upstreamErrors.set(key, (this.upstreamErrors.get(key) ?? 0) + 1);
  }

  snapshot(): Record<string, unknown> {
    return {
      bodyBytes: { ...this.bodyBytes },
      responses: { ...this.responses },
      handshakes: this.handshakes,
      handshakeFailures: this.handshakeFailures,
      kernelTxConnections: this.kernelTx,
      upstreamErrors: Object.fromEntries(this.upstreamErrors),
    };
  }
}

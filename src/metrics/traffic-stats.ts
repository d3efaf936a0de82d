/**
 * What one Aludel process has carried, counted where it happens: successful
 * and failed handshakes (by where the crypto runs), body bytes by the path
 * they took (sendfile / splice keep them in the kernel, write copies them
 * through user space), upstream errors, and what the proxy's cache did. `aludel
 * serve`, `proxy` and `tcp` all report here; the totals are logged at shutdown.
 */
import type { BodyPath } from '../transport/copy-file.js';
import type { SecureConnection } from '../tls/types.js';

/**
 * What the cache did for one request (`aludel proxy --cache`): hit (fresh,
 * from disk), revalidated (stale or no-cache, the origin's 304 confirmed it),
 * collapsed (followed another request's fill), miss (forwarded, stored when
 * allowed), stale (validation brought a new response), bypass (a method or
 * precondition the cache does not answer).
 */
export type CacheOutcome = 'hit' | 'revalidated' | 'collapsed' | 'miss' | 'stale' | 'bypass';

export class TrafficStats {
  readonly bodyBytes: Record<BodyPath, number> = { sendfile: 0, splice: 0, write: 0, none: 0 };
  readonly bodies: Record<BodyPath, number> = { sendfile: 0, splice: 0, write: 0, none: 0 };
  handshakes = 0;
  handshakeFailures = 0;
  kernelTxConnections = 0;
  readonly upstreamErrors = new Map<string, number>();
  /** Responses and body bytes sent, by what the cache did. */
  readonly cacheResponses: Record<CacheOutcome, number> = { hit: 0, revalidated: 0, collapsed: 0, miss: 0, stale: 0, bypass: 0 };
  readonly cacheBytes: Record<CacheOutcome, number> = { hit: 0, revalidated: 0, collapsed: 0, miss: 0, stale: 0, bypass: 0 };

  /** A completed handshake; `ms` from accept to kTLS set up. */
  handshake(conn: SecureConnection, _ms: number): void {
    this.handshakes++;
    if (conn.tls.ktlsTx) this.kernelTxConnections++;
  }

  handshakeFailed(_err: Error & { code?: string }): void {
    this.handshakeFailures++;
  }

  /** A response (or tunnel direction) body of `bytes` sent to `conn` by `path`. */
  body(_conn: SecureConnection, path: BodyPath, bytes: number): void {
    this.bodyBytes[path] += bytes;
    this.bodies[path]++;
  }

  /** A response the cache answered or forwarded, with its body bytes (also counted by body()). */
  cache(outcome: CacheOutcome, bytes: number): void {
    this.cacheResponses[outcome]++;
    this.cacheBytes[outcome] += bytes;
  }

  upstreamError(upstream: string, code: string): void {
    const key = `${upstream} ${code}`;
    this.upstreamErrors.set(key, (this.upstreamErrors.get(key) ?? 0) + 1);
  }

  snapshot(): Record<string, unknown> {
    return {
      bodyBytes: { ...this.bodyBytes },
      bodies: { ...this.bodies },
      handshakes: this.handshakes,
      handshakeFailures: this.handshakeFailures,
      kernelTxConnections: this.kernelTxConnections,
      upstreamErrors: Object.fromEntries(this.upstreamErrors),
      cacheResponses: { ...this.cacheResponses },
      cacheBytes: { ...this.cacheBytes },
    };
  }
}

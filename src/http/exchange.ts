/**
 * One client request on its way through the proxy's steps (cache, upstream,
 * response writer): what they share about the client's side, and what its
 * access-log line says. The upstream's side (lease, reuse) stays with the
 * proxy; the cache sees only this.
 */
import http from 'node:http';
import type { SecureConnection } from '../tls/types.js';
import type { BodyPath } from '../transport/copy-file.js';
import type { CacheOutcome } from '../metrics/traffic-stats.js';

export interface Exchange {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly conn: SecureConnection;
  /** The upstream last picked for this request, for the log (kept after a failed lease is dropped). */
  upstream: string | null;
  bodyPath: BodyPath;
  /** Body bytes the client was sent. */
  bytes: number;
  /** ms from sending the request head to the response head (nginx's $upstream_header_time), or null. */
  upstreamMs: number | null;
  /** What the cache did, for the log and the counters; null without a cache. */
  cache: CacheOutcome | null;
  /** This cache's Cache-Status member for the response (RFC 9211), when it forwards one. */
  cacheStatus: string | null;
}

export function newExchange(req: http.IncomingMessage, res: http.ServerResponse): Exchange {
  return { req, res, conn: req.socket as unknown as SecureConnection, upstream: null, bodyPath: 'none', bytes: 0, upstreamMs: null, cache: null, cacheStatus: null };
}

/** Counts body bytes that left by `path`. */
export function sent(x: Exchange, path: BodyPath, n: number): void {
  x.bodyPath = path;
  x.bytes += n;
}

/** Appends this cache's member to any upstream cache's Cache-Status list, as another field line (RFC 9211 §2). */
export function withCacheStatus(x: Exchange, headers: string[]): string[] {
  if (x.cacheStatus !== null) headers.push('Cache-Status', x.cacheStatus);
  return headers;
}

/** A short plain-text answer that keeps the connection. */
export function answerText(x: Exchange, status: number, text: string): number {
  x.res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(text) }).end(text);
  return status;
}

/** Aludel's own short error answer (4xx/5xx), closing the connection, counted as serve counts its error pages: path none, the bytes the client got. */
export function sendText(x: Exchange, status: number): void {
  const text = `${http.STATUS_CODES[status]}\n`;
  x.res.writeHead(status, { 'Content-Type': 'text/plain', Connection: 'close' }).end(text);
  x.bodyPath = 'none';
  x.bytes = x.req.method === 'HEAD' ? 0 : Buffer.byteLength(text);
}

/** Writes a piece of body to the response, waiting only when it pushes back; rejects once the client is gone. */
export function writeBody(res: http.ServerResponse, chunk: Buffer): Promise<void> {
  if (res.destroyed) return Promise.reject(Object.assign(new Error('client connection closed'), { code: 'ECONNRESET' }));
  if (res.write(chunk)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (): void => { res.off('drain', done); res.off('close', closed); resolve(); };
    const closed = (): void => { res.off('drain', done); reject(Object.assign(new Error('client connection closed'), { code: 'ECONNRESET' })); };
    res.on('drain', done);
    res.on('close', closed);
  });
}

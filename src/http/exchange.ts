/**
 * One client request on its way through the proxy's steps (cache, upstream,
 * response writer): what they share about the client's side, and what its
 * access-log line says, for HTTP/1.1 and HTTP/2 alike (node's http and
 * http2-compatibility objects). The upstream's side (lease, reuse) stays
 * with the proxy; the cache sees only this.
 */
import http from 'node:http';
import http2 from 'node:http2';
import type { SecureConnection } from '../tls/types.js';
import { requestConnection, type AnyRequest } from './alpn-front.js';
import { LaneResponse, type H1Response, type LaneRequest } from './h1-lane.js';
import { h1FieldsOfH2 } from './h2-request.js';
import { startStallTimer } from './h2-front.js';
import type { BodyPath } from '../transport/copy-file.js';
import type { CacheOutcome } from '../metrics/traffic-stats.js';

/** A request the proxy answers: node's HTTP/1.1 or HTTP/2 one, or the lane's (h1-lane.ts: a plain keep-alive GET or HEAD). */
export type ExchangeRequest = AnyRequest | LaneRequest;

/**
 * What the proxy's steps do to a response, which node's HTTP/1.1 and
 * HTTP/2 responses and the lane's (h1-lane.ts LaneResponse) all do: the
 * compiler holds each to it where a response becomes an exchange's. An
 * interface, not their union: TypeScript cannot call a method that members
 * of a union overload differently. What only HTTP/1.1 responses do is
 * reached through h1Response, what only HTTP/2 ones do through instanceof.
 */
export interface ExchangeResponse {
  statusCode: number;
  readonly headersSent: boolean;
  writeHead(status: number, fields: Record<string, string | number>): { end(data: string): unknown };
  end(): unknown;
  end(data: string | Buffer): unknown;
  end(data: string | Buffer, cb: () => void): unknown;
  write(chunk: Buffer, cb: (err?: Error | null) => void): boolean;
  writeEarlyHints(hints: Record<string, string | string[]>): void;
  readonly writableEnded: boolean;
  readonly writableFinished: boolean;
  on(event: 'close', listener: () => void): unknown;
  off(event: 'close', listener: () => void): unknown;
}

/** An exchange's HTTP/1.1 response (node's or the lane's), or null for an HTTP/2 one. */
export function h1Response(res: ExchangeResponse): H1Response | null {
  // The lane's first: it answers nearly every keep-alive GET (h1-lane.ts).
  return res instanceof LaneResponse || res instanceof http.ServerResponse ? res : null;
}

export interface Exchange {
  readonly req: ExchangeRequest;
  readonly res: ExchangeResponse;
  readonly conn: SecureConnection;
  /** The request came over HTTP/2 (one stream of a session; no splice, no Connection field). */
  readonly h2: boolean;
  /** The request's field lines in HTTP/1.1 form, [name, value, ...] (h2-request.ts for HTTP/2). */
  readonly fields: string[];
  /** Why the fields cannot be used (a malformed HTTP/2 request, RFC 9113 §8.3.1), or null. */
  readonly malformed: string | null;
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
  /** Why the cache did not store or did not reuse (RFC 9211 §2.8 detail), for the log line; null when nothing was refused. */
  cacheDetail: string | null;
  /** Response fields the cache consumed (RFC 9213 targeted fields): not forwarded to the client. */
  cacheConsumed: ReadonlySet<string> | null;
}

export function newExchange(req: ExchangeRequest, res: ExchangeResponse): Exchange {
  const h2 = req instanceof http2.Http2ServerRequest;
  let fields = req.rawHeaders;
  let malformed: string | null = null;
  if (h2) {
    try {
      fields = h1FieldsOfH2(req.rawHeaders);
    } catch (err) {
      fields = [];
      malformed = (err as Error).message;
    }
  }
  // The proxy's detached copy (forward.ts detachedExchange) lists these fields in this order: one map for both.
  return { req, res, conn: requestConnection(req), h2, fields, malformed, upstream: null, bodyPath: 'none', bytes: 0, upstreamMs: null, cache: null, cacheStatus: null, cacheDetail: null, cacheConsumed: null };
}

/** Writes a response head; HTTP/2 has no reason phrase (RFC 9113 §8.3.2), so none is given to node there. */
export function writeHead(x: Exchange, status: number, reason: string, fields: string[]): void {
  // x.h2 says which response it is (newExchange): no instanceof per response.
  if (x.h2) (x.res as http2.Http2ServerResponse).writeHead(status, fields as unknown as http2.OutgoingHttpHeaders);
  else (x.res as H1Response).writeHead(status, reason, fields);
}

/**
 * writeHead with `fixed`'s fields before `fields`, `fixed` a list never
 * changed in place (the cache's stored fields for a client): the lane's
 * response makes its lines once per list (h1-lane.ts writeHeadAfter); the
 * others get the two lists as one.
 */
export function writeHeadAfter(x: Exchange, status: number, reason: string, fixed: readonly string[], fields: string[]): void {
  if (x.res instanceof LaneResponse) x.res.writeHeadAfter(status, reason, fixed, fields);
  else writeHead(x, status, reason, [...fixed, ...fields]);
}

/** Counts body bytes that left by `path`. */
export function sent(x: Exchange, path: BodyPath, n: number): void {
  x.bodyPath = path;
  x.bytes += n;
}

/**
 * The cache's edits of a forwarded response head: the targeted fields it
 * consumed removed (RFC 9213; their target was this cache, not the
 * client's), and its member appended to any upstream cache's Cache-Status
 * list, as another field line (RFC 9211 §2).
 */
export function withCacheStatus(x: Exchange, headers: string[]): string[] {
  if (x.cacheConsumed !== null) dropFields(headers, x.cacheConsumed);
  if (x.cacheStatus !== null) headers.push('Cache-Status', x.cacheStatus);
  return headers;
}

/** Removes the fields named in `lower` (lowercase names) from a [name, value, ...] list, in place. */
export function dropFields(headers: string[], lower: ReadonlySet<string>): void {
  let to = 0;
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if (lower.has(headers[i]!.toLowerCase())) continue;
    headers[to++] = headers[i]!;
    headers[to++] = headers[i + 1]!;
  }
  headers.length = to;
}

/** A short plain-text answer that keeps the connection; the cache's own (only-if-cached) carries its Cache-Status member. */
export function answerText(x: Exchange, status: number, text: string): number {
  const fields: Record<string, string | number> = { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(text) };
  if (x.cacheStatus !== null) fields['Cache-Status'] = x.cacheStatus;
  x.res.writeHead(status, fields).end(text);
  return status;
}

/** Aludel's own short error answer (4xx/5xx), closing the connection, counted as serve counts its error pages: path none, the bytes the client got. */
export function sendText(x: Exchange, status: number): void {
  const text = `${http.STATUS_CODES[status]}\n`;
  // HTTP/2: the stream ends, the session stays; Connection is not a field there (RFC 9113 §8.2.2).
  x.res.writeHead(status, x.h2 ? { 'Content-Type': 'text/plain' } : { 'Content-Type': 'text/plain', Connection: 'close' }).end(text);
  x.bodyPath = 'none';
  x.bytes = x.req.method === 'HEAD' ? 0 : Buffer.byteLength(text);
}

/**
 * Writes a piece of body to the response and resolves once the connection
 * has taken it (the write's callback: SSL_write, or nghttp2, has the bytes),
 * so the caller may reuse the buffer, and a client that stops reading holds
 * this one piece; rejects once the client is gone. A pipelined response
 * still queued behind others is only written when its turn comes, and gets
 * no 'close' of its own if the connection goes first: the connection is
 * watched too.
 */
export function writeBody(x: Exchange, chunk: Buffer): Promise<void> {
  const res = x.res;
  const gone = res instanceof http2.Http2ServerResponse ? res.stream.destroyed : h1Response(res)?.destroyed !== false;
  if (gone || x.conn.destroyed) return Promise.reject(clientGone());
  // Over HTTP/2, a piece the client's window holds back past --idle-timeout resets the stream
  // (h2-front.ts startStallTimer: node's stream timer counts the other streams' bytes as its progress).
  const stopStall = res instanceof http2.Http2ServerResponse ? startStallTimer(res.stream) : null;
  return new Promise((resolve, reject) => {
    const closed = (): void => { done(); reject(clientGone()); };
    const done = (): void => { stopStall?.(); res.off('close', closed); if (!x.h2) x.conn.off('close', closed); };
    // on(), not once(): done() removes both either way (see endBody). Over HTTP/2 the stream's
    // 'close' comes when its session dies too: one listener per stream on the session's
    // connection only piled up (node's MaxListenersExceededWarning at 11 concurrent streams).
    res.on('close', closed);
    if (!x.h2) x.conn.on('close', closed);
    const taken = (err?: Error | null): void => {
      done();
      if (err) reject(err);
      else resolve();
    };
    res.write(chunk, taken);
  });
}

/**
 * The last piece of body, ending the response: as writeBody() then end(),
 * resolving once the response is finished ('finish': the connection has
 * every byte), rejecting once the client is gone. Over HTTP/1.x one end(),
 * so node writes head and body in one go (end() uncorks at once) rather
 * than a write, a tick later its flush, and then the end.
 */
export function endBody(x: Exchange, chunk: Buffer): Promise<void> {
  const res = x.res;
  if (res instanceof http2.Http2ServerResponse) return writeBody(x, chunk).then(() => void res.end());
  if (h1Response(res)?.destroyed !== false || x.conn.destroyed) return Promise.reject(clientGone());
  return new Promise((resolve, reject) => {
    const closed = (): void => { done(); reject(clientGone()); };
    const done = (): void => { res.off('close', closed); x.conn.off('close', closed); };
    // on(), not once(): done() removes both either way, and once() wraps each listener in a
    // bound function of its own (events.js _onceWrap), two per small response.
    res.on('close', closed);
    x.conn.on('close', closed);
    res.end(chunk, () => { done(); resolve(); });
  });
}

/**
 * endBody() without waiting for 'finish', over HTTP/1.x: true once res is
 * ended with `chunk` (node then holds it until written: the caller must not
 * reuse it), false having done nothing (HTTP/2, or the client gone: then
 * endBody() says so). The promise, its three closures and the four
 * listeners endBody() adds and removes were a response's cost for nothing
 * when its caller only needs the bytes handed over.
 */
export function endedNow(x: Exchange, chunk: Buffer): boolean {
  if (x.h2) return false;
  const res = x.res as H1Response;
  if (res.destroyed || x.conn.destroyed) return false;
  res.end(chunk);
  return true;
}

function clientGone(): Error {
  return Object.assign(new Error('client connection closed'), { code: 'ECONNRESET' });
}

/**
 * `aludel proxy`: HTTP/1.1 reverse proxy on kTLS connections. The client side
 * is node's http.Server (llhttp: request smuggling defences of RFC 9112 §6.3,
 * header limits); the upstream side is our own socket, so a response body with
 * a known length leaves the upstream by splice(2) straight into the kTLS
 * socket, where the kernel encrypts it. Everything else (chunked, unknown
 * length, TLS upstreams, kTLS off) is copied through user space.
 */
import http from 'node:http';
import type { Logger } from '../log/logger.js';
import type { ProxySettings } from '../config/proxy-settings.js';
import type { SecureConnection, SecureServer } from '../tls/types.js';
import { isInterim, parseResponseHead, type HeadLimits, type ResponseHead } from '../http/response-head.js';
import type { PlainSocket } from '../transport/plain-socket.js';
import { ChunkedDecoder } from '../http/chunked-decoder.js';
import { buildUpstreamRequestHead, filterResponseHeaders } from '../http/forward-headers.js';
import { ClientGoneError, NoLiveUpstreamError, UpstreamResponseError, UpstreamTimeoutError, UpstreamTruncatedError } from '../errors.js';
import { PipePool } from '../transport/pipe-pool.js';
import { spliceBody } from '../transport/splice-body.js';
import type { Native } from '../native/binding.js';
import { answerClientError, cryptoSite, onSecureConnections } from '../http/serve.js';
import { UpstreamGroup, type Lease } from './upstream-group.js';
import type { UpstreamStream } from './upstream-stream.js';
import { tunnel } from './tunnel.js';
import type { TrafficStats } from '../metrics/traffic-stats.js';

type BodyPath = 'splice' | 'write' | 'none';

/** Upstream socket -> pipe -> kTLS client socket. */
interface SpliceRoute {
  pipes: PipePool;
  sock: PlainSocket;
  conn: Required<SecureConnection>;
}

/** Methods a proxy may send twice (RFC 9110 §9.2.2) when a reused connection died before any answer. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Why a request failed before the client got a status line, and what status that gives. */
function gatewayStatus(err: unknown): 502 | 503 | 504 {
  if (err instanceof UpstreamTimeoutError) return 504;
  if (err instanceof NoLiveUpstreamError) return 502;
  return 502;
}

function errCode(err: unknown): string {
  return (err as { code?: string }).code ?? 'ERR_UNKNOWN';
}

export interface HttpProxyOptions {
  server: SecureServer;
  settings: ProxySettings;
  group: UpstreamGroup;
  native: Native | null;
  stats: TrafficStats;
  log: Logger;
}

interface Exchange {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  conn: SecureConnection;
  lease: Lease | null;
  /** The upstream may carry another request afterwards. */
  reusable: boolean;
  bodyPath: BodyPath;
  bytes: number;
}

export function startHttpProxy(o: HttpProxyOptions): http.Server {
  const s = o.settings;
  const pipes = o.native ? new PipePool(o.native) : null;
  const limits = { maxHeaderSize: s.maxHeaderSize, maxHeaderCount: s.maxHeaderCount };

  const httpServer = http.createServer(
    {
      maxHeaderSize: s.maxHeaderSize,
      headersTimeout: s.headersTimeoutMs,
      requestTimeout: 0,
      keepAliveTimeout: s.idleTimeoutMs,
      noDelay: true,
      // One more than allowed, so that "too many" is seen (node silently drops the rest).
      maxHeadersCount: s.maxHeaderCount + 1,
    } as http.ServerOptions,
    (req, res) => void handle(req, res),
  );
  httpServer.maxHeadersCount = s.maxHeaderCount + 1;
  httpServer.timeout = s.idleTimeoutMs;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const conn = req.socket as unknown as SecureConnection;
    const x: Exchange = { req, res, conn, lease: null, reusable: false, bodyPath: 'none', bytes: 0 };
    let status = 0;
    let error: unknown = null;
    // A client that goes away must not hold an upstream connection until the upstream
    // timeouts fire: whatever waits on the upstream fails at once with ClientGoneError.
    const onClose = (): void => {
      if (!res.writableFinished) x.lease?.stream.destroy(new ClientGoneError());
    };
    res.once('close', onClose);
    try {
      status = await proxy(x);
    } catch (err) {
      error = err;
      status = res.headersSent ? res.statusCode : gatewayStatus(err);
      if (!res.headersSent && !conn.destroyed) {
        sendText(x, status);
      } else {
        // Mid-body: the client must see an aborted response, never a clean end (RFC 9112 §8).
        conn.destroy();
      }
    } finally {
      res.off('close', onClose);
      if (x.lease) {
        if (x.reusable && error === null) o.group.release(x.lease);
        else x.lease.stream.destroy();
      }
    }
    o.stats.body(conn, x.bodyPath, x.bytes);
    const t = conn.tls;
    const upstream = x.lease?.peer.upstream.url ?? null;
    const fields = {
      conn: conn.id, method: req.method, url: req.url, status, bytes: x.bytes, body: x.bodyPath, upstream,
      tls: t.version, cipher: t.cipher, ...cryptoSite(t),
      ms: Math.round(Number(process.hrtime.bigint() - started) / 1e4) / 100,
      ...(error ? { error: errCode(error), detail: (error as Error).message } : {}),
    };
    if (error && !(error instanceof UpstreamTruncatedError) && !(error instanceof ClientGoneError) && errCode(error) !== 'ECONNRESET') o.log.warn(fields, 'request');
    else o.log.info(fields, 'request');
  }

  /** Returns the status sent to the client. */
  async function proxy(x: Exchange): Promise<number> {
    const { req, res } = x;
    if (req.rawHeaders.length / 2 > s.maxHeaderCount) return reject(x, 431, `more than ${s.maxHeaderCount} header fields`);
    const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : null;
    const chunked = req.headers['transfer-encoding'] !== undefined;
    if (s.maxBodySize !== null && declared !== null && declared > s.maxBodySize) return reject(x, 413, `body of ${declared} bytes over the ${s.maxBodySize}-byte limit`);
    const bodyFraming = chunked ? 'chunked' : declared !== null && declared > 0 ? 'length' : 'none';
    const head = buildUpstreamRequestHead({
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      rawHeaders: req.rawHeaders,
      clientAddress: x.conn.remoteAddress ?? '',
      clientPort: x.conn.remotePort,
      proto: 'https',
      trustForwarded: s.trustForwarded,
      bodyFraming,
      contentLength: declared ?? undefined,
      keepAlive: true,
    });
    const headBuf = Buffer.from(head, 'latin1');
    const method = req.method ?? 'GET';
    // A reused idle connection may have been closed by the upstream a moment ago: when
    // nothing came back and the request can be sent again, retry once on a new one.
    for (let attempt = 0; ; attempt++) {
      const peer = o.group.pick();
      const lease = await leaseOrFail(peer, attempt > 0);
      x.lease = lease;
      const u = lease.stream;
      if (x.conn.destroyed) u.destroy(new ClientGoneError());
      u.setIdleTimeout(s.upstreamIdleTimeoutMs, () => new UpstreamTimeoutError('body', s.upstreamIdleTimeoutMs, peer.upstream.url));
      let response: { head: ResponseHead; rest: Buffer } | null = null;
      let bodySent: Promise<void> = Promise.resolve();
      try {
        await u.write(headBuf);
        if (bodyFraming !== 'none') {
          bodySent = sendRequestBody(req, u, bodyFraming === 'chunked', s.maxBodySize);
          bodySent.catch(() => undefined);
        }
        u.setIdleTimeout(s.upstreamHeadersTimeoutMs, () => new UpstreamTimeoutError('headers', s.upstreamHeadersTimeoutMs, peer.upstream.url));
        response = await readResponseHead(u, method, limits);
      } catch (err) {
        const retry = lease.reused && attempt === 0 && bodyFraming === 'none' && IDEMPOTENT.has(method) && isConnectionLoss(err);
        lease.stream.destroy();
        x.lease = null;
        if (retry) continue;
        // The client leaving is no fault of the upstream: passive health must not count it.
        if (!(err instanceof ClientGoneError)) {
          o.group.fail(peer, errCode(err));
          o.stats.upstreamError(peer.upstream.url, errCode(err));
        }
        throw err;
      }
      o.group.succeed(peer);
      u.setIdleTimeout(s.upstreamIdleTimeoutMs, () => new UpstreamTimeoutError('body', s.upstreamIdleTimeoutMs, peer.upstream.url));
      const status = await respond(x, u, response.head, response.rest);
      // The request body must be complete before the connection can carry another exchange.
      const requestDone = await bodySent.then(() => true, () => false);
      x.reusable = x.reusable && requestDone && response.head.keepAlive;
      return status;
    }
  }

  async function leaseOrFail(peer: ReturnType<UpstreamGroup['pick']>, fresh: boolean): Promise<Lease> {
    try {
      return await o.group.lease(peer, fresh);
    } catch (err) {
      o.group.fail(peer, errCode(err));
      o.stats.upstreamError(peer.upstream.url, errCode(err));
      throw err;
    }
  }

  /**
   * Bodies leave by splice when the kernel encrypts the client side and the
   * upstream is a plain socket (whose bytes need no user-space work).
   */
  function spliceTarget(u: UpstreamStream, conn: SecureConnection): SpliceRoute | null {
    if (pipes === null || u.plain === null || !conn.tls.ktlsTx || conn.spliceFromPipe === undefined) return null;
    return { pipes, sock: u.plain, conn: conn as Required<SecureConnection> };
  }

  /** Writes the response head and moves the body; sets x.reusable when the upstream stream is left clean. */
  async function respond(x: Exchange, u: UpstreamStream, head: ResponseHead, rest: Buffer): Promise<number> {
    const { req, res, conn } = x;
    const f = head.framing;
    checkTransferCoding(head);
    const count = (n: number): void => void (x.bytes += n);
    if (f.kind === 'none' || (f.kind === 'length' && f.length === 0)) {
      res.writeHead(head.status, head.reason, filterResponseHeaders(head.headers, { keepFraming: true }));
      res.end();
      x.reusable = rest.length === 0;
      return head.status;
    }
    // A plain upstream's head was peeked (rest is empty): every body byte is still in the kernel.
    const splice = rest.length === 0 ? spliceTarget(u, conn) : null;
    // Unknown length to an HTTP/1.1 client: each pipeful becomes one chunk we frame ourselves,
    // so Transfer-Encoding: chunked is declared here and node's end() writes the last chunk.
    const chunkedSplice = splice !== null && f.kind !== 'length' && req.httpVersion === '1.1';
    const headers = filterResponseHeaders(head.headers, { keepFraming: f.kind === 'length' });
    if (chunkedSplice) headers.push('Transfer-Encoding', 'chunked');
    res.writeHead(head.status, head.reason, headers);
    if (splice !== null && (f.kind === 'length' || chunkedSplice)) {
      // The head goes out through OpenSSL; spliceFromPipe() waits until it is flushed.
      res.flushHeaders();
      x.bodyPath = 'splice';
      if (f.kind === 'length') {
        await spliceBody(splice.pipes, splice.sock, splice.conn, f.length, count);
        x.reusable = true;
      } else if (f.kind === 'chunked') {
        x.reusable = await spliceChunked(splice, count);
      } else {
        await spliceBody(splice.pipes, splice.sock, splice.conn, null, count, true);
        x.reusable = false;
      }
      res.end();
      return head.status;
    }
    x.bodyPath = 'write';
    if (f.kind === 'length') {
      const early = rest.subarray(0, f.length);
      if (early.length > 0) await sendChunk(res, early);
      count(early.length);
      await copyLength(u, res, f.length - early.length, count);
      // Bytes beyond the announced length: the upstream broke framing; never reuse it.
      x.reusable = rest.length <= f.length;
    } else if (f.kind === 'chunked') {
      x.reusable = await copyChunked(u, res, rest, count);
    } else {
      // Delimited by the upstream closing (RFC 9112 §6.3 point 8): node re-frames it chunked.
      if (rest.length > 0) await sendChunk(res, rest);
      count(rest.length);
      for (let c = await u.read(); c !== null; c = await u.read()) {
        await sendChunk(res, c);
        count(c.length);
      }
      x.reusable = false;
    }
    res.end();
    return head.status;
  }

  function reject(x: Exchange, status: number, why: string): number {
    o.log.warn({ conn: x.conn.id, status, detail: why }, 'request refused');
    sendText(x, status);
    return status;
  }

  /** Aludel's own short answer (4xx/5xx), counted as serve counts its error pages: path none, the bytes the client got. */
  function sendText(x: Exchange, status: number): void {
    const text = `${http.STATUS_CODES[status]}\n`;
    x.res.writeHead(status, { 'Content-Type': 'text/plain', Connection: 'close' }).end(text);
    x.bodyPath = 'none';
    x.bytes = x.req.method === 'HEAD' ? 0 : Buffer.byteLength(text);
  }

  httpServer.on('clientError', (err: Error & { code?: string }, socket) => answerClientError(o.log, err, socket));
  httpServer.on('upgrade', (req: http.IncomingMessage, socket, head: Buffer) => void upgrade(req, socket as unknown as SecureConnection, head));

  /** Upgrade (WebSocket and friends, RFC 9110 §7.8): forward the request; on 101, tunnel both ways. */
  async function upgrade(req: http.IncomingMessage, conn: SecureConnection, early: Buffer): Promise<void> {
    let lease: Lease | null = null;
    try {
      const peer = o.group.pick();
      lease = await leaseOrFail(peer, true);
      const u = lease.stream;
      u.setIdleTimeout(s.upstreamHeadersTimeoutMs, () => new UpstreamTimeoutError('headers', s.upstreamHeadersTimeoutMs, peer.upstream.url));
      const head = buildUpstreamRequestHead({
        method: req.method ?? 'GET', url: req.url ?? '/', rawHeaders: req.rawHeaders,
        clientAddress: conn.remoteAddress ?? '', clientPort: conn.remotePort, proto: 'https', trustForwarded: s.trustForwarded,
        bodyFraming: 'none', upgrade: req.headers.upgrade ?? '', keepAlive: false,
      });
      await u.write(Buffer.from(head, 'latin1'));
      const { head: rh, rest } = await readResponseHead(u, req.method ?? 'GET', limits, true);
      const raw = rest.length > 0 ? [rest] : [];
      const lines = [`HTTP/1.1 ${rh.status} ${rh.reason}`];
      const keep = rh.status === 101 ? rh.headers : filterResponseHeaders(rh.headers, { keepFraming: true });
      for (let i = 0; i < keep.length; i += 2) lines.push(`${keep[i]}: ${keep[i + 1]}`);
      conn.write(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'));
      o.log.info({ conn: conn.id, url: req.url, status: rh.status, upstream: peer.upstream.url }, 'upgrade');
      if (rh.status !== 101) {
        for (const b of raw) conn.write(b);
        conn.end();
        return;
      }
      for (const b of raw) conn.write(b);
      if (early.length > 0) await u.write(early);
      u.setIdleTimeout(s.upstreamIdleTimeoutMs, () => new UpstreamTimeoutError('body', s.upstreamIdleTimeoutMs, peer.upstream.url));
      const moved = await tunnel({ conn, upstream: u, pipes, log: o.log });
      o.stats.body(conn, moved.downPath, moved.down);
    } catch (err) {
      o.log.warn({ conn: conn.id, url: req.url, error: errCode(err), detail: (err as Error).message }, 'upgrade failed');
      if (!conn.destroyed) conn.end(`HTTP/1.1 ${gatewayStatus(err)} ${http.STATUS_CODES[gatewayStatus(err)]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    } finally {
      lease?.stream.destroy();
    }
  }

  onSecureConnections(o.server, o.log, o.stats, (conn) => httpServer.emit('connection', conn));
  // No listen() of its own (connections come from the TLS listener): start the timeout sweeper.
  httpServer.emit('listening');
  return httpServer;
}

/**
 * Transfer codings other than plain chunked (gzip, chunked) would reach the
 * client still coded once Transfer-Encoding, a hop-by-hop field, is dropped:
 * refuse them as nginx does ("upstream sent unknown Transfer-Encoding").
 */
function checkTransferCoding(head: ResponseHead): void {
  for (let i = 0; i < head.headers.length; i += 2) {
    if (head.headers[i]!.toLowerCase() === 'transfer-encoding' && head.headers[i + 1]!.trim().toLowerCase() !== 'chunked') {
      throw new UpstreamResponseError(`unsupported Transfer-Encoding "${head.headers[i + 1]}"`);
    }
  }
}

function isConnectionLoss(err: unknown): boolean {
  const c = errCode(err);
  return c === 'ECONNRESET' || c === 'EPIPE' || c === 'ERR_UPSTREAM_CLOSED';
}

const EMPTY = Buffer.alloc(0);

/** Reads until a complete response head; interim 1xx responses (other than an awaited 101) are skipped. */
async function readResponseHead(u: UpstreamStream, method: string, limits: HeadLimits, allowSwitch = false): Promise<{ head: ResponseHead; rest: Buffer }> {
  if (u.plain) return peekResponseHead(u.plain, method, limits, allowSwitch);
  let buf: Buffer = EMPTY;
  for (;;) {
    const head = buf.length > 0 ? parseResponseHead(buf, limits, method) : null;
    if (head) {
      const rest = buf.subarray(head.headerBytes);
      if (skipInterim(head, allowSwitch)) {
        buf = Buffer.from(rest);
        continue;
      }
      return { head, rest };
    }
    const chunk = await u.read();
    if (chunk === null) throw upstreamClosed();
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
  }
}

/** 100 Continue was already answered to the client by node; 102/103 are hints HTTP/1.1 clients may ignore (RFC 9110 §15.2). */
function skipInterim(head: ResponseHead, allowSwitch: boolean): boolean {
  return isInterim(head.status) && !(allowSwitch && head.status === 101);
}

function upstreamClosed(): Error {
  return Object.assign(new Error('upstream closed the connection before a complete response head'), { code: 'ERR_UPSTREAM_CLOSED' });
}

/**
 * The same from a plain socket, taking exactly the head: it looks with
 * MSG_PEEK and then consumes only the head's bytes, so every body byte is
 * still in the kernel for splice (nginx and a fast origin often deliver head
 * and a small body in one segment). Bytes of an incomplete head are consumed
 * as they are seen (so readiness never fires for data already looked at).
 */
async function peekResponseHead(sock: PlainSocket, method: string, limits: HeadLimits, allowSwitch: boolean): Promise<{ head: ResponseHead; rest: Buffer }> {
  // One more byte than a head may have: parseResponseHead then reports an oversized head.
  const room = Buffer.allocUnsafe(limits.maxHeaderSize + 1);
  let held: Buffer = EMPTY;
  for (;;) {
    const n = await sock.peek(room, room.length - held.length);
    if (n === 0) throw upstreamClosed();
    const seen = held.length > 0 ? Buffer.concat([held, room.subarray(0, n)]) : room.subarray(0, n);
    const head = parseResponseHead(seen, limits, method);
    if (head === null) {
      sock.skip(n);
      held = Buffer.from(seen);
      continue;
    }
    sock.skip(head.headerBytes - held.length);
    held = EMPTY;
    if (!skipInterim(head, allowSwitch)) return { head, rest: EMPTY };
  }
}

/** Streams the client's body upstream, re-framed (chunk sizes from what arrives), at the pace of the slower side. */
async function sendRequestBody(req: http.IncomingMessage, u: UpstreamStream, chunked: boolean, max: number | null): Promise<void> {
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (max !== null && total > max) throw Object.assign(new Error(`request body over ${max} bytes`), { code: 'ERR_BODY_TOO_LARGE' });
    if (chunked) await u.write(Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1'));
    await u.write(chunk);
    if (chunked) await u.write(CRLF);
  }
  if (chunked) await u.write(LAST_CHUNK);
}

const CRLF = Buffer.from('\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');

/** Writes to the response, waiting only when it pushes back. */
function sendChunk(res: http.ServerResponse, chunk: Buffer): Promise<void> {
  if (res.destroyed) return Promise.reject(Object.assign(new Error('client connection closed'), { code: 'ECONNRESET' }));
  if (res.write(chunk)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const done = (): void => { res.off('drain', done); res.off('close', closed); resolve(); };
    const closed = (): void => { res.off('drain', done); reject(Object.assign(new Error('client connection closed'), { code: 'ECONNRESET' })); };
    res.on('drain', done);
    res.on('close', closed);
  });
}

async function copyLength(u: UpstreamStream, res: http.ServerResponse, length: number, onBytes: (n: number) => void): Promise<void> {
  let left = length;
  while (left > 0) {
    const c = await u.read();
    if (c === null) throw new UpstreamTruncatedError(`closed after ${length - left} of ${length} body bytes`);
    const part = c.length > left ? c.subarray(0, left) : c;
    await sendChunk(res, part);
    onBytes(part.length);
    left -= part.length;
  }
}

/**
 * A chunked upstream body by splice: the framing (size lines, CRLFs, trailers)
 * is peeked and consumed here, each chunk's data is spliced and re-framed as
 * one chunk per pipeful. Returns true: the decoder stops exactly at the body's
 * end, so the connection can carry the next exchange.
 */
async function spliceChunked(t: SpliceRoute, onBytes: (n: number) => void): Promise<boolean> {
  const dec = new ChunkedDecoder();
  const look = Buffer.allocUnsafe(4096);
  while (!dec.done) {
    const pending = dec.dataPending;
    if (pending > 0) {
      await spliceBody(t.pipes, t.sock, t.conn, pending, onBytes, true);
      dec.dataMoved(pending);
      continue;
    }
    const n = await t.sock.peek(look, look.length);
    if (n === 0) throw new UpstreamTruncatedError('closed inside a chunked body');
    t.sock.skip(dec.pushFraming(look.subarray(0, n)));
  }
  return true;
}

/** De-chunks the upstream body into the response (node re-chunks it); true when nothing followed the last chunk. */
async function copyChunked(u: UpstreamStream, res: http.ServerResponse, first: Buffer, onBytes: (n: number) => void): Promise<boolean> {
  const dec = new ChunkedDecoder();
  const out: Buffer[] = [];
  const collect = (b: Buffer): void => { out.push(b); };
  let input: Buffer | null = first;
  for (;;) {
    if (input !== null && input.length > 0) {
      const used = dec.push(input, collect);
      for (const b of out) {
        await sendChunk(res, b);
        onBytes(b.length);
      }
      out.length = 0;
      if (dec.done) return used === input.length;
    }
    input = await u.read();
    if (input === null) throw new UpstreamTruncatedError('closed inside a chunked body');
  }
}

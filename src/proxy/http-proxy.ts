/**
 * `aludel proxy`: HTTP/1.1 reverse proxy on kTLS connections. The client side
 * is node's http.Server (llhttp: request smuggling defences of RFC 9112 §6.3,
 * header limits); the upstream side is our own socket, so a response body with
 * a known length leaves the upstream by splice(2) straight into the kTLS
 * socket, where the kernel encrypts it. Everything else (chunked, unknown
 * length, TLS upstreams, kTLS off) is copied through user space.
 *
 * With --cache, GET and HEAD go through the RFC 9111 shared cache first: a
 * fresh stored response is sent from disk (headers, then sendfile), a stale
 * one is validated, a miss is fetched once and stored while it streams to its
 * client and to every request for the same key that arrives meanwhile.
 * Unsafe methods invalidate what they change.
 */
import { promises as fsp } from 'node:fs';
import http from 'node:http';
import type { Logger } from '../log/logger.js';
import type { ProxySettings } from '../config/proxy-settings.js';
import type { SecureConnection, SecureServer } from '../tls/types.js';
import type { ResponseHead } from '../http/response-head.js';
import { buildUpstreamRequestHead, filterResponseHeaders } from '../http/forward-headers.js';
import { BodyTooLargeError, ClientGoneError, InvalidRequestError, UpstreamResponseError, UpstreamTimeoutError, UpstreamTruncatedError } from '../errors.js';
import { PipePool } from '../transport/pipe-pool.js';
import { spliceBody } from '../transport/splice-body.js';
import type { Native } from '../native/binding.js';
import { answerClientError, answerConnect, checkingInterval, closingAnswer, cryptoSite, onSecureConnections, requestFields } from '../http/serve.js';
import { AccessLog } from '../log/access-log.js';
import { requestProblem } from '../http/request-checks.js';
import { closeDetached, httpFront, owedSent, whenAttached, type Front } from '../http/front.js';
import { UpstreamGroup, type Lease } from './upstream-group.js';
import type { UpstreamStream } from './upstream-stream.js';
import { tunnel } from './tunnel.js';
import { isLoopback } from '../config/loopback.js';
import { checkTransferCoding, errCode, isConnectionLoss, readBody, readResponseHead, sendChunk, sendRequestBody, spliceChunked, type SpliceRoute } from './upstream-exchange.js';
import type { CacheOutcome, TrafficStats } from '../metrics/traffic-stats.js';
import type { BodyPath } from '../transport/copy-file.js';
import type { HttpCache } from '../cache/cache.js';
import type { Fill, FillHead } from '../cache/fill.js';
import type { Entry } from '../cache/store.js';
import { sendStored, type StoredBody } from '../cache/send-stored.js';
import {
  cacheKey,
  cacheStatus,
  currentAge,
  fieldValue,
  freshenHeaders,
  headersToStore,
  initialAge,
  invalidationKeys,
  notModifiedApplies,
  requestDirectives,
  reuse,
  storability,
  validators,
  varyNames,
  varySelection,
  type CacheStatus,
} from '../cache/policy.js';



/** Methods a proxy may send twice (RFC 9110 §9.2.2) when a reused connection died before any answer. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** Failures of the client's making: logged at info, never counted against an upstream's health. */
function isClientFault(err: unknown): boolean {
  return err instanceof ClientGoneError || err instanceof InvalidRequestError || err instanceof BodyTooLargeError;
}

/**
 * Why a request failed before the client got a status line, and what status
 * that gives: the client's own fault is a 400 (RFC 9112 §3.2: a repeated
 * Host; §6.3: an unusable Content-Length), never a gateway error.
 */
function failureStatus(err: unknown): 400 | 413 | 502 | 504 {
  if (err instanceof InvalidRequestError) return 400;
  if (err instanceof BodyTooLargeError) return 413;
  if (err instanceof UpstreamTimeoutError) return 504;
  return 502;
}


export interface HttpProxyOptions {
  server: SecureServer;
  settings: ProxySettings;
  group: UpstreamGroup;
  native: Native | null;
  stats: TrafficStats;
  /** The shared cache (--cache), or null. */
  cache: HttpCache | null;
  log: Logger;
  /** Where request lines go; default: the main log. */
  access?: AccessLog;
}

interface Exchange {
  req: http.IncomingMessage;
  res: http.ServerResponse;
  conn: SecureConnection;
  lease: Lease | null;
  /** The upstream last picked for this request, for the log (kept after a failed lease is dropped). */
  upstream: string | null;
  /** The upstream may carry another request afterwards. */
  reusable: boolean;
  bodyPath: BodyPath;
  bytes: number;
  /** When the request head went upstream (ms since the epoch): the request_time of RFC 9111 §4.2.3. */
  sentAt: number;
  /** ms from sending the request head to the response head (nginx's $upstream_header_time), or null. */
  upstreamMs: number | null;
  /** What the cache did, for the log and the counters; null without a cache. */
  cache: CacheOutcome | null;
  /** This cache's Cache-Status member for the response (RFC 9211), when it forwards one. */
  cacheStatus: string | null;
}

/** How one forward request is made and answered (proxy() without them: the client's request, relayed as it is). */
interface Forward {
  /** Request fields to send instead of the client's (revalidation swaps the conditionals). */
  rawHeaders?: string[];
  /** Sees the final response head before it is answered (invalidation by unsafe methods). */
  onHead?: (head: ResponseHead) => void;
  /** Answers the client from the upstream response; default respond(). */
  answer?: (x: Exchange, u: UpstreamStream, head: ResponseHead, rest: Buffer) => Promise<number>;
}

/** The proxy on a listener: each finished handshake goes to a new front. */
export function startHttpProxy(o: HttpProxyOptions): Front {
  const front = createHttpProxy(o);
  onSecureConnections(o.server, o.log, o.stats, (conn) => front.accept(conn));
  return front;
}

/** The HTTP proxy front: node's http.Server over the connections it is given. */
export function createHttpProxy(o: Omit<HttpProxyOptions, 'server'>): Front {
  const s = o.settings;
  const pipes = o.native ? new PipePool(o.native) : null;
  const limits = { maxHeaderSize: s.maxHeaderSize, maxHeaderCount: s.maxHeaderCount };
  const access = o.access ?? new AccessLog({ file: null, format: 'json', log: o.log });

  const httpServer = http.createServer(
    {
      maxHeaderSize: s.maxHeaderSize,
      headersTimeout: s.headersTimeoutMs,
      connectionsCheckingInterval: checkingInterval(s.headersTimeoutMs),
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
    const x: Exchange = { req, res, conn, lease: null, upstream: null, reusable: false, bodyPath: 'none', bytes: 0, sentAt: 0, upstreamMs: null, cache: null, cacheStatus: null };
    let status = 0;
    let error: unknown = null;
    // A client that goes away must not hold an upstream connection until the upstream
    // timeouts fire: whatever waits on the upstream fails at once with ClientGoneError.
    const onClose = (): void => {
      if (!res.writableFinished) x.lease?.stream.destroy(new ClientGoneError());
    };
    res.once('close', onClose);
    try {
      const problem = requestProblem(req.method ?? 'GET', req.url ?? '/', req.rawHeaders);
      if (problem !== null) throw new InvalidRequestError(problem);
      status = o.cache ? await cached(x, o.cache) : await proxy(x);
    } catch (err) {
      error = err;
      status = res.headersSent ? res.statusCode : failureStatus(err);
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
    if (x.cache) o.stats.cache(x.cache, x.bytes);
    const t = conn.tls;
    const fields = {
      ...requestFields(req, conn, status, x.bytes, started), body: x.bodyPath, upstream: x.upstream, upstreamMs: x.upstreamMs,
      ...(x.cache ? { cache: x.cache } : {}),
      tls: t.version, cipher: t.cipher, ...cryptoSite(t),
      ...(error ? { error: errCode(error), detail: (error as Error).message } : {}),
    };
    const worthALook = error && !(error instanceof UpstreamTruncatedError) && !isClientFault(error) && errCode(error) !== 'ECONNRESET';
    access.write(worthALook ? 'warn' : 'info', fields);
  }

  /** Returns the status sent to the client. */
  async function proxy(x: Exchange, fwd: Forward = {}): Promise<number> {
    const { req } = x;
    if (req.rawHeaders.length / 2 > s.maxHeaderCount) return reject(x, 431, `more than ${s.maxHeaderCount} header fields`);
    const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : null;
    // llhttp takes any 64-bit length; past 2^53-1 a JS number is no longer exact (RFC 9112 §6.3 point 5: invalid).
    if (declared !== null && !Number.isSafeInteger(declared)) return reject(x, 400, `Content-Length ${req.headers['content-length']} over 2^53-1`);
    const chunked = req.headers['transfer-encoding'] !== undefined;
    if (s.maxBodySize !== null && declared !== null && declared > s.maxBodySize) return reject(x, 413, `body of ${declared} bytes over the ${s.maxBodySize}-byte limit`);
    const bodyFraming = chunked ? 'chunked' : declared !== null && declared > 0 ? 'length' : 'none';
    const head = buildUpstreamRequestHead({
      method: req.method ?? 'GET',
      url: req.url ?? '/',
      rawHeaders: fwd.rawHeaders ?? req.rawHeaders,
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
      x.upstream = peer.upstream.url;
      const lease = await leaseOrFail(peer, attempt > 0);
      x.lease = lease;
      const u = lease.stream;
      if (x.conn.destroyed) u.destroy(new ClientGoneError());
      u.setIdleTimeout(s.upstreamIdleTimeoutMs, () => new UpstreamTimeoutError('body', s.upstreamIdleTimeoutMs, peer.upstream.url));
      let response: { head: ResponseHead; rest: Buffer } | null = null;
      let bodySent: Promise<void> = Promise.resolve();
      let resumeClientTimer = (): void => undefined;
      try {
        x.sentAt = Date.now();
        await u.write(headBuf);
        if (bodyFraming !== 'none') {
          bodySent = sendRequestBody(req, u, bodyFraming === 'chunked', s.maxBodySize);
          // A body that cannot be sent whole (over --max-body-size, the client gone) leaves the
          // upstream waiting for the rest: stop waiting for its head, which then never comes.
          bodySent.catch((err: unknown) => { if (response === null) u.destroy(err as Error); });
        }
        u.setIdleTimeout(s.upstreamHeadersTimeoutMs, () => new UpstreamTimeoutError('headers', s.upstreamHeadersTimeoutMs, peer.upstream.url));
        resumeClientTimer = pauseClientTimer(x, bodySent);
        response = await readResponseHead(u, method, limits, false, (interim) => forwardInterim(x, interim));
        x.upstreamMs = Date.now() - x.sentAt;
        resumeClientTimer();
      } catch (err) {
        resumeClientTimer();
        const retry = lease.reused && attempt === 0 && bodyFraming === 'none' && IDEMPOTENT.has(method) && isConnectionLoss(err);
        lease.stream.destroy();
        x.lease = null;
        if (retry) continue;
        // The client leaving is no fault of the upstream: passive health must not count it.
        if (!isClientFault(err)) {
          o.group.fail(peer, errCode(err));
          o.stats.upstreamError(peer.upstream.url, errCode(err));
        }
        throw err;
      }
      o.group.succeed(peer);
      u.setIdleTimeout(s.upstreamIdleTimeoutMs, () => new UpstreamTimeoutError('body', s.upstreamIdleTimeoutMs, peer.upstream.url));
      fwd.onHead?.(response.head);
      const status = await (fwd.answer ?? respond)(x, u, response.head, response.rest);
      // The request body must be complete before the connection can carry another exchange.
      const requestDone = await bodySent.then(() => true, () => false);
      x.reusable = x.reusable && requestDone && response.head.keepAlive;
      return status;
    }
  }

  /**
   * While the upstream prepares its answer, the client is idle by no fault of
   * its own: its timer (--idle-timeout, node's socket timeout) stops once the
   * whole request has gone upstream, so that --upstream-headers-timeout
   * decides and the client gets a 504 naming the upstream, as with nginx's
   * proxy_read_timeout. A client still sending its body stays timed.
   * Returns the function that restarts the timer (idempotent).
   */
  function pauseClientTimer(x: Exchange, requestSent: Promise<void>): () => void {
    let state: 'waiting' | 'paused' | 'done' = 'waiting';
    requestSent.then(() => {
      if (state !== 'waiting') return;
      state = 'paused';
      x.req.setTimeout(0);
    }, () => undefined);
    return () => {
      if (state === 'paused' && !x.conn.destroyed) x.req.setTimeout(s.idleTimeoutMs);
      state = 'done';
    };
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
      res.writeHead(head.status, head.reason, withCacheStatus(x, filterResponseHeaders(head.headers, { keepFraming: true })));
      res.end();
      x.reusable = rest.length === 0;
      return head.status;
    }
    // A plain upstream's head was peeked (rest is empty): every body byte is still in the kernel.
    const splice = rest.length === 0 ? spliceTarget(u, conn) : null;
    // Unknown length to an HTTP/1.1 client: each pipeful becomes one chunk we frame ourselves,
    // so Transfer-Encoding: chunked is declared here and node's end() writes the last chunk.
    const chunkedSplice = splice !== null && f.kind !== 'length' && req.httpVersion === '1.1';
    const headers = withCacheStatus(x, filterResponseHeaders(head.headers, { keepFraming: f.kind === 'length' }));
    if (chunkedSplice) headers.push('Transfer-Encoding', 'chunked');
    res.writeHead(head.status, head.reason, headers);
    if (splice !== null && (f.kind === 'length' || chunkedSplice)) {
      // splice writes into the connection itself: only once the responses to earlier
      // pipelined requests are out. The head goes out through OpenSSL first;
      // spliceFromPipe() waits until it is flushed.
      await whenAttached(res);
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
    // Node frames what it is given: Content-Length as announced, chunked otherwise.
    x.reusable = await readBody(u, f, rest, async (b) => {
      await sendChunk(res, b);
      count(b.length);
    });
    res.end();
    return head.status;
  }

  /**
   * Interim responses (RFC 9110 §15.2): a proxy forwards them, except to
   * HTTP/1.0 clients and except 100 Continue, which node already answered for
   * the client (Expect is not forwarded). Node writes 102 and 103 for us; it
   * has no way to write other 1xx codes, which no deployed server sends.
   * Never stored: only final responses are.
   */
  function forwardInterim(x: Exchange, head: ResponseHead): void {
    if (x.req.httpVersion !== '1.1' || x.res.headersSent) return;
    if (head.status === 102) {
      x.res.writeProcessing();
    } else if (head.status === 103) {
      const hints: Record<string, string | string[]> = {};
      const fields = filterResponseHeaders(head.headers, { keepFraming: false });
      for (let i = 0; i < fields.length; i += 2) {
        const name = fields[i]!.toLowerCase();
        const prior = hints[name];
        hints[name] = prior === undefined ? fields[i + 1]! : [prior, fields[i + 1]!].flat();
      }
      try {
        // Node refuses hints without a well-formed Link (its reason to exist, RFC 8297).
        x.res.writeEarlyHints(hints);
      } catch (err) {
        o.log.debug({ conn: x.conn.id, err }, '103 Early Hints not forwarded');
      }
    }
  }

  // ---- the cache --------------------------------------------------------------------------

  /** GET and HEAD through the cache; PURGE; everything else forwarded, invalidating what it changes. */
  async function cached(x: Exchange, c: HttpCache): Promise<number> {
    const { req } = x;
    const method = req.method ?? 'GET';
    const raw = req.rawHeaders;
    const key = cacheKey(req.headers.host, req.url ?? '/');
    if (method === 'PURGE') return purge(x, c, key);
    if (method !== 'GET' && method !== 'HEAD') {
      x.cache = 'bypass';
      x.cacheStatus = cacheStatus({ fwd: 'method' });
      // §4.4: invalidated when the answer arrives, before its body (a GET meanwhile must not get the old one).
      return proxy(x, { onHead: (h) => { for (const k of invalidationKeys(method, h.status, key, h.headers)) c.invalidate(k); } });
    }
    // §4.3.2: If-Match and If-Unmodified-Since are for the origin server to evaluate.
    if (has(raw, 'if-match') || has(raw, 'if-unmodified-since')) {
      x.cache = 'bypass';
      x.cacheStatus = cacheStatus({ fwd: 'request' });
      return proxy(x);
    }
    const directives = requestDirectives(raw);
    const authorized = has(raw, 'authorization');
    const { entry, uriHit } = c.select(key, raw, authorized);
    let fwd: CacheStatus['fwd'] = uriHit ? 'vary-miss' : 'uri-miss';
    if (entry !== null) {
      const r = reuse(entry, directives, Date.now());
      if (r.use === 'fresh') {
        const sent = await fromStore(x, c, entry, { hit: true, ttl: r.ttl }, 'hit');
        if (sent !== null) return sent;
        fwd = 'miss';
      } else {
        fwd = r.stale ? 'stale' : 'request';
        if (!directives.onlyIfCached && method === 'GET' && hasValidator(entry)) return revalidate(x, c, key, entry, fwd);
      }
    }
    // §5.2.1.7
    if (directives.onlyIfCached) return answerText(x, 504, 'Gateway Timeout: only-if-cached, and no stored response may be used\n');
    // A no-cache request wants the origin's answer to its own request, not one already under way.
    if (!directives.noCache) {
      const followed = await c.follow(key, raw, authorized);
      if (followed !== null) return followFill(x, followed.fill, followed.head, fwd);
    }
    // Fetched for the cache only as a plain GET: HEAD has no body to store, a range or a
    // conditional would not bring the whole response, no-store forbids it (§5.2.1.5).
    if (method === 'HEAD' || directives.noStore || has(raw, 'range') || has(raw, 'if-range') || has(raw, 'if-none-match') || has(raw, 'if-modified-since')) {
      x.cache = 'miss';
      x.cacheStatus = cacheStatus({ fwd });
      return proxy(x);
    }
    const fill = c.beginFill(key, raw);
    try {
      return await proxy(x, { answer: (xx, u, head, rest) => storeAndRespond(xx, c, fill, key, fwd, u, head, rest) });
    } finally {
      // The upstream failed before a head: followers waiting for it go to the origin themselves.
      await c.endFill(fill);
    }
  }

  /** A stored response from disk; null when its file is gone (evicted since it was selected). */
  async function fromStore(x: Exchange, c: HttpCache, entry: Entry, status: CacheStatus, outcome: CacheOutcome): Promise<number | null> {
    let fh: Awaited<ReturnType<typeof fsp.open>>;
    try {
      fh = await fsp.open(entry.bodyFile, 'r');
    } catch (err) {
      if (errCode(err) !== 'ENOENT') throw err;
      c.store.remove(entry);
      return null;
    }
    c.store.touch(entry);
    x.cache = outcome;
    const src: StoredBody = {
      status: entry.status, reason: entry.reason, headers: entry.headers, fd: fh.fd,
      age: currentAge(entry.initialAge, entry.responseTime, Date.now()),
      length: () => entry.length, available: () => entry.length, complete: () => true, progress: () => Promise.resolve(),
    };
    try {
      return (await sendStored(x.req, x.res, src, cacheStatus(status), (path, n) => sent(x, path, n))).status;
    } finally {
      // sendFile has settled: no sendfile(2) on the thread pool still reads this descriptor.
      await fh.close().catch(() => undefined);
    }
  }

  /** Another request is fetching this response: send it from the file as it is written (collapsed, RFC 9211 §2.6). */
  async function followFill(x: Exchange, fill: Fill, head: FillHead, fwd: CacheStatus['fwd']): Promise<number> {
    x.cache = 'collapsed';
    const src: StoredBody = {
      status: head.status, reason: head.reason, headers: head.headers, fd: fill.file!.fd,
      age: currentAge(head.initialAge, head.responseTime, Date.now()),
      length: () => fill.length, available: () => fill.written, complete: () => fill.complete, progress: () => fill.progress(),
    };
    try {
      return (await sendStored(x.req, x.res, src, cacheStatus({ fwd, collapsed: true }), (path, n) => sent(x, path, n))).status;
    } finally {
      fill.release();
    }
  }

  function sent(x: Exchange, path: BodyPath, n: number): void {
    x.bodyPath = path;
    x.bytes += n;
  }

  /**
   * §4.3.1: a stale (or no-cache) stored response is validated with its own
   * validators instead of the client's; a 304 freshens it (§4.3.4) and the
   * client is answered from it, its own conditionals and Range included. A
   * full response replaces it.
   */
  function revalidate(x: Exchange, c: HttpCache, key: string, entry: Entry, fwd: CacheStatus['fwd']): Promise<number> {
    const v = validators(entry.headers);
    const raw = without(x.req.rawHeaders, VALIDATION_FIELDS);
    if (v.etag !== null) raw.push('If-None-Match', v.etag);
    if (v.lastModified !== null) raw.push('If-Modified-Since', v.lastModified);
    return proxy(x, {
      rawHeaders: raw,
      answer: async (xx, u, head, rest) => {
        if (head.status !== 304) return storeAndRespond(xx, c, null, key, fwd, u, head, rest);
        if (!notModifiedApplies(entry.headers, head.headers)) {
          c.invalidate(key);
          throw new UpstreamResponseError(`304 Not Modified for a validator Aludel did not send (ETag ${fieldValue(head.headers, 'etag') ?? 'none'})`, 'check the upstream ETag / Last-Modified logic; the stored response was dropped');
        }
        xx.reusable = rest.length === 0;
        const now = Date.now();
        try {
          await c.store.update(entry, { headers: freshenHeaders(entry.headers, head.headers, now), requestTime: xx.sentAt, responseTime: now, initialAge: initialAge(head.headers, xx.sentAt, now) });
        } catch (err) {
          // The entry in memory is freshened all the same; only a restart would forget it.
          c.diskError(err, 'could not rewrite the metadata of a revalidated response');
        }
        const ttl = entry.lifetime - currentAge(entry.initialAge, entry.responseTime, now);
        const status = await fromStore(xx, c, entry, { fwd, fwdStatus: 304, ttl }, 'revalidated');
        if (status === null) throw Object.assign(new Error('the revalidated response was evicted before it could be sent'), { code: 'ERR_CACHE_EVICTED' });
        return status;
      },
    });
  }

  /**
   * A response from upstream for a plain GET: when storable (policy.storability),
   * it goes to the client (copied) and into the store at once, while followers
   * read it from the file; a disk error only stops the storing. Otherwise it
   * is relayed as without a cache (splice included).
   */
  async function storeAndRespond(x: Exchange, c: HttpCache, pending: Fill | null, key: string, fwd: CacheStatus['fwd'], u: UpstreamStream, head: ResponseHead, rest: Buffer): Promise<number> {
    const { req, res } = x;
    x.cache = fwd === 'stale' || fwd === 'request' ? 'stale' : 'miss';
    const fwdStatus = x.cache === 'stale' ? head.status : undefined;
    checkTransferCoding(head);
    const f = head.framing;
    const responseTime = Date.now();
    const verdict = storability({ method: req.method ?? 'GET', requestHeaders: req.rawHeaders, status: head.status, responseHeaders: head.headers, framing: f.kind, responseTime, cacheCookies: c.cookies });
    const length = f.kind === 'length' ? f.length : f.kind === 'none' ? 0 : null;
    const why = !verdict.store ? verdict.reason : length !== null && length > c.store.maxBytes ? 'too-large' : null;
    let file = null;
    if (why === null) {
      try {
        file = await c.store.create();
      } catch (err) {
        c.diskError(err, 'could not create a file for a response');
      }
    }
    if (file === null) {
      if (pending) await c.endFill(pending);
      x.cacheStatus = cacheStatus({ fwd, fwdStatus, detail: why ?? 'disk-error' });
      return respond(x, u, head, rest);
    }
    const fill = pending ?? c.beginFill(key, req.rawHeaders);
    const names = varyNames(head.headers) as string[];
    fill.start({
      key, vary: names.length > 0 ? varySelection(names, req.rawHeaders) : null,
      status: head.status, reason: head.reason, headers: headersToStore(head.headers, responseTime),
      requestTime: x.sentAt, responseTime, initialAge: initialAge(head.headers, x.sentAt, responseTime),
    }, length, file);
    x.cacheStatus = cacheStatus({ fwd, fwdStatus, stored: true });
    res.writeHead(head.status, head.reason, withCacheStatus(x, filterResponseHeaders(head.headers, { keepFraming: f.kind === 'length' })));
    x.bodyPath = length === 0 ? 'none' : 'write';
    // The client may leave: the fill goes on for the followers and the store.
    let clientGone: unknown = null;
    let storing = true;
    const toClient = async (b: Buffer): Promise<void> => {
      if (clientGone !== null) return;
      try {
        await sendChunk(res, b);
        x.bytes += b.length;
      } catch (err) {
        clientGone = err;
      }
    };
    const toFile = async (b: Buffer): Promise<void> => {
      if (!storing) return;
      try {
        await fill.append(b);
        if (fill.written > c.store.maxBytes) throw Object.assign(new Error(`response over the cache size (${c.store.maxBytes} bytes)`), { code: 'ERR_CACHE_TOO_LARGE' });
      } catch (err) {
        storing = false;
        fill.fail(err as Error);
        if (errCode(err) !== 'ERR_CACHE_TOO_LARGE') c.diskError(err, 'could not write a response body');
      }
    };
    try {
      x.reusable = await readBody(u, f, rest, (b) => Promise.all([toFile(b), toClient(b)]).then(() => undefined));
      fill.finish();
    } catch (err) {
      fill.fail(err as Error);
      await c.endFill(fill);
      throw err;
    }
    if (clientGone === null) res.end();
    // Committed before the request is logged: once its line is written, the next request finds the entry.
    await c.endFill(fill);
    if (clientGone !== null) throw clientGone;
    return head.status;
  }

  /** PURGE (as Varnish and nginx cache_purge users know it), from loopback clients only: every variant of the URL. */
  function purge(x: Exchange, c: HttpCache, key: string): number {
    if (!isLoopback(x.conn.remoteAddress)) return answerText(x, 403, 'Forbidden: PURGE is accepted from loopback clients only\n');
    const n = c.invalidate(key);
    o.log.info({ conn: x.conn.id, key, purged: n }, 'cache purge');
    const body = `${JSON.stringify({ key, purged: n })}\n`;
    const status = n > 0 ? 200 : 404;
    x.res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body);
    return status;
  }

  function answerText(x: Exchange, status: number, text: string): number {
    x.res.writeHead(status, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(text) }).end(text);
    return status;
  }

  function withCacheStatus(x: Exchange, headers: string[]): string[] {
    // Another field line appends this cache's member to any upstream cache's list (RFC 9211 §2).
    if (x.cacheStatus !== null) headers.push('Cache-Status', x.cacheStatus);
    return headers;
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
  // CONNECT asks for a tunnel to any host (RFC 9110 §9.3.6): a gateway to its upstreams offers none.
  httpServer.on('connect', (req: http.IncomingMessage, socket) => answerConnect(o.log, req, socket as unknown as SecureConnection, s.idleTimeoutMs, 501));
  httpServer.on('upgrade', (req: http.IncomingMessage, socket, head: Buffer) => void upgrade(req, socket as unknown as SecureConnection, head));

  /** Upgrade (WebSocket and friends, RFC 9110 §7.8): forward the request; on 101, tunnel both ways. */
  async function upgrade(req: http.IncomingMessage, conn: SecureConnection, early: Buffer): Promise<void> {
    let lease: Lease | null = null;
    // node hands an Upgrade request over before any body: the bytes of one would reach the
    // upstream as tunnel data after a 101, outside any framing (a smuggling channel). A
    // WebSocket handshake is a GET without a body (RFC 6455 §4.1); refuse the rest.
    const cl = req.headers['content-length'];
    const problem = req.headers['transfer-encoding'] !== undefined ? 'Upgrade with a Transfer-Encoding body'
      : cl !== undefined && cl !== '0' ? 'Upgrade with a Content-Length body'
      : requestProblem(req.method ?? 'GET', req.url ?? '/', req.rawHeaders);
    if (problem !== null) {
      o.log.info({ conn: conn.id, url: req.url, status: 400, error: 'ERR_BAD_REQUEST', detail: problem }, 'upgrade refused');
      closeDetached(conn, s.idleTimeoutMs, closingAnswer(400));
      return;
    }
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
      // The answer goes straight to the connection: only after the responses owed to earlier
      // pipelined requests (RFC 9112 §9.3.2), which node writes from its own queue.
      if (!(await owedSent(conn))) {
        conn.destroy();
        return;
      }
      conn.write(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'));
      o.log.info({ conn: conn.id, url: req.url, status: rh.status, upstream: peer.upstream.url }, 'upgrade');
      if (rh.status !== 101) {
        for (const b of raw) conn.write(b);
        closeDetached(conn, s.idleTimeoutMs);
        return;
      }
      for (const b of raw) conn.write(b);
      if (early.length > 0) await u.write(early);
      u.setIdleTimeout(s.upstreamIdleTimeoutMs, () => new UpstreamTimeoutError('body', s.upstreamIdleTimeoutMs, peer.upstream.url));
      const moved = await tunnel({ conn, upstream: u, pipes, log: o.log });
      o.stats.body(conn, moved.downPath, moved.down);
    } catch (err) {
      o.log.warn({ conn: conn.id, url: req.url, error: errCode(err), detail: (err as Error).message }, 'upgrade failed');
      if (!conn.destroyed) closeDetached(conn, s.idleTimeoutMs, closingAnswer(failureStatus(err)));
    } finally {
      lease?.stream.destroy();
    }
  }

  // No listen() of its own (connections come from the TLS listener): start the timeout sweeper.
  httpServer.emit('listening');
  return httpFront(httpServer);
}

function has(headers: readonly string[], lower: string): boolean {
  return fieldValue(headers, lower) !== undefined;
}

/** The client's conditionals and Range: replaced by the cache's own validators when it revalidates. */
const VALIDATION_FIELDS = new Set(['if-none-match', 'if-modified-since', 'range', 'if-range']);

function without(headers: readonly string[], names: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if (!names.has(headers[i]!.toLowerCase())) out.push(headers[i]!, headers[i + 1]!);
  }
  return out;
}

function hasValidator(e: Entry): boolean {
  const v = validators(e.headers);
  return v.etag !== null || v.lastModified !== null;
}


/**
 * `aludel proxy`: HTTP reverse proxy on kTLS connections. The client side is
 * node's http.Server for HTTP/1.1 (llhttp: request smuggling defences of RFC
 * 9112 §6.3, header limits), except plain keep-alive GETs and HEADs, which
 * the lane reads (h1-lane.ts, proxyLane), and node:http2 for connections
 * whose ALPN said h2 (h2-front.ts), all handing requests to one handler; upstreams stay
 * HTTP/1.1, one pooled connection per stream. Each request goes through a
 * pipeline of small steps:
 * the request checks (400, 413, 431), the cache (cache/cache-layer.ts, with
 * --cache), the upstream exchange (forward.ts) and the response writer
 * (upstream-answer.ts), which moves a body of known length from the upstream
 * socket into the kTLS socket by splice(2), where the kernel encrypts it.
 * Upgrades are upgrade.ts's. This file wires them and writes the log line.
 */
import http from 'node:http';
import type { Logger } from '../log/logger.js';
import type { ProxySettings } from '../config/proxy-settings.js';
import type { SecureConnection, SecureServer } from '../tls/types.js';
import { ClientGoneError, InvalidRequestError, UpstreamTruncatedError } from '../errors.js';
import { PipePool } from '../transport/pipe-pool.js';
import type { Native } from '../native/binding.js';
import { bodyRefusal } from '../http/parse-error.js';
import { answerClientError, answerConnect, checkingInterval, closeWaitedForNothing, cryptoSite, onSecureConnections, H2_MALFORMED, refusedRequestFields, requestFields, type ClientErrorOptions } from '../http/serve.js';
import type { ParseError } from '../http/parse-error.js';
import { AccessLog } from '../log/access-log.js';
import { missingHost, requestProblem, unimplemented } from '../http/request-checks.js';
import { httpFront, isMoot, queuedTurn, type Front } from '../http/front.js';
import type { LaneOptions, LaneRequest, LaneResponse } from '../http/h1-lane.js';
import { alpnFront } from '../http/alpn-front.js';
import { h2Front, resetStream } from '../http/h2-front.js';
import { constants as http2constants, Http2ServerResponse } from 'node:http2';
import { newExchange, sendText, type Exchange, type ExchangeRequest, type ExchangeResponse } from '../http/exchange.js';
import type { UpstreamGroup } from './upstream-group.js';
import { errCode } from './upstream-exchange.js';
import type { TrafficStats } from '../metrics/traffic-stats.js';
import type { HttpCache } from '../cache/cache.js';
import { CacheLayer, type Forward } from '../cache/cache-layer.js';
import { Forwarder, type ProxyExchange } from './forward.js';
import { failureStatus, isClientFault } from '../http/failures.js';
import { cutCause } from '../http/timed-out.js';
import { upgrade, type UpgradeOptions } from './upgrade.js';

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

/** The client went away before its answer: its connection (HTTP/1.x) or its stream (HTTP/2) is gone. */
function clientLeft(x: ProxyExchange): boolean {
  return x.res instanceof Http2ServerResponse ? x.res.stream.destroyed : x.conn.destroyed;
}

/** Where a response keeps its exchange for onResponseClose. */
const EXCHANGE = Symbol('exchange');
type Watched = ExchangeResponse & { [EXCHANGE]?: ProxyExchange };

/**
 * A response closed before it finished: the client went away, and its
 * upstream connection goes too (nginx's proxy_ignore_client_abort off).
 * writableEnded too: node's HTTP/2 compatibility response reports
 * writableFinished once its stream is closed, ended or not (a client's
 * RST_STREAM or a connection gone), so on HTTP/2 that alone never fired.
 */
function onResponseClose(this: Watched): void {
  const x = this[EXCHANGE];
  if (x !== undefined && !(this.writableEnded && this.writableFinished)) x.lease?.stream.destroy(new ClientGoneError());
}

/** onResponseClose for the lane's response (LaneResponse.closeWatch), its exchange given along. */
function laneClosed(x: unknown, res: LaneResponse): void {
  if (!(res.writableEnded && res.writableFinished)) (x as ProxyExchange).lease?.stream.destroy(new ClientGoneError());
}

/**
 * Starts watching `res` for onResponseClose with exchange `x`, or stops (x
 * null). The lane's response has a slot for it (LaneResponse.closeWatch),
 * which costs no listener added and removed and no symbol-keyed store per
 * request; node's responses get a 'close' listener. `lane`: res is the
 * lane's (handle's vetted: only the lane hands over vetted requests), said
 * by the caller rather than asked of res by instanceof each time.
 */
function watchClose(res: ExchangeResponse, lane: boolean, x: ProxyExchange | null): void {
  if (lane) {
    const r = res as LaneResponse;
    r.closeWatch = x === null ? null : laneClosed;
    r.closeArg = x;
  } else if (x !== null) {
    (res as Watched)[EXCHANGE] = x;
    res.on('close', onResponseClose);
  } else {
    res.off('close', onResponseClose);
  }
}

/**
 * Upstream in the request's turn: at once, unless node's server still owes
 * answers ahead of it (front.ts queuedTurn). A lane request (`vetted`) is
 * always in its turn: the lane reads the next request only once this one is
 * answered, and queuedTurn never waits for its response (not node's). Not
 * asked then: its `instanceof http.ServerResponse`, a property read of the
 * http module and V8's generic InstanceOf, was about 0.5k instructions per
 * proxied 1 KiB keep-alive GET (bench/request-cost.ts).
 */
function inTurn(forwarder: Forwarder, x: ProxyExchange, vetted: boolean, fwd?: Forward): Promise<number> {
  const turn = vetted ? null : queuedTurn(x.res);
  return turn === null ? forwarder.forward(x, fwd) : turn.then(() => forwarder.forward(x, fwd));
}

/** The proxy on a listener: each finished handshake goes to a new front. */
export function startHttpProxy(o: HttpProxyOptions): Front {
  const front = createHttpProxy(o);
  onSecureConnections(o.server, o.log, o.stats, (conn) => front.accept(conn));
  return front;
}

/**
 * A request the proxy refuses before any step (RFC 9112 §6.3 point 5: a
 * Content-Length past 2^53-1 is no longer exact in JS; --max-body-size;
 * more fields than --max-header-count, which node would silently drop).
 */
function requestLimit(x: Exchange, s: ProxySettings): { status: 400 | 413 | 431; why: string } | null {
  const req = x.req;
  if (x.fields.length / 2 > s.maxHeaderCount) return { status: 431, why: `more than ${s.maxHeaderCount} header fields` };
  const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : null;
  if (declared !== null && !Number.isSafeInteger(declared)) return { status: 400, why: `Content-Length ${req.headers['content-length']} over 2^53-1` };
  if (s.maxBodySize !== null && declared !== null && declared > s.maxBodySize) return { status: 413, why: `body of ${declared} bytes over the ${s.maxBodySize}-byte limit` };
  return null;
}

/** Why a request node's server read is refused (400, 501, 505), or null. */
function requestRefusal(x: ProxyExchange): Error | null {
  const { req } = x;
  const problem = x.malformed ?? requestProblem(req.method ?? 'GET', req.url ?? '/', x.fields) ?? (x.h2 ? null : missingHost(req.httpVersionMajor, req.httpVersionMinor, x.fields));
  if (problem !== null) return new InvalidRequestError(problem);
  // HTTP/2 has neither transfer codings nor a version in a request line (RFC 9113 §8.2.2).
  return x.h2 ? null : unimplemented(req.httpVersionMajor, x.fields);
}

/**
 * The exchange of one proxied request. Its two fields are added to the new
 * exchange in place: a copy by spread ({ ...newExchange(), lease, ... }) went
 * through V8's slow runtime path (Runtime_DefineNamedOwnIC_Slow), about 2%
 * of the proxy's CPU in a profile of 1 KiB cache hits. The detached copy
 * (forward.ts detachedExchange) adds the two in the same order.
 */
function proxyExchange(req: ExchangeRequest, res: ExchangeResponse): ProxyExchange {
  const x = newExchange(req, res) as ProxyExchange;
  x.lease = null;
  x.reusable = false;
  return x;
}

/** The pipeline failed: the status to log, after what the client is owed (an error answer, or an aborted response). */
function failed(x: ProxyExchange, err: unknown): number {
  const { res, conn } = x;
  const status = res.headersSent ? res.statusCode : clientLeft(x) ? 499 : failureStatus(err);
  if (status === 499) {
    // Nobody to answer: the stream or connection is gone already.
  } else if (!res.headersSent && !conn.destroyed) {
    sendText(x, status);
  } else if (x.h2) {
    // Mid-body on HTTP/2: this stream is reset (RFC 9113 §8.1), the session's others go on.
    if (res instanceof Http2ServerResponse) resetStream(res.stream, http2constants.NGHTTP2_INTERNAL_ERROR);
  } else {
    // Mid-body: the client must see an aborted response, never a clean end (RFC 9112 §8).
    conn.destroy();
  }
  return status;
}

/** The HTTP proxy front: node's http.Server over the connections it is given. */
export function createHttpProxy(o: Omit<HttpProxyOptions, 'server'>): Front {
  const s = o.settings;
  const pipes = o.native ? new PipePool(o.native) : null;
  const access = o.access ?? new AccessLog({ file: null, format: 'json', log: o.log });
  const forwarder = new Forwarder({ settings: s, group: o.group, stats: o.stats, pipes, log: o.log });
  const cache = o.cache ? new CacheLayer(o.cache, o.log) : null;

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
      // A missing Host is refused by the pipeline (missingHost), with its access-log line.
      requireHostHeader: false,
    } as http.ServerOptions,
    (req, res) => handle(req, res),
  );
  httpServer.maxHeadersCount = s.maxHeaderCount + 1;
  httpServer.timeout = s.idleTimeoutMs;
  // A client's FIN (a half-close, RFC 9293 §3.6) no longer aborts every request on node's
  // server: front.ts abortAtFin aborts those waiting on the upstream (499, as nginx's
  // ngx_http_upstream_check_broken_connection), and an answer from the store goes on whole
  // (h1-lane.ts sendWholeAfterFin), as on the lane (abortOnFin).
  (httpServer as http.Server & { httpAllowHalfOpen?: boolean }).httpAllowHalfOpen = true;

  /**
   * The pipeline for one request: checks, then the cache or straight upstream.
   * Resolves with the status sent. The checks run synchronously, in the turn
   * node parsed the request: a refusal that closes the connection is then
   * known before node parses the pipelined requests behind it. A plain
   * number: answered already (a cache hit sent at once, cache-layer.ts handle).
   */
  function pipeline(x: ProxyExchange, vetted: boolean): number | Promise<number> {
    const { req } = x;
    // CONNECT over HTTP/2 (RFC 9113 §8.5) asks for a tunnel, as over HTTP/1.1: none is offered.
    if (x.h2 && req.method === 'CONNECT') {
      o.log.warn({ conn: x.conn.id, method: req.method, url: req.url, status: 501 }, 'CONNECT refused');
      sendText(x, 501);
      return Promise.resolve(501);
    }
    // A lane request (vetted) was checked once, by the lane's takes() (requestProblem), and the lane
    // takes only HTTP/1.1 heads with one Host and no transfer coding (h1-lane.ts simpleHead):
    // nothing missingHost or unimplemented would refuse. As serve's lane requests (serve.ts).
    const refusal = vetted ? null : requestRefusal(x);
    if (refusal !== null) throw refusal;
    const limit = requestLimit(x, s);
    if (limit !== null) {
      o.log.warn({ conn: x.conn.id, status: limit.status, detail: limit.why }, 'request refused');
      sendText(x, limit.status);
      return Promise.resolve(limit.status);
    }
    return cache ? cache.handle(x, (fwd) => inTurn(forwarder, x, vetted, fwd)) : inTurn(forwarder, x, vetted);
  }

  /**
   * `vetted`: a lane request, which the lane's takes() has checked already
   * (pipeline). An answer pipeline gives as a number (a cache hit sent at
   * once) is logged in this turn: an async function awaiting it was one more
   * promise and microtask turn per hit (bench/request-cost.ts). A throw
   * (a refusal) is answered in this turn too, as when it was awaited.
   */
  function handle(req: ExchangeRequest, res: ExchangeResponse, vetted = false): void {
    if (isMoot(req)) return;
    // Only the access-log line reads it (its request time): off, no clock read and no BigInt per request.
    const started = access.enabled ? process.hrtime.bigint() : 0n;
    const x = proxyExchange(req, res);
    // A client that goes away must not hold an upstream connection until the upstream
    // timeouts fire: whatever waits on the upstream fails at once with ClientGoneError.
    // One watcher for all responses, given its exchange (no closure per request): the lane's slot,
    // or on node's responses a listener, on() not once() (a bound wrapper per request): 'close'
    // comes once, and ended() removes it.
    watchClose(res, vetted, x);
    let answered: number | Promise<number>;
    try {
      answered = pipeline(x, vetted);
    } catch (err) {
      ended(x, vetted, failed(x, err), err, started);
      return;
    }
    if (typeof answered === 'number') ended(x, vetted, answered, null, started);
    else answered.then((status) => ended(x, vetted, status, null, started), (err: unknown) => ended(x, vetted, failed(x, err), err, started));
  }

  /** The exchange is over, answered with `status` (or failed with `error`): its upstream connection kept or closed, then logged. */
  function ended(x: ProxyExchange, vetted: boolean, answered: number, failure: unknown, started: bigint): void {
    const { req, res, conn } = x;
    let status = answered;
    let error = failure;
    watchClose(res, vetted, null);
    if (x.lease) {
      if (x.reusable && error === null) o.group.release(x.lease);
      else x.lease.stream.destroy();
    }
    // A body node's parser refused before the answer began: the client got that refusal (answerClientError), not a 499.
    const refused = bodyRefusal(req);
    if (refused !== undefined) {
      // What the origin answered meanwhile never reached the client: its connection went to the refusal.
      [status, error, x.bytes, x.bodyPath] = [refused.status, refused.error, 0, 'none'];
    }
    // A body cut because the stream's own stall limit reset it is logged as that timeout (h2-front.ts watchStream).
    logExchange(x, status, error === null ? null : cutCause(error, conn, res instanceof Http2ServerResponse ? res.stream : undefined), started);
  }

  function logExchange(x: ProxyExchange, status: number, error: unknown, started: bigint): void {
    const { conn } = x;
    o.stats.body(conn, x.bodyPath, x.bytes);
    if (x.cache) o.stats.cache(x.cache, x.bytes);
    if (!access.enabled) return;
    const t = conn.tls;
    const fields = {
      ...requestFields(x.req, conn, status, x.bytes, started), body: x.bodyPath, upstream: x.upstream, upstreamMs: x.upstreamMs,
      ...(x.cache ? { cache: x.cache } : {}),
      ...(x.cacheDetail !== null ? { cacheDetail: x.cacheDetail } : {}),
      tls: t.version, cipher: t.cipher, ...cryptoSite(t),
      ...(error ? { error: errCode(error), detail: (error as Error).message } : {}),
    };
    const worthALook = error && !(error instanceof UpstreamTruncatedError) && !isClientFault(error) && errCode(error) !== 'ECONNRESET';
    access.write(worthALook ? 'warn' : 'info', fields);
  }

  // RFC 9110 §9.1: a method the origin does not recognise SHOULD get 501. nginx would forward one
  // it does not know; node's parser cannot parse past it, so the proxy answers for the origin.
  const refusals: ClientErrorOptions = {
    unknownMethod: { status: 501 },
    logRefused(conn, refused, status, err) {
      o.stats.body(conn, 'none', 0);
      access.write('info', { ...refusedRequestFields(conn, refused, status, err), upstream: null, upstreamMs: null });
    },
  };
  httpServer.on('clientError', (err: ParseError, socket) => answerClientError(o.log, err, socket, refusals));
  // CONNECT asks for a tunnel to any host (RFC 9110 §9.3.6): a gateway to its upstreams offers none.
  httpServer.on('connect', (req: http.IncomingMessage, socket) => answerConnect(o.log, req, socket as unknown as SecureConnection, s.idleTimeoutMs, 501));
  const upgrading = takeUpgrades(httpServer, { settings: s, group: o.group, forwarder, pipes, stats: o.stats, access, log: o.log });

  // No listen() of its own (connections come from the TLS listener): start the timeout sweeper.
  httpServer.emit('listening');
  const h2 = h2Front({
    log: o.log, handler: (req, res) => handle(req, res),
    malformed: (conn, err) => refusals.logRefused(conn, H2_MALFORMED, 400, err),
    limits: { maxConcurrentStreams: s.http2MaxConcurrentStreams, maxHeaderSize: s.maxHeaderSize, idleTimeoutMs: s.idleTimeoutMs },
  });
  return drainingUpgrades(alpnFront(httpFront(httpServer, proxyLane(s, o.log, handle)), h2), upgrading);

}

/**
 * The lane (h1-lane.ts): plain keep-alive GETs and HEADs without a body are
 * read and answered without node's http.Server, by the same handler (node's
 * server was a sixth of a 1 KiB keep-alive GET's CPU in a profile). A
 * request the pipeline would refuse (requestProblem, more fields than
 * --max-header-count) goes to node's server with its connection, which
 * refuses it as before. With --cache too: the cache writes its answers
 * (stored bodies by sendfile, chunked while a fill is still being stored)
 * through the exchange's response, the lane's as node's (send-stored.ts).
 */
function proxyLane(s: ProxySettings, log: Logger, handle: (req: ExchangeRequest, res: ExchangeResponse, vetted: boolean) => void): Omit<LaneOptions, 'draining' | 'handOver' | 'closeAfterAnswer' | 'left'> {
  return {
    maxHeaderSize: s.maxHeaderSize, idleTimeoutMs: s.idleTimeoutMs, headersTimeoutMs: s.headersTimeoutMs,
    handle: (req, res) => handle(req, res, true),
    takes: (req: LaneRequest) => req.rawHeaders.length / 2 <= s.maxHeaderCount && requestProblem(req.method, req.url, req.rawHeaders) === null,
    silent: (conn: SecureConnection) => closeWaitedForNothing(log, conn),
    // A FIN while the upstream answers is the client leaving: 499, as on node's server (front.ts
    // abortAtFin) and as nginx; an answer from the store is sent whole (h1-lane.ts sendWholeAfterFin).
    abortOnFin: true,
  };
}

/**
 * HTTP Upgrade requests, each run as a tunnel (upgrade.ts); the set holds
 * each until its lines are written.
 */
function takeUpgrades(httpServer: http.Server, o: UpgradeOptions): Set<Promise<void>> {
  const upgrading = new Set<Promise<void>>();
  httpServer.on('upgrade', (req: http.IncomingMessage, socket, head: Buffer) => {
    const u = upgrade(o, req, socket as unknown as SecureConnection, head).finally(() => upgrading.delete(u));
    upgrading.add(u);
  });
  return upgrading;
}

/** `front`, whose drain also waits for the upgrades' lines: drained means every tunnel said how it ended (as tcp's). */
function drainingUpgrades(front: Front, upgrading: Set<Promise<void>>): Front {
  return {
    accept: (conn) => front.accept(conn),
    drain: async () => {
      await front.drain();
      await Promise.all([...upgrading]);
    },
    get connections() {
      return front.connections;
    },
  };
}

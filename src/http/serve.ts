/**
 * `aludel serve`: node's http.Server (llhttp: keep-alive, header limits,
 * timeouts) running on kTLS connections, and node:http2 on those whose ALPN
 * said h2 (h2-front.ts), one static handler for both; file bodies leave by
 * sendfile when the kernel encrypts an HTTP/1.1 connection, by write
 * otherwise (HTTP/2 always: its DATA frames are built by nghttp2). One JSON
 * access-log line per request says the protocol, where the crypto ran and
 * which path the body took.
 */
import http from 'node:http';
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import type { Logger } from '../log/logger.js';
import type { SecureConnection, SecureServer, TlsInfo } from '../tls/types.js';
import type { TrafficStats } from '../metrics/traffic-stats.js';
import type { LaneRequest, LaneResponse } from './h1-lane.js';
import { asH1Response, createStaticHandler, isH2Response, type BodySender, type ServedRequest, type ServedResponse, type StaticOutcome, type StaticResult } from './static-handler.js';
import { ServedRoot } from './served-root.js';
import { AccessLog, requestId, type AccessFields } from '../log/access-log.js';
import { answeredMidBody, beingClosed, closeDetached, httpFront, isMoot, LINGER_MS, queuedTurn, whenAttached, type Front } from './front.js';
import { missingHost, requestProblem, unimplemented } from './request-checks.js';
import { alpnFront, requestConnection } from './alpn-front.js';
import { h2Front } from './h2-front.js';
import { h2HostProblem } from './h2-request.js';
import { sendFileOverH2 } from './h2-body.js';
import { sentWithHead, sentWithHeadNow } from './small-body.js';
import { closingAnswer } from './h1-wire.js';
import { closedForTimeout, cutCause } from './timed-out.js';
import { answerUpgradeAsRequest } from './upgrade-as-request.js';
import { bodyRefusal, parseErrorAnswer, refuseBody, requestLineParts, type ParseError, type RequestLine, type UnknownMethodAnswer } from './parse-error.js';
import { refusedHead } from '../transport/head-line.js';

export { closingAnswer };
import { InvalidRequestError, type NotImplementedRequestError } from '../errors.js';

export interface ServeOptions {
  server: SecureServer;
  root: string;
  log: Logger;
  idleTimeoutMs: number;
  headersTimeoutMs: number;
  maxHeaderSize: number;
  stats: TrafficStats;
  /** Where request lines go; default: the main log. */
  access?: AccessLog;
  /** HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS); default 128. */
  http2MaxConcurrentStreams?: number;
}

/**
 * HTTP/1.1: headers go out through the stream, then the body by the
 * connection's fastest path. HTTP/2: DATA frames from bounded reads (h2-body.ts).
 */
export const connectionBodySender: BodySender = {
  async sendBody(res, fd, offset, length) {
    if (isH2Response(res)) return sendFileOverH2(res, fd, offset, length);
    const h1 = asH1Response(res);
    if (await sentWithHead(h1, fd, offset, length)) return 'write';
    const conn = await whenAttached(h1);
    h1.flushHeaders();
    const path = await conn.sendFile(fd, offset, length);
    h1.end();
    return path;
  },
  sendBodyNow(res, fd, offset, length, head) {
    if (isH2Response(res)) return undefined;
    return sentWithHeadNow(asH1Response(res), fd, offset, length, head) ? 'write' : undefined;
  },
};

function isPeerGone(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'ECONNRESET' || code === 'EPIPE' || code === 'ETIMEDOUT';
}

/** Logs a handshake that failed, at info for resets (house rule), warn otherwise. */
export function logHandshakeFailure(log: Logger, err: Error, conn: Partial<SecureConnection>): void {
  const e = err as Error & { code?: string; opensslErrors?: string[] };
  const fields = { conn: conn.id, peer: conn.remoteAddress, code: e.code, openssl: e.opensslErrors, detail: e.message };
  if (isPeerGone(err)) log.info(fields, 'TLS handshake aborted by peer');
  else log.warn(fields, 'TLS handshake failed');
}

/**
 * Where each direction's record crypto runs: tx/rx as OpenSSL reports it after
 * the handshake (kernel or user), kernelTx/kernelRx as the kernel itself says
 * (sock_diag ULP info: sw, hw, hw-record or none; null when not kTLS or not
 * allowed to ask). In every connection and request log line.
 */
export function cryptoSite(t: TlsInfo): { tx: 'kernel' | 'user'; rx: 'kernel' | 'user'; kernelTx: string | null; kernelRx: string | null } {
  return { tx: t.ktlsTx ? 'kernel' : 'user', rx: t.ktlsRx ? 'kernel' : 'user', kernelTx: t.kernel?.txConf ?? null, kernelRx: t.kernel?.rxConf ?? null };
}

export function logConnection(log: Logger, conn: SecureConnection, handshakeMs: number): void {
  // Below --log-level info pino's info() does nothing, but its fields would still be built, per connection.
  if (!log.isLevelEnabled('info')) return;
  const t = conn.tls;
  log.info(
    {
      conn: conn.id, peer: conn.remoteAddress, tls: t.version, cipher: t.cipher, alpn: t.alpn, sni: t.servername,
      reused: t.reused, ...cryptoSite(t), engine: t.engine,
      kernelCipher: t.kernel?.cipher ?? null,
      handshakeMs: Math.round(handshakeMs * 100) / 100,
    },
    'TLS established',
  );
}

/**
 * The 'error' listener that logs a connection's errors once: resets at info
 * (house rule), anything else at warn. One function per logger, shared by
 * its connections (the emitter calls it with `this` set to the connection):
 * a closure per connection was one more function and context held by each
 * idle one.
 */
export function connectionErrorLogger(log: Logger): (this: SecureConnection, err: Error & { code?: string }) => void {
  return function (this: SecureConnection, err: Error & { code?: string }) {
    if (isPeerGone(err)) log.info({ conn: this.id, code: err.code }, 'connection reset by peer');
    else log.warn({ conn: this.id, code: err.code, detail: err.message }, 'connection error');
  };
}

/** How a front answers the requests node's parser refuses (answerClientError). */
export interface ClientErrorOptions {
  /** Its answer to a method llhttp does not know (parse-error.ts): serve's 405, the proxy's 501. */
  unknownMethod: UnknownMethodAnswer;
  /** Writes the access-log line of such a request, as for any other refused request. */
  logRefused(conn: SecureConnection, refused: RefusedRequest, status: number, err: Error & { code?: string }): void;
}

/**
 * An HTTP/2 request nghttp2 refused as malformed (h2-front.ts): no request
 * line came, so "-" as nginx logs a request it refused before parsing one,
 * with the 400 nginx answers it with (the stream itself was reset, RFC 9113
 * §8.1.1; the line's detail says so).
 */
export const H2_MALFORMED: RefusedRequest = { request: undefined, line: undefined, proto: 'HTTP/2.0' };

/** A request refused at the parse stage, for its access-log line: its request line as far as it came. */
export interface RefusedRequest {
  /** The request line as received (to its first CR or LF, or as far as it came); undefined when unknown. */
  request: string | undefined;
  /** Its parts, when it has a request line's shape. */
  line: RequestLine | undefined;
  /** The protocol when no line says it (an HTTP/2 request has none). */
  proto?: string;
}

/**
 * http.Server's 'clientError': a request that could not be parsed (llhttp's
 * HPE_* codes: bad framing, smuggling attempts, oversized heads, a method it
 * does not know) gets its status (parse-error.ts) and the connection closes;
 * socket errors were already logged once.
 */
export function answerClientError(log: Logger, err: ParseError, socket: Duplex, o: ClientErrorOptions): void {
  const conn = socket as unknown as SecureConnection;
  // http.Server reports both request parse errors and the socket's own errors here; the
  // latter (resets, TLS failures) were already logged once by the connection's 'error' listener.
  const httpError = err.code?.startsWith('HPE_') === true || err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
  if (!httpError) {
    socket.destroy();
    return;
  }
  // Already answered and being closed (a 408, a 400): the client's FIN then ends the head node's
  // parser was still in (HPE_INVALID_EOF_STATE). That is the client leaving, not a second bad
  // request: no line; the lingering close (closeDetached) ends the connection.
  if (beingClosed(conn)) return;
  if (waitedForNothing(err, conn)) {
    closeWaitedForNothing(log, conn);
    return;
  }
  const refusal = parseErrorAnswer(err, conn, o.unknownMethod);
  // A method the front does not serve is the client's choice, not a malformed request: an
  // access-log line, as for a POST to serve, and no main-log line. A malformed one is the
  // client's fault too: info, as nginx logs "client sent invalid request" (and "client timed
  // out") at info in its error_log; its access-log line below is the record of it.
  if (refusal.line === undefined) log.info({ conn: conn.id, code: err.code, detail: err.message, status: refusal.status }, 'bad request');
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const answered = answeredMidBody(conn);
  if (answered !== undefined) {
    // The error is in the body of a request already answered (serve's 405 to a POST, a
    // request-checks 400, node's own 417, an origin that answered early): one
    // response per request, so no second one; the connection closes once that answer is out.
    // node's own answer is queued after the responses owed to earlier requests, and is written
    // (handed to the connection) as the last of them finishes: closeDetached waits for those.
    if (answered === 'by node') closeDetached(conn, LINGER_MS);
    else if (answered.writableFinished) closeDetached(conn, LINGER_MS);
    else answered.once('close', () => (answered.writableFinished ? closeDetached(conn, LINGER_MS) : conn.destroy()));
    return;
  }
  // Bytes after a request with Connection: close are not a request to answer (RFC 9112 §9.6).
  const answer = err.code === 'HPE_CLOSED_CONNECTION' ? undefined : closingAnswer(refusal.status, refusal.fields);
  if (answer !== undefined) {
    const incoming = (conn as { parser?: { incoming?: { complete: boolean } | null } | null }).parser?.incoming;
    // In the body of a request its handler has: that request's own line, with this status.
    if (refusal.line === undefined && incoming != null && !incoming.complete) refuseBody(incoming, refusal.status, err);
    else {
      const refused = refusedRequest(conn, err, refusal.line);
      if (refused !== null) o.logRefused(conn, refused, refusal.status, err);
    }
  }
  closeDetached(conn, LINGER_MS, answer);
}

/**
 * No byte of a request came within --headers-timeout. nginx closes such a
 * connection without a byte and without an access-log line, logging "client
 * timed out ... while waiting for request" at info
 * (ngx_http_wait_request_handler). A 408 head there answered a request nobody
 * sent: a client that opened the connection ahead of use (a pool, a
 * preconnect) would read it as the answer to the request it sends next. A
 * close_notify and FIN only.
 */
export function closeWaitedForNothing(log: Logger, conn: SecureConnection): void {
  log.info({ conn: conn.id, code: 'ERR_HTTP_REQUEST_TIMEOUT' }, 'client timed out before sending a request');
  if (conn.writable) closeDetached(conn, LINGER_MS);
  else conn.destroy();
}

/**
 * Whether `err` is node's headersTimeout on `conn` with not one byte of a
 * request read (refusedHead: nothing came since the handshake). A request
 * begun and not finished in time still gets its 408 (RFC 9110 §15.5.9).
 */
function waitedForNothing(err: ParseError, conn: object): boolean {
  return err.code === 'ERR_HTTP_REQUEST_TIMEOUT' && refusedHead(conn, undefined, 0) === null;
}

/**
 * What the access-log line of a request refused by node's parser in its
 * head says it was (nginx writes one for each, its $request as far as it
 * parsed, or "-"): null for none, a connection on which nothing came
 * (nginx's client_header_timeout on an empty connection closes it without
 * a line).
 */
function refusedRequest(conn: SecureConnection, err: ParseError, line: RequestLine | undefined): RefusedRequest | null {
  if (line !== undefined) return { request: `${line.method} ${line.target}${line.version === undefined ? '' : ` ${line.version}`}`, line };
  const raw = err.rawPacket;
  const head = refusedHead(conn, raw, Math.min(err.bytesParsed ?? raw?.length ?? 0, raw?.length ?? 0));
  // Split into method, url and proto only when the whole line came: the parts of a line cut short
  // (a 414's, or a 408's sent so far) would pass a truncated target off as the request's.
  return head === null ? null : { request: head.request, line: head.ended ? requestLineParts(head.request) : undefined };
}

/**
 * The access-log line of a request refused before node's parser made it a
 * request (a parse error, a head not complete in time, an unknown method):
 * its request line as far as it came (`request`, as nginx's $request, and
 * its parts when it has a request line's shape), no header field. No body
 * was sent: the refusal is a head with Content-Length: 0 (closingAnswer).
 */
export function refusedRequestFields(conn: SecureConnection, refused: RefusedRequest, status: number, err: Error & { code?: string }): AccessFields {
  const t = conn.tls;
  const line = refused.line;
  const detail = err.code === 'HPE_INVALID_METHOD' && (status === 405 || status === 501)
    ? `method ${line?.method.slice(0, 64)} unknown to node's HTTP parser (llhttp): ${err.message}`
    : err.message;
  return {
    id: requestId(), conn: conn.id, client: `${conn.remoteAddress ?? '-'}:${conn.remotePort ?? 0}`,
    proto: line?.version ?? refused.proto, method: line?.method, url: line?.target, request: refused.request, host: undefined, userAgent: undefined, referer: undefined,
    status, bytes: 0, ms: 0, body: 'none', tls: t.version, cipher: t.cipher, ...cryptoSite(t),
    error: err.code ?? 'ERR_UNKNOWN', detail,
  };
}

/**
 * CONNECT (RFC 9110 §9.3.6) asks for a tunnel, which Aludel does not offer:
 * node hands such a socket over detached ('connect'), so it is answered and
 * closed here (with no listener node would reset it without a word).
 */
export function answerConnect(log: Logger, req: http.IncomingMessage, conn: SecureConnection, lingerMs: number, status: 405 | 501, allow?: string): void {
  log.warn({ conn: conn.id, method: req.method, url: req.url, status }, 'CONNECT refused');
  closeDetached(conn, lingerMs, closingAnswer(status, allow ? ['Allow', allow] : []));
}

/**
 * The wiring every listener shares: each handshake is counted and logged once
 * (failures at info for resets, warn otherwise), each connection's errors are
 * logged once, then the connection goes to `use`.
 */
export function onSecureConnections(server: SecureServer, log: Logger, stats: TrafficStats, use: (conn: SecureConnection) => void): void {
  const logErrors = connectionErrorLogger(log);
  server.on('secureConnection', (conn: SecureConnection, handshakeMs: number) => {
    stats.handshake(conn, handshakeMs);
    logConnection(log, conn, handshakeMs);
    conn.on('error', logErrors);
    use(conn);
  });
  server.on('tlsClientError', (err: Error, conn: SecureConnection) => {
    stats.handshakeFailed(err);
    logHandshakeFailure(log, err, conn);
  });
}

/**
 * A request RFC 9112 says to refuse (request-checks.ts): 400, or the 501 or
 * 505 of one it does not implement (as the proxy answers them); an HTTP/1.1
 * connection closes (an HTTP/2 stream ends alone).
 */
function refuse(req: ServedRequest, res: ServedResponse, problem: string | NotImplementedRequestError): { status: number; bytes: number; bodyPath: 'none'; error: Error } {
  const status = typeof problem === 'string' ? 400 : problem.status;
  const text = `${http.STATUS_CODES[status]}\n`;
  if (res instanceof http.ServerResponse) res.shouldKeepAlive = false;
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/plain');
  res.setHeader('Content-Length', text.length);
  const head = req.method === 'HEAD';
  if (head) res.end();
  else res.end(text);
  return { status, bytes: head ? 0 : text.length, bodyPath: 'none', error: typeof problem === 'string' ? new InvalidRequestError(problem) : problem };
}

/** The access-log fields every request line has (serve and proxy add theirs). */
export function requestFields(req: ServedRequest, conn: SecureConnection, status: number, bytes: number, started: bigint): AccessFields {
  const h = req.headers;
  return {
    id: requestId(), conn: conn.id, client: `${conn.remoteAddress ?? '-'}:${conn.remotePort ?? 0}`,
    // As nginx's $server_protocol: HTTP/1.0, HTTP/1.1, HTTP/2.0 (node's httpVersion is "2.0" for HTTP/2).
    proto: `HTTP/${req.httpVersion}`,
    // HTTP/2 carries the host in :authority (RFC 9113 §8.3.1), a Host field only from HTTP/1.1 gateways.
    method: req.method, url: req.url, host: h.host ?? h[':authority'] as string | undefined, userAgent: h['user-agent'], referer: h.referer,
    status, bytes, ms: Math.round(Number(process.hrtime.bigint() - started) / 1e4) / 100,
  };
}

/**
 * How often node's http.Server looks for requests past headersTimeout (its
 * connectionsCheckingInterval, 30 s by default, so a 2 s --headers-timeout
 * answered 408 after up to 32 s): a quarter of the timeout, within 250 ms..1 s.
 */
export function checkingInterval(headersTimeoutMs: number): number {
  return Math.min(1000, Math.max(250, Math.floor(headersTimeoutMs / 4)));
}

/** The static-file front, and what ends its hold on the root once it is drained (a reload's retired generation). */
export interface ServeFront extends Front {
  retire(): void;
}

/** `serve` on a listener: each finished handshake goes to a new front. */
export async function startServe(o: ServeOptions): Promise<ServeFront> {
  const front = await createServe(o);
  onSecureConnections(o.server, o.log, o.stats, (conn) => front.accept(conn));
  return front;
}

/**
 * The static-file front: node's http.Server over HTTP/1.1 connections and
 * node:http2 over h2 ones, by ALPN, with one request handler for both.
 */
export async function createServe(o: Omit<ServeOptions, 'server'>): Promise<ServeFront> {
  // The root as it resolves now, asked again at most once a second (a deploy's symlink flip).
  const served = await ServedRoot.open(o.root, (root) => createStaticHandler({ ...root, sender: connectionBodySender }), o.log);
  const access = o.access ?? new AccessLog({ file: null, format: 'json', log: o.log });
  /** Counts the response and writes its access-log line. */
  const finished = (req: ServedRequest, conn: SecureConnection, started: bigint, settled: StaticOutcome): void => {
    // A body refused before the answer began: the client got that refusal (answerClientError).
    const refused = bodyRefusal(req);
    const given: StaticOutcome = refused === undefined ? settled : { status: refused.status, bytes: 0, bodyPath: 'none', error: refused.error };
    // A body cut because our own timeout closed its connection or stream is logged as that timeout.
    const out = given.error === undefined ? given : { ...given, error: cutCause(given.error, conn, req instanceof http2.Http2ServerRequest ? req.stream : undefined) };
    o.stats.body(conn, out.bodyPath, out.bytes);
    if (!access.enabled) return;
    const t = conn.tls;
    access.write('info', {
      ...requestFields(req, conn, out.status, out.bytes, started), body: out.bodyPath,
      tls: t.version, cipher: t.cipher, ...cryptoSite(t),
      ...(out.error ? { error: (out.error as { code?: string }).code ?? 'ERR_UNKNOWN', detail: (out.error as Error).message } : {}),
    });
  };
  /** Answers a request (its refusal when `problem` says what is wrong with it), counts and logs it. */
  const answer = (req: ServedRequest, res: ServedResponse, problem: string | NotImplementedRequestError | null): void => {
    // Only the access log reads the start time.
    const started = access.enabled ? process.hrtime.bigint() : 0n;
    const conn = requestConnection(req);
    const out = problem !== null ? refuse(req, res, problem) : inTurn(req, res);
    // A request answered without waiting (most GETs of small cached files) is counted at once,
    // without a promise: the handler settles synchronously when it can (static-handler.ts).
    if (!(out instanceof Promise)) {
      finished(req, conn, started, out);
      return;
    }
    out.then(
      (settled) => finished(req, conn, started, settled),
      (err: unknown) => o.log.error({ conn: conn.id, err }, 'request handler failed'),
    );
  };
  /**
   * The file is opened in the request's turn (front.ts queuedTurn). A client that left before it
   * came gets nothing opened for it: logged 499, nginx's code for a client that closed first (it
   * was logged 500 when the handler opened the file at once and then found the connection gone).
   */
  const inTurn = (req: ServedRequest, res: ServedResponse): StaticResult => {
    const turn = queuedTurn(res);
    if (turn === null) return served.current()(req, res);
    return turn.then(
      () => served.current()(req, res),
      (error: Error): StaticOutcome => ({ status: 499, bytes: 0, bodyPath: 'none', error }),
    );
  };
  const serveRequest = (req: ServedRequest, res: ServedResponse): void => {
    if (isMoot(req)) return;
    // HTTP/2 has neither transfer codings nor a version in a request line (RFC 9113 §8.2.2).
    answer(req, res, requestProblem(req.method ?? 'GET', req.url ?? '/', req.rawHeaders)
      ?? (req instanceof http2.Http2ServerRequest ? h2HostProblem(req.rawHeaders) : missingHost(req.httpVersionMajor, req.httpVersionMinor, req.rawHeaders) ?? unimplemented(req.httpVersionMajor, req.rawHeaders)));
  };
  // A lane request was checked once, by the lane's takes() (requestProblem), and the lane takes
  // only HTTP/1.1 heads with one Host and no transfer coding (h1-lane.ts simpleHead): nothing
  // missingHost or unimplemented would refuse. None is moot: only node's server queues
  // requests behind a closing answer (front.ts closingAhead).
  const laneRequest = (req: LaneRequest, res: LaneResponse): void => answer(req, res, null);
  const httpServer = http.createServer(
    {
      maxHeaderSize: o.maxHeaderSize, headersTimeout: o.headersTimeoutMs, requestTimeout: 0, keepAliveTimeout: o.idleTimeoutMs, noDelay: true,
      connectionsCheckingInterval: checkingInterval(o.headersTimeoutMs),
      // A missing Host is refused by serveRequest (missingHost), with its access-log line.
      requireHostHeader: false,
    },
    serveRequest,
  );
  httpServer.timeout = o.idleTimeoutMs;
  // The requests a client sent before its FIN are answered, then the connection ends, as nginx
  // answers the pipelined requests it read before a FIN and as the lane does (front.ts answersAfterFin).
  (httpServer as http.Server & { httpAllowHalfOpen?: boolean }).httpAllowHalfOpen = true;
  // node's own answer to the socket timeout is destroy(); with a listener it leaves that to us (_http_server.js socketOnTimeout).
  httpServer.on('timeout', (socket: Duplex) => {
    closedForTimeout(socket, o.idleTimeoutMs);
    socket.destroy();
  });
  // §15.5.6: a 405 MUST carry Allow, the methods the static handler answers.
  const refusals: ClientErrorOptions = {
    unknownMethod: { status: 405, allow: 'GET, HEAD' },
    logRefused(conn, refused, status, err) {
      o.stats.body(conn, 'none', 0);
      access.write('info', refusedRequestFields(conn, refused, status, err));
    },
  };
  httpServer.on('clientError', (err: ParseError, socket: Duplex) => answerClientError(o.log, err, socket, refusals));
  httpServer.on('connect', (req: http.IncomingMessage, socket: Duplex) => answerConnect(o.log, req, socket as unknown as SecureConnection, o.idleTimeoutMs, 405, 'GET, HEAD'));
  // http.Server starts its headersTimeout/requestTimeout sweeper on 'listening'; it never
  // listens itself here (connections come from the TLS listener), so start it explicitly.
  httpServer.emit('listening');
  const h2 = h2Front({
    log: o.log, handler: serveRequest,
    malformed: (conn, err) => refusals.logRefused(conn, H2_MALFORMED, 400, err),
    limits: { maxConcurrentStreams: o.http2MaxConcurrentStreams ?? 128, maxHeaderSize: o.maxHeaderSize, idleTimeoutMs: o.idleTimeoutMs },
  });
  // Retired once drained (serving.ts): the root's watch entry and hold go with it (served-root.ts).
  const lane = {
    maxHeaderSize: o.maxHeaderSize, idleTimeoutMs: o.idleTimeoutMs, handle: laneRequest,
    // A request to refuse goes to node's server, which answers and closes as it does for all others.
    takes: (req: LaneRequest) => requestProblem(req.method, req.url, req.rawHeaders) === null,
    // Nothing of a response is looked at after its end() but writableFinished (small-body.ts) and
    // the outcome the handler returns (answer, finished): it may finish within end().
    endsInTurn: true,
    headersTimeoutMs: o.headersTimeoutMs,
    silent: (conn: SecureConnection) => closeWaitedForNothing(o.log, conn),
  };
  const front = httpFront(httpServer, lane);
  // Without this listener node answers an Upgrade request but drops what was pipelined behind it (upgrade-as-request.ts).
  httpServer.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) =>
    answerUpgradeAsRequest(req, socket as unknown as SecureConnection, head, { lingerMs: LINGER_MS, handle: serveRequest, draining: front.draining, giveBack: front.giveBack }));
  return Object.assign(alpnFront(front, h2), { retire: () => served.close() });
}

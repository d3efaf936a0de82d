/**
 * A front: what serves a listener's finished TLS connections (static files,
 * the HTTP proxy, or tunnels). The listener hands each connection to the
 * current front; a reload (SIGHUP) makes a new front from the new settings
 * and retires the old one, and a graceful stop (SIGTERM) drains the last:
 * requests in flight finish, idle keep-alive connections are closed, as
 * nginx's old workers do after a reload or a graceful shutdown.
 */
import http from 'node:http';
import type { SecureConnection } from '../tls/types.js';
import { connectionOptions } from './forward-headers.js';
import { trackHeads } from '../transport/head-line.js';
import { atFinCheck, LaneConnection, sentWholeAfterFin, type H1Response, type LaneOptions } from './h1-lane.js';

export interface Front {
  /** Takes a connection whose handshake is done. */
  accept(conn: SecureConnection): void;
  /**
   * Stops keep-alive: connections idle now are closed, and every response
   * from now on says Connection: close and closes its connection after it.
   * Resolves once this front holds no connection.
   */
  drain(): Promise<void>;
  /** Connections this front holds now. */
  readonly connections: number;
}

/**
 * What a connection's requests left to know: `latest`, the response to the
 * last request node's parser handed over, and `responses`, those not yet
 * closed, in request order. Pipelined responses go out in that order (RFC
 * 9112 §9.3.2), so when a later request cannot be parsed, its 400 must wait
 * for the responses owed to the complete requests before it
 * (answerClientError).
 *
 * A closed response is dropped by forgetClosed, one function shared by
 * every response (a per-request closure and once() wrapper were among
 * serve's costs in a profile of 1 KiB keep-alive GETs), and by the next
 * request (track). Kept until then, the last response and its request
 * (node's own references to them are gone by then: resOnFinish clears
 * parser.incoming and state.incoming, _http_server.js) cost each idle
 * keep-alive connection about 2 KiB of V8 heap: the ServerResponse, the
 * IncomingMessage with its header strings and ReadableState, and node's
 * resOnFinish bound to them.
 */
interface ConnRequests {
  /** null once that response closed: a request node's parser is still reading then came later, or was answered already. */
  latest: http.ServerResponse | null;
  responses: http.ServerResponse[];
}

const requestsOn = new WeakMap<object, ConnRequests>();

/** The last response owed to a complete earlier request on `conn`, if one is not finished yet. */
export function owedResponse(conn: object): http.ServerResponse | undefined {
  const list = requestsOn.get(conn)?.responses;
  if (list === undefined) return undefined;
  let owed: http.ServerResponse | undefined;
  for (const res of list) {
    if (res.closed) continue;
    // A request whose body is still coming is the one that failed, not one owed an answer.
    if (res.req.complete && !res.writableFinished) owed = res;
    // node ends the connection after a response that closes it (Connection: close, HTTP/1.0,
    // a refusal): the ones queued behind it are never written, so waiting for them would wait
    // forever (a refused pipelined request, then a GET, then a CONNECT held the connection and
    // the GET's open file until the process ended).
    if (closesConnection(res)) break;
  }
  return owed;
}

/**
 * Resolves once the responses owed to earlier pipelined requests on `conn`
 * are out (true), or with false when one of them failed (the connection is
 * then going away). For writers that bypass node's queue: an upgrade's answer.
 */
export function owedSent(conn: SecureConnection): Promise<boolean> {
  const owed = owedResponse(conn);
  if (owed === undefined) return Promise.resolve(true);
  if (conn.destroyed) return Promise.resolve(false);
  // A response still queued gets no 'close' of its own when the connection goes first (node only
  // closes the one attached): without watching the connection, an upgrade waiting here held its
  // upstream connection for good (the long fuzz run's proxy descriptor leak).
  return new Promise((resolve) => {
    const done = (): void => {
      owed.off('close', done);
      conn.off('close', done);
      resolve(owed.writableFinished);
    };
    owed.once('close', done);
    conn.once('close', done);
  });
}

/**
 * The response to the request whose body the parser is still reading on
 * `conn`, if the server has already begun it (status line generated): a
 * parse error found in that body then belongs to an answered request, and a
 * second answer (a 400) would be read by the client as the response to its
 * next request.
 */
export function answeredMidBody(conn: object): http.ServerResponse | 'by node' | undefined {
  // node's parser state: the request whose head it parsed last (still there after a parse error).
  const incoming = (conn as { parser?: { incoming?: http.IncomingMessage | null } | null }).parser?.incoming;
  if (incoming == null || incoming.complete) return undefined;
  const res = requestsOn.get(conn)?.latest;
  // A parsed head that never became a 'request' node answered itself: 417 for an unknown Expect.
  // A closed (forgotten) response gets the same answer, as it would as a finished one: its
  // connection is closed with nothing more written (answerClientError).
  if (res == null || res.req !== incoming) return 'by node';
  return res.headersSent ? res : undefined;
}

/** Requests parsed behind a response that closes the connection (closingAhead). */
const moot = new WeakSet<object>();

/**
 * Whether `req` came behind a response that closes its connection (a
 * refusal, Connection: close, HTTP/1.0): llhttp stops parsing after a
 * request with "Connection: close" in HTTP/1.1, but not after one closed
 * by the server's decision or an HTTP/1.0 "keep-alive, close". Its handler
 * must do nothing: no upstream request, no file opened.
 */
export function isMoot(req: object): boolean {
  return moot.has(req);
}

function closingAhead(conn: object): boolean {
  const list = requestsOn.get(conn)?.responses;
  if (list === undefined) return false;
  for (const res of list) if (!res.closed && closesConnection(res)) return true;
  return false;
}

/** Whether node ends the connection after `res`: keep-alive off, or a Connection: close head (node's _last). */
function closesConnection(res: http.ServerResponse): boolean {
  return !res.shouldKeepAlive || (res as unknown as { _last?: boolean })._last === true;
}

function track(conn: object, res: http.ServerResponse): void {
  const known = requestsOn.get(conn);
  if (known === undefined) {
    requestsOn.set(conn, { latest: res, responses: [res] });
  } else {
    known.latest = res;
    // Keep-alive without pipelining: the one before is gone already (forgetClosed).
    dropClosed(known.responses);
    known.responses.push(res);
  }
  res.on('close', forgetClosed);
}

function dropClosed(list: http.ServerResponse[]): void {
  let kept = 0;
  for (let i = 0; i < list.length; i++) if (!list[i]!.closed) list[kept++] = list[i]!;
  list.length = kept;
}

/**
 * A tracked response's 'close' (this: the response): node emits it once the
 * response is finished and detached, or its connection gone
 * (_http_server.js emitCloseNT, onServerResponseClose), with res.closed
 * already set. The connection's entry stays, emptied, for its next request.
 */
function forgetClosed(this: http.ServerResponse): void {
  const known = requestsOn.get(this.req.socket);
  if (known === undefined) return;
  if (known.latest === this) known.latest = null;
  dropClosed(known.responses);
}

/**
 * Resolves with the connection once `res` is the response being written on
 * it: node queues the responses to pipelined requests, and a response
 * writes into its connection (sendfile, splice) only when its turn has come;
 * before that, res.socket is null. Rejects if the response is closed first.
 */
export function whenAttached(res: H1Response): Promise<SecureConnection> {
  if (res.socket) return Promise.resolve(res.socket as unknown as SecureConnection);
  // A queued response gets no 'close' of its own when the connection goes: watch the connection.
  const conn = res.req.socket;
  return new Promise((resolve, reject) => {
    const onSocket = (socket: unknown): void => { done(); resolve(socket as SecureConnection); };
    const onClose = (): void => { done(); reject(Object.assign(new Error('client connection closed'), { code: 'ECONNRESET' })); };
    const done = (): void => { res.off('socket', onSocket); res.off('close', onClose); conn.off('close', onClose); };
    res.once('socket', onSocket);
    res.once('close', onClose);
    if (conn.destroyed) onClose();
    else conn.once('close', onClose);
  });
}

/**
 * Null when the request answered by `res` may be worked on now; else a
 * promise of its turn (whenAttached), which rejects if its connection closes
 * first. node's server parses pipelined requests and emits each at once,
 * while the responses go out in request order (RFC 9112 §9.3.2). Worked on at
 * once, each held what it took until every answer ahead of it was out: one
 * client connection pipelining 3,000 requests behind a large answer it did
 * not read held 3,000 upstream connections in the proxy, and 500 requests
 * 500 open files in serve. nginx reads a pipelined request only once the one
 * before it is finalized (ngx_http_set_keepalive): the proxy goes upstream,
 * and serve opens the file, in the request's turn. The lane reads one
 * request at a time, and an HTTP/2 stream has no turn to wait for (RFC 9113
 * §5): both go on at once.
 */
export function queuedTurn(res: object): Promise<SecureConnection> | null {
  return res instanceof http.ServerResponse && res.socket === null ? whenAttached(res) : null;
}

/** How often a draining front looks again for connections that became idle. */
const DRAIN_TICK_MS = 100;

/** The connections a front holds, so that it knows when it is empty. */
export class ConnectionSet {
  private readonly live = new Set<SecureConnection>();
  /**
   * Each connection's 'close' listener, one function for the whole set (the
   * emitter calls it with `this` set to the connection, as EventEmitter
   * does): a once() with a closure of its own was a wrapper, its state, a
   * bound function and a context held by every idle connection.
   */
  private readonly forget: (this: SecureConnection) => void;

  constructor() {
    const live = this.live;
    this.forget = function (this: SecureConnection) { live.delete(this); };
  }

  add(conn: SecureConnection): void {
    this.live.add(conn);
    conn.on('close', this.forget);
  }

  get size(): number {
    return this.live.size;
  }

  /** Resolves once empty, calling `sweep` now and every tick until then. */
  emptied(sweep: () => void = () => undefined): Promise<void> {
    return new Promise((resolve) => {
      const tick = (): boolean => {
        sweep();
        if (this.live.size > 0) return false;
        resolve();
        return true;
      };
      if (tick()) return;
      const timer = setInterval(() => { if (tick()) clearInterval(timer); }, DRAIN_TICK_MS);
    });
  }
}

/** httpFront's front, with what an Upgrade answered as a request needs (upgrade-as-request.ts). */
export interface HttpFront extends Front {
  /** drain() was called: responses say Connection: close. */
  draining(): boolean;
  /** Gives a connection node's server handed over ('upgrade') back to it, with the bytes read after that request. */
  giveBack(conn: SecureConnection, rest: Buffer): void;
}

/** A front on node's http.Server (serve, proxy). */
export function httpFront(httpServer: http.Server, lane?: Omit<LaneOptions, 'draining' | 'handOver' | 'closeAfterAnswer' | 'left'>): HttpFront {
  const conns = new ConnectionSet();
  const lanes = new Set<LaneConnection>();
  let draining = false;
  const halfOpen = answersAfterFin(httpServer);
  // The lane's abortOnFin on node's server too (abortAtFin); node's own abort at a FIN needs
  // httpAllowHalfOpen off, and then aborts every request, a hit too.
  const finAborts = halfOpen && lane?.abortOnFin === true;
  // One options object for every connection of the front, made at the first. A copy per
  // connection by spread gave each its own hidden class: V8 (11.3, node 20) makes a new map
  // for every object a warmed-up object spread copies and then adds to, so the lane's reads
  // of its options (maxHeaderSize, takes, handle, ...) saw a new map per connection and went
  // megamorphic, a stub-cache probe each per request (docs/benchmarks.md).
  let laneOptions: LaneOptions | undefined;
  const attachNode = (conn: SecureConnection, rest: Buffer | null, firstDeadline: number | null = null, ended = false): void => {
    (conn as SecureConnection & { destroySoon?: () => void }).destroySoon = destroySoon;
    (conn as SecureConnection & { allowHalfOpen: boolean }).allowHalfOpen = halfOpen;
    if (ended && !halfOpen) {
      // node's server, which ends a connection at its client's FIN, would answer nothing more.
      endedByNode(conn);
      return;
    }
    const ownEnd = ended ? conn.listeners('end') : [];
    httpServer.emit('connection', conn);
    if (finAborts) abortsAtFin(conn);
    trackHeads(conn);
    if (ended) {
      feedAfterFin(conn, rest, ownEnd);
      return;
    }
    if (rest !== null && rest.length > 0) conn.unshift(rest);
    if (firstDeadline !== null) firstHeadDue(httpServer, conn, firstDeadline);
  };
  // Before the handler writes its head: a request that arrives while draining gets
  // Connection: close (node writes it when shouldKeepAlive is false, RFC 9112 §9.6).
  httpServer.prependListener('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    // A request parsed behind one whose response closes the connection is never answered (node
    // writes nothing after it): RFC 9112 §9.6 says it must not be processed either.
    if (closingAhead(req.socket)) moot.add(req);
    track(req.socket, res);
    if (draining) res.shouldKeepAlive = false;
    // "close" among the Connection options ends the connection after this response, whatever
    // else is listed (RFC 9112 §9.6). llhttp obeys it for HTTP/1.1 only: an HTTP/1.0 request
    // with "Connection: keep-alive, close" was kept alive.
    else if (req.httpVersionMinor === 0 && res.shouldKeepAlive && connectionOptions(req.rawHeaders).has('close')) res.shouldKeepAlive = false;
  });
  // Expect: 100-continue (RFC 9110 §10.1.1). node answers it the moment the head is parsed, even
  // for a pipelined request whose response is still queued: the interim is buffered, and the
  // final head, once written, is put before it (node unshifts a head in front of buffered
  // output), so "100 Continue" landed between a final head and its body. It goes out here
  // when the response's turn comes, and only if no final head exists by then (a final
  // response makes it needless, §10.1.1).
  httpServer.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (res.socket) res.writeContinue();
    else res.once('socket', () => { if (!res.headersSent) res.writeContinue(); });
    httpServer.emit('request', req, res);
  });
  return {
    accept(conn) {
      conns.add(conn);
      if (lane !== undefined && !draining) {
        laneOptions ??= { ...lane, draining: () => draining, handOver: attachNode, closeAfterAnswer: endedByNode, left: (l) => lanes.delete(l) };
        lanes.add(new LaneConnection(conn, laneOptions));
        return;
      }
      // node's http.Server ends a connection after a response that closes it (Connection: close,
      // HTTP/1.0, a refusal) with socket.destroySoon() where the socket has one, else end(). With
      // end() alone nothing read on after our FIN: the client's FIN, behind pipelined requests
      // the parser had stopped on, went unread and the connection sat in CLOSE-WAIT until the
      // idle timeout (the fuzz run's slow descriptor leak). It closes as a refused request does.
      (conn as SecureConnection & { destroySoon?: () => void }).destroySoon = destroySoon;
      if (halfOpen) (conn as SecureConnection & { allowHalfOpen: boolean }).allowHalfOpen = true;
      httpServer.emit('connection', conn);
      if (finAborts) abortsAtFin(conn);
      // After node's own 'data' listener: where its heads begin and their request lines, for the
      // access-log line of one refused and the 414 or 431 of one over the limit (transport/head-line.ts).
      trackHeads(conn);
    },
    async drain() {
      draining = true;
      await conns.emptied(() => {
        httpServer.closeIdleConnections();
        for (const l of lanes) l.closeIfIdle();
      });
      // Stops node's header-timeout sweeper (it never listened: close() then only reports that).
      httpServer.close(() => undefined);
    },
    get connections() {
      return conns.size;
    },
    draining: () => draining,
    giveBack: (conn, rest) => {
      attachNode(conn, rest);
      // node's connection listener adds its 'resume' and 'pause' listeners (onSocketResume,
      // onSocketPause) again, and its 'upgrade' hand-over had left the first ones on: one more of
      // each per request (MaxListenersExceededWarning after 10 on one connection). Calling one
      // twice does what calling it once does; the repeats go.
      for (const event of ['resume', 'pause'] as const) {
        const seen = new Set<unknown>();
        for (const fn of conn.listeners(event) as Array<(...args: unknown[]) => void>) {
          if (seen.has(fn)) conn.removeListener(event, fn);
          else seen.add(fn);
        }
      }
    },
  };
}

/**
 * Whether `httpServer` answers the requests a client sent before its FIN (a
 * half-close, shutdown(SHUT_WR)) and then ends the connection, as nginx
 * answers the pipelined requests it read before a FIN (serve sets it: node's
 * undocumented http.Server.httpAllowHalfOpen, read by its socketOnEnd, which
 * marks the last response queued to end the connection, res._last). Without
 * it node aborts the requests not yet answered and ends the connection at the
 * FIN. The proxy sets it too, and aborts only what waits on its upstream
 * (abortAtFin), as nginx's proxy ends a request whose client closed
 * (ngx_http_upstream_check_broken_connection); an answer from the store goes
 * on whole (h1-lane.ts sendWholeAfterFin).
 */
function answersAfterFin(httpServer: http.Server): boolean {
  return (httpServer as http.Server & { httpAllowHalfOpen?: boolean }).httpAllowHalfOpen === true;
}

/**
 * The client's FIN on a connection of node's server with httpAllowHalfOpen (a
 * front whose lane has abortOnFin: the proxy): node has marked the last
 * response to end the connection (socketOnEnd). Its responses go out in
 * request order (RFC 9112 §9.3.2): those sent whole (h1-lane.ts
 * sendWholeAfterFin: answers from the store) or already all written go on;
 * the first one that waits on its upstream is aborted once those ahead of it
 * are out, as node's server without httpAllowHalfOpen aborts it, and nginx
 * (ngx_http_upstream_check_broken_connection, 499): the connection is
 * destroyed. Destroyed at the FIN, it cut a hit pipelined ahead of it.
 * After node's own 'end' listener, once per connection (a connection given
 * back after an Upgrade is attached again).
 */
function abortsAtFin(conn: SecureConnection): void {
  if (!conn.listeners('end').includes(abortAtFin)) conn.on('end', abortAtFin);
  atFinCheck(conn, () => settleAtFin(conn));
}

function abortAtFin(this: SecureConnection): void {
  settleAtFin(this);
}

/** Responses whose 'finish' settleAtFin waits for (one listener each). */
const awaitedAtFin = new WeakSet<http.ServerResponse>();

/** abortsAtFin's check, at the FIN and again as each response let past it is out (or one is no longer sent whole). */
function settleAtFin(conn: SecureConnection): void {
  const list = requestsOn.get(conn)?.responses;
  if (list === undefined || conn.destroyed) return;
  for (const res of list) {
    if (res.closed || res.writableFinished) continue;
    if (!sentWholeAfterFin(res) && !res.writableEnded) {
      conn.destroy();
      return;
    }
    // In flight or queued, sent whole: the ones behind it are looked at once it is out.
    if (!awaitedAtFin.has(res)) {
      awaitedAtFin.add(res);
      res.once('finish', () => settleAtFin(conn));
    }
    return;
  }
}

/**
 * Gives node's server, which just took `conn`, the bytes the lane read
 * before the client's FIN and then the FIN itself. The stream has ended, so
 * `rest` cannot be unshifted (ERR_STREAM_UNSHIFT_AFTER_END_EVENT), and its
 * 'end' is not emitted again: node's own listeners, those its 'connection'
 * added (`ownEnd` were there before), are called with them as a read would.
 */
function feedAfterFin(conn: SecureConnection, rest: Buffer | null, ownEnd: Function[]): void {
  const nodeEnd = conn.listeners('end').filter((fn) => !ownEnd.includes(fn));
  // node's socketOnData and head-line.ts's trackHead: the lane's own listener is gone.
  if (rest !== null && rest.length > 0) conn.emit('data', rest);
  for (const fn of nodeEnd) (fn as (this: SecureConnection) => void).call(conn);
}

/**
 * A first request whose head began in the lane and went to node's server
 * unfinished: node's headersTimeout counts from when it took the connection,
 * so a client that waited before its first byte would get that long again.
 * At the time the head was due from the connection's start, if node has no
 * request on it yet, it gets what node's own timeout gives it: a
 * 'clientError' ERR_HTTP_REQUEST_TIMEOUT (its 408 and access-log line).
 */
function firstHeadDue(httpServer: http.Server, conn: SecureConnection, due: number): void {
  const timer = setTimeout(() => {
    if (conn.destroyed || requestsOn.has(conn) || beingClosed(conn)) return;
    httpServer.emit('clientError', Object.assign(new Error('Request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), conn);
  }, Math.max(0, due - performance.now()));
  timer.unref();
  conn.once('close', () => clearTimeout(timer));
}

/**
 * How long a connection being closed after an error answer waits for more
 * of its client's bytes (nginx's lingering_timeout): each read starts it
 * again, up to LINGER_TOTAL_MS in all.
 */
export const LINGER_MS = 5_000;

/** The longest a lingering close lasts while its client keeps sending (nginx's lingering_time). */
const LINGER_TOTAL_MS = 30_000;

/** Connections being closed, each with the function that starts its lingering close (once). */
const closing = new WeakMap<SecureConnection, (withAnswer: boolean) => void>();

/** How long closeDetached holds a connection whose client already closed its side, for the answer to go out. */
const FLUSH_AFTER_FIN_MS = 1_000;

/**
 * A socket the HTTP server handed over ('upgrade', 'connect') or gave up on
 * ('clientError') has no other owner: end it (with `last`, an answer), then
 * linger as nginx does (lingering_close): what the client still sends is
 * read and dropped until it closes, or until it has sent nothing for
 * lingerMs (lingering_timeout), LINGER_TOTAL_MS at most (lingering_time).
 * Closing at once with unread bytes queued makes the kernel send a RST
 * (RFC 9293 §3.10.7.4), which can destroy the answer before the client
 * reads it: a client still uploading a refused body (a 413 on a slow link)
 * would lose its answer once the wait ran out while it still wrote. (Ending
 * alone, with nothing reading, left one descriptor per refused upgrade.)
 *
 * Responses still owed to earlier pipelined requests go first (RFC 9112
 * §9.3.2), whoever closes: a refused Upgrade or CONNECT, or a parse error.
 * If one of them fails, the connection is destroyed.
 */
export function closeDetached(conn: SecureConnection, lingerMs: number, last?: Buffer): void {
  if (closing.has(conn)) return;
  let started = false;
  let timer: NodeJS.Timeout | undefined;
  const start = (withAnswer: boolean): void => {
    if (started) return;
    started = true;
    // The client's FIN already came (a truncated request ends in HPE_INVALID_EOF_STATE): no input is
    // left to linger for; the answer gets a moment to flush (a write parked after the peer's FIN is
    // never resumed by the TLS layer today, so 'finish' alone would not do).
    timer = lingerTimer(conn, conn.readableEnded ? Math.min(lingerMs, FLUSH_AFTER_FIN_MS) : lingerMs);
    const total = lingerTimer(conn, Math.max(lingerMs, LINGER_TOTAL_MS));
    conn.once('close', () => { clearTimeout(timer); clearTimeout(total); });
    // Destroyed once both sides are done: the client's FIN can come before our answer is out.
    const destroyWhenDone = (): void => { if (conn.readableEnded && conn.writableFinished) conn.destroy(); };
    conn.once('finish', destroyWhenDone);
    conn.once('end', () => {
      destroyWhenDone();
      // A FIN read before the linger began, on a handed-over connection (paused: its end is
      // only seen once resumed here), or one that came meanwhile: the answer gets the same
      // moment to flush as above, not the whole linger (an upgrade abandoned by its client
      // held its descriptor for --idle-timeout).
      if (conn.destroyed || lingerMs <= FLUSH_AFTER_FIN_MS) return;
      clearTimeout(timer);
      timer = lingerTimer(conn, FLUSH_AFTER_FIN_MS);
    });
    if (withAnswer && last !== undefined) conn.end(last);
    else conn.end();
  };
  closing.set(conn, start);
  // node's parser may still be attached after a parse error: nothing more goes to it. Each read
  // of the client's bytes, once the linger has begun, gives it lingerMs again (lingering_timeout).
  conn.removeAllListeners('data');
  conn.on('data', () => timer?.refresh());
  conn.resume();
  const owed = owedResponse(conn);
  if (owed === undefined) start(true);
  else owed.once('close', () => (owed.writableFinished ? start(true) : conn.destroy()));
}

/** Whether closeDetached has taken `conn`: it is being closed, its answer (if any) given. */
export function beingClosed(conn: SecureConnection): boolean {
  return closing.has(conn);
}

/** Destroys `conn` after `ms` unless cleared first; holds no event loop open. */
function lingerTimer(conn: SecureConnection, ms: number): NodeJS.Timeout {
  const timer = setTimeout(() => conn.destroy(), ms);
  timer.unref();
  return timer;
}

/** The destroySoon() of every connection: node calls it as a method (socket.destroySoon()), so `this` is the connection. */
function destroySoon(this: SecureConnection): void {
  endedByNode(this);
}

/**
 * node ended the connection after a response that closes it (its
 * destroySoon() call), or the lane did (h1-lane.ts closeAfterAnswer). Requests it parsed behind that response are never
 * answered (RFC 9112 §9.6), so a close already waiting for their responses
 * (a pipelined CONNECT or refused Upgrade whose turn would come after them)
 * starts now, without its answer; otherwise the connection closes as a
 * refused one does.
 */
function endedByNode(conn: SecureConnection): void {
  const pending = closing.get(conn);
  if (pending !== undefined) pending(false);
  else closeDetached(conn, LINGER_MS);
}

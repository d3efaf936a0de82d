/**
 * The lane: the plain HTTP/1.1 requests of `serve` and `proxy` (with or
 * without --cache) answered without node's http.Server. A keep-alive GET or HEAD
 * whose head is whole in what was read,
 * strictly formed (RFC 9112 §3, §5: CRLF lines, token names, no obs-fold, no
 * control bytes, one Host, no field twice), with no body, Upgrade or Expect,
 * is read here and answered by the same request function as every other
 * (serve.ts serveRequest, http-proxy.ts handle) through a response
 * (LaneResponse) that writes what node's ServerResponse writes, every byte
 * of HTTP/1.1 syntax by h1-wire.ts. One request at a time: pipelined heads
 * wait in the buffer.
 *
 * Anything else (a head cut across reads, HTTP/1.0, a body, a refusal, a
 * malformed or unusual head) hands the connection, with every byte not yet
 * taken, to node's server for good, which answers it as it answered all
 * requests before: its parser, refusals and logging are unchanged. The lane
 * keeps node's timeouts: headersTimeout from the connection's start to the
 * first request, the socket timeout, and the keep-alive timeout plus node's
 * 1 s buffer between requests.
 *
 * Why: node's HTTP/1.1 server was half of what a 1 KiB keep-alive GET cost
 * serve beyond nginx (docs/benchmarks.md, the request floors); in the lane
 * a request costs about 0.7 of what it cost through node's server (a
 * proxied one about 0.9, docs/benchmarks.md).
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { SecureConnection } from '../tls/types.js';
import { simpleHead } from './lane-head.js';
import { closedForTimeout } from './timed-out.js';
import { utcDate } from './wall-clock.js';
import { chunkSizeLine, CRLF, earlyHintsHead, framedResponseHead, LAST_CHUNK, PROCESSING_HEAD } from './h1-wire.js';

export { simpleHead };

export interface LaneRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  rawHeaders: string[];
  httpVersion: string;
  httpVersionMajor: number;
  httpVersionMinor: number;
  socket: SecureConnection;
  complete: boolean;
  /** As node's IncomingMessage.setTimeout: the connection's idle timeout (the proxy pauses it while the upstream answers). */
  setTimeout(ms: number): unknown;
  /**
   * Its body, read as node's IncomingMessage is (for await): none. The lane
   * takes no request with Content-Length or Transfer-Encoding, and without
   * either a request has no body (RFC 9112 §6.3 rule 7).
   */
  [Symbol.asyncIterator](): AsyncIterator<Buffer>;
}

/** An HTTP/1.1 response serve writes: node's, or the lane's own (LaneResponse). */
export type H1Response = http.ServerResponse | LaneResponse;

/** A writeHead field list ([name, value, ...]), not an object of fields. */
function isFieldList(f: ReadonlyArray<string | number> | Readonly<Record<string, string | number>> | undefined): f is ReadonlyArray<string | number> {
  return Array.isArray(f);
}


/**
 * The subset of node's ServerResponse that serve's static handler and the
 * proxy's response writer use, writing what node's would: its head is
 * h1-wire.ts framedResponseHead (the handler's fields, Date, Connection,
 * and the framing node adds), its body pieces raw or as chunks as that
 * head says (RFC 9112 §6.3, §7.1), its interim heads h1-wire.ts's too. No
 * byte of HTTP/1.1 syntax is written here but through h1-wire.ts.
 */
export class LaneResponse {
  declare statusCode: number;
  declare statusMessage: string | undefined;
  declare headersSent: boolean;
  declare writableFinished: boolean;
  declare closed: boolean;
  private declare ending: boolean;
  /** Body pieces go as chunks (framedResponseHead said so). */
  private declare chunked: boolean;
  /** The response has a body (responseHasBody): known once the head is made. */
  private declare body: boolean;
  private declare fields: Array<string | number>;
  /** `fields` is the caller's writeHead list itself: copied before any change (ownFields). */
  private declare sharedFields: boolean;
  /** Fields before `fields`, from writeHeadAfter: a list never changed in place, merged into `fields` before any change (ownFields). */
  private declare fixed: ReadonlyArray<string | number> | null;
  private declare head: string;
  /**
   * end()'s body was copied out as it was given (writeWhole): the response
   * no longer references it, though 'finish' is still to come (a pooled
   * buffer can go back at once, small-body.ts).
   */
  declare bodyCopied: boolean;
  /**
   * Called once, with closeArg, when the response closes, before its 'close'
   * listeners: the proxy's one watcher (http-proxy.ts watchClose). A slot, not
   * a listener: on() and off() on this EventEmitter, and the exchange stored
   * on the response under a symbol (a megamorphic keyed store), were about
   * 2k instructions per proxied 1 KiB keep-alive GET (bench/request-cost.ts).
   */
  declare closeWatch: ((arg: unknown, res: LaneResponse) => void) | null;
  declare closeArg: unknown;
  /**
   * sendWholeAfterFin said so of it: a flag, where node's ServerResponse is
   * kept in a WeakSet (wholeAfterFin). The set's add per cache hit was about
   * 1.2k instructions per 1 KiB hit (bench/request-cost.ts).
   */
  declare wholeAfterFin: boolean;
  /**
   * Its 'finish' and 'close' listeners, in an EventEmitter made when the
   * first one is added: most responses have none (serve's small files, the
   * proxy's, which watches through closeWatch), and an EventEmitter per
   * response (its set-up, and two emits with nobody listening) was about 1.2k
   * instructions per 1 KiB keep-alive GET (bench/request-cost.ts). The
   * listeners are the EventEmitter's own, so their order, once() and off()
   * are node's.
   */
  private declare events: EventEmitter | null;
  /**
   * `closing`: it says Connection: close, and its connection ends once it is
   * written; a handler's own Connection: close field (the proxy's error
   * answers) sets it too, when the head is made.
   */
  declare readonly req: LaneRequest;
  declare readonly socket: SecureConnection;
  private declare readonly keepAliveSecs: number;
  declare closing: boolean;
  private declare readonly done: (res: LaneResponse) => void;
  /**
   * A response sent whole within end() finishes there (its 'finish' and
   * 'close', then `done`), when nobody listens for either and it keeps its
   * connection (LaneOptions.endsInTurn).
   */
  private declare readonly endsInTurn: boolean;

  // Its fields are set here, not as class fields: with those (defined, not assigned: ES2022's
  // [[Define]]) V8 made each response's fields through its runtime
  // (Runtime_DefineKeyedOwnPropertyInLiteral) once the constructor was inlined into the lane's
  // take(), about 4k instructions per 1 KiB keep-alive GET (bench/request-cost.ts).
  constructor(req: LaneRequest, socket: SecureConnection, keepAliveSecs: number, closing: boolean, done: (res: LaneResponse) => void, endsInTurn = false) {
    this.req = req;
    this.socket = socket;
    this.keepAliveSecs = keepAliveSecs;
    this.closing = closing;
    this.done = done;
    this.endsInTurn = endsInTurn;
    this.statusCode = 200;
    this.statusMessage = undefined;
    this.headersSent = false;
    this.writableFinished = false;
    this.closed = false;
    this.ending = false;
    this.chunked = false;
    this.body = true;
    this.fields = [];
    this.sharedFields = false;
    this.fixed = null;
    this.head = '';
    this.bodyCopied = false;
    this.closeWatch = null;
    this.closeArg = null;
    this.wholeAfterFin = false;
    this.events = null;
  }

  on(event: string | symbol, listener: (...args: any[]) => void): this {
    (this.events ??= new EventEmitter()).on(event, listener);
    return this;
  }

  addListener(event: string | symbol, listener: (...args: any[]) => void): this {
    return this.on(event, listener);
  }

  once(event: string | symbol, listener: (...args: any[]) => void): this {
    (this.events ??= new EventEmitter()).once(event, listener);
    return this;
  }

  off(event: string | symbol, listener: (...args: any[]) => void): this {
    this.events?.off(event, listener);
    return this;
  }

  removeListener(event: string | symbol, listener: (...args: any[]) => void): this {
    return this.off(event, listener);
  }

  listenerCount(event: string | symbol): number {
    return this.events === null ? 0 : this.events.listenerCount(event);
  }

  /** As EventEmitter's: whether anyone listened (none is asked for before the first listener). */
  emit(event: string | symbol, ...args: unknown[]): boolean {
    return this.events !== null && this.events.emit(event, ...args);
  }

  /** end() was called (node's writableEnded). */
  get writableEnded(): boolean {
    return this.ending;
  }

  /**
   * Its body pieces go as chunks (RFC 9112 §7.1), as node's `chunkedEncoding`
   * says of its own response once the head is made (writeHead, flushHeaders,
   * a first write): a writer that puts body bytes into the connection itself
   * (sendfile, splice) frames them as chunks then, with h1-wire.ts.
   */
  get chunkedEncoding(): boolean {
    return this.chunked;
  }

  /** The response can no longer be written: its connection is gone (node's res.destroyed once the socket closes). */
  get destroyed(): boolean {
    return this.socket.destroyed;
  }

  setHeader(name: string, value: string | number): this {
    this.removeHeader(name);
    this.ownFields().push(name, value);
    return this;
  }

  removeHeader(name: string): void {
    this.ownFields();
    const lower = name.toLowerCase();
    for (let i = 0; i < this.fields.length; i += 2) {
      if (String(this.fields[i]).toLowerCase() === lower) {
        this.fields.splice(i, 2);
        return;
      }
    }
  }

  /** As node's: writeHead(status, [reason], fields), fields as [name, value, ...] or an object. */
  writeHead(status: number, reasonOrFields?: string | ReadonlyArray<string | number> | Readonly<Record<string, string | number>>, more?: ReadonlyArray<string | number> | Readonly<Record<string, string | number>>): this {
    this.statusCode = status;
    let fields = more;
    if (typeof reasonOrFields === 'string') this.statusMessage = reasonOrFields;
    else fields = reasonOrFields;
    // The common case, no field set before: the list itself, not copied unless a field is set or
    // removed later (ownFields). The head is made from it at once; with a copy (CloneFastJSArray)
    // writeHead cost about 0.5k instructions more per 1 KiB keep-alive GET (bench/request-cost.ts),
    // and the static handler gives the same list for every request of a file (file-validators.ts).
    if (isFieldList(fields) && this.fields.length === 0 && fields.length % 2 === 0) {
      this.fields = fields as Array<string | number>;
      this.sharedFields = true;
    } else if (isFieldList(fields)) for (let i = 0; i + 1 < fields.length; i += 2) this.ownFields().push(fields[i]!, fields[i + 1]!);
    else if (fields) for (const k of Object.keys(fields)) this.setHeader(k, fields[k]!);
    this.makeHead();
    return this;
  }

  /**
   * writeHead(status, reason, [...fixed, ...fields]) where `fixed` is a list
   * never changed in place (the cache's stored fields for a client): the
   * same head, with fixed's lines made once per list (h1-wire.ts
   * HandlerHead.fixed), and neither list copied.
   */
  writeHeadAfter(status: number, reason: string, fixed: ReadonlyArray<string | number>, fields: ReadonlyArray<string | number>): this {
    if (this.fields.length !== 0 || fields.length % 2 !== 0) return this.writeHead(status, reason, [...fixed, ...fields]);
    this.fixed = fixed;
    return this.writeHead(status, reason, fields);
  }

  /** `fields`, the response's own (a copy of writeHead's list, if it is that list; writeHeadAfter's fixed list first). */
  private ownFields(): Array<string | number> {
    if (this.fixed !== null) {
      this.fields = [...this.fixed, ...this.fields];
      this.fixed = null;
      this.sharedFields = false;
    } else if (this.sharedFields) {
      this.fields = this.fields.slice();
      this.sharedFields = false;
    }
    return this.fields;
  }

  /** `wholeLength`: the body's length when end() was given it whole before the head (node's _contentLength). */
  private makeHead(wholeLength?: number): void {
    if (this.headersSent) return;
    const status = this.statusCode;
    const framed = framedResponseHead({
      status, reason: this.statusMessage ?? http.STATUS_CODES[status] ?? 'unknown', fields: this.fields, fixed: this.fixed ?? undefined, method: this.req.method,
      date: utcDate(), keepAliveSecs: this.closing ? null : this.keepAliveSecs, wholeLength,
    });
    this.head = framed.text;
    this.chunked = framed.chunked;
    this.body = framed.body;
    this.closing = framed.closes;
    this.headersSent = true;
  }

  flushHeaders(): void {
    this.makeHead();
    if (this.head !== '') {
      this.socket.write(this.head, 'latin1');
      this.head = '';
    }
  }

  /** As node's: the head first if not out yet; a body piece (a chunk when chunked); `cb` once the connection took it. */
  write(data: Buffer, cb?: (err?: Error | null) => void): boolean {
    this.makeHead();
    const conn = this.socket;
    if (!this.body || data.length === 0) {
      // node's write() of nothing, or to a response without a body, writes no body byte (RFC 9112 §6.3 rule 1).
      this.flushHeaders();
      if (cb) process.nextTick(cb);
      return true;
    }
    conn.cork();
    this.flushHeaders();
    let ok: boolean;
    if (this.chunked) {
      conn.write(chunkSizeLine(data.length));
      conn.write(data);
      ok = conn.write(CRLF, cb);
    } else ok = conn.write(data, cb);
    conn.uncork();
    return ok;
  }

  /** node's writeEarlyHints: a 103 (RFC 8297) goes out at once, before the final head; nothing without a Link; a malformed Link throws. */
  writeEarlyHints(hints: Readonly<Record<string, string | string[]>>, cb?: () => void): void {
    const head = earlyHintsHead(hints);
    if (head !== null) this.socket.write(head, 'latin1', cb);
  }

  /** node's writeProcessing: RFC 2518's 102, at once. */
  writeProcessing(cb?: () => void): void {
    this.socket.write(PROCESSING_HEAD, 'latin1', cb);
  }

  end(data?: string | Buffer, cb?: () => void): this {
    // As node's: a second end() writes nothing (a byte after the body would be read as the next response's).
    if (this.ending) return this;
    this.ending = true;
    this.makeHead(typeof data === 'string' ? Buffer.byteLength(data) : (data?.length ?? 0));
    if (cb) this.once('finish', cb);
    const conn = this.socket;
    // The common case, a head not yet written and a body given whole (or none): both at once,
    // past the connection's stream (ktls-connection.ts writeWhole). Chunked bodies, heads already
    // out and connections without it go through the stream as below.
    if (!this.chunked && this.head !== '' && conn.writeWhole !== undefined) {
      const body = this.body && data !== undefined && data.length > 0 ? data : undefined;
      // Finished here, not on the next tick, when nothing can tell the two apart: no 'finish' or
      // 'close' listener (none can be added for an event already past: a caller that adds one
      // after end() looks at writableFinished first, small-body.ts), no close watcher, and the
      // connection kept (a closing answer's lingering close stays after the handler's return).
      // The tick was node's tick queue run from the poll callback per response: about 2k
      // instructions per 1 KiB keep-alive GET (bench/request-cost.ts).
      const inCall = this.endsInTurn && this.events === null && this.closeWatch === null && !this.closing;
      const written = conn.writeWhole(this.head, body, finishWritten, this, inCall);
      if (written !== false) {
        this.head = '';
        this.bodyCopied = true;
        if (written === 'taken') this.finish();
        return this;
      }
    }
    conn.cork();
    this.flushHeaders();
    if (this.body && data !== undefined && data.length > 0) {
      if (this.chunked) conn.write(chunkSizeLine(Buffer.byteLength(data)));
      conn.write(data);
      if (this.chunked) conn.write(CRLF);
    }
    if (this.chunked) conn.write(LAST_CHUNK);
    conn.write('', () => this.finish());
    conn.uncork();
    return this;
  }

  /** finishWritten's way in: the response is handed to its connection. */
  static written(res: LaneResponse): void {
    res.finish();
  }

  private finish(): void {
    if (this.writableFinished) return;
    this.writableFinished = true;
    this.emit('finish');
    this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    const watch = this.closeWatch;
    if (watch !== null) {
      this.closeWatch = null;
      watch(this.closeArg, this);
    }
    this.emit('close');
    this.done(this);
  }

  destroy(err?: Error): void {
    this.socket.destroy(err);
    this.close();
  }

  /** Its connection closed before it finished. */
  connectionClosed(): void {
    this.close();
  }
}

/** writeWhole's callback: one function with the response as its argument, no closure per response. */
function finishWritten(res: LaneResponse): void {
  LaneResponse.written(res);
}

/** Responses other than the lane's (its own flag, LaneResponse.wholeAfterFin) sent whole even if their client half-closes meanwhile (sendWholeAfterFin). */
const wholeAfterFin = new WeakSet<object>();

/**
 * `res` (the lane's or node's) is answered without waiting on an upstream (a
 * stored response, the proxy's cache): a FIN from its client does not abort
 * it, where abortOnFin aborts the others. A client that closes its sending
 * side still reads (TCP's half-close, RFC 9293 §3.6; TLS's close_notify has
 * no effect on the read side, RFC 8446 §6.1), and aborting frees nothing
 * here: no upstream connection waits. nginx is not followed here: it aborts a
 * request waiting on its upstream at the FIN (ngx_http_upstream_check_broken_connection,
 * 499, as abortOnFin does), but also any response that once had to wait for
 * the socket (ngx_http_set_write_handler's ngx_http_test_reading, "client
 * prematurely closed connection"), a cache hit or a static file alike: 1.11.1
 * and 1.18 cut most 4 MiB hits to half-closing clients, logged 200.
 */
export function sendWholeAfterFin(res: object): void {
  if (res instanceof LaneResponse) res.wholeAfterFin = true;
  else wholeAfterFin.add(res);
}

/** Whether sendWholeAfterFin said so of `res`. */
export function sentWholeAfterFin(res: object): boolean {
  return res instanceof LaneResponse ? res.wholeAfterFin : wholeAfterFin.has(res);
}

/** Takes back sendWholeAfterFin(res); whether it had said so. */
function notWholeAfterFin(res: object): boolean {
  if (!(res instanceof LaneResponse)) return wholeAfterFin.delete(res);
  const was = res.wholeAfterFin;
  res.wholeAfterFin = false;
  return was;
}

/** Per connection: its front's check of what a FIN already read aborts (atFinCheck, waitsOnUpstream). */
const finChecks = new WeakMap<object, () => void>();

/** `check` looks again at what the FIN `conn` already read aborts, once an answer is no longer sent whole (waitsOnUpstream). */
export function atFinCheck(conn: object, check: () => void): void {
  finChecks.set(conn, check);
}

/**
 * Takes back sendWholeAfterFin(res): its answer waits on an upstream after
 * all (the cache marks a request while it looks for a fill to follow or
 * waits for another worker's, and it goes upstream itself after all:
 * cache-layer.ts handle). A FIN its client sent meanwhile was read and let
 * pass; it aborts the request now, as it would have at once (abortOnFin,
 * front.ts abortAtFin). Only HTTP/1.1 responses: an HTTP/2 stream is not
 * ended by its connection's FIN this way.
 */
export function waitsOnUpstream(res: object): void {
  if (!notWholeAfterFin(res)) return;
  const conn = res instanceof LaneResponse ? res.socket : res instanceof http.ServerResponse ? res.req.socket : null;
  if (conn !== null && conn.readableEnded) finChecks.get(conn)?.();
}

export interface LaneOptions {
  maxHeaderSize: number;
  idleTimeoutMs: number;
  headersTimeoutMs: number;
  /** No byte of a first request within headersTimeoutMs: what node's server does then (serve.ts closeWaitedForNothing). */
  silent(conn: SecureConnection): void;
  /** Whether responses now close their connection (a draining front). */
  draining(): boolean;
  /** Whether the lane answers this request; false: node's server does (a refusal, say). */
  takes(req: LaneRequest): boolean;
  handle(req: LaneRequest, res: LaneResponse): void;
  /**
   * Gives the connection to node's http.Server for good, `rest` unshifted.
   * `firstDeadline` (performance.now() time): when the first request's head
   * was due, if it has not come whole yet; node's own headersTimeout would
   * count from the handover instead. `ended`: the client's FIN came after `rest`.
   */
  handOver(conn: SecureConnection, rest: Buffer | null, firstDeadline: number | null, ended: boolean): void;
  /**
   * Ends `conn` after an answer that said Connection: close: what the client still sends is
   * read and dropped until it closes, for a while at most (front.ts closeDetached, nginx's
   * lingering close), as node's server ends one (its destroySoon).
   */
  closeAfterAnswer(conn: SecureConnection): void;
  /** The lane is done with `conn` (handed over or closed). */
  left(lane: LaneConnection): void;
  /**
   * The client's FIN aborts the request in flight and those waiting: the
   * connection is destroyed, the response closes (the proxy's 499, its
   * upstream connection closed), as node's server does (socketOnEnd's
   * abortIncoming) and nginx's proxy (ngx_http_upstream_check_broken_connection:
   * "client prematurely closed connection", proxy_ignore_client_abort off).
   * Without it (serve) the requests read before a FIN are answered first, as
   * nginx answers static ones. With it, a response marked by
   * sendWholeAfterFin is still sent whole, and so is each request read
   * behind it whose answer is marked in the turn it is taken (a hit); the
   * first one that would wait on the upstream is aborted then (499), as
   * nginx answers pipelined requests after the FIN in turn and gives up the
   * one that waits on its upstream. None is dropped unread and unlogged.
   */
  abortOnFin?: boolean;
  /**
   * A response the connection took whole within its end() is finished there
   * (LaneResponse.endsInTurn): `done` runs before end() returns, not on the
   * next tick. For handlers that do nothing with a response after its end()
   * that its finish could change (serve's).
   */
  endsInTurn?: boolean;
}

/** node's HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER: the keep-alive wait outlasts the advertised timeout by this much. */
const KEEP_ALIVE_BUFFER_MS = 1000;

/** One connection served in the lane, one request at a time. */
export class LaneConnection {
  private pending: Buffer | null = null;
  private current: LaneResponse | null = null;
  private ended = false;
  private gone = false;
  /** Reads held by onBytes: more heads wait than 2 × maxHeaderSize. */
  private held = false;
  /** Reads come straight from the connection's read scratch (readInto), not as 'data'. */
  private readonly direct: boolean;
  private readonly keepAliveSecs: number;
  /** Until the first request's head is whole: node's headersTimeout runs from the connection's start. */
  private firstTimer: NodeJS.Timeout | null;
  /**
   * Between requests (node's _keepAliveTimeoutSet): the connection's idle
   * timeout, once it fires, is followed by keepAliveGrace before it closes.
   */
  private keepAliveSet = false;
  /** The keep-alive wait's last second (node's HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER), once the idle timeout fired between requests. */
  private graceTimer: NodeJS.Timeout | null = null;
  private readonly startedAt: number;

  constructor(private readonly conn: SecureConnection, private readonly o: LaneOptions) {
    this.keepAliveSecs = Math.floor(o.idleTimeoutMs / 1000);
    // A client may send its requests and then its FIN (a half-close, TCP's shutdown(SHUT_WR)):
    // the requests it sent are still answered, in order, and the connection ends after the last
    // (finishIdle), as nginx answers the pipelined requests it read before a FIN. The
    // connection's default (allowHalfOpen false: its writable side ends with its readable one)
    // cut the answer in flight and dropped those behind it.
    (conn as SecureConnection & { allowHalfOpen: boolean }).allowHalfOpen = true;
    // Each read straight from the connection's scratch where it can (ktls-connection.ts
    // readInto): no Buffer and no 'data' event per read. The FIN is still the stream's 'end'.
    this.direct = conn.readInto !== undefined && conn.readInto(this.onRead);
    if (!this.direct) conn.on('data', this.onData);
    conn.on('end', this.onEnd);
    conn.on('timeout', this.onTimeout);
    conn.on('close', this.onClose);
    atFinCheck(conn, this.abortIfWaiting);
    // Set once: the same period times a request in flight and, with keepAliveGrace, the wait
    // between requests (onTimeout).
    (conn as SecureConnection & { setTimeout(ms: number): unknown }).setTimeout(o.idleTimeoutMs);
    this.startedAt = performance.now();
    this.firstTimer = o.headersTimeoutMs > 0 ? setTimeout(this.onFirstTimeout, o.headersTimeoutMs) : null;
    this.firstTimer?.unref();
  }

  private readonly onFirstTimeout = (): void => {
    this.firstTimer = null;
    if (this.gone || this.current !== null) return;
    if (this.pending !== null) {
      this.handOver();
      return;
    }
    this.leaveLane();
    this.o.silent(this.conn);
  };

  /** A draining front's sweep: an idle connection is closed (node's closeIdleConnections). */
  closeIfIdle(): void {
    if (!this.gone && this.current === null && this.pending === null) this.conn.destroy();
  }

  private readonly onData = (chunk: Buffer): void => {
    this.onBytes(chunk, 0, chunk.length, true);
  };

  /** A direct read (readInto): buf[start, end) is the connection's scratch, valid during this call only. */
  private readonly onRead = (buf: Buffer, start: number, end: number): void => {
    this.onBytes(buf, start, end, false);
  };

  /** Bytes read, `owned` (a Buffer of their own, kept as is) or not (copied if kept). */
  private onBytes(buf: Buffer, start: number, end: number, owned: boolean): void {
    // The common case, nothing waiting and no answer in flight: the head is read where it lies.
    if (this.pending === null && this.current === null) {
      this.take(buf, start, end, owned);
      return;
    }
    this.pending = this.pending === null ? kept(buf, start, end, owned) : Buffer.concat([this.pending, buf.subarray(start, end)]);
    if (this.current === null) this.next();
    // Pipelined heads wait while a response is written: a client that sends faster than it reads is
    // held back (as node's server pauses a socket whose answers are not taken), until take() has
    // taken the heads waiting down to the limit again.
    else if (!this.held && this.pending.length > 2 * this.o.maxHeaderSize) this.hold(true);
  }

  /** Stops (or restarts) reading: the connection's holdReads, or the stream's pause/resume. */
  private hold(held: boolean): void {
    this.held = held;
    if (this.direct) this.conn.holdReads!(held);
    else if (held) this.conn.pause();
    else this.conn.resume();
  }

  private readonly onEnd = (): void => {
    this.ended = true;
    // Heads waiting with no answer in flight: the next() responded() queued takes them first.
    if (this.current === null && this.pending === null) this.finishIdle();
    else this.abortIfWaiting();
  };

  /**
   * After the client's FIN, with abortOnFin: the request in flight is
   * aborted (the connection destroyed) unless its answer is sent whole
   * (sendWholeAfterFin) or already all written. Heads waiting behind it are
   * looked at in turn as next() takes them (RFC 9112 §9.3.2: answers in
   * request order), not dropped.
   */
  private readonly abortIfWaiting = (): void => {
    if (this.o.abortOnFin !== true || !this.ended || this.gone) return;
    const res = this.current;
    if (res !== null && !sentWholeAfterFin(res) && !res.writableEnded) this.conn.destroy();
  };

  /**
   * node's socket timeout (http.Server.timeout): the connection is destroyed,
   * busy or idle; between requests a second later (keepAliveGrace). node sets
   * the socket's timeout to keepAliveTimeout + 1 s after each response and
   * back when the next request comes (resOnFinish, resetSocketTimeout): two
   * setTimeout calls per request, about 1k instructions per 1 KiB keep-alive
   * GET (bench/request-cost.ts). The period is the same here (--idle-timeout
   * is both), so the timeout stays set and the wait's last second is a timer
   * of its own, made only when a wait outlasts the period.
   */
  private readonly onTimeout = (): void => {
    if (this.keepAliveSet && this.current === null && !this.gone) {
      this.graceTimer ??= setTimeout(this.keepAliveGrace, KEEP_ALIVE_BUFFER_MS);
      this.graceTimer.unref();
      return;
    }
    this.timedOut();
  };

  /** The keep-alive wait's last second is over, no request came: closed as at node's idle timeout. */
  private readonly keepAliveGrace = (): void => {
    this.graceTimer = null;
    if (this.keepAliveSet && this.current === null && !this.gone) this.timedOut();
  };

  private timedOut(): void {
    closedForTimeout(this.conn, this.o.idleTimeoutMs);
    this.conn.destroy();
  }

  private readonly onClose = (): void => {
    const res = this.current;
    this.leaveLane();
    if (res !== null) res.connectionClosed();
  };

  /** The client's FIN came and every request before it is answered: our side ends too. */
  private finishIdle(): void {
    this.leaveLane();
    this.conn.end();
  }

  private leaveLane(): void {
    if (this.gone) return;
    this.gone = true;
    if (this.firstTimer !== null) clearTimeout(this.firstTimer);
    this.firstTimer = null;
    this.endGrace();
    // Reads go back to the stream (for node's server, closeDetached); what was read is in `pending`.
    if (this.direct) this.conn.readInto!(null);
    else this.conn.off('data', this.onData);
    this.conn.off('end', this.onEnd);
    this.conn.off('timeout', this.onTimeout);
    this.conn.off('close', this.onClose);
    this.o.left(this);
  }

  private handOver(): void {
    const rest = this.pending;
    const firstDeadline = this.firstTimer !== null ? this.startedAt + this.o.headersTimeoutMs : null;
    this.pending = null;
    this.leaveLane();
    this.conn.resume();
    // Behind a FIN too: node's server answers what came before it (front.ts feedAfterFin).
    this.o.handOver(this.conn, rest, firstDeadline, this.ended);
  }

  private readonly responded = (res: LaneResponse): void => {
    if (this.current !== res) return;
    this.current = null;
    if (this.gone) return;
    if (res.closing) {
      // Not end() alone: a connection paused with heads waiting (onData) would never read the
      // client's FIN, and sat in CLOSE-WAIT until a stop's deadline cut it.
      this.leaveLane();
      this.o.closeAfterAnswer(this.conn);
      return;
    }
    // Not resumed here: with heads still waiting, another read would only pile onto them (one head
    // taken per answer, a whole read added: the buffer grew without bound). next() resumes.
    if (this.pending !== null) process.nextTick(this.next);
    else if (this.ended) this.finishIdle();
    // node's resOnFinish: the advertised keep-alive timeout and 1 s more (onTimeout's
    // keepAliveGrace), so that the client, which closes at the advertised one, closes first.
    else this.keepAliveSet = true;
  };

  private endGrace(): void {
    if (this.graceTimer === null) return;
    clearTimeout(this.graceTimer);
    this.graceTimer = null;
  }

  private readonly next = (): void => {
    const p = this.pending;
    if (this.current !== null || this.gone || p === null) return;
    this.take(p, 0, p.length, true);
  };

  /**
   * The next request from buf[start, end), every byte not yet taken (what
   * `pending` held, or a read with nothing waiting): answered here, or the
   * connection handed over with all of them. `owned` false: buf is the
   * connection's read scratch, so what is kept is copied first.
   */
  private take(buf: Buffer, start: number, end: number, owned: boolean): void {
    const found = simpleHead(buf, this.o.maxHeaderSize, start, end);
    const req = found === null ? null : (found.req as LaneRequest);
    if (req !== null) req.socket = this.conn;
    if (found === null || req === null || !this.o.takes(req)) {
      this.pending = kept(buf, start, end, owned);
      this.handOver();
      return;
    }
    const rest = start + found.length;
    this.pending = rest === end ? null : kept(buf, rest, end, owned);
    // The answer now in flight holds the heads behind it (onBytes): more than the limit of them
    // stop reads at once (one read can bring a record's worth), fewer let them go on.
    const over = this.pending !== null && this.pending.length > 2 * this.o.maxHeaderSize;
    if (this.held !== over) this.hold(over);
    if (this.firstTimer !== null) {
      clearTimeout(this.firstTimer);
      this.firstTimer = null;
    }
    // node's resetSocketTimeout (parserOnIncoming): a request ending a keep-alive wait is timed
    // by server.timeout (--idle-timeout) alone again, so a stalled answer is still cut.
    if (this.keepAliveSet) {
      this.keepAliveSet = false;
      this.endGrace();
    }
    const res = new LaneResponse(req, this.conn, this.keepAliveSecs, this.o.draining(), this.responded, this.o.endsInTurn === true);
    this.current = res;
    this.o.handle(req, res);
    // A head read before the client's FIN: its answer is sent whole if marked in this turn (a
    // hit, sendWholeAfterFin), else it is aborted now, as one in flight at the FIN.
    if (this.ended) this.abortIfWaiting();
  }
}

/** buf[start, end) to keep: as it is when `owned`, else a copy (the connection's read scratch is reused). */
function kept(buf: Buffer, start: number, end: number, owned: boolean): Buffer {
  if (owned) return start === 0 && end === buf.length ? buf : buf.subarray(start, end);
  const copy = Buffer.allocUnsafe(end - start);
  buf.copy(copy, 0, start, end);
  return copy;
}

/**
 * The HTTP/2 front (RFC 9113): a node:http2 server session on each TLS
 * connection whose ALPN said h2, running the same (req, res) handler as
 * HTTP/1.1 through node's compatibility API (Http2ServerRequest,
 * Http2ServerResponse).
 *
 * The connection is ours (a KtlsConnection, or a node:tls socket on the
 * fallback engine): server.emit('connection', conn) makes node wrap a
 * Duplex without a native stream handle in a JSStreamSocket, so nghttp2's
 * frames are written into the connection, and with kTLS on, the kernel
 * encrypts them. nghttp2 does the framing, HPACK and flow control; this
 * file adds the lifecycle (GOAWAY on drain, timeouts) and the defences
 * node does not bring (h2-defences.ts), each logged when it fires.
 */
import http2 from 'node:http2';
import type { Logger } from '../log/logger.js';
import type { SecureConnection } from '../tls/types.js';
import { ConnectionSet, LINGER_MS, type Front } from './front.js';
import { H2_FIXED, h2ServerOptions, headerListSize, ResetBudget, resetBudgetFor, type H2Limits } from './h2-defences.js';
import { followSentResets } from './h2-sent-resets.js';
import { closedForTimeout } from './timed-out.js';

const { NGHTTP2_NO_ERROR, NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM, NGHTTP2_PROTOCOL_ERROR } = http2.constants;

export type H2Handler = (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => void;

export interface H2FrontOptions {
  log: Logger;
  limits: H2Limits;
  handler: H2Handler;
  /**
   * A request nghttp2 found malformed and reset (RST_STREAM PROTOCOL_ERROR,
   * RFC 9113 §8.1.1) before node made a stream of it: the handler never saw
   * it, so this writes its access-log line (h2-sent-resets.ts).
   */
  malformed: (conn: SecureConnection, err: H2MalformedRequestError) => void;
}

/** A request nghttp2 reset as malformed before it reached the handler, for its access-log line. */
export class H2MalformedRequestError extends Error {
  readonly code = 'ERR_HTTP2_MALFORMED_REQUEST';
  constructor(readonly stream: number) {
    super(
      `HTTP/2 stream ${stream}: malformed request (RFC 9113 §8.1.1: e.g. a :path not in origin form, an upper-case or connection-specific field, `
      + 'TE other than trailers, a bad pseudo-header, a body unlike its content-length); reset with RST_STREAM PROTOCOL_ERROR, no response sent',
    );
  }
}

/** How long a session told to go away (GOAWAY sent) may take before it is cut. */
const GOAWAY_GRACE_MS = 1_000;

/** The TLS connection under each session: node's session.socket is its own wrapper, not ours. */
const sessionConn = new WeakMap<http2.Http2Session, SecureConnection>();

/**
 * The same per stream. node emits 'stream' on the next tick, by which time a
 * stream the client already reset has lost its stream.session (rapid reset
 * did that, and the lookup through the session threw).
 */
const streamConn = new WeakMap<http2.Http2Stream, SecureConnection>();

/** Streams this server reset itself (timeouts, failed bodies): not counted as the client's resets. */
const resetByUs = new WeakSet<http2.Http2Stream>();

/** Sessions already sent away (closeSoon): one GOAWAY, one timer, one log line each. */
const goingAway = new WeakSet<http2.Http2Session>();

/** Each watched stream's stall limit (--idle-timeout) and what to do when it is reached (watchStream). */
const stallWatch = new WeakMap<http2.Http2Stream, StallWatch>();

/** A stream's stall limit and its handler: the log line and the reset (RST_STREAM CANCEL). */
interface StallWatch {
  ms: number;
  stalled: () => void;
}

/**
 * Starts the stall limit (--idle-timeout) on one write to a stream this
 * front watches, for a writer that waits on one write at a time (a file
 * chunk, an upstream body piece): not taken in time, the stream is logged as
 * stalled and reset, and the write fails as the stream closes. node's own
 * stream timer cannot tell (watchStream). Returns what to call once the
 * write is taken or has failed.
 */
export function startStallTimer(stream: http2.Http2Stream): () => void {
  const watch = stallWatch.get(stream);
  if (watch === undefined || watch.ms <= 0) return noop;
  const timer = setTimeout(watch.stalled, watch.ms);
  return () => clearTimeout(timer);
}

const noop = (): void => undefined;

/** The TLS connection an HTTP/2 request came on. */
export function h2Connection(req: http2.Http2ServerRequest): SecureConnection {
  const conn = streamConn.get(req.stream);
  if (conn === undefined) throw new Error('HTTP/2 request on a session this front does not know');
  return conn;
}

/** Resets a stream on the server's own account (RFC 9113 §6.4), so that the rapid-reset count leaves it out. */
export function resetStream(stream: http2.Http2Stream, code: number = NGHTTP2_CANCEL): void {
  resetByUs.add(stream);
  if (!stream.closed) stream.close(code);
}

export function h2Front(o: H2FrontOptions): Front {
  const server = http2.createServer(h2ServerOptions(o.limits));
  const conns = new ConnectionSet();
  const sessions = new Set<http2.ServerHttp2Session>();
  let draining = false;
  let accepting: SecureConnection | null = null;

  server.on('session', (session: http2.ServerHttp2Session) => {
    const conn = accepting!;
    sessionConn.set(session, conn);
    sessions.add(session);
    // Before node's own listener, which hands the stream to the compatibility layer and so to
    // the handler: a response the handler ends at once must not leave the stream unwatched.
    session.prependListener('stream', (stream: http2.ServerHttp2Stream) => {
      streamConn.set(stream, conn);
      noteStream(conn, stream);
      watchStream(o, stream, conn);
    });
    guardResets(o, session, conn);
    // Whatever ends the session, the connection goes with it: node ends its wrapper, and a client
    // that never closes its side is cut after LINGER_MS (nginx's lingering_timeout).
    session.once('close', () => {
      sessions.delete(session);
      if (conn.destroyed) return;
      const timer = setTimeout(() => conn.destroy(), LINGER_MS);
      timer.unref();
      conn.once('close', () => clearTimeout(timer));
    });
    if (draining) session.close();
  });
  server.on('request', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    // Reset by the client before its turn came (node emits streams on the next tick): nothing to answer.
    if (req.stream.destroyed) return;
    if (refuseLargeHeaders(o, req, res)) return;
    o.handler(req, res);
  });
  // CONNECT (RFC 9113 §8.5) goes to the handler too: it answers what it does not serve (405 with Allow).
  server.on('connect', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
    if (!req.stream.destroyed) o.handler(req, res);
  });
  server.on('sessionError', (err: Error & { code?: string }, session: http2.Http2Session) => logSessionError(o.log, err, sessionConn.get(session)));
  // No frame either way for --idle-timeout (node checks that a queued write is not progressing):
  // an idle keep-alive session, or a client that stopped reading. GOAWAY, then the connection closes.
  server.setTimeout(o.limits.idleTimeoutMs);
  server.on('timeout', (session: http2.Http2Session) => {
    o.log.info({ conn: sessionConn.get(session)?.id, idleMs: o.limits.idleTimeoutMs }, 'HTTP/2 session idle: GOAWAY sent, closing');
    closeSoon(session, NGHTTP2_NO_ERROR);
  });

  return {
    accept(conn) {
      conns.add(conn);
      // Before node takes it: from its first frame (our SETTINGS) on, so that every frame header is found.
      followOwnResets(o, conn);
      accepting = conn;
      try {
        // node makes the session synchronously ('session' above).
        server.emit('connection', conn);
      } finally {
        accepting = null;
      }
    },
    async drain() {
      draining = true;
      // GOAWAY with the last stream processed (RFC 9113 §6.8): streams in flight finish,
      // the client opens new ones on a new connection; the session closes once they are done.
      for (const s of sessions) s.close();
      await conns.emptied();
    },
    get connections() {
      return conns.size;
    },
  };
}

/** The ids of the streams node made on each connection (and has not closed a moment ago). */
const streamsSeen = new WeakMap<SecureConnection, Set<number>>();

/**
 * Remembered until a moment after the stream closes: nghttp2 writes the
 * RST_STREAM of a stream it resets itself before node's 'close' for it runs
 * (the close callback follows the frame's send, and node emits 'close' on a
 * later tick), so such a reset still finds its stream here.
 */
function noteStream(conn: SecureConnection, stream: http2.ServerHttp2Stream): void {
  const seen = streamsSeen.get(conn);
  const id = stream.id;
  if (seen === undefined || id === undefined) return;
  seen.add(id);
  stream.once('close', () => setImmediate(() => seen.delete(id)));
}

/**
 * The streams reset before node made a stream of them, each logged once:
 * - RST_STREAM PROTOCOL_ERROR (nghttp2: a malformed request, refused in its
 *   header block) gets its access-log line through o.malformed, as nginx logs
 *   each request it refuses;
 * - RST_STREAM ENHANCE_YOUR_CALM (node's src/node_http2.cc: a header block over
 *   maxHeaderListPairs or the header list size while it is decoded, or a stream
 *   refused over the session's stream or memory limits) a warning, since the
 *   wire does not say which.
 * A stream the handler has answers for itself (its line says how it ended).
 */
function followOwnResets(o: H2FrontOptions, conn: SecureConnection): void {
  const seen = new Set<number>();
  streamsSeen.set(conn, seen);
  followSentResets(conn, (stream, code) => {
    if (stream === 0 || seen.has(stream)) return;
    if (code === NGHTTP2_PROTOCOL_ERROR) o.malformed(conn, new H2MalformedRequestError(stream));
    else if (code === NGHTTP2_ENHANCE_YOUR_CALM) {
      o.log.warn(
        { conn: conn.id, peer: conn.remoteAddress, stream, maxFields: H2_FIXED.maxHeaderListPairs, maxHeaderSize: o.limits.maxHeaderSize, maxConcurrentStreams: o.limits.maxConcurrentStreams },
        'HTTP/2 request refused before the handler (RST_STREAM ENHANCE_YOUR_CALM): its header block over --max-header-size or the field count, or the session over its stream or memory limits',
      );
    }
  });
}

/**
 * Per stream: a send/receive stall timeout (zero-window: a client that
 * grants no flow-control window holds our buffers otherwise), and errors
 * kept from becoming uncaught.
 */
function watchStream(o: H2FrontOptions, stream: http2.ServerHttp2Stream, conn: SecureConnection): void {
  stream.on('error', (err: Error & { code?: string }) => {
    o.log.debug({ conn: conn.id, stream: stream.id, code: err.code, detail: err.message }, 'HTTP/2 stream error');
  });
  if (stream.destroyed) return;
  const stalled = (): void => {
    // Once: node's timer and a body sender's (h2-body.ts) may both find the same stall.
    if (stream.closed || stream.destroyed) return;
    o.log.warn({ conn: conn.id, stream: stream.id, idleMs: o.limits.idleTimeoutMs }, 'HTTP/2 stream stalled (no flow-control window or no progress): reset');
    closedForTimeout(stream, o.limits.idleTimeoutMs);
    resetStream(stream, NGHTTP2_CANCEL);
  };
  // node's timer sees a stream whose write waits on its flow-control window as progressing
  // whenever the session sends anything (lib/internal/http2/core.js callTimeout compares the
  // session's chunks sent): body senders that wait on one write at a time time it themselves.
  stallWatch.set(stream, { ms: o.limits.idleTimeoutMs, stalled });
  stream.setTimeout(o.limits.idleTimeoutMs, stalled);
}

/**
 * Counts the streams the client resets (RST_STREAM with an error code, a
 * cancel among them) and ends the session with GOAWAY ENHANCE_YOUR_CALM
 * once the budget is spent (CVE-2023-44487).
 */
function guardResets(o: H2FrontOptions, session: http2.ServerHttp2Session, conn: SecureConnection): void {
  const { burst, perSecond } = resetBudgetFor(o.limits);
  const budget = new ResetBudget(burst, perSecond);
  session.on('stream', (stream: http2.ServerHttp2Stream) => {
    stream.once('close', () => {
      if (stream.rstCode === NGHTTP2_NO_ERROR || resetByUs.has(stream) || session.destroyed || session.closed || goingAway.has(session)) return;
      if (budget.spend()) return;
      o.log.warn(
        { conn: conn.id, peer: conn.remoteAddress, resets: budget.spent, burst, perSecond, code: 'ENHANCE_YOUR_CALM' },
        'HTTP/2 rapid reset: the client reset too many streams (CVE-2023-44487); GOAWAY sent, closing the session',
      );
      closeSoon(session, NGHTTP2_ENHANCE_YOUR_CALM);
    });
  });
}

/**
 * GOAWAY with `code` now (nghttp2 then ignores new streams), the streams
 * still open get a moment, then the session is destroyed. Destroying at
 * once would cut the connection with the GOAWAY perhaps still unsent.
 */
function closeSoon(session: http2.Http2Session, code: number): void {
  if (session.destroyed || goingAway.has(session)) return;
  goingAway.add(session);
  if (code === NGHTTP2_NO_ERROR) session.close();
  else session.goaway(code);
  const timer = setTimeout(() => { if (!session.destroyed) session.destroy(undefined, code); }, GOAWAY_GRACE_MS);
  timer.unref();
  session.once('close', () => clearTimeout(timer));
}

/**
 * SETTINGS_MAX_HEADER_LIST_SIZE binds only once the client has acknowledged
 * our SETTINGS (RFC 9113 §6.5.3); a request sent in the client's first flight
 * (curl sends it with the preface) is decoded under the protocol's default,
 * which is unlimited. So the limit is checked again here, as llhttp does for
 * HTTP/1.1: 431 (RFC 6585 §5).
 */
function refuseLargeHeaders(o: H2FrontOptions, req: http2.Http2ServerRequest, res: http2.Http2ServerResponse): boolean {
  const size = headerListSize(req.rawHeaders);
  if (size <= o.limits.maxHeaderSize) return false;
  o.log.warn({ conn: streamConn.get(req.stream)?.id, stream: req.stream.id, size, limit: o.limits.maxHeaderSize }, 'HTTP/2 request header list over --max-header-size: 431');
  const text = 'Request Header Fields Too Large\n';
  res.writeHead(431, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  if (req.method === 'HEAD') res.end();
  else res.end(text);
  return true;
}

/** nghttp2's own defences end the session with an error (floods, invalid frames, refused streams, memory): one line each. */
function logSessionError(log: Logger, err: Error & { code?: string }, conn: SecureConnection | undefined): void {
  const gone = err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'ETIMEDOUT';
  // A reset connection was logged once already, by the connection's own 'error' listener.
  if (gone) return;
  log.warn({ conn: conn?.id, peer: conn?.remoteAddress, code: err.code, detail: err.message }, 'HTTP/2 session error: session closed');
}

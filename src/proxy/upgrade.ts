/**
 * Upgrade (WebSocket and friends, RFC 9110 §7.8): node hands such a request
 * over with its socket detached from the HTTP server. The request goes to an
 * upstream on a fresh connection; on 101 both sides are tunnelled, on any
 * other answer that answer is relayed and the connection closed. A client
 * that leaves before the answer abandons the attempt (ClientWatch).
 */
import type http from 'node:http';
import type { Logger } from '../log/logger.js';
import type { ProxySettings } from '../config/proxy-settings.js';
import type { SecureConnection } from '../tls/types.js';
import type { TrafficStats } from '../metrics/traffic-stats.js';
import type { AccessLog } from '../log/access-log.js';
import { wasCutAtShutdown } from '../tls/shutdown-cut.js';
import type { PipePool } from '../transport/pipe-pool.js';
import { buildUpstreamRequestHead, filterResponseHeaders } from '../http/forward-headers.js';
import { beingClosed, closeDetached, owedSent } from '../http/front.js';
import { chunkSizeLine, closingAnswer, CRLF, LAST_CHUNK, responseHead } from '../http/h1-wire.js';
import type { ResponseHead } from '../http/response-head.js';
import { missingHost, requestProblem } from '../http/request-checks.js';
import { ClientGoneError, UpstreamTimeoutError } from '../errors.js';
import type { Forwarder } from './forward.js';
import type { Lease, UpstreamGroup } from './upstream-group.js';
import { EMPTY, errCode, readBody, readResponseHead } from './upstream-exchange.js';
import { cryptoSite } from '../http/serve.js';
import type { UpstreamStream } from './upstream-stream.js';
import { isUpstreamFailure, tunnel, tunnelResultOf, TunnelStalledError, type TunnelResult } from './tunnel.js';
import { failureStatus, isClientFault } from '../http/failures.js';
import { UpgradeRecord } from './upgrade-record.js';

export interface UpgradeOptions {
  settings: ProxySettings;
  group: UpstreamGroup;
  forwarder: Forwarder;
  pipes: PipePool | null;
  stats: TrafficStats;
  /** Where each upgrade request's line goes, written when it ends (upgrade-record.ts). */
  access: AccessLog;
  log: Logger;
}

/**
 * node hands an Upgrade request over before any body: the bytes of one would
 * reach the upstream as tunnel data after a 101, outside any framing (a
 * smuggling channel). A WebSocket handshake is a GET without a body (RFC 6455
 * §4.1); the rest is refused.
 */
function upgradeProblem(req: http.IncomingMessage): string | null {
  const noHost = missingHost(req.httpVersionMajor, req.httpVersionMinor, req.rawHeaders);
  if (noHost !== null) return noHost;
  const cl = req.headers['content-length'];
  if (req.headers['transfer-encoding'] !== undefined) return 'Upgrade with a Transfer-Encoding body';
  if (cl !== undefined && cl !== '0') return 'Upgrade with a Content-Length body';
  return requestProblem(req.method ?? 'GET', req.url ?? '/', req.rawHeaders);
}

export async function upgrade(o: UpgradeOptions, req: http.IncomingMessage, conn: SecureConnection, early: Buffer): Promise<void> {
  const s = o.settings;
  const record = new UpgradeRecord(o, req, conn);
  const problem = upgradeProblem(req);
  if (problem !== null) {
    o.log.info({ conn: conn.id, url: req.url, status: 400, error: 'ERR_BAD_REQUEST', detail: problem }, 'upgrade refused');
    closeDetached(conn, s.idleTimeoutMs, closingAnswer(400));
    record.status = 400;
    record.end('info', Object.assign(new Error(problem), { code: 'ERR_BAD_REQUEST' }));
    return;
  }
  let lease: Lease | null = null;
  /**
   * The upstream's answer has begun on the connection: a failure from then on
   * gets no answer of ours, which would follow the 101 as tunnel bytes (RFC
   * 9110 §15.2.2: the connection carries the other protocol now) or cut into
   * a refusal's body. The tunnel closes its connection itself; a refusal cut
   * short is closed at once, its framing telling the client it is short.
   */
  let answered = false;
  // A client that leaves while the upstream is asked: the attempt is abandoned (the upstream
  // connection destroyed, which ends whatever waits on it) and its connection released at once.
  const client = new ClientWatch(conn, () => {
    lease?.stream.destroy(new ClientGoneError());
    conn.destroy();
  });
  try {
    const peer = o.group.pick();
    lease = await o.forwarder.leaseOrFail(peer, true);
    if (client.gone) throw new ClientGoneError();
    const u = lease.stream;
    u.setIdleTimeout(s.upstreamHeadersTimeoutMs, () => new UpstreamTimeoutError('headers', s.upstreamHeadersTimeoutMs, peer.upstream.url));
    const head = buildUpstreamRequestHead({
      method: req.method ?? 'GET', url: req.url ?? '/', rawHeaders: req.rawHeaders,
      clientAddress: conn.remoteAddress ?? '', clientPort: conn.remotePort, proto: 'https', trustForwarded: s.trustForwarded,
      bodyFraming: 'none', upgrade: req.headers.upgrade ?? '', keepAlive: false,
    });
    await u.write(Buffer.from(head, 'latin1'));
    const { head: rh, rest } = await readResponseHead(u, req.method ?? 'GET', { maxHeaderSize: s.maxHeaderSize, maxHeaderCount: s.maxHeaderCount }, true);
    record.answered(peer.upstream.url, rh.status);
    const fields = rh.status === 101 ? rh.headers : refusalFields(rh);
    // The answer goes straight to the connection: only after the responses owed to earlier
    // pipelined requests (RFC 9112 §9.3.2), which node writes from its own queue.
    const owedOut = await owedWithin(conn, s.idleTimeoutMs);
    if (client.gone) throw new ClientGoneError();
    if (!owedOut) {
      o.log.warn({ conn: conn.id, url: req.url, waitedMs: s.idleTimeoutMs }, 'upgrade: the responses owed to earlier pipelined requests did not go out; connection closed');
      conn.destroy();
      record.status = 499;
      record.end('warn');
      return;
    }
    const sentAhead = client.stop();
    conn.write(responseHead(rh.status, rh.reason, fields));
    answered = true;
    if (rest.length > 0 && rh.status === 101) {
      conn.write(rest);
      record.bytes += rest.length;
      record.bodyPath = 'write';
    }
    o.log.info({ conn: conn.id, url: req.url, status: rh.status, upstream: peer.upstream.url }, 'upgrade');
    if (rh.status !== 101) {
      // A refusal (426 Upgrade Required, 401, a redirect...) keeps its body, then the connection closes.
      u.setIdleTimeout(s.upstreamIdleTimeoutMs, () => new UpstreamTimeoutError('body', s.upstreamIdleTimeoutMs, peer.upstream.url));
      await relayRefusalBody(conn, u, rh, rest, record);
      closeDetached(conn, s.idleTimeoutMs);
      record.end('info');
      return;
    }
    // What the client sent behind its request goes first, written by the tunnel: the 101 is out,
    // so an upstream that refuses those bytes ends the tunnel, and no HTTP answer may follow.
    const ahead = sentAhead.length > 0 ? Buffer.concat([early, sentAhead]) : early;
    u.setIdleTimeout(s.upstreamIdleTimeoutMs, () => new UpstreamTimeoutError('body', s.upstreamIdleTimeoutMs, peer.upstream.url));
    // --idle-timeout bounds a stalled client (nginx's send_timeout); a quiet tunnel is the upstream timeout's.
    const moved = await tunnel({ conn, upstream: u, pipes: o.pipes, log: o.log, sentAhead: ahead, stallTimeoutMs: s.idleTimeoutMs });
    tunnelEnded(o, record, conn, moved, null);
  } catch (err) {
    if (client.gone || err instanceof ClientGoneError) {
      // The client's doing, not the upstream's: info, as for a request whose client left.
      o.log.info({ conn: conn.id, url: req.url, error: 'ERR_CLIENT_GONE', detail: new ClientGoneError().message }, 'upgrade abandoned');
      conn.destroy();
      record.status = answered ? record.status : 499;
      record.end('info', new ClientGoneError());
      return;
    }
    const moved = tunnelResultOf(err);
    if (answered && record.status === 101 && moved !== null) tunnelEnded(o, record, conn, moved, err);
    else failedBeforeTunnel(o, record, err, answered);
    // Whatever ended the attempt, the connection is released: with the answer while it can
    // still take one (closeDetached; it also notices a client gone meanwhile), else at once.
    // Once answered, no second answer (the tunnel may have begun a lingering close).
    client.stop();
    if (answered) { if (!beingClosed(conn)) conn.destroy(); }
    else if (!conn.destroyed) closeDetached(conn, s.idleTimeoutMs, closingAnswer(failureStatus(err)));
  } finally {
    client.stop();
    lease?.stream.destroy();
  }
}

/**
 * A switched tunnel's end, `err` null when both sides ended it: one
 * main-log line, as `aludel tcp` writes `tunnel closed` (bytes each way,
 * how the bytes to the client moved, how long it lived), then the request's
 * access-log line with status 101 and those bytes (request lines in the
 * main log: that line alone, with `up` and `reason`). Only the upstream's
 * failure (a reset, a refused write) is a warning; a client that reset or
 * stopped reading (nginx: "client timed out", at info), a tunnel quiet past
 * --upstream-idle-timeout (closed as configured) and one cut at the
 * --shutdown-timeout deadline (the admin's stop) are info.
 */
function tunnelEnded(o: UpgradeOptions, record: UpgradeRecord, conn: SecureConnection, moved: TunnelResult, err: unknown): void {
  record.bytes += moved.down;
  if (moved.down > 0) record.bodyPath = moved.downPath;
  const fields = { conn: conn.id, url: record.req.url, status: 101, upstream: record.upstream, up: moved.up, down: record.bytes, body: record.bodyPath, ...cryptoSite(conn.tls), ms: record.msSoFar() };
  const reason = endReason(conn, err);
  if (err === null || reason !== null) {
    const why = reason !== null ? { reason } : {};
    // Request lines in the main log (no --access-log): the request line, written at this same
    // moment, says it all with `up` and `reason` added; "upgrade closed" beside it would be a
    // second line about one end. nginx writes the access line alone for a WebSocket that ends
    // well (nothing in its error log); a failure keeps both, as nginx logs an error and the access line.
    if (o.access.jsonInMainLog) {
      record.end('info', null, { up: moved.up, ...why });
      return;
    }
    o.log.info({ ...fields, ...why }, 'upgrade closed');
    record.end('info');
    return;
  }
  // A client that stopped reading, or reset, is the client's doing: info, as nginx's "client timed out".
  const level = isUpstreamFailure(err) && !(err instanceof TunnelStalledError) ? 'warn' : 'info';
  o.log[level]({ ...fields, error: errCode(err), detail: (err as Error).message }, 'upgrade failed');
  record.end(level, err);
}

/** Why a tunnel that ended on an error was closed as configured, not failed; null: it failed. */
function endReason(conn: SecureConnection, err: unknown): 'shutdown' | 'idle timeout' | null {
  if (err === null) return null;
  if (wasCutAtShutdown(conn)) return 'shutdown';
  // The upstream's idle timer counts bytes either way: it fired on a tunnel quiet both ways.
  if (err instanceof UpstreamTimeoutError) return 'idle timeout';
  return null;
}

/** An upgrade that failed before any tunnel: the 502/504 that closeDetached sends, or the cut after a refusal began. */
function failedBeforeTunnel(o: UpgradeOptions, record: UpgradeRecord, err: unknown, answered: boolean): void {
  const worthALook = !isClientFault(err) && errCode(err) !== 'ECONNRESET';
  const level = worthALook ? 'warn' : 'info';
  if (!answered) record.status = failureStatus(err);
  o.log[level]({ conn: record.conn.id, url: record.req.url, error: errCode(err), detail: (err as Error).message }, 'upgrade failed');
  record.end(level, err);
}

/**
 * Client bytes the proxy holds while the upstream has not answered: a
 * WebSocket client sends none before the 101 (RFC 6455 §4.1), and past this
 * the rest waits in the kernel, as it did before anything was read.
 */
const SENT_AHEAD_MAX = 16 * 1024;

/**
 * The client of an upgrade while its upstream is asked. node hands the
 * connection over paused and without its listeners: nothing read it, so a
 * client that left (FIN, close_notify, reset) was noticed by nobody, and
 * its descriptor was held until the upstream attempt ended, then until
 * --idle-timeout (the error answer, written after the peer's FIN had been
 * read, never finished, and closeDetached lingered for it): a descriptor a
 * minute per abandoned upgrade, costing the client nothing. Here the connection is
 * read meanwhile: what the client sends is held for the tunnel (up to
 * SENT_AHEAD_MAX, then reading pauses), and its end, close or error calls
 * `onGone` once.
 */
class ClientWatch {
  gone = false;
  private watching = true;
  private held: Buffer[] = [];
  private bytes = 0;

  constructor(private readonly conn: SecureConnection, private readonly onGone: () => void) {
    conn.on('data', this.onData);
    conn.on('end', this.onLeave);
    conn.on('close', this.onLeave);
    conn.on('error', this.onLeave);
    if (conn.destroyed) this.onLeave();
    else conn.resume();
  }

  private readonly onData = (chunk: Buffer): void => {
    this.held.push(chunk);
    this.bytes += chunk.length;
    if (this.bytes >= SENT_AHEAD_MAX) this.conn.pause();
  };

  private readonly onLeave = (): void => {
    if (this.gone || !this.watching) return;
    this.gone = true;
    this.onGone();
  };

  /** Stops watching (idempotent); returns the bytes the client sent meanwhile. */
  stop(): Buffer {
    if (!this.watching) return EMPTY;
    this.watching = false;
    const { conn } = this;
    conn.off('data', this.onData);
    conn.off('end', this.onLeave);
    conn.off('close', this.onLeave);
    conn.off('error', this.onLeave);
    if (!conn.destroyed) conn.pause();
    const held = this.held.length === 1 ? this.held[0]! : Buffer.concat(this.held);
    this.held = [];
    return held;
  }
}

/**
 * owedSent, bounded by the client's idle timeout. Once node has handed the
 * connection over for the upgrade, a response to an earlier pipelined
 * request that is still being prepared may never be flushed (node has
 * removed its own listeners from the socket), and nothing else would end
 * the wait: the upstream connections of all three exchanges were held for
 * good (found by the long fuzz run).
 */
function owedWithin(conn: SecureConnection, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    timer.unref();
    void owedSent(conn).then((sent) => {
      clearTimeout(timer);
      resolve(sent);
    });
  });
}

/**
 * The head of an upstream's answer other than 101 to an upgrade request, as
 * the client gets it: its framing kept where the client can check the body's
 * end by it (Content-Length; chunked, re-framed here, RFC 9112 §7.1), and
 * Connection: close, as the connection ends after it.
 */
function refusalFields(rh: ResponseHead): string[] {
  const fields = filterResponseHeaders(rh.headers, { keepFraming: rh.framing.kind === 'length' });
  if (rh.framing.kind === 'chunked') fields.push('Transfer-Encoding', 'chunked');
  fields.push('Connection', 'close');
  return fields;
}

/** The body of such an answer, as its head says (refusalFields), at the pace the client takes it. */
async function relayRefusalBody(conn: SecureConnection, u: UpstreamStream, rh: ResponseHead, rest: Buffer, record: UpgradeRecord): Promise<void> {
  const chunked = rh.framing.kind === 'chunked';
  // Counted as written, chunk framing included: what nginx's $body_bytes_sent counts.
  const send = (b: Buffer): boolean => {
    record.bytes += b.length;
    record.bodyPath = 'write';
    return conn.write(b);
  };
  await readBody(u, rh.framing, rest, async (b) => {
    if (chunked) send(chunkSizeLine(b.length));
    const more = send(b);
    if (chunked) send(CRLF);
    if (!more) await drainedOrClosed(conn);
  });
  if (chunked) send(LAST_CHUNK);
}

function drainedOrClosed(conn: SecureConnection): Promise<void> {
  if (conn.destroyed) return Promise.reject(new ClientGoneError());
  return new Promise((resolve, reject) => {
    const done = (): void => { conn.off('drain', drained); conn.off('close', closed); };
    const drained = (): void => { done(); resolve(); };
    const closed = (): void => { done(); reject(new ClientGoneError()); };
    conn.on('drain', drained);
    conn.on('close', closed);
  });
}

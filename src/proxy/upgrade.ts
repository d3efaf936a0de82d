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
import type { UpstreamStream } from './upstream-stream.js';
import { tunnel, TunnelStalledError } from './tunnel.js';
import { failureStatus } from './failures.js';

export interface UpgradeOptions {
  settings: ProxySettings;
  group: UpstreamGroup;
  forwarder: Forwarder;
  pipes: PipePool | null;
  stats: TrafficStats;
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
  const problem = upgradeProblem(req);
  if (problem !== null) {
    o.log.info({ conn: conn.id, url: req.url, status: 400, error: 'ERR_BAD_REQUEST', detail: problem }, 'upgrade refused');
    closeDetached(conn, s.idleTimeoutMs, closingAnswer(400));
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
    const fields = rh.status === 101 ? rh.headers : refusalFields(rh);
    // The answer goes straight to the connection: only after the responses owed to earlier
    // pipelined requests (RFC 9112 §9.3.2), which node writes from its own queue.
    const owedOut = await owedWithin(conn, s.idleTimeoutMs);
    if (client.gone) throw new ClientGoneError();
    if (!owedOut) {
      o.log.warn({ conn: conn.id, url: req.url, waitedMs: s.idleTimeoutMs }, 'upgrade: the responses owed to earlier pipelined requests did not go out; connection closed');
      conn.destroy();
      return;
    }
    const sentAhead = client.stop();
    conn.write(responseHead(rh.status, rh.reason, fields));
    answered = true;
    if (rest.length > 0 && rh.status === 101) conn.write(rest);
    o.log.info({ conn: conn.id, url: req.url, status: rh.status, upstream: peer.upstream.url }, 'upgrade');
    if (rh.status !== 101) {
      // A refusal (426 Upgrade Required, 401, a redirect...) keeps its body, then the connection closes.
      u.setIdleTimeout(s.upstreamIdleTimeoutMs, () => new UpstreamTimeoutError('body', s.upstreamIdleTimeoutMs, peer.upstream.url));
      await relayRefusalBody(conn, u, rh, rest);
      closeDetached(conn, s.idleTimeoutMs);
      return;
    }
    // What the client sent behind its request goes first, written by the tunnel: the 101 is out,
    // so an upstream that refuses those bytes ends the tunnel, and no HTTP answer may follow.
    const ahead = sentAhead.length > 0 ? Buffer.concat([early, sentAhead]) : early;
    u.setIdleTimeout(s.upstreamIdleTimeoutMs, () => new UpstreamTimeoutError('body', s.upstreamIdleTimeoutMs, peer.upstream.url));
    // --idle-timeout bounds a stalled client (nginx's send_timeout); a quiet tunnel is the upstream timeout's.
    const moved = await tunnel({ conn, upstream: u, pipes: o.pipes, log: o.log, sentAhead: ahead, stallTimeoutMs: s.idleTimeoutMs });
    o.stats.body(conn, moved.downPath, moved.down);
  } catch (err) {
    if (client.gone || err instanceof ClientGoneError) {
      // The client's doing, not the upstream's: info, as for a request whose client left.
      o.log.info({ conn: conn.id, url: req.url, error: 'ERR_CLIENT_GONE', detail: new ClientGoneError().message }, 'upgrade abandoned');
      conn.destroy();
      return;
    }
    // A client that stopped reading is the client's doing: info, as nginx logs "client timed out".
    const level = err instanceof TunnelStalledError ? 'info' : 'warn';
    o.log[level]({ conn: conn.id, url: req.url, error: errCode(err), detail: (err as Error).message }, 'upgrade failed');
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
async function relayRefusalBody(conn: SecureConnection, u: UpstreamStream, rh: ResponseHead, rest: Buffer): Promise<void> {
  const chunked = rh.framing.kind === 'chunked';
  await readBody(u, rh.framing, rest, async (b) => {
    if (chunked) conn.write(chunkSizeLine(b.length));
    const more = conn.write(b);
    if (chunked) conn.write(CRLF);
    if (!more) await drainedOrClosed(conn);
  });
  if (chunked) conn.write(LAST_CHUNK);
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

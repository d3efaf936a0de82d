/**
 * Both directions of a TLS connection and an upstream stream, until both have
 * ended: `aludel tcp` and HTTP Upgrade (WebSocket) tunnels. Half-close is kept
 * (RFC 9293 §3.6): the client's close_notify / FIN becomes the upstream's FIN
 * while the other direction goes on, and the upstream's FIN becomes our
 * close_notify.
 *
 * Upstream -> client: with kTLS TX and a plain upstream, splice(2) through a
 * pipe (the kernel encrypts); else read + write. Client -> upstream: SSL_read.
 * With kTLS RX that is OpenSSL's recvmsg() with a TLS_GET_RECORD_TYPE cmsg,
 * the only safe way out of a kTLS RX socket: splicing from it fails on any
 * non-data record (an alert, a TLS 1.3 KeyUpdate).
 */
import { performance } from 'node:perf_hooks';
import type { Logger } from '../log/logger.js';
import type { SecureConnection } from '../tls/types.js';
import type { PipePool } from '../transport/pipe-pool.js';
import { spliceBody } from '../transport/splice-body.js';
import { closeDetached, LINGER_MS } from '../http/front.js';
import type { UpstreamStream } from './upstream-stream.js';

export interface TunnelOptions {
  conn: SecureConnection;
  upstream: UpstreamStream;
  pipes: PipePool | null;
  log: Logger;
  /**
   * No byte in either direction for this long closes both sides (nginx
   * stream's proxy_timeout, HAProxy's timeout client): a peer that vanished
   * without a FIN or a RST (a host powered off, a NAT that forgot the
   * mapping) is otherwise waited for as long as TCP allows. 0: none.
   */
  idleTimeoutMs?: number;
  /**
   * Bytes for the client waiting this long with none taken closes both sides
   * (nginx's send_timeout on an upgraded connection): a client that stopped
   * reading otherwise held the tunnel and both descriptors for good, the
   * upstream's reads paused behind it. A tunnel quiet both ways is not
   * stalled and stays. 0: none.
   */
  stallTimeoutMs?: number;
  /**
   * Client bytes read before the tunnel began (what an upgrade's client sent
   * behind its request, before the 101): the upstream's first bytes. Their
   * write is the tunnel's, so an upstream that refuses it is handled as any
   * refused write (its answer relayed, then a lingering close), never as a
   * failure before the switch.
   */
  sentAhead?: Buffer;
}

export interface TunnelResult {
  /** Client -> upstream bytes. */
  up: number;
  /** Upstream -> client bytes, and how they moved. */
  down: number;
  downPath: 'splice' | 'write';
}

/** The tunnel was closed by its idle timeout (TunnelOptions.idleTimeoutMs). */
export class TunnelIdleError extends Error {
  readonly code = 'ERR_TUNNEL_IDLE';
  constructor(readonly idleMs: number, readonly result: TunnelResult) {
    super(`idle timeout: no data either way for ${idleMs} ms`);
  }
}

/** The tunnel was closed because its client took no byte for TunnelOptions.stallTimeoutMs. */
export class TunnelStalledError extends Error {
  readonly code = 'ERR_CLIENT_STALLED';
  constructor(readonly stallMs: number, readonly result: TunnelResult) {
    super(`the client took no byte for ${stallMs} ms with data waiting for it`);
  }
}

function connectionClosed(): Error {
  return Object.assign(new Error('client connection closed'), { code: 'ECONNRESET' });
}

/**
 * Client -> upstream: paused while the upstream has not taken the last
 * chunk. Resolves with null once the client's side has ended and the
 * upstream has our FIN, or with the error of a write the upstream refused
 * (a reset: it closed with our bytes unread, RFC 9293 §3.10.7.4). That ends
 * this direction only: what the upstream sent before it closed is still in
 * our socket (Linux keeps it readable after the reset) and is the client's,
 * often the reason it closed (redis' "-ERR Protocol error", an SMTP 552).
 * The client's further bytes are read and dropped by the lingering close
 * that ends the tunnel (see tunnel()).
 */
async function clientToUpstream(conn: SecureConnection, u: UpstreamStream, ahead: Buffer | undefined, count: (n: number) => void): Promise<Error | null> {
  if (ahead !== undefined && ahead.length > 0) {
    try {
      await u.write(ahead);
    } catch (err) {
      return refusedBy(err);
    }
    count(ahead.length);
  }
  // destroyOnReturn false: a readable side that ended (close_notify) must not destroy the
  // Duplex, whose writable side still carries the upstream's answer (half-close).
  for await (const chunk of conn.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    try {
      await u.write(chunk);
    } catch (err) {
      return refusedBy(err);
    }
    count(chunk.length);
  }
  u.endWrite();
  return null;
}

/** A write the upstream refused: the upstream's failure, as its failed reads are. */
function refusedBy(err: unknown): Error {
  if (typeof err === 'object' && err !== null) upstreamFailures.add(err);
  return err as Error;
}

/**
 * The upstream's bytes to the client until its end, by splice where `pipes`
 * is given (downPath), else written. `toClient.waiting` is
 * true while a pipeful waits to go into the client (splice): those bytes
 * bypass the stream, so its writableNeedDrain never says that a client
 * stopped reading them, and the stall watch would never fire (a WebSocket
 * client that stopped reading held its tunnel for good under kTLS).
 */
async function upstreamToClient(conn: SecureConnection, u: UpstreamStream, pipes: PipePool | null, count: (n: number) => void, toClient: { waiting: boolean }): Promise<void> {
  if (pipes !== null) {
    const into = conn as Required<SecureConnection>;
    const target = {
      async spliceFromPipe(pipeRead: number, length: number): Promise<void> {
        toClient.waiting = true;
        try {
          await into.spliceFromPipe(pipeRead, length);
        } finally {
          toClient.waiting = false;
        }
      },
    };
    // An upstream that resets after answering (closed over our unread bytes, RFC 9293 §3.10.7.4)
    // fails whichever call comes first: often this splice, not a write to it (the kernel hands
    // ECONNRESET to one call; readiness resumes the reader first). Still the upstream's failure:
    // unmarked, the client was destroyed, its RST losing the answer to a client still writing.
    const plain = u.plain!;
    const from = { spliceInto: (pipeWrite: number, max: number) => upstreamFailing(() => plain.spliceInto(pipeWrite, max)) };
    await spliceBody(pipes, from, target, null, count);
  } else {
    for (let c = await readUpstream(u); c !== null; c = await readUpstream(u)) {
      if (!conn.write(c)) await waitDrain(conn);
      count(c.length);
    }
  }
  await endClient(conn);
}

/** How the upstream's bytes go to the client: by splice from a plain upstream into kTLS TX, else written. */
function downPath(conn: SecureConnection, u: UpstreamStream, pipes: PipePool | null): 'splice' | 'write' {
  return pipes !== null && u.plain !== null && conn.tls.ktlsTx && conn.spliceFromPipe !== undefined ? 'splice' : 'write';
}

/**
 * Our close_notify, then our FIN (RFC 8446 §6.1): resolves once it is out,
 * rejects if the connection is destroyed first. Never waits on a connection
 * already gone: end()'s callback on a destroyed stream is not promised in
 * every state, and a wait for it was a tunnel held forever.
 */
function endClient(conn: SecureConnection): Promise<void> {
  return new Promise((resolve, reject) => {
    if (conn.destroyed) {
      if (conn.writableFinished) resolve();
      else reject(connectionClosed());
      return;
    }
    const closed = (): void => { if (conn.writableFinished) resolve(); else reject(connectionClosed()); };
    conn.once('close', closed);
    conn.end(() => {
      conn.off('close', closed);
      if (conn.writableFinished) resolve();
      else reject(connectionClosed());
    });
  });
}

/** Errors of the upstream's side (a read it failed): the tunnel closes the client with a linger for them. */
const upstreamFailures = new WeakSet<object>();

/**
 * Errors the tunnel itself destroyed the upstream with (its timeouts, the
 * client connection gone): the upstream's read then fails with them, which
 * makes them no failure of the upstream's.
 */
const tunnelsOwn = new WeakSet<object>();

/** Whether a tunnel's error is the upstream's doing (a read it failed, a write it refused), not the client's. */
export function isUpstreamFailure(err: unknown): boolean {
  return typeof err === 'object' && err !== null && upstreamFailures.has(err);
}

/** What a tunnel that failed had moved by then, by the error it threw. */
const resultsOfFailures = new WeakMap<object, TunnelResult>();

/**
 * The bytes a failed tunnel moved before it ended (null for an error that
 * is no tunnel's): a tunnel cut or reset after an hour of traffic still
 * carried that traffic, and its lines and counters say so, as nginx's
 * $bytes_sent does for a connection that ended badly.
 */
export function tunnelResultOf(err: unknown): TunnelResult | null {
  return typeof err === 'object' && err !== null ? resultsOfFailures.get(err) ?? null : null;
}

/** The upstream's next bytes; a failure is marked as the upstream's. */
function readUpstream(u: UpstreamStream): Promise<Buffer | null> {
  return upstreamFailing(() => u.read());
}

/** A read from the upstream (read, splice out of it): its failure is marked as the upstream's, unless the tunnel caused it. */
async function upstreamFailing<T>(read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (typeof err === 'object' && err !== null && !tunnelsOwn.has(err)) upstreamFailures.add(err);
    throw err;
  }
}

function waitDrain(conn: SecureConnection): Promise<void> {
  return new Promise((resolve, reject) => {
    // Destroyed already: its 'close' has been emitted, and no 'drain' will come.
    if (conn.destroyed) { reject(connectionClosed()); return; }
    const done = (): void => { conn.off('close', closed); resolve(); };
    const closed = (): void => { conn.off('drain', done); reject(connectionClosed()); };
    conn.once('drain', done);
    conn.once('close', closed);
  });
}

/** What the client connection has sent so far (KtlsConnection and node's TLSSocket count it; 0 if not). */
function sentBytes(conn: SecureConnection): number {
  return (conn as Partial<{ bytesWritten: number }>).bytesWritten ?? 0;
}

/**
 * Calls `fire` once no byte has moved either way for `ms`. Activity is what
 * the two directions counted, and the client connection's own count of bytes
 * sent, which a splice into it moves on within a pipeful (a slow client taking
 * a large pipeful makes progress before the pipeful is counted). One timer,
 * re-armed for what is left of the period when it fires early.
 */
function idleWatch(ms: number, conn: SecureConnection, fire: () => void, due: () => boolean = () => true): { touch: () => void; stop: () => void } {
  let last = performance.now();
  let seen = sentBytes(conn);
  let timer: NodeJS.Timeout | null = null;
  const check = (): void => {
    const now = performance.now();
    const bytes = sentBytes(conn);
    if (bytes !== seen) { seen = bytes; last = now; }
    // Idle, but not what this watch ends (a stall watch on a tunnel merely quiet): a new period.
    if (now - last >= ms && !due()) last = now;
    const idle = now - last;
    if (idle >= ms) { timer = null; fire(); return; }
    timer = setTimeout(check, Math.max(1, Math.ceil(ms - idle)));
    timer.unref();
  };
  if (ms > 0) {
    timer = setTimeout(check, ms);
    timer.unref();
  }
  return {
    touch: () => { last = performance.now(); },
    stop: () => { if (timer) clearTimeout(timer); timer = null; },
  };
}

/**
 * Runs both directions until both are done. Half-close (RFC 9293 §3.6) is
 * kept: one direction ending (a FIN, a close_notify) only ends that one. The
 * tunnel is torn down, both sockets closed, when it is dead: either direction
 * failing (a reset, a write to a peer gone), the client connection closed
 * under it (destroyed: nothing more can go either way, and a wait on the
 * upstream for bytes nobody can take would hold its socket forever), or no
 * byte either way for idleTimeoutMs (TunnelIdleError). When the upstream's
 * side is the one that failed, the client is not cut but given a lingering
 * close after the upstream's last bytes (lingerOnClient); the caller then
 * finds it beingClosed() and leaves it to finish.
 */
export async function tunnel(o: TunnelOptions): Promise<TunnelResult> {
  const { conn, upstream: u } = o;
  // The readable side ending (close_notify) must not end the writable side: the
  // upstream may still be answering (redis-cli pipelines, then shuts down writing).
  conn.allowHalfOpen = true;
  const r: TunnelResult = { up: 0, down: 0, downPath: 'write' };
  let stopped: Error | null = null;
  let refused: Error | null = null;
  const stop = (err: Error): void => {
    stopped ??= err;
    if (!upstreamFailures.has(err)) tunnelsOwn.add(err);
    u.destroy(err);
    if (refused !== null || upstreamFailures.has(err)) lingerOnClient(conn);
    else conn.destroy();
  };
  const idle = idleWatch(o.idleTimeoutMs ?? 0, conn, () => stop(new TunnelIdleError(o.idleTimeoutMs!, r)));
  // Stalled: bytes for the client wait, above the stream's high-water mark (writableNeedDrain) or
  // in a pipe whose splice into the client waits for room (toClient.waiting).
  const toClient = { waiting: false };
  const stall = idleWatch(o.stallTimeoutMs ?? 0, conn, () => stop(new TunnelStalledError(o.stallTimeoutMs!, r)), () => conn.writableNeedDrain || toClient.waiting);
  const onClose = (): void => {
    if (u.destroyed) return;
    const gone = connectionClosed();
    tunnelsOwn.add(gone);
    u.destroy(gone);
  };
  conn.once('close', onClose);
  const up = clientToUpstream(conn, u, o.sentAhead, (n) => { r.up += n; idle.touch(); }).then((err) => { refused = err; });
  // Known from the start: a tunnel that fails after splicing says so in its line and counters.
  r.downPath = downPath(conn, u, o.pipes);
  const down = upstreamToClient(conn, u, r.downPath === 'splice' ? o.pipes : null, (n) => { r.down += n; idle.touch(); stall.touch(); }, toClient);
  // One direction failing ends both: a reset client cannot take the rest, a dead upstream cannot send it.
  const stopOnError = (err: unknown): never => {
    stop(err as Error);
    throw err;
  };
  try {
    await Promise.all([up.catch(stopOnError), down.catch(stopOnError)]);
  } catch (err) {
    // The cause, not the errors it brought about in the other direction (an idle timeout
    // makes both directions fail with "connection closed").
    const cause = (stopped ?? err) as Error;
    if (typeof cause === 'object' && cause !== null) resultsOfFailures.set(cause, r);
    throw cause;
  } finally {
    idle.stop();
    stall.stop();
    conn.off('close', onClose);
    u.destroy();
  }
  // The upstream's answer is on its way to the client; the tunnel still failed, and says why.
  if (refused !== null) {
    lingerOnClient(conn);
    resultsOfFailures.set(refused, r);
    throw refused;
  }
  return r;
}

/**
 * The upstream failed (it reset, or refused our bytes), and what it sent
 * before is written to the client: close the client as nginx's
 * lingering_close does. Our close_notify and FIN follow the data, as nginx's
 * stream proxy sends close_notify when its upstream goes (ngx_ssl_shutdown);
 * what the client still sends is read and dropped until it closes, for
 * LINGER_MS at most. Closing at once with the client's bytes unread makes
 * the kernel answer with a RST (RFC 9293 §3.10.7.4 on a close with data
 * pending, the case RFC 9112 §9.6 warns of): a client still writing gets
 * the reset on its next write and may drop the answer unread (node's
 * sockets do, on the write's error).
 */
function lingerOnClient(conn: SecureConnection): void {
  if (!conn.destroyed) closeDetached(conn, LINGER_MS);
}

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
import type { Logger } from '../log/logger.js';
import type { SecureConnection } from '../tls/types.js';
import type { PipePool } from '../transport/pipe-pool.js';
import { spliceBody } from '../transport/splice-body.js';
import type { UpstreamStream } from './upstream-stream.js';

export interface TunnelOptions {
  conn: SecureConnection;
  upstream: UpstreamStream;
  pipes: PipePool | null;
  log: Logger;
}

export interface TunnelResult {
  /** Client -> upstream bytes. */
  up: number;
  /** Upstream -> client bytes, and how they moved. */
  down: number;
  downPath: 'splice' | 'write';
}

/** Client -> upstream: paused while the upstream has not taken the last chunk. */
async function clientToUpstream(conn: SecureConnection, u: UpstreamStream, count: (n: number) => void): Promise<void> {
  // destroyOnReturn false: a readable side that ended (close_notify) must not destroy the
  // Duplex, whose writable side still carries the upstream's answer (half-close).
  for await (const chunk of conn.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
    await u.write(chunk);
    count(chunk.length);
  }
  u.endWrite();
}

async function upstreamToClient(conn: SecureConnection, u: UpstreamStream, pipes: PipePool | null, count: (n: number) => void): Promise<'splice' | 'write'> {
  const path = pipes !== null && u.plain !== null && conn.tls.ktlsTx && conn.spliceFromPipe !== undefined ? 'splice' : 'write';
  if (path === 'splice') {
    await spliceBody(pipes!, u.plain!, conn as Required<SecureConnection>, null, count);
  } else {
    for (let c = await u.read(); c !== null; c = await u.read()) {
      if (!conn.write(c)) await waitDrain(conn);
      count(c.length);
    }
  }
  await new Promise<void>((resolve) => conn.end(resolve));
  return path;
}

function waitDrain(conn: SecureConnection): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (): void => { conn.off('close', closed); resolve(); };
    const closed = (): void => { conn.off('drain', done); reject(Object.assign(new Error('client connection closed'), { code: 'ECONNRESET' })); };
    conn.once('drain', done);
    conn.once('close', closed);
  });
}

export async function tunnel(o: TunnelOptions): Promise<TunnelResult> {
  const { conn, upstream: u } = o;
  // The readable side ending (close_notify) must not end the writable side: the
  // upstream may still be answering (redis-cli pipelines, then shuts down writing).
  conn.allowHalfOpen = true;
  const r: TunnelResult = { up: 0, down: 0, downPath: 'write' };
  const up = clientToUpstream(conn, u, (n) => (r.up += n));
  const down = upstreamToClient(conn, u, o.pipes, (n) => (r.down += n)).then((p) => { r.downPath = p; });
  // One direction failing ends both: a reset client cannot take the rest, a dead upstream cannot send it.
  const stopOnError = (err: unknown): never => {
    u.destroy(err as Error);
    conn.destroy();
    throw err;
  };
  try {
    await Promise.all([up.catch(stopOnError), down.catch(stopOnError)]);
  } finally {
    u.destroy();
  }
  return r;
}

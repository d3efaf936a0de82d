/**
 * Idle TLS connections: each finishes its handshake and then sends nothing,
 * as a browser's spare keep-alive connection or a client parked behind a NAT.
 * What the server keeps per connection then is its TLS state (the SSL object,
 * its buffers), the socket's bookkeeping and the HTTP parser waiting for a
 * request line; the kernel's socket buffers are empty and are not RSS anyway.
 * ALPN offers http/1.1 only: an HTTP/2 server would send its SETTINGS and
 * hold a session per connection, a different (larger) cost.
 */
import tls from 'node:tls';
import { closeAll, openPool } from './stalled-clients.js';

export interface IdleOptions {
  host: string;
  port: number;
  connections: number;
  /** Handshakes in flight at once (a burst of thousands would overflow the listen backlog). */
  concurrency?: number;
  /** Give up on a handshake that has not finished after this long. */
  timeoutMs?: number;
}

export interface IdleClients {
  /** Connections whose handshake finished and that are still open. */
  open(): number;
  /** Handshakes that failed, and the first few reasons. */
  failed: number;
  errors: string[];
  close(): Promise<void>;
}

/** One connection: resolves once the handshake finished (secureConnect). */
function handshakeOne(o: IdleOptions, closed: () => void): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: o.host, port: o.port, rejectUnauthorized: false, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    const timer = setTimeout(() => fail(new Error('handshake not finished in time')), o.timeoutMs ?? 30_000);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      s.destroy();
      reject(err);
    };
    s.once('error', fail);
    s.once('close', () => fail(new Error('closed during the handshake')));
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.removeAllListeners('close');
      s.removeListener('error', fail);
      // A server closing an idle connection later (a timeout) only ends it: open() then counts one less.
      s.on('error', () => undefined);
      s.once('close', closed);
      resolve(s);
    });
  });
}

export async function openIdle(o: IdleOptions): Promise<IdleClients> {
  let closedEarly = 0;
  const { sockets, failed, errors } = await openPool(o.connections, o.concurrency ?? 64, () => handshakeOne(o, () => closedEarly++));
  return { open: () => sockets.length - closedEarly, failed, errors, close: () => closeAll(sockets) };
}

/**
 * The soft "Max open files" of /proc/<pid>/limits (proc(5)): how many
 * connections a process can hold. Node raises its own soft limit to the hard
 * one at start-up, so for a Node process this is the hard limit of its
 * parent's `ulimit -Hn`. "unlimited" reads as Infinity.
 */
export function parseOpenFilesLimit(limits: string): number {
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(limits);
  if (!m) throw new Error(`no "Max open files" line in /proc/<pid>/limits: ${JSON.stringify(limits.slice(0, 200))}`);
  return m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

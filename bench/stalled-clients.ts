/**
 * Clients that stop reading: each opens a TLS connection, asks for a large
 * body, takes the first bytes of the answer and then pauses. Node stops
 * reading the socket once its readable buffer passes highWaterMark, so the
 * rest stays in the kernel: the client's receive queue fills, the server's
 * send queue fills behind it, and whatever the server buffers beyond that is
 * its own cost per stalled connection.
 */
import tls from 'node:tls';

export interface StalledOptions {
  host: string;
  port: number;
  path: string;
  connections: number;
  /** Handshakes in flight at once (a burst of 1,000 would overflow the listen backlog). */
  concurrency?: number;
  /** Give up on a connection that has not sent its first bytes after this long. */
  timeoutMs?: number;
}

export interface StalledClients {
  /** Connections that got their first response bytes and are now stalled. */
  stalled: number;
  failed: number;
  /** The first few failure reasons, for the report. */
  errors: string[];
  close(): Promise<void>;
}

/** One connection: resolves with it once the first response bytes arrived and reading stopped. */
function stallOne(o: StalledOptions): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: o.host, port: o.port, rejectUnauthorized: false, servername: 'localhost', ALPNProtocols: ['http/1.1'] });
    const timer = setTimeout(() => fail(new Error('no response bytes in time')), o.timeoutMs ?? 30_000);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      s.destroy();
      reject(err);
    };
    s.once('error', fail);
    s.once('close', () => fail(new Error('closed before the first response bytes')));
    s.once('secureConnect', () => s.write(`GET ${o.path} HTTP/1.1\r\nHost: localhost\r\n\r\n`));
    s.once('data', () => {
      clearTimeout(timer);
      s.pause();
      s.removeAllListeners('close');
      s.removeListener('error', fail);
      // Errors after the stall (a server closing an over-limit connection) only end it.
      s.on('error', () => undefined);
      resolve(s);
    });
  });
}

/** Connections opened `concurrency` at a time by `one`, with the failures counted and the first few reasons kept. */
export async function openPool(connections: number, concurrency: number, one: () => Promise<tls.TLSSocket>): Promise<{ sockets: tls.TLSSocket[]; failed: number; errors: string[] }> {
  const sockets: tls.TLSSocket[] = [];
  const errors: string[] = [];
  let failed = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < connections) {
      next++;
      try {
        sockets.push(await one());
      } catch (err) {
        failed++;
        if (errors.length < 5) errors.push((err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, connections) }, worker));
  return { sockets, failed, errors };
}

/** Destroys every socket; resolves once all are closed. */
export async function closeAll(sockets: readonly tls.TLSSocket[]): Promise<void> {
  await Promise.all(sockets.map((s) => new Promise<void>((r) => {
    if (s.destroyed) { r(); return; }
    s.once('close', () => r());
    s.destroy();
  })));
}

export async function openStalled(o: StalledOptions): Promise<StalledClients> {
  const { sockets, failed, errors } = await openPool(o.connections, o.concurrency ?? 32, () => stallOne(o));
  return { stalled: sockets.length, failed, errors, close: () => closeAll(sockets) };
}

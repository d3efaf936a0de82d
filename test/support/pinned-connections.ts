/**
 * Keep-alive HTTPS connections pinned to the workers of `aludel proxy
 * --workers N`, so that a test sends each request through the worker it
 * chooses. The kernel gives each new connection to one worker, and the
 * connection stays with it: connections are opened one at a time and probed
 * with one request each, whose log line names the worker (its pid), until
 * every worker has one; the spare ones are closed.
 *
 * A pinned connection never silently moves: a request that would need a new
 * connection (the proxy closed the old one) is refused before it is sent,
 * since a new connection may land on any worker.
 */
import https from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';
import type { Running } from './aludel-process.js';

export interface PinnedAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export class PinnedConnection {
  /** The worker holding this connection, once probed. */
  pid = 0;
  private readonly agent: https.Agent;
  private opened = false;

  constructor(
    private readonly port: number,
    ca: Buffer,
  ) {
    // One socket, kept open between requests: every request goes over the same connection.
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
  }

  /** GET `path` on this connection; Host is `localhost:PORT`, as curl sends it (the cache key). */
  get(path: string, headers: Record<string, string> = {}): Promise<PinnedAnswer> {
    return new Promise((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', servername: 'localhost', port: this.port, path, method: 'GET', headers: { Host: `localhost:${this.port}`, ...headers }, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.on('socket', () => {
        // The request is written once the socket is connected: destroyed here, a new connection carries nothing.
        if (this.opened && !req.reusedSocket) req.destroy(new Error(`the connection pinned to worker ${this.pid} was closed; a new one could reach another worker`));
        this.opened = true;
      });
      req.end();
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/**
 * One pinned connection per pid of `pids`. `probe`: a URL whose request
 * does nothing the test cares about (a query parameter `pin=N` is added to
 * tell the probes' log lines apart).
 */
export async function pinToWorkers(p: Running, ca: Buffer, pids: readonly number[], probe: string): Promise<Map<number, PinnedConnection>> {
  const pinned = new Map<number, PinnedConnection>();
  for (let i = 0; pids.some((pid) => !pinned.has(pid)); i++) {
    if (i >= 60) throw new Error(`60 connections and still not one on each of the workers ${pids.join(', ')}`);
    const c = new PinnedConnection(p.port, ca);
    const url = `${probe}${probe.includes('?') ? '&' : '?'}pin=${i}`;
    const from = p.mark();
    await c.get(url);
    const line = await p.waitForLog((l) => l.msg === 'request' && l.url === url, 10_000, from);
    const pid = line.pid as number;
    if (pinned.has(pid) || !pids.includes(pid)) c.close();
    else {
      c.pid = pid;
      pinned.set(pid, c);
    }
  }
  return pinned;
}

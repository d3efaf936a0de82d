/**
 * The upstream behind `aludel proxy` in the fuzz runs: a raw TCP server that
 * parses every byte it receives with the strict parser and hands each request
 * head (or parse failure) to `onRequest` as soon as it is complete, and each
 * request's end; once the body has streamed through (hashed, never held) it answers:
 * 200 with originBody() for a request, 400 and close for a failure. It never
 * closes a keep-alive connection on its own, so the proxy has no reason to
 * retry (a retry would look like a duplicate).
 */
import net from 'node:net';
import { originAnswer } from './cases.js';
import { StrictRequestParser, type StrictEvent } from './strict-http.js';

export interface RecordingOrigin {
  port: number;
  /** Requests and failures so far. */
  counts: { requests: number; failures: number; connections: number };
  /** Ends every connection (all idle by then): the proxy's pooled ones must be let go. */
  dropConnections(): void;
  stop(): Promise<void>;
}

export async function startRecordingOrigin(onRequest: (r: StrictEvent) => void): Promise<RecordingOrigin> {
  const sockets = new Set<net.Socket>();
  const counts = { requests: 0, failures: 0, connections: 0 };
  const server = net.createServer((sock) => {
    counts.connections++;
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    const parser = new StrictRequestParser();
    sock.on('data', (chunk: Buffer) => {
      for (const r of parser.feed(chunk)) {
        onRequest(r);
        if ('error' in r) {
          counts.failures++;
          sock.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
          return;
        }
        if (!('end' in r)) continue;
        counts.requests++;
        const body = originAnswer(r.request.marker, r.bodyLength, r.sha16);
        const head = `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n`;
        sock.write(r.request.method === 'HEAD' ? head : Buffer.concat([Buffer.from(head, 'latin1'), body]));
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    counts,
    dropConnections() {
      for (const s of sockets) s.destroy();
    },
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

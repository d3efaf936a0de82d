/**
 * The demo's "legacy application": a plain-HTTP server that knows nothing of
 * TLS, as the programs Aludel fronts. It answers with what reached it (so the
 * demo shows the forwarded headers), a 16 MiB download of known sha256 sent
 * with Content-Length (spliced by the proxy when kTLS is on), and a chunked
 * stream (copied).
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';

const BIG = 16 * 1024 * 1024;

export interface LegacyApp {
  url: string;
  bigSha256: string;
  close(): Promise<void>;
}

export async function startLegacyApp(): Promise<LegacyApp> {
  const big = crypto.randomBytes(BIG);
  const bigSha256 = crypto.createHash('sha256').update(big).digest('hex');
  const server = http.createServer((req, res) => {
    if (req.url === '/big.bin') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': BIG });
      res.end(big);
    } else if (req.url === '/stream') {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      for (let i = 1; i <= 5; i++) res.write(`line ${i} of a chunked response\n`);
      res.end();
    } else {
      const headers = Object.entries(req.headers).map(([k, v]) => `  ${k}: ${String(v)}`).join('\n');
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.end(`Hello from the legacy app (plain HTTP, no TLS here).\n${req.method} ${req.url} reached it with:\n${headers}\n`);
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    bigSha256,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

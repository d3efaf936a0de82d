/**
 * The floor under `aludel serve` for small requests (bench/request-floor.ts):
 * Aludel's own TLS listener (createKtlsServer: the system OpenSSL, the same
 * connection class and event loop as every front) answering each request
 * with one canned 1 KiB response.
 *   raw  - the request head is found by its blank line and the response is
 *          written whole: no HTTP machinery at all, what an HTTP/1.1 layer
 *          of our own could approach;
 *   http - node's http.Server on those connections, with a handler that only
 *          writes the response: node's HTTP/1.1 machinery and nothing of ours.
 * Usage: node dist/bench/floor-responder.js raw|http PORT CERT KEY OFFLOAD
 */
import http from 'node:http';
import { createKtlsServer } from '../src/tls/create-server.js';
import type { OffloadMode } from '../src/config/tls-settings.js';
import type { SecureConnection } from '../src/tls/types.js';

const [mode, port, certFile, keyFile, offload] = process.argv.slice(2);
if ((mode !== 'raw' && mode !== 'http') || !port || !certFile || !keyFile || !offload) {
  console.error('usage: floor-responder raw|http PORT CERT KEY OFFLOAD');
  process.exit(2);
}
const body = Buffer.alloc(1024, 0x61);
// The fields aludel serve sends for a file (its Date and validators are per file; fixed here).
const fields = { 'Content-Type': 'application/octet-stream', 'Content-Length': '1024', 'Last-Modified': 'Thu, 01 Jan 2026 00:00:00 GMT', ETag: '"1024-abc"', 'Accept-Ranges': 'bytes' };
const response = Buffer.concat([
  Buffer.from(`HTTP/1.1 200 OK\r\n${Object.entries(fields).map(([k, v]) => `${k}: ${v}\r\n`).join('')}Date: ${new Date().toUTCString()}\r\nConnection: keep-alive\r\n\r\n`, 'latin1'),
  body,
]);
// The suite every bench front is pinned to (servers.ts TLS13_SUITE).
const server = createKtlsServer({ certificates: [{ certFile, keyFile }], offload: offload as OffloadMode, cipherSuites: 'TLS_AES_128_GCM_SHA256' });
if (mode === 'raw') {
  server.on('secureConnection', (conn: SecureConnection) => {
    let pending = '';
    conn.on('error', () => conn.destroy());
    const took = (text: string): void => {
      pending += text;
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        pending = pending.slice(end + 4);
        conn.write(response);
      }
    };
    // Each read straight from the connection's read scratch, as the lane reads (readInto): the
    // text is a copy of its own, made before the call returns.
    if (conn.readInto?.((buf, start, end) => took(buf.toString('latin1', start, end))) !== true) conn.on('data', (d: Buffer) => took(d.toString('latin1')));
  });
} else {
  const h = http.createServer((_req, res) => {
    res.writeHead(200, fields);
    res.end(body);
  });
  server.on('secureConnection', (conn: import('node:stream').Duplex) => h.emit('connection', conn));
}
await server.listen({ host: '127.0.0.1', port: Number(port) });
process.on('SIGTERM', () => process.exit(0));

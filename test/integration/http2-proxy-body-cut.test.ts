/**
 * aludel proxy, an HTTP/2 client that resets its stream (RST_STREAM) while
 * its request body is still coming. node's compatibility layer ends the
 * request's stream then as it does at END_STREAM, so the proxy took a cut
 * body for a whole one:
 * once the upstream had answered early (a 413 before the body, RFC 9110
 * §15.5.14; before that, node reports the reset as an error):
 * - without content-length (sent upstream chunked), the last chunk was
 *   written after the bytes that came: the origin got a shorter body as
 *   complete (nginx never completes a request whose client went);
 * - with content-length, the connection went back to the pool short of the
 *   declared bytes, and the next client's request on it was read by the
 *   origin as the rest of that body: a 504 (nginx's keepalive pool takes
 *   only a connection whose request body was sent whole).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startAludel, type Running } from '../support/aludel-process.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { waitUntil } from '../support/wait.js';

interface Seen {
  /** Body bytes the origin read so far. */
  bytes: number;
  /** How the body ended: read whole, or cut (aborted, reset); null: neither yet (node says nothing of a body it dropped after the answer). */
  end: 'complete' | 'cut' | null;
  /** The connection it came on has closed. */
  closed: boolean;
}

let fx: Fixtures<'one'>;
let origin: http.Server;
let p: Running;
/** Per request path, what the origin saw of its body. */
const seen = new Map<string, Seen>();

before(async () => {
  fx = await makeFixtures({ one: 1 });
  // /early-413*: answered at once, the body left unread (node's server then reads and drops
  // it, keeping the connection); anything else: the body read whole, then answered.
  origin = http.createServer((req, res) => {
    const s: Seen = { bytes: 0, end: null, closed: false };
    seen.set(req.url ?? '', s);
    req.socket.once('close', () => { s.closed = true; });
    req.on('data', (d: Buffer) => { s.bytes += d.length; });
    req.on('end', () => { s.end ??= 'complete'; if (!res.headersSent) res.end(`got ${s.bytes}\n`); });
    req.on('aborted', () => { s.end ??= 'cut'; });
    req.on('error', () => { s.end ??= 'cut'; });
    if (req.url?.startsWith('/early-413')) res.writeHead(413, { 'Content-Length': '9' }).end('too long\n');
  });
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
  const port = (origin.address() as AddressInfo).port;
  p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${port}`,
    '--offload', 'userspace', '--max-fails', '0', '--upstream-headers-timeout', '3s']);
});

after(async () => {
  await p?.stop();
  origin?.closeAllConnections();
  await new Promise<void>((resolve) => (origin ? origin.close(() => resolve()) : resolve()));
  fx?.cleanup();
});

function connect(): http2.ClientHttp2Session {
  const c = http2.connect(`https://localhost:${p.port}`, { ca: fx.certPem, host: '127.0.0.1', servername: 'localhost' } as http2.SecureClientSessionOptions);
  c.on('error', () => undefined);
  return c;
}

/** A GET's status and body on session `c`. */
function get(c: http2.ClientHttp2Session, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = c.request({ ':path': path });
    let status = 0;
    let body = '';
    s.on('response', (h) => { status = Number(h[':status']); });
    s.setEncoding('utf8');
    s.on('data', (d: string) => { body += d; });
    s.on('end', () => resolve({ status, body }));
    s.on('error', reject);
  });
}

describe('aludel proxy: an HTTP/2 request body its client cut with RST_STREAM', { timeout: 60_000 }, () => {
  test('without content-length, answered early by the upstream: the origin never gets the cut body as a complete one (the last chunk was written after it)', async () => {
    const c = connect();
    try {
      const s = c.request({ ':method': 'POST', ':path': '/early-413-no-length' });
      s.on('error', () => undefined);
      const status = new Promise<number>((resolve) => s.on('response', (h) => resolve(Number(h[':status']))));
      s.write(Buffer.alloc(1000, 0x41));
      assert.equal(await status, 413);
      await waitUntil(() => (seen.get('/early-413-no-length')?.bytes ?? 0) === 1000, 10_000);
      // RST_STREAM alone, INTERNAL_ERROR: node's close() sends END_STREAM first (a whole body), destroy() without an error resets with NO_ERROR.
      s.destroy(new Error('cut by the test'));
      // Either the body looked whole to the origin (the last chunk came), or its connection was closed under it.
      const cut = (): Seen => seen.get('/early-413-no-length')!;
      await waitUntil(() => cut().end !== null || cut().closed, 10_000);
      assert.deepEqual([cut().bytes, cut().end === 'complete', cut().closed], [1000, false, true], JSON.stringify(cut()));
    } finally {
      c.close();
    }
  });

  test('with content-length, answered early by the upstream: the upstream connection short of its body is not pooled, so the next request gets its own answer (it was read as that body: 504)', async () => {
    const c = connect();
    try {
      const s = c.request({ ':method': 'POST', ':path': '/early-413', 'content-length': String(3_000_000) });
      s.on('error', () => undefined);
      const status = new Promise<number>((resolve) => s.on('response', (h) => resolve(Number(h[':status']))));
      s.write(Buffer.alloc(100_000, 0x42));
      assert.equal(await status, 413);
      await waitUntil(() => (seen.get('/early-413')?.bytes ?? 0) === 100_000, 10_000);
      s.destroy(new Error('cut by the test'));
      // Its line is written once the exchange is over, the upstream connection pooled or closed.
      await p.waitForLog((l) => l.msg === 'request' && l.url === '/early-413', 10_000);
      const next = await get(c, '/after-early');
      assert.deepEqual([next.status, next.body], [200, 'got 0\n']);
    } finally {
      c.close();
    }
  });
});

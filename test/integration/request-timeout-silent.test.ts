/**
 * A connection that completes its TLS handshake and then sends nothing until
 * --headers-timeout is closed without a byte of HTTP, as nginx closes one
 * past client_header_timeout ("client timed out ... while waiting for
 * request", ngx_http_wait_request_handler: no response, no access-log line).
 * Aludel answered it "HTTP/1.1 408 Request Timeout": a response to a request
 * nobody sent, which a client that opened the connection ahead of use (a
 * browser's preconnect, a pool) reads as the answer to the request it sends
 * next. Checked on Debian's nginx 1.22 over TLS with client_header_timeout
 * 2s: nothing sent, then close_notify. A request begun and not finished keeps
 * its 408 head (RFC 9110 §15.5.9; refusal-log.test.ts), and so does a
 * connection idle after a request (node's keepAliveTimeout closes those).
 * For serve, proxy and proxy --cache.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { serveArgs, startAludel, type Running } from '../support/aludel-process.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { delay } from '../support/wait.js';

interface Outcome {
  /** Everything the server sent after the handshake. */
  bytes: Buffer;
  /** Whether the connection ended with the server's close_notify/FIN ('end') rather than a reset. */
  ended: boolean;
}

/** Opens a TLS connection, writes `first` (if any), and collects what comes back until the server closes. */
function silentClient(port: number, first?: string, timeoutMs = 15_000): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let ended = false;
    const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      if (first !== undefined) sock.write(first);
    });
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no close within ${timeoutMs} ms: ${Buffer.concat(chunks).toString('latin1')}`)); }, timeoutMs);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('end', () => { ended = true; });
    sock.on('error', () => undefined);
    sock.on('close', () => { clearTimeout(timer); resolve({ bytes: Buffer.concat(chunks), ended }); });
  });
}

let fx: StandardFixtures;
let origin: http.Server;
let cacheDir: string;

before(async () => {
  fx = await makeFixtures();
  cacheDir = fs.mkdtempSync(path.join(fx.outDir, 'silent-cache-'));
  origin = http.createServer((_req, res) => res.writeHead(200, { 'Cache-Control': 'max-age=60', 'Content-Length': 2 }).end('ok'));
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
});

after(async () => {
  await new Promise((r) => origin.close(r));
});

const TIMEOUTS = ['--headers-timeout', '1s', '--idle-timeout', '3s'];

function argsFor(kind: 'serve' | 'proxy' | 'proxy --cache'): string[] {
  if (kind === 'serve') return serveArgs(fx, ...TIMEOUTS);
  const port = (origin.address() as { port: number }).port;
  const cache = kind === 'proxy --cache' ? ['--cache', cacheDir] : [];
  return ['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${port}`, ...cache, ...TIMEOUTS];
}

for (const kind of ['serve', 'proxy', 'proxy --cache'] as const) {
  describe(`${kind}: a connection that sends nothing before --headers-timeout`, () => {
    let p: Running;

    before(async () => {
      p = await startAludel(argsFor(kind));
    });

    after(async () => {
      await p?.stop();
    });

    test('is closed without a response (nginx sends nothing), and logged once in the main log', async () => {
      const from = p.mark();
      const out = await silentClient(p.port);
      assert.equal(out.bytes.toString('latin1'), '', 'no bytes of HTTP on a connection that asked nothing');
      assert.ok(out.ended, 'closed with close_notify/FIN, not reset');
      const line = await p.waitForLog((l) => l.msg === 'client timed out before sending a request', 5000, from);
      assert.equal(line.level, 30, 'info, as nginx logs "client timed out" at info');
      assert.deepEqual(p.logs.slice(from).filter((l) => l.msg === 'request' || l.status === 408), [], 'no access-log line, no 408 anywhere');
    });

    test('a request line begun and not finished still gets its 408 head, and one main-log line', async () => {
      const from = p.mark();
      const out = await silentClient(p.port, 'GET /slow HTTP/1.1\r\nHost: x\r\n');
      assert.match(out.bytes.toString('latin1'), /^HTTP\/1\.1 408 Request Timeout\r\n/);
      // The client's FIN after the 408 ends the head node's parser was still in: that is the
      // client leaving a connection already being closed, not a second bad request (it was logged
      // as one, HPE_INVALID_EOF_STATE, status 400).
      await delay(500);
      const lines = p.logs.slice(from).filter((l) => l.msg === 'bad request');
      assert.deepEqual(lines.map((l) => l.code), ['ERR_HTTP_REQUEST_TIMEOUT'], JSON.stringify(lines));
    });

    test('a keep-alive connection idle after its answer gets nothing more (408 or other) before it closes', async () => {
      const out = await silentClient(p.port, 'GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n');
      const statuses = [...out.bytes.toString('latin1').matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
      assert.equal(statuses.length, 1, out.bytes.toString('latin1').slice(0, 300));
      assert.notEqual(statuses[0], 408);
    });
  });
}

test('serve: a first head begun late and never finished gets its 408 when it was due from the connection\'s start, not --headers-timeout after its first byte', async () => {
  // serve reads plain requests itself (the lane, h1-lane.ts) and hands an unfinished head to
  // node's server, whose headersTimeout counts from then: a client that waited 1.8 s before its
  // first byte had 2 s more, 3.8 s in all where node alone (and nginx) give it 2 s.
  const p = await startAludel(serveArgs(fx, '--headers-timeout', '2s', '--idle-timeout', '10s'));
  try {
    const from = p.mark();
    const answeredAt = await new Promise<number>((resolve, reject) => {
      let connectedAt = 0;
      const sock = tls.connect({ host: '127.0.0.1', port: p.port, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
        connectedAt = performance.now();
        setTimeout(() => sock.write('GET /slow HTTP/1.1\r\nHo'), 1800);
      });
      const timer = setTimeout(() => { sock.destroy(); reject(new Error('no answer within 10 s')); }, 10_000);
      sock.once('data', (c: Buffer) => {
        clearTimeout(timer);
        assert.match(c.toString('latin1'), /^HTTP\/1\.1 408 /);
        resolve(performance.now() - connectedAt);
        sock.destroy();
      });
      sock.on('error', () => undefined);
    });
    assert.ok(answeredAt >= 1900 && answeredAt < 3300, `the 408 came ${Math.round(answeredAt)} ms after the handshake (due at 2000)`);
    const line = await p.waitForLog((l) => l.msg === 'request' && l.status === 408, 5000, from);
    assert.equal(line.request, 'GET /slow HTTP/1.1', 'its access-log line has the request line as far as it came');
  } finally {
    await p.stop();
  }
});

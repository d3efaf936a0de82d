/**
 * What `aludel proxy` answers and logs at the edges a tester found (each a
 * regression): a transfer coding it does not implement (501, RFC 9112 §6.1)
 * and an HTTP version it does not speak (505, RFC 9110 §15.6.6), both
 * reaching no origin; an upstream's 204 with a Content-Length (stripped, RFC
 * 9110 §8.6, so HTTP/2 clients do not reset the stream); a client that
 * leaves before its answer (logged 499, as nginx, not 502); many concurrent
 * HTTP/2 streams on one connection (no MaxListenersExceededWarning).
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { describe, test } from 'node:test';
import { h2get } from '../support/clients.js';
import { rawTls, splitHttp } from '../support/raw-http.js';
import { proxyOnRawOrigin } from '../support/raw-origin-proxy.js';
import { waitUntil } from '../support/wait.js';

let seen = 0;
/** Origin connections that were sent a /slow request (never answered) and are still open. */
const slowOpen = new Set<net.Socket>();

/** A keep-alive origin of raw answers: /no-content is a 204 with "Content-Length: 5"; /slow never answers; the rest 200 "ok". */
const setup = proxyOnRawOrigin((sock, target) => {
  seen++;
  if (target === '/slow' || target.startsWith('/slow?')) {
    if (!slowOpen.has(sock)) sock.once('close', () => slowOpen.delete(sock));
    slowOpen.add(sock);
    return;
  }
  sock.write(target === '/no-content' ? 'HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n' : 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
});

function h2(): Promise<http2.ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = http2.connect(`https://localhost:${setup.p.port}`, { ca: setup.fx.certPem });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}


describe('aludel proxy: answers at the edges', () => {
  test('Transfer-Encoding "gzip, chunked": 501, the connection closes, and nothing reaches the origin (RFC 9112 §6.1)', async () => {
    const before = seen;
    const raw = await rawTls(setup.p.port, setup.fx.certPem, 'POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
    const r = splitHttp(raw);
    assert.equal(r.status, 501);
    assert.equal(r.headers.connection, 'close');
    assert.equal(seen, before, 'the origin saw nothing');
    const line = await setup.p.waitForLog((l) => l.msg === 'request' && l.url === '/up');
    assert.equal(line.status, 501);
  });

  test('an HTTP/2.0 request line over HTTP/1.x: 505, reaching no origin (RFC 9110 §15.6.6)', async () => {
    const before = seen;
    const r = splitHttp(await rawTls(setup.p.port, setup.fx.certPem, 'GET /v2 HTTP/2.0\r\nHost: x\r\n\r\n'));
    assert.equal(r.status, 505);
    assert.equal(seen, before);
  });

  test('a method node\'s parser does not know: 501 with close (RFC 9110 §9.1), reaching no origin, with an access-log line; a lower-case one is a 400', async () => {
    const before = seen;
    const from = setup.p.mark();
    const r = splitHttp(await rawTls(setup.p.port, setup.fx.certPem, 'FOO /unknown-method HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.equal(r.status, 501);
    assert.equal(r.headers.connection, 'close');
    const line = await setup.p.waitForLog((l) => l.msg === 'request' && l.url === '/unknown-method', 5000, from);
    assert.deepEqual([line.method, line.status, line.proto], ['FOO', 501, 'HTTP/1.1']);
    // Pipelined behind a request owed its answer: that answer first, then the 501 (RFC 9112 §9.3.2).
    const raw = (await rawTls(setup.p.port, setup.fx.certPem, 'GET /first HTTP/1.1\r\nHost: x\r\n\r\nPURGEALL /second HTTP/1.1\r\nHost: x\r\n\r\n')).toString('latin1');
    assert.deepEqual([...raw.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])), [200, 501], raw);
    assert.equal(splitHttp(await rawTls(setup.p.port, setup.fx.certPem, 'foo / HTTP/1.1\r\nHost: x\r\n\r\n')).status, 400);
    assert.equal(seen, before + 1, 'only GET /first reached the origin');
  });

  test('a request line over --max-header-size: 414 (RFC 9110 §15.5.15); header fields over it: 431', async () => {
    const before = seen;
    for (const size of [17_000, 40_000]) {
      assert.equal(splitHttp(await rawTls(setup.p.port, setup.fx.certPem, `GET /${'a'.repeat(size)} HTTP/1.1\r\nHost: x\r\n\r\n`)).status, 414, `a ${size}-byte target`);
      assert.equal(splitHttp(await rawTls(setup.p.port, setup.fx.certPem, `GET / HTTP/1.1\r\nHost: x\r\nCookie: ${'a'.repeat(size)}\r\n\r\n`)).status, 431, `a ${size}-byte field`);
    }
    // A request line under the limit, its fields taking the head over it: 431. Behind a request on the same connection: 414.
    assert.equal(splitHttp(await rawTls(setup.p.port, setup.fx.certPem, `GET /${'a'.repeat(16_000)} HTTP/1.1\r\nHost: x\r\nX: ${'b'.repeat(2000)}\r\n\r\n`)).status, 431);
    const raw = (await rawTls(setup.p.port, setup.fx.certPem, `GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /${'a'.repeat(40_000)} HTTP/1.1\r\nHost: x\r\n\r\n`)).toString('latin1');
    assert.deepEqual([...raw.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])), [200, 414], raw.slice(0, 300));
    assert.equal(seen, before + 1, 'only GET /first reached the origin');
  });

  test('an upstream 204 with Content-Length: stripped, so HTTP/2 gets its 204 (RFC 9110 §8.6) and HTTP/1.1 no stray length', async () => {
    const s = await h2();
    try {
      const r = await h2get(s, { ':path': '/no-content' });
      assert.equal(r.status, 204);
      assert.equal(r.headers['content-length'], undefined);
    } finally {
      s.close();
    }
    const h1 = splitHttp(await rawTls(setup.p.port, setup.fx.certPem, 'GET /no-content HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    assert.equal(h1.status, 204);
    assert.equal(h1.headers['content-length'], undefined);
  });

  test('a client that leaves before its answer is logged 499, not a gateway error', async () => {
    const from = setup.p.mark();
    const c = (await import('node:tls')).connect({ host: '127.0.0.1', port: setup.p.port, ca: setup.fx.certPem, servername: 'localhost' });
    await new Promise<void>((resolve) => c.once('secureConnect', () => resolve()));
    c.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitUntil(() => seen > 0, 5000);
    await new Promise((r) => setTimeout(r, 200));
    c.destroy();
    const line = await setup.p.waitForLog((l) => l.msg === 'request' && l.url === '/slow', 10_000, from);
    assert.equal(line.status, 499);
    assert.equal(line.error, 'ERR_CLIENT_GONE');
  });

  test('an HTTP/2 client that leaves before its answer (stream reset, or the whole connection closed) frees its upstream connection at once, logged 499', async () => {
    for (const leave of ['reset', 'connection'] as const) {
      const from = setup.p.mark();
      const before = seen;
      const s = await h2();
      s.on('error', () => undefined);
      const req = s.request({ ':path': `/slow?${leave}` });
      req.on('error', () => undefined);
      await waitUntil(() => seen > before, 5000);
      assert.ok(slowOpen.size > 0);
      // RST_STREAM CANCEL (a browser leaving the page), or the TCP connection gone (curl --max-time).
      if (leave === 'reset') req.close(http2.constants.NGHTTP2_CANCEL);
      else s.destroy();
      // Well before the 60 s --upstream-headers-timeout: nginx closes the upstream connection at
      // once (proxy_ignore_client_abort off), and so must this, or each such client holds a descriptor.
      const line = await setup.p.waitForLog((l) => l.msg === 'request' && l.url === `/slow?${leave}`, 10_000, from);
      assert.equal(line.status, 499, leave);
      await waitUntil(() => slowOpen.size === 0, 5000);
      s.destroy();
    }
  });

  test('40 concurrent HTTP/2 streams on one connection: all answered, and no listener pile-up warning', async () => {
    const s = await h2();
    try {
      const all = await Promise.all(Array.from({ length: 40 }, (_, i) => h2get(s, { ':path': `/ok-${i}` })));
      assert.deepEqual([...new Set(all.map((r) => `${r.status} ${r.body.toString()}`))], ['200 ok']);
    } finally {
      s.close();
    }
    assert.doesNotMatch(setup.p.stderr(), /MaxListenersExceededWarning/);
  });
});

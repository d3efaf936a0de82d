/**
 * aludel proxy over HTTP/2 (RFC 9113) to clients, HTTP/1.1 to the upstream:
 * ALPN, what reaches the origin (no pseudo-header, Host from :authority,
 * one Cookie), request bodies with and without content-length, the cache's
 * hits, ranges and 304s on h2 streams, a failing upstream body resetting
 * one stream only, and a bounded h2load run.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http2 from 'node:http2';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { startAludel, type Running } from '../support/aludel-process.js';
import { curl, h2get } from '../support/clients.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { startSinkOrigin, type SinkOrigin } from '../support/sink-origin.js';
import { stalledBesideOthers } from '../support/h2-stall.js';
import { waitUntil } from '../support/wait.js';

const run = promisify(execFile);

let fx: StandardFixtures;
let sink: SinkOrigin;
let p: Running;
let cacheDir: string;

const base = (): string => `https://localhost:${p.port}`;
const tlsArgs = (): string[] => ['--cacert', fx.certFile, '--resolve', `localhost:${p.port}:127.0.0.1`];


before(async () => {
  fx = await makeFixtures();
  sink = await startSinkOrigin();
  cacheDir = path.join(fx.outDir, 'h2-cache');
  p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${sink.port}`, '--max-fails', '0', '--cache', cacheDir]);
});

after(async () => {
  await p?.stop();
  await sink?.stop();
  fx?.cleanup();
});

describe('aludel proxy over HTTP/2', { timeout: 120_000 }, () => {
  test('ALPN h2; the origin gets HTTP/1.1 with Host from :authority, no pseudo-header, one Cookie joined with "; " (RFC 9113 §8.3.1, §8.2.3)', async () => {
    const r = await curl([...tlsArgs(), '--http2', '-sS', '-v', '-H', 'Cookie: a=1', '-H', 'Cookie: b=2', `${base()}/echo-headers?h2=1`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /ALPN: server accepted h2/);
    const echoed = JSON.parse(r.stdout.toString()) as { httpVersion: string; headers: string[] };
    assert.equal(echoed.httpVersion, '1.1');
    const names = echoed.headers.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
    assert.ok(!names.some((n) => n.startsWith(':')), `pseudo-header forwarded: ${names.join(',')}`);
    const value = (n: string): string[] => echoed.headers.filter((_, i) => i % 2 === 1 && echoed.headers[i - 1]!.toLowerCase() === n);
    assert.deepEqual(value('host'), [`localhost:${p.port}`]);
    assert.deepEqual(value('cookie'), ['a=1; b=2']);
    const line = await p.waitForLog((l) => l.url === '/echo-headers?h2=1' && l.status === 200, 5000);
    assert.equal(line.proto, 'HTTP/2.0');
  });

  test('request bodies reach the origin whole, with content-length and without (DATA frames, sent on chunked)', async () => {
    const body = crypto.randomBytes(300_000);
    const file = path.join(fx.outDir, 'h2-body.bin');
    fs.writeFileSync(file, body);
    const want = crypto.createHash('sha256').update(body).digest('hex');
    const withLength = await curl([...tlsArgs(), '--http2', '-sS', '--data-binary', `@${file}`, `${base()}/upload-a`]);
    assert.equal((JSON.parse(withLength.stdout.toString()) as { sha256: string }).sha256, want);
    // From stdin (-T -), curl sends no content-length: the body's end is END_STREAM.
    const noLength = await run('sh', ['-c', `curl ${tlsArgs().join(' ')} --http2 -sS -X POST -T - ${base()}/upload-b < ${file}`], { encoding: 'buffer', maxBuffer: 1 << 20 });
    const echoed = JSON.parse(noLength.stdout.toString()) as { sha256: string; bytes: number; headers: string[] };
    assert.equal(echoed.bytes, body.length);
    assert.equal(echoed.sha256, want);
  });

  test('the cache answers h2 streams: a stored response, a range of it, and a 304 for its validator', async () => {
    const url = `/cache?cc=max-age%3D60&etag=h2&size=100000&n=${Date.now()}`;
    const session = http2.connect(base(), { ca: fx.certPem, servername: 'localhost', host: '127.0.0.1' } as http2.SecureClientSessionOptions);
    try {
      const first = await h2get(session, { ':path': url });
      assert.equal(first.status, 200);
      assert.match(String(first.headers['cache-status']), /stored/);
      // Served from the store, or from the fill when it is not yet committed (fresh either way).
      const hit = await h2get(session, { ':path': url });
      assert.equal(hit.status, 200);
      assert.match(String(hit.headers['cache-status']), /hit|collapsed/);
      assert.ok(hit.body.equals(first.body), 'the stored body is the one fetched');
      const range = await h2get(session, { ':path': url, range: 'bytes=1000-1999' });
      assert.equal(range.status, 206);
      assert.ok(range.body.equals(first.body.subarray(1000, 2000)));
      const notModified = await h2get(session, { ':path': url, 'if-none-match': '"h2"' });
      assert.equal(notModified.status, 304);
      assert.equal(notModified.body.length, 0);
    } finally {
      session.close();
    }
  });

  test('an upstream that dies mid-body resets that stream only: the session serves the next request', async () => {
    const session = http2.connect(base(), { ca: fx.certPem, servername: 'localhost', host: '127.0.0.1' } as http2.SecureClientSessionOptions);
    try {
      const broken = await h2get(session, { ':path': '/die-after?bytes=1000&total=100000' });
      assert.equal(broken.status, 200);
      assert.ok(broken.error !== undefined, 'the client sees the stream aborted, never a clean end');
      assert.ok(broken.body.length < 100_000);
      const next = await h2get(session, { ':path': '/echo-headers?after-reset=1' });
      assert.equal(next.status, 200);
      assert.equal(next.error, undefined);
    } finally {
      session.close();
    }
  });

  test('a stream whose window stays shut is reset after --idle-timeout while other streams on its session make progress', async () => {
    // node's per-stream timer counts any byte the session sends as this stream's progress
    // (lib/internal/http2/core.js callTimeout): a small request now and then held the stalled
    // stream, and its upstream connection, for ever.
    const q = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${sink.port}`, '--max-fails', '0', '--idle-timeout', '1s']);
    const session = http2.connect(`https://localhost:${q.port}`, { ca: fx.certPem, servername: 'localhost', host: '127.0.0.1' } as http2.SecureClientSessionOptions);
    session.on('error', () => undefined);
    try {
      const r = await stalledBesideOthers(session, '/chunked-stream?size=5242880', () => h2get(session, { ':path': '/echo-headers' }).then((a) => a.error === undefined));
      assert.equal(r.rstCode, http2.constants.NGHTTP2_CANCEL);
      assert.ok(r.served > 0, 'the other streams were served meanwhile');
      await q.waitForLog((l) => l.msg.startsWith('HTTP/2 stream stalled'));
      const line = await q.waitForLog((l) => l.msg === 'request' && l.url === '/chunked-stream?size=5242880');
      assert.equal(line.error, 'ERR_CLIENT_TIMEOUT', 'the access log says our stall limit cut the body');
    } finally {
      session.destroy();
      await q.stop();
    }
  });

  test('a :method that is not upper-case letters, "_" and "-" gets 400 and never reaches the origin (as nginx, and as over HTTP/1.1)', async () => {
    const session = http2.connect(base(), { ca: fx.certPem, servername: 'localhost', host: '127.0.0.1' } as http2.SecureClientSessionOptions);
    try {
      for (const method of ['get', 'Get', 'gET']) {
        const from = p.mark();
        // endStream: node's client leaves the stream open for a body unless the method is GET or HEAD.
        const r = await h2get(session, { ':method': method, ':path': `/echo-headers?method=${method}` }, { endStream: true });
        assert.equal(r.status, 400, `:method ${method}`);
        const line = await p.waitForLog((l) => l.url === `/echo-headers?method=${method}`, 5000, from);
        assert.equal(line.upstream, null, `:method ${method} reached no upstream`);
      }
      // An upper-case method nobody registered goes on, as nginx passes it (RFC 9110 §9.1: the
      // origin's to judge; the node origin here answers it 400 itself).
      const from = p.mark();
      await h2get(session, { ':method': 'FOO-BAR', ':path': '/echo-headers?method=FOO-BAR' }, { endStream: true });
      const line = await p.waitForLog((l) => l.url === '/echo-headers?method=FOO-BAR', 5000, from);
      assert.equal(line.upstream, `http://127.0.0.1:${sink.port}`);
      // The refusals reset nothing: the session goes on serving.
      const ok = await h2get(session, { ':method': 'GET', ':path': '/echo-headers?method=GET' });
      assert.equal(ok.status, 200);
    } finally {
      session.close();
    }
  });

  test('h2load: 2000 requests, 4 connections, 16 streams each, all 2xx, and descriptors come back', async () => {
    const fds = (): number => fs.readdirSync(`/proc/${p.child.pid}/fd`).length;
    // Up to --upstream-keepalive (32) idle upstream connections may stay pooled afterwards.
    const start = fds() + 32;
    const r = await run('h2load', ['-n', '2000', '-c', '4', '-m', '16', `https://127.0.0.1:${p.port}/echo-headers`], { timeout: 90_000 });
    const m = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(r.stdout);
    assert.ok(m, r.stdout);
    assert.equal(Number(m[1]), 2000, r.stdout);
    await waitUntil(() => fds() <= start + 10, 10_000).catch(() => undefined);
    assert.ok(fds() <= start + 10, `${start} descriptors before, ${fds()} after`);
  });

  test('--http2 off: ALPN offers http/1.1 only', async () => {
    const off = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${sink.port}`, '--http2', 'off']);
    try {
      const r = await curl(['--cacert', fx.certFile, '--resolve', `localhost:${off.port}:127.0.0.1`, '--http2', '-sS', '-v', '-o', '/dev/null', `https://localhost:${off.port}/echo-headers`]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /ALPN: server accepted http\/1\.1/);
    } finally {
      await off.stop();
    }
  });
});

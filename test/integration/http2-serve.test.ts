/**
 * `aludel serve` over HTTP/2 (RFC 9113) on this host's userspace TLS, with
 * real clients: curl --http2, h2load, nghttp, and node:http2 for what no
 * tool does on demand (a paused download across SIGTERM, a rapid-reset
 * attack, a zero window, an oversized header block). Each case also checks
 * the server's own log lines; the descriptors come back at the end.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http2 from 'node:http2';
import path from 'node:path';
import tls from 'node:tls';
import { serveArgs, startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { run } from '../support/run-process.js';
import { stalledBesideOthers } from '../support/h2-stall.js';
import { waitUntil } from '../support/wait.js';
import { fdsBeyondKept } from '../fuzz/proc-stats.js';
import { frame } from '../support/h2-frames.js';

/** Sizes on TLS record (16384), HTTP/2 frame (16384) and initial window (65535) boundaries. */
const FILES = {
  empty: { name: 'empty.bin', size: 0 },
  one: { name: 'one.bin', size: 1 },
  r1: { name: 'rec-16383.bin', size: 16383 },
  r2: { name: 'rec-16384.bin', size: 16384 },
  r3: { name: 'rec-16385.bin', size: 16385 },
  w1: { name: 'win-65535.bin', size: 65535 },
  w2: { name: 'win-65536.bin', size: 65536 },
  big: { name: 'big-5m.bin', size: 5 * 1024 * 1024 },
} as const;

let fx: Fixtures<keyof typeof FILES>;
let srv: Running;
let fdsAtStart = 0;

/** Descriptors, serve's kept files left out (fdsBeyondKept). */
const fds = (p: Running): number => fdsBeyondKept(p.child.pid!)!;
const tlsArgs = (p: Running): string[] => ['--cacert', fx.certFile, '--resolve', `localhost:${p.port}:127.0.0.1`];
const url = (p: Running, file: string): string => `https://localhost:${p.port}/${file}`;

function connect(p: Running, settings: http2.Settings = {}): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(`https://localhost:${p.port}`, { ca: fx.certPem, settings });
  session.on('error', () => undefined);
  return new Promise((resolve, reject) => {
    session.once('remoteSettings', () => resolve(session));
    session.once('error', reject);
  });
}

interface H2Answer {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
}

/** One request on `session`; rejects, with the code, when the stream is reset (RST_STREAM, RFC 9113 §6.4). */
function request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers);
    const chunks: Buffer[] = [];
    let head: http2.IncomingHttpHeaders = {};
    let ended = false;
    req.on('response', (h) => (head = h));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => (ended = true));
    req.on('error', () => undefined);
    req.on('close', () => {
      if (ended && req.rstCode === http2.constants.NGHTTP2_NO_ERROR) resolve({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks) });
      else reject(Object.assign(new Error(`stream closed, code ${req.rstCode}, ended ${ended}`), { rstCode: req.rstCode }));
    });
    req.end();
  });
}

function closeSession(session: http2.ClientHttp2Session): Promise<void> {
  return new Promise((resolve) => {
    if (session.destroyed) resolve();
    else session.close(() => resolve());
  });
}

/**
 * CVE-2023-44487 by hand: after the preface and an empty SETTINGS, streams
 * 1, 3, 5, ... each get a HEADERS frame (GET / by HPACK static indexes 2, 7,
 * 4, and :authority: END_STREAM | END_HEADERS) and at once a RST_STREAM (CANCEL), in batches,
 * until the server sends GOAWAY or closes, or `max` streams are spent.
 */
function rapidReset(port: number, max: number): Promise<{ sent: number; goaway: number | null; closed: boolean }> {
  return new Promise((resolve) => {
    const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: fx.certPem, ALPNProtocols: ['h2'] });
    let sent = 0;
    let goaway: number | null = null;
    let inbox = Buffer.alloc(0);
    const timer = setTimeout(() => sock.destroy(), 30_000);
    const finish = (): void => {
      clearTimeout(timer);
      resolve({ sent, goaway, closed: sock.destroyed });
      sock.destroy();
    };
    sock.on('error', () => undefined);
    sock.on('close', finish);
    sock.on('data', (d: Buffer) => {
      inbox = Buffer.concat([inbox, d]);
      while (inbox.length >= 9) {
        const len = inbox.readUIntBE(0, 3);
        if (inbox.length < 9 + len) break;
        // The first GOAWAY says why; node may send a second as it tears the session down.
        if (inbox[3] === 0x7 && len >= 8 && goaway === null) goaway = inbox.readUInt32BE(9 + 4);
        inbox = inbox.subarray(9 + len);
      }
      if (goaway !== null) finish();
    });
    // :authority (static index 1) as a literal without indexing: nghttp2 refuses a request with neither it nor Host.
    const block = Buffer.concat([Buffer.from([0x82, 0x87, 0x84, 0x01, 0x09]), Buffer.from('localhost', 'latin1')]);
    const cancel = Buffer.alloc(4);
    cancel.writeUInt32BE(http2.constants.NGHTTP2_CANCEL);
    const batch = (): void => {
      if (goaway !== null || sock.destroyed) return;
      if (sent >= max) return;
      const frames: Buffer[] = [];
      for (let i = 0; i < 100 && sent < max; i++, sent++) {
        const id = 2 * sent + 1;
        frames.push(frame(0x1, 0x5, id, block), frame(0x3, 0x0, id, cancel));
      }
      sock.write(Buffer.concat(frames), () => setImmediate(batch));
    };
    sock.once('secureConnect', () => {
      sock.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), frame(0x4, 0x0, 0, Buffer.alloc(0))]));
      batch();
    });
  });
}

const requestLines = (p: Running, from: number): LogLine[] => p.logs.slice(from).filter((l) => l.msg === 'request');

before(async () => {
  fx = await makeFixtures(FILES);
  srv = await startAludel(serveArgs(fx));
  // One request first, so that lazily opened descriptors (the thread pool's, the log's) are counted.
  assert.equal((await curl([...tlsArgs(srv), '--http2', '-o', '/dev/null', '-w', '%{http_code}', url(srv, FILES.one.name)])).stdout.toString(), '200');
  fdsAtStart = fds(srv);
});

after(async () => {
  await srv?.stop();
  fx?.cleanup();
});

describe('aludel serve over HTTP/2', { timeout: 180_000 }, () => {
  test('ALPN: h2 is offered first and accepted; the start-up line says so', async () => {
    const r = await curl([...tlsArgs(srv), '--http2', '-v', '-o', '/dev/null', url(srv, FILES.one.name)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /ALPN: server accepted h2/);
    assert.match(r.stderr, /< HTTP\/2 200/);
    const start = srv.logs.find((l) => l.msg === 'serving files over HTTPS')!;
    assert.deepEqual(start.alpn, ['h2', 'http/1.1']);
  });

  test('every size on a record, frame or window boundary arrives intact over one connection, logged as HTTP/2.0', async () => {
    const from = srv.mark();
    const files = Object.values(FILES);
    const args = [...tlsArgs(srv), '--http2', '-w', '%{http_code} %{http_version} %{num_connects}\\n'];
    const outs = files.map((f) => path.join(fx.outDir, `h2-${f.name}`));
    files.forEach((f, i) => args.push(url(srv, f.name), '-o', outs[i]!));
    const r = await curl(args, 60_000);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.toString().trim().split('\n').map((l) => l.split(' '));
    assert.deepEqual(lines.map((l) => l[0]), files.map(() => '200'));
    assert.deepEqual(lines.map((l) => l[1]), files.map(() => '2'));
    assert.equal(lines.reduce((n, l) => n + Number(l[2]), 0), 1, 'one connection for every file');
    files.forEach((f, i) => {
      const got = fs.readFileSync(outs[i]!);
      assert.equal(got.length, f.size, `${f.name} size`);
      assert.equal(sha256(got), fx.files[(Object.keys(FILES) as Array<keyof typeof FILES>)[i]!].sha256, `${f.name} sha256`);
    });
    const est = srv.logs.slice(from).filter((l) => l.msg === 'TLS established');
    assert.equal(est.length, 1);
    assert.equal(est[0]!.alpn, 'h2');
    const mine = (): LogLine[] => requestLines(srv, from).filter((l) => l.conn === est[0]!.conn);
    await waitUntil(() => mine().length >= files.length);
    for (const f of files) {
      const q = mine().find((l) => l.url === `/${f.name}`)!;
      assert.ok(q, `a request line for ${f.name}`);
      assert.equal(q.proto, 'HTTP/2.0');
      assert.equal(q.status, 200);
      assert.equal(q.bytes, f.size);
      assert.equal(q.body, f.size === 0 ? 'none' : 'write', 'HTTP/2 DATA frames are built in user space');
      assert.equal(q.tx, 'user');
      assert.equal(q.rx, 'user');
      assert.equal(q.host, `localhost:${srv.port}`);
    }
  });

  // RFC 9113 §8.3.1: a Host naming another entity than :authority SHOULD make the request
  // malformed; the proxy refused it (400), serve served the file and logged the Host. nginx 1.22
  // answers 400 to any Host beside :authority.
  test('a Host that differs from :authority: 400 with its access-log line; an equal one is served', async () => {
    const from = srv.mark();
    const session = await connect(srv);
    try {
      // Both named: node's client sends a lone host field in place of :authority.
      const other = await request(session, { ':path': `/${FILES.one.name}`, ':authority': `localhost:${srv.port}`, host: 'other.example' });
      assert.equal(other.status, 400);
      const same = await request(session, { ':path': `/${FILES.one.name}`, ':authority': `localhost:${srv.port}`, host: `localhost:${srv.port}` });
      assert.equal(same.status, 200);
    } finally {
      await closeSession(session);
    }
    await waitUntil(() => requestLines(srv, from).length >= 2);
    const [bad, good] = requestLines(srv, from);
    assert.deepEqual([bad!.status, bad!.error, bad!.proto], [400, 'ERR_BAD_REQUEST', 'HTTP/2.0']);
    assert.match(bad!.detail as string, /:authority "localhost:\d+" and Host "other.example" differ \(RFC 9113 §8\.3\.1\)/);
    assert.equal(good!.status, 200);
  });

  test('Range (206), If-None-Match (304), HEAD, 404 and 405 with Allow, over HTTP/2', async () => {
    const big = fx.files.big;
    const session = await connect(srv);
    try {
      const part = await request(session, { ':path': `/${big.name}`, range: 'bytes=16380-81919' });
      assert.equal(part.status, 206);
      assert.equal(part.headers['content-range'], `bytes 16380-81919/${big.size}`);
      assert.equal(part.body.length, 81920 - 16380);
      assert.equal(sha256(part.body), sha256(fs.readFileSync(big.path).subarray(16380, 81920)));

      const etag = part.headers.etag as string;
      assert.ok(etag, 'an ETag');
      const notModified = await request(session, { ':path': `/${big.name}`, 'if-none-match': etag });
      assert.equal(notModified.status, 304);
      assert.equal(notModified.body.length, 0);
      assert.equal(notModified.headers.etag, etag);

      const head = await request(session, { ':path': `/${big.name}`, ':method': 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(head.headers['content-length'], String(big.size));
      assert.equal(head.body.length, 0);

      const missing = await request(session, { ':path': '/nothing-here' });
      assert.equal(missing.status, 404);
      const post = await request(session, { ':path': `/${big.name}`, ':method': 'POST' });
      assert.equal(post.status, 405);
      assert.equal(post.headers.allow, 'GET, HEAD');

      // RFC 9113 §8.2.2: no connection-specific field in any answer (node would throw, curl would refuse).
      for (const a of [part, notModified, head, missing, post]) {
        for (const name of ['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection']) assert.equal(a.headers[name], undefined, name);
      }
    } finally {
      await closeSession(session);
    }
    // curl's own view of a range, through nghttp2.
    const r = await curl([...tlsArgs(srv), '--http2', '-r', '0-99', '-o', '-', '-w', '\\n%{http_code}', url(srv, big.name)]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.toString('latin1').endsWith('\n206'));
    assert.deepEqual(r.stdout.subarray(0, 100), fs.readFileSync(big.path).subarray(0, 100));
  });

  test('h2load: 2000 requests, 4 connections, 16 streams each, all 2xx', async () => {
    const r = await run('h2load', ['-n', '2000', '-c', '4', '-m', '16', `https://127.0.0.1:${srv.port}/${FILES.r3.name}`], { timeoutMs: 120_000 });
    const out = r.stdout.toString();
    assert.equal(r.code, 0, `${out}\n${r.stderr}`);
    assert.match(out, /Application protocol: h2/);
    assert.match(out, /requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout/);
    assert.match(out, /status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx/);
  });

  test('nghttp: 100 concurrent streams on one connection, every body intact', async () => {
    const f = FILES.w2;
    const from = srv.mark();
    const urls = Array.from({ length: 100 }, (_, i) => `https://127.0.0.1:${srv.port}/${f.name}?n=${i}`);
    // -n: discard bodies; -s: per-stream statistics; -m 1 with 100 URIs: all requested at once on one connection.
    const r = await run('nghttp', ['-n', '-s', ...urls], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, `${r.stdout.toString()}\n${r.stderr}`);
    await waitUntil(() => requestLines(srv, from).length >= 100);
    const lines = requestLines(srv, from);
    assert.equal(new Set(lines.map((l) => l.conn)).size, 1, 'one connection');
    assert.ok(lines.every((l) => l.status === 200 && l.bytes === f.size));
    // And 100 concurrent streams with node's client, bodies checked.
    const session = await connect(srv);
    try {
      const answers = await Promise.all(Array.from({ length: 100 }, () => request(session, { ':path': `/${f.name}` })));
      for (const a of answers) {
        assert.equal(a.status, 200);
        assert.equal(sha256(a.body), fx.files.w2.sha256);
      }
    } finally {
      await closeSession(session);
    }
  });

  test('a header block over --max-header-size is refused, before and after the client acknowledged our SETTINGS', async () => {
    const from = srv.mark();
    const big = 'x'.repeat(20 * 1024);
    // curl sends its request with the preface, before our SETTINGS arrive: the 431 is the server's own check.
    const r = await curl([...tlsArgs(srv), '--http2', '-H', `X-Big: ${big}`, '-o', '/dev/null', '-w', '%{http_code}', url(srv, FILES.one.name)]);
    assert.notEqual(r.stdout.toString(), '200', r.stderr);
    // node's client waits for them: nghttp2 then resets the stream while the block is decoded (ENHANCE_YOUR_CALM), or the check answers 431.
    const session = await connect(srv);
    try {
      const outcome = await request(session, { ':path': `/${FILES.one.name}`, 'x-big': big }).then((a) => a.status, (e: { rstCode?: number }) => `rst ${e.rstCode}`);
      assert.ok(outcome === 431 || outcome === `rst ${http2.constants.NGHTTP2_ENHANCE_YOUR_CALM}`, String(outcome));
      // The session survives a refused stream.
      assert.equal((await request(session, { ':path': `/${FILES.one.name}` })).status, 200);
    } finally {
      await closeSession(session);
    }
    assert.ok(srv.logs.slice(from).some((l) => l.msg.startsWith('HTTP/2 request header list over --max-header-size')), 'the refusal is logged');
  });

  test('rapid reset (CVE-2023-44487): the attacking session gets GOAWAY ENHANCE_YOUR_CALM and is logged; other clients are served', { timeout: 45_000 }, async () => {
    const from = srv.mark();
    const victim = await connect(srv);
    // The attack in raw frames, so that every stream's HEADERS and its RST_STREAM really go out
    // (node's client drops a stream cancelled before its HEADERS were sent, and under load it
    // sent almost none). Bounded: at most 3000 streams.
    const attack = rapidReset(srv.port, 3000);
    // Meanwhile another client keeps being served.
    let served = 0;
    let done = false;
    void attack.finally(() => (done = true));
    while (!done && served < 200) {
      const a = await request(victim, { ':path': `/${FILES.r3.name}` });
      assert.equal(a.status, 200);
      served++;
    }
    const outcome = await attack;
    // Two defences, both ending the session with GOAWAY: ours (ENHANCE_YOUR_CALM, logged) counts
    // the resets as node reports them, a tick later; nghttp2's own (INTERNAL_ERROR, at 1000 in a
    // burst) counts while it decodes, and wins when a single read carries more than 1000 resets
    // (a loaded machine coalesces the attacker's writes).
    assert.ok(outcome.goaway === http2.constants.NGHTTP2_ENHANCE_YOUR_CALM || outcome.goaway === http2.constants.NGHTTP2_INTERNAL_ERROR, JSON.stringify(outcome));
    if (outcome.goaway === http2.constants.NGHTTP2_ENHANCE_YOUR_CALM) {
      const line = await srv.waitForLog((l) => l.msg.startsWith('HTTP/2 rapid reset'), 5000, from);
      assert.equal(line.code, 'ENHANCE_YOUR_CALM');
      assert.ok(Number(line.resets) > Number(line.burst), JSON.stringify(line));
      assert.ok(Number(line.resets) < 1000, `${line.resets} resets counted of ${outcome.sent} sent`);
    }
    // The victim's session is untouched, and new clients too.
    assert.equal(sha256((await request(victim, { ':path': `/${FILES.r3.name}` })).body), fx.files.r3.sha256);
    await closeSession(victim);
    const r = await curl([...tlsArgs(srv), '--http2', '-o', '/dev/null', '-w', '%{http_code}', url(srv, FILES.one.name)]);
    assert.equal(r.stdout.toString(), '200');
  });

  test('--http2 off: ALPN gives http/1.1 to a client that offers h2', async () => {
    const h1 = await startAludel(serveArgs(fx, '--http2', 'off'));
    try {
      const r = await curl([...tlsArgs(h1), '--http2', '-v', '-o', '/dev/null', '-w', '%{http_version}', url(h1, FILES.one.name)]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /ALPN: server accepted http\/1\.1/);
      assert.equal(r.stdout.toString(), '1.1');
      const q = await h1.waitForLog((l) => l.msg === 'request');
      assert.equal(q.proto, 'HTTP/1.1');
      assert.deepEqual(h1.logs.find((l) => l.msg === 'serving files over HTTPS')!.alpn, ['http/1.1']);
    } finally {
      await h1.stop();
    }
  });

  test('a zero flow-control window: the stalled stream is reset after --idle-timeout and logged', async () => {
    const p = await startAludel(serveArgs(fx, '--idle-timeout', '1s'));
    try {
      // initialWindowSize 0 (RFC 9113 §6.9.2): the server may send headers, never a DATA byte.
      const session = await connect(p, { initialWindowSize: 0 });
      const t0 = Date.now();
      const outcome = await request(session, { ':path': `/${FILES.w2.name}` }).then((a) => `status ${a.status}`, (e: { rstCode?: number }) => `rst ${e.rstCode}`);
      assert.equal(outcome, `rst ${http2.constants.NGHTTP2_CANCEL}`);
      assert.ok(Date.now() - t0 >= 900, 'not before the timeout');
      await p.waitForLog((l) => l.msg.startsWith('HTTP/2 stream stalled'));
      const q = await p.waitForLog((l) => l.msg === 'request' && l.url === `/${FILES.w2.name}`);
      assert.equal(q.error, 'ERR_CLIENT_TIMEOUT', 'the access log says our stall limit cut the body');
      session.destroy();
    } finally {
      await p.stop();
    }
  });

  test('a stalled file stream is reset after --idle-timeout while other streams on its session make progress', async () => {
    // node's per-stream timer counts any byte the session sends as this stream's progress
    // (lib/internal/http2/core.js callTimeout): a client that never opens one stream's window but
    // fetches a small file now and then held that stream, its descriptor and its buffer for ever.
    const p = await startAludel(serveArgs(fx, '--idle-timeout', '1s'));
    const session = await connect(p);
    try {
      const r = await stalledBesideOthers(session, `/${FILES.big.name}`, () => request(session, { ':path': `/${FILES.one.name}` }).then(() => true));
      assert.equal(r.rstCode, http2.constants.NGHTTP2_CANCEL);
      assert.ok(r.served > 0, 'the other streams were served meanwhile');
      await p.waitForLog((l) => l.msg.startsWith('HTTP/2 stream stalled'));
      const q = await p.waitForLog((l) => l.msg === 'request' && l.url === `/${FILES.big.name}`);
      assert.equal(q.error, 'ERR_CLIENT_TIMEOUT', 'the access log says our stall limit cut the body');
    } finally {
      session.destroy();
      await p.stop();
    }
  });

  test('SIGTERM: GOAWAY at once, the stream in flight finishes intact, then the process exits 0', async () => {
    const p = await startAludel(serveArgs(fx, '--shutdown-timeout', '30s'));
    const big = fx.files.big;
    const session = await connect(p);
    let goaway: { code: number; last: number; received: number } | null = null;
    const req = session.request({ ':path': `/${big.name}` });
    const chunks: Buffer[] = [];
    let received = 0;
    session.on('goaway', (code, last) => (goaway = { code, last, received }));
    const ended = new Promise<void>((resolve, reject) => {
      req.on('end', resolve);
      req.on('error', reject);
    });
    // Read a little, then stop reading: the flow-control window closes and the stream is held open.
    let paused = false;
    await new Promise<void>((resolve) => {
      req.on('data', (c: Buffer) => {
        chunks.push(c);
        received += c.length;
        if (received >= 64 * 1024 && !paused) {
          paused = true;
          req.pause();
          resolve();
        }
      });
    });
    const exited = new Promise<number | null>((resolve) => p.child.once('exit', (code) => resolve(code)));
    p.child.kill('SIGTERM');
    await waitUntil(() => goaway !== null, 5000);
    assert.equal(goaway!.code, http2.constants.NGHTTP2_NO_ERROR);
    assert.equal(goaway!.last, req.id, 'the last stream processed is ours: it goes on');
    assert.ok(goaway!.received < big.size, `GOAWAY came while the body was in flight (${goaway!.received} of ${big.size} bytes)`);
    // A new stream on this session is refused by the client itself after a GOAWAY.
    assert.throws(() => session.request({ ':path': '/x' }), { code: 'ERR_HTTP2_GOAWAY_SESSION' });
    req.resume();
    await ended;
    const body = Buffer.concat(chunks);
    assert.equal(body.length, big.size);
    assert.equal(sha256(body), big.sha256);
    assert.equal(await exited, 0);
    const q = p.logs.find((l) => l.msg === 'request' && l.url === `/${big.name}`)!;
    assert.equal(q.status, 200);
    assert.equal(q.bytes, big.size);
    assert.equal(q.error, undefined);
    session.destroy();
  });

  test('SIGHUP: idle HTTP/2 sessions get GOAWAY and close; new connections are served', async () => {
    const p = await startAludel(serveArgs(fx));
    try {
      const session = await connect(p);
      assert.equal((await request(session, { ':path': `/${FILES.one.name}` })).status, 200);
      const goaway = new Promise<number>((resolve) => session.once('goaway', resolve));
      const closed = new Promise<void>((resolve) => session.once('close', resolve));
      const from = p.mark();
      p.child.kill('SIGHUP');
      assert.equal(await goaway, http2.constants.NGHTTP2_NO_ERROR);
      await closed;
      await p.waitForLog((l) => l.msg.startsWith('reloaded'), 5000, from);
      const fresh = await connect(p);
      assert.equal((await request(fresh, { ':path': `/${FILES.one.name}` })).status, 200);
      await closeSession(fresh);
    } finally {
      await p.stop();
    }
  });

  test('descriptors come back to where they were after all of the above', async () => {
    await waitUntil(() => fds(srv) <= fdsAtStart, 15_000).catch(() => undefined);
    assert.ok(fds(srv) <= fdsAtStart, `${fdsAtStart} descriptors at the start, ${fds(srv)} now`);
    const r = await curl([...tlsArgs(srv), '--http2', '-o', '/dev/null', '-w', '%{http_code}', url(srv, FILES.one.name)]);
    assert.equal(r.stdout.toString(), '200');
  });
});

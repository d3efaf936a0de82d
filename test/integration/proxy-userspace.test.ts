/**
 * `aludel proxy` and `aludel tcp` on this kernel (no kTLS: every body is
 * copied, so these check the HTTP behaviour; test/ktls checks splice and the
 * kernel counters). Real origins: Debian's nginx (plain and legacy HTTPS with
 * TLS 1.0 + CBC), a node sink origin that misbehaves on request, redis-server.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { waitUntil } from '../support/wait.js';
import { curl } from '../support/clients.js';
import { makeFixtures, sha256, type StandardFixtures } from '../support/fixtures.js';
import { makeRsaCert, patternSha256, startNginxOrigin, startRedis, startSinkOrigin, type NginxOrigin, type SinkOrigin } from '../support/origins.js';
import { rawTls } from '../support/raw-http.js';
import { run } from '../support/run-process.js';

let fx: StandardFixtures;
let nginx: NginxOrigin;
let sink: SinkOrigin;
const running: Running[] = [];

async function proxy(...args: string[]): Promise<Running> {
  const p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, ...args]);
  running.push(p);
  return p;
}

function get(port: number, urlPath: string, ...extra: string[]) {
  return curl(['--cacert', fx.certFile, '-o', '-', '-w', '\n%{http_code}', ...extra, `https://localhost:${port}${urlPath}`]);
}

/** curl's output split into body and the status code written by -w. */
function bodyAndStatus(stdout: Buffer): { body: Buffer; status: number } {
  const nl = stdout.lastIndexOf(0x0a);
  return { body: stdout.subarray(0, nl), status: Number(stdout.subarray(nl + 1).toString()) };
}

before(async () => {
  fx = await makeFixtures();
  nginx = await startNginxOrigin({ root: fx.root });
  sink = await startSinkOrigin();
});

after(async () => {
  for (const p of running) await p.stop();
  await nginx?.stop();
  await sink?.stop();
  fx?.cleanup();
});

describe('aludel proxy (userspace TLS)', () => {
  test('static and chunked bodies from nginx arrive byte-identical; HEAD; keep-alive upstream', async () => {
    const p = await proxy('--to', `http://127.0.0.1:${nginx.port}`);
    for (const f of Object.values(fx.files)) {
      for (const prefix of ['/', '/chunked/']) {
        const r = await get(p.port, `${prefix}${f.name}`);
        assert.equal(r.code, 0, r.stderr);
        const { body, status } = bodyAndStatus(r.stdout);
        assert.equal(status, 200, `${prefix}${f.name}`);
        assert.equal(sha256(body), f.sha256, `${prefix}${f.name}`);
      }
    }
    const head = await curl(['--cacert', fx.certFile, '-sI', `https://localhost:${p.port}/${fx.files.big.name}`]);
    assert.match(head.stdout.toString(), new RegExp(`content-length: ${fx.files.big.size}`, 'i'));
    // The log line of the last request may be written just after curl has its last byte.
    const requestLines = (): LogLine[] => p.logs.filter((l) => l.msg === 'request');
    await waitUntil(() => requestLines().length >= 9);
    const log = requestLines();
    assert.ok(log.every((l) => l.body === 'write' || l.body === 'none'), 'no kTLS here: bodies are copied');
    // Eight GETs and a HEAD over one proxy: the upstream pool reuses connections.
    const entries = await nginx.accessLog(9);
    const conns = new Set(entries.map((e) => e.connection));
    assert.ok(conns.size < entries.length, `upstream connections were reused (${conns.size} for ${entries.length} requests)`);
  });

  test('a 32 MiB POST reaches the origin intact, chunked or with a length', async () => {
    const p = await proxy('--to', `http://127.0.0.1:${nginx.port}`);
    const file = path.join(fx.outDir, 'upload.bin');
    const size = 32 * 1024 * 1024;
    await fs.promises.writeFile(file, Buffer.alloc(size, 7));
    const want = sha256(await fs.promises.readFile(file));
    for (const extra of [[], ['-H', 'Transfer-Encoding: chunked'], ['-H', 'Expect: 100-continue']]) {
      const r = await curl(['--cacert', fx.certFile, '-sS', '--data-binary', `@${file}`, ...extra, `https://localhost:${p.port}/upload`], 60_000);
      assert.equal(r.code, 0, r.stderr);
      const answer = JSON.parse(r.stdout.toString()) as { bytes: number; sha256: string };
      assert.equal(answer.bytes, size, `bytes with ${extra.join(' ')}`);
      assert.equal(answer.sha256, want);
    }
  });

  test('forwarding headers: ours replace client-sent ones, hop-by-hop removed, Host kept', async () => {
    const p = await proxy('--to', `http://127.0.0.1:${sink.port}`);
    const r = await get(p.port, '/echo-headers', '-H', 'X-Forwarded-For: 6.6.6.6', '-H', 'Forwarded: for=6.6.6.6', '-H', 'Connection: X-Secret', '-H', 'X-Secret: 1', '-H', 'Keep-Alive: 5');
    const echoed = JSON.parse(bodyAndStatus(r.stdout).body.toString()) as { headers: string[] };
    const h = new Map<string, string[]>();
    for (let i = 0; i < echoed.headers.length; i += 2) {
      const k = echoed.headers[i]!.toLowerCase();
      h.set(k, [...(h.get(k) ?? []), echoed.headers[i + 1]!]);
    }
    assert.deepEqual(h.get('x-forwarded-for'), ['127.0.0.1']);
    assert.deepEqual(h.get('x-forwarded-proto'), ['https']);
    assert.deepEqual(h.get('host'), [`localhost:${p.port}`]);
    assert.match(h.get('forwarded')?.[0] ?? '', /^for="?127\.0\.0\.1/);
    assert.ok(!(h.get('forwarded')?.[0] ?? '').includes('6.6.6.6'));
    assert.equal(h.get('x-secret'), undefined, 'a header named in Connection is hop-by-hop');
    assert.equal(h.get('keep-alive'), undefined);
  });

  test('smuggling attempts get 400 and never reach the origin', async () => {
    const p = await proxy('--to', `http://127.0.0.1:${sink.port}`);
    const before = sink.requests.length;
    const attacks = {
      'CL+TE': 'POST /echo-headers HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG',
      'double CL': 'POST /echo-headers HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!',
      'bad chunk size': 'POST /echo-headers HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n',
      'obs-fold': 'GET /echo-headers HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n',
    };
    for (const [name, attack] of Object.entries(attacks)) {
      const raw = await rawTls(p.port, fx.certPem, attack);
      const text = raw.toString('latin1');
      assert.match(text, /^HTTP\/1\.1 400 /, `${name}: ${JSON.stringify(text.slice(0, 80))}`);
      assert.equal((text.match(/HTTP\/1\.1 /g) ?? []).length, 1, `${name}: exactly one response`);
    }
    // A bad chunk size is only seen inside the body, after the request was forwarded: the
    // origin may see that one request, never a second one smuggled inside it.
    const reached = sink.requests.slice(before);
    assert.ok(reached.length <= 1, `origin saw ${reached.length} requests: ${JSON.stringify(reached.map((r) => r.method + ' ' + r.url))}`);
  });

  test('gateway errors: refused 502, silent upstream 504, backend dying mid-body aborts only that response', async () => {
    const refused = await proxy('--to', 'http://127.0.0.1:1', '--max-fails', '0');
    const r1 = bodyAndStatus((await get(refused.port, '/')).stdout);
    assert.equal(r1.status, 502);
    const p = await proxy('--to', `http://127.0.0.1:${sink.port}`, '--upstream-headers-timeout', '1s', '--max-fails', '0');
    const t0 = Date.now();
    const r2 = bodyAndStatus((await get(p.port, '/hang-headers')).stdout);
    assert.equal(r2.status, 504);
    assert.ok(Date.now() - t0 < 5000);
    const total = 4 * 1024 * 1024;
    const dying = await get(p.port, `/die-after?bytes=100000&total=${total}`);
    assert.notEqual(dying.code, 0, 'curl must see the response cut short, never a clean end');
    const line = await p.waitForLog((l) => l.msg === 'request' && String(l.url).startsWith('/die-after'));
    assert.equal(line.error, 'ERR_UPSTREAM_TRUNCATED');
    const closeDelimited = bodyAndStatus((await get(p.port, '/close-delimited?size=200000')).stdout);
    assert.equal(sha256(closeDelimited.body), patternSha256(200000), 'a body ended by the upstream closing');
    const ok = await get(p.port, '/chunked-stream?size=300000');
    const { body, status } = bodyAndStatus(ok.stdout);
    assert.equal(status, 200);
    assert.equal(sha256(body), patternSha256(300000));
  });

  test('a client giving up frees its upstream at once and does not mark the upstream down', async () => {
    const p = await proxy('--to', `http://127.0.0.1:${sink.port}`, '--upstream-headers-timeout', '60s', '--max-fails', '1');
    const t0 = Date.now();
    const r = await curl(['--cacert', fx.certFile, '--max-time', '1', `https://localhost:${p.port}/hang-headers`]);
    assert.notEqual(r.code, 0);
    const line = await p.waitForLog((l) => l.msg === 'request' && l.url === '/hang-headers', 5000);
    assert.equal(line.error, 'ERR_CLIENT_GONE');
    assert.equal(line.status, 499, 'logged as nginx logs a client that left, not as a gateway error');
    assert.ok(Date.now() - t0 < 5000, 'not held until the 60 s upstream timeout');
    assert.equal(bodyAndStatus((await get(p.port, '/echo-headers')).stdout).status, 200);
    assert.ok(!p.logs.some((l) => l.msg === 'upstream marked down'), 'the client leaving is not an upstream failure');
  });

  test('round-robin over two upstreams; a dead one is skipped after it fails', async () => {
    const other = await startSinkOrigin();
    try {
      const p = await proxy('--to', `http://127.0.0.1:${sink.port}`, `http://127.0.0.1:${other.port}`);
      const [a, b] = [sink.requests.length, other.requests.length];
      for (let i = 0; i < 6; i++) assert.equal(bodyAndStatus((await get(p.port, '/echo-headers')).stdout).status, 200);
      assert.equal(sink.requests.length - a, 3);
      assert.equal(other.requests.length - b, 3);
      await other.stop();
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push(bodyAndStatus((await get(p.port, '/echo-headers')).stdout).status);
      // At most the first request to the dead one fails (passive check, max_fails 1); then it is skipped.
      assert.ok(statuses.filter((s) => s === 502).length <= 1, statuses.join(','));
      assert.ok(statuses.slice(2).every((s) => s === 200), statuses.join(','));
      await p.waitForLog((l) => l.msg === 'upstream marked down');
    } finally {
      await other.stop().catch(() => undefined);
    }
  });

  test('a lone upstream that resets once is not marked down: the next request succeeds (it got 502 for --fail-timeout)', async () => {
    const { default: http } = await import('node:http');
    let resets = 0;
    const flaky = http.createServer((_req, res) => res.end('fine\n'));
    flaky.on('connection', (s) => { if (resets++ === 0) s.resetAndDestroy(); });
    await new Promise<void>((resolve) => flaky.listen(0, '127.0.0.1', resolve));
    try {
      const port = (flaky.address() as { port: number }).port;
      const p = await proxy('--to', `http://127.0.0.1:${port}`, '--max-fails', '1', '--fail-timeout', '30s');
      const first = bodyAndStatus((await get(p.port, '/')).stdout);
      assert.equal(first.status, 502, 'the reset itself is a gateway error');
      const second = bodyAndStatus((await get(p.port, '/')).stdout);
      assert.equal(second.status, 200);
      assert.equal(second.body.toString(), 'fine\n');
      assert.ok(!p.logs.some((l) => l.msg === 'upstream marked down'), 'a group of one is never marked down');
    } finally {
      flaky.close();
    }
  });

  test('every upstream down: the one that failed least recently is tried, not a 502 without trying', async () => {
    const a = await startSinkOrigin();
    const b = await startSinkOrigin();
    const [portA, portB] = [a.port, b.port];
    const p = await proxy('--to', `http://127.0.0.1:${portA}`, `http://127.0.0.1:${portB}`, '--max-fails', '1', '--fail-timeout', '30s');
    await a.stop();
    await b.stop();
    for (let i = 0; i < 2; i++) assert.equal(bodyAndStatus((await get(p.port, '/echo-headers')).stdout).status, 502);
    await waitUntil(() => p.logs.filter((l) => l.msg === 'upstream marked down').length === 2);
    const revived = await startSinkOrigin(portA);
    try {
      // A failed before B: it is tried first although both are still marked down for 30 s.
      assert.equal(bodyAndStatus((await get(p.port, '/echo-headers')).stdout).status, 200);
      assert.equal(revived.requests.length, 1);
    } finally {
      await revived.stop();
    }
  });

  test('active health checks mark a dead upstream down and a revived one up, with no client traffic', async () => {
    const spare = await startSinkOrigin();
    const port = spare.port;
    const p = await proxy('--to', `http://127.0.0.1:${port}`, '--health-check-interval', '300ms', '--health-check-path', '/echo-headers');
    await spare.stop();
    const down = await p.waitForLog((l) => l.msg === 'upstream marked down (active check)', 5000);
    assert.equal(down.upstream, `http://127.0.0.1:${port}`);
    assert.equal(bodyAndStatus((await get(p.port, '/echo-headers')).stdout).status, 502, 'no live upstream');
    const from = p.mark();
    const revived = await startSinkOrigin(port);
    try {
      await p.waitForLog((l) => l.msg === 'upstream healthy again (active check)', 5000, from);
      assert.equal(bodyAndStatus((await get(p.port, '/echo-headers')).stdout).status, 200);
      assert.ok(revived.requests.some((r) => r.headers.includes('aludel-health-check')), 'the check is a real GET of the path');
    } finally {
      await revived.stop();
    }
  });

  test('more header fields than --max-header-count: 431, nothing forwarded', async () => {
    const p = await proxy('--to', `http://127.0.0.1:${sink.port}`, '--max-header-count', '10');
    const before = sink.requests.length;
    const extra = Array.from({ length: 11 }, (_, i) => ['-H', `X-H${i}: ${i}`]).flat();
    assert.equal(bodyAndStatus((await get(p.port, '/echo-headers', ...extra)).stdout).status, 431);
    assert.equal(sink.requests.length, before);
  });

  test('Upgrade is tunnelled both ways', async () => {
    const p = await proxy('--to', `http://127.0.0.1:${sink.port}`);
    const req = 'GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n';
    const { default: tls } = await import('node:tls');
    const got = await new Promise<string>((resolve, reject) => {
      let out = '';
      const s = tls.connect({ host: '127.0.0.1', port: p.port, servername: 'localhost', ca: fx.certPem }, () => s.write(req));
      s.on('data', (d: Buffer) => {
        out += d.toString('latin1');
        if (out.includes('\r\n\r\n') && !out.includes('ping-pong')) s.write('ping-pong');
        if (out.endsWith('ping-pong')) { s.end(); resolve(out); }
      });
      s.on('error', reject);
      setTimeout(() => reject(new Error(`no echo: ${out}`)), 5000).unref();
    });
    assert.match(got, /^HTTP\/1\.1 101 /);
    assert.ok(got.endsWith('ping-pong'));
  });

  test('1,000 upgrades the origin refuses leave no descriptor behind, and requests are still served (regression: one leaked socket each)', async () => {
    const p = await proxy('--to', `http://127.0.0.1:${sink.port}`);
    const pid = p.child.pid!;
    const fds = (): number => fs.readdirSync(`/proc/${pid}/fd`).length;
    assert.equal(bodyAndStatus((await get(p.port, '/echo-headers')).stdout).status, 200);
    const start = fds();
    const { default: tls } = await import('node:tls');
    const refused = (): Promise<string> =>
      new Promise((resolve, reject) => {
        let out = '';
        const s = tls.connect({ host: '127.0.0.1', port: p.port, servername: 'localhost', ca: fx.certPem }, () =>
          s.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n'),
        );
        s.on('data', (d: Buffer) => {
          out += d.toString('latin1');
          // The whole answer (a 400 with an empty body): the client closes, as curl does.
          if (out.includes('\r\n\r\n')) s.end();
        });
        s.on('close', () => resolve(out));
        s.on('error', reject);
      });
    for (let i = 0; i < 1000; i++) assert.match(await refused(), /^HTTP\/1\.1 400 /, `upgrade ${i}`);
    await waitUntil(() => fds() <= start + 10, 10_000).catch(() => {});
    assert.ok(fds() <= start + 10, `descriptors: ${start} before, ${fds()} after 1,000 refused upgrades`);
    assert.equal(bodyAndStatus((await get(p.port, '/echo-headers')).stdout).status, 200, 'still serving');
  });

  test('legacy HTTPS origin (TLS 1.0, CBC, RSA key exchange) behind a modern client side', async () => {
    const rsa = await makeRsaCert(fx.dir);
    const legacy = await startNginxOrigin({ root: fx.root, tls: { ...rsa, protocols: 'TLSv1', ciphers: 'AES128-SHA:@SECLEVEL=0' } });
    try {
      const p = await proxy('--to', `https://127.0.0.1:${legacy.port}`, '--upstream-tls-min', '1.0', '--upstream-ciphers', 'AES128-SHA', '--upstream-ca', rsa.certFile, '--upstream-servername', 'localhost');
      const r = await get(p.port, `/${fx.files.big.name}`, '--tlsv1.3');
      const { body, status } = bodyAndStatus(r.stdout);
      assert.equal(status, 200, r.stderr);
      assert.equal(sha256(body), fx.files.big.sha256);
      const [entry] = await legacy.accessLog(1);
      assert.equal(entry?.tlsProtocol, 'TLSv1');
      assert.equal(entry?.tlsCipher, 'AES128-SHA');
      const line = await p.waitForLog((l) => l.msg === 'request');
      assert.equal(line.tls, 'TLSv1.3', 'the client side stays modern');
      // A wrong pin is refused before any request is sent upstream.
      const pinned = await proxy('--to', `https://127.0.0.1:${legacy.port}`, '--upstream-tls-min', '1.0', '--upstream-ciphers', 'AES128-SHA', '--upstream-fingerprint', 'AA'.repeat(32), '--max-fails', '0');
      assert.equal(bodyAndStatus((await get(pinned.port, '/')).stdout).status, 502);
      await pinned.waitForLog((l) => l.msg === 'request' && l.error === 'ERR_UPSTREAM_CERTIFICATE');
    } finally {
      await legacy.stop();
    }
  });

  test('settings from a config file', async () => {
    const file = path.join(fx.dir, 'proxy.yaml');
    await fs.promises.writeFile(file, `listen: 127.0.0.1:0\ncert: ${fx.certFile}\nkey: ${fx.keyFile}\nto: http://127.0.0.1:${nginx.port}\nconnect-timeout: 2s\n`);
    const p = await startAludel(['proxy', '--config', file]);
    running.push(p);
    const { body } = bodyAndStatus((await get(p.port, `/${fx.files.mid.name}`)).stdout);
    assert.equal(sha256(body), fx.files.mid.sha256);
  });

  test('wrk at 1, 8 and 16 connections: zero errors', async () => {
    const p = await proxy('--to', `http://127.0.0.1:${nginx.port}`);
    for (const c of [1, 8, 16]) {
      const r = await run('wrk', ['-t', String(Math.min(2, c)), '-c', String(c), '-d', '2s', `https://127.0.0.1:${p.port}/${fx.files.mid.name}`], { timeoutMs: 20_000 });
      const out = r.stdout.toString();
      assert.equal(r.code, 0, out + r.stderr);
      assert.match(out, /Requests\/sec/);
      assert.doesNotMatch(out, /Socket errors|Non-2xx/, out);
    }
  });
});

describe('aludel tcp (userspace TLS)', () => {
  test('half-close: the client finishes sending, the upstream still answers, then closes', async () => {
    const { default: net } = await import('node:net');
    const { default: tls } = await import('node:tls');
    // An upstream that answers only after the client's FIN, with everything it got.
    const upstream = net.createServer({ allowHalfOpen: true }, (s) => {
      const got: Buffer[] = [];
      s.on('data', (d: Buffer) => got.push(d));
      s.on('end', () => s.end(`got ${Buffer.concat(got).length} bytes`));
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (upstream.address() as { port: number }).port;
      const p = await startAludel(['tcp', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `127.0.0.1:${port}`]);
      running.push(p);
      const answer = await new Promise<string>((resolve, reject) => {
        let out = '';
        const c = tls.connect({ host: '127.0.0.1', port: p.port, servername: 'localhost', ca: fx.certPem, minVersion: 'TLSv1.3' }, () => c.end(Buffer.alloc(100_000, 1)));
        c.on('data', (d: Buffer) => (out += d.toString()));
        c.on('end', () => resolve(out));
        c.on('error', reject);
      });
      assert.equal(answer, 'got 100000 bytes');
      const line = await p.waitForLog((l) => l.msg === 'tunnel closed');
      assert.equal(line.up, 100_000);
      assert.equal(line.down, 'got 100000 bytes'.length);
    } finally {
      upstream.close();
    }
  });

  test('redis-cli --tls through aludel tcp to redis-server: 1 MiB value, 10,000 pipelined commands', async () => {
    const redis = await startRedis();
    try {
      const p = await startAludel(['tcp', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `127.0.0.1:${redis.port}`]);
      running.push(p);
      const cli = ['--tls', '--cacert', fx.certFile, '--sni', 'localhost', '-h', '127.0.0.1', '-p', String(p.port)];
      const value = 'v'.repeat(1024 * 1024);
      const set = await run('redis-cli', [...cli, '-x', 'SET', 'big'], { input: value, timeoutMs: 20_000 });
      assert.equal(set.stdout.toString().trim(), 'OK', set.stderr);
      const got = await run('redis-cli', [...cli, '--no-raw', 'STRLEN', 'big'], { timeoutMs: 20_000 });
      assert.equal(got.stdout.toString().trim(), '(integer) 1048576');
      const back = await run('redis-cli', [...cli, 'GET', 'big'], { timeoutMs: 20_000 });
      assert.equal(back.stdout.toString().trim(), value);
      const commands = Array.from({ length: 10_000 }, (_, i) => `SET k${i} ${i}\r\n`).join('');
      const piped = await run('redis-cli', [...cli, '--pipe'], { input: commands, timeoutMs: 60_000 });
      assert.match(piped.stdout.toString(), /errors: 0, replies: 10000/, piped.stdout.toString() + piped.stderr);
      const last = await run('redis-cli', [...cli, 'GET', 'k9999'], { timeoutMs: 20_000 });
      assert.equal(last.stdout.toString().trim(), '9999');
    } finally {
      await redis.stop();
    }
  });
});

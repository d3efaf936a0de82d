/**
 * `aludel proxy --cache` with kernel TLS, in front of Debian's nginx: a hit
 * never enters user space, the body goes from the page cache into the kTLS
 * socket by sendfile(2). Proven by the request log (body "sendfile", tx
 * "kernel"), the proxy's own counters (bytes by body path, printed at
 * shutdown) and /proc/net/tls_stat; bodies compared with the origin's files.
 * nginx's access log counts what reached the origin.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curl, curlTlsArgs, type TlsVersion } from '../support/clients.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { PATTERN_PERIOD, patternBytes, startNginxOrigin, type NginxOrigin } from '../support/origins.js';
import { delta, hasKernelTls, readTlsStat } from '../support/tls-stat.js';

const MiB = 1024 * 1024;
const FILES = { 'big.bin': 64 * MiB, 'mid.bin': 4 * MiB, 'small.bin': 100 * 1024 };
const SUITE: Record<TlsVersion, string> = { '1.2': 'ECDHE-ECDSA-AES128-GCM-SHA256', '1.3': 'TLS_AES_128_GCM_SHA256' };
/** The VM's CPU is emulated: every transfer gets minutes. */
const SLOW = 300_000;

let fx: Fixtures<keyof typeof FILES>;
let nginx: NginxOrigin;
const running: Running[] = [];
let serial = 0;

interface Answer {
  status: number;
  headers: Record<string, string>;
  /** The body, in a file (large ones are never held in memory twice). */
  file: string;
  log: LogLine;
}

async function aludel(to: string, dir: string): Promise<Running> {
  const p = await startAludel(['proxy', '--to', to, '--cache', dir, '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--offload', 'kernel', '--handshake-timeout', '60s'], { startTimeoutMs: 120_000 });
  running.push(p);
  return p;
}

/** curl through the proxy (headers on stdout, body to a file), then its request log line. */
async function get(p: Running, url: string, ...extra: string[]): Promise<Answer> {
  const file = path.join(fx.outDir, `body-${++serial}`);
  const from = p.mark();
  const r = await curl(['--cacert', fx.certFile, '-D', '-', '-o', file, ...extra, `https://localhost:${p.port}${url}`], SLOW);
  assert.equal(r.code, 0, `${url}: ${r.stderr}`);
  const [statusLine, ...lines] = (r.stdout.toString('latin1').split('\r\n\r\n').filter((b) => b.startsWith('HTTP/')).at(-1) ?? '').split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) headers[line.slice(0, line.indexOf(':')).toLowerCase()] = line.slice(line.indexOf(':') + 1).trim();
  const log = await p.waitForLog((l) => l.msg === 'request' && l.url === url, 60_000, from);
  return { status: Number(statusLine?.split(' ')[1]), headers, file, log };
}

function fileSha(file: string): string {
  return sha256(fs.readFileSync(file));
}

function metas(dir: string): Array<{ key: string; length: number; bodySize: number | null }> {
  const all = (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.meta.json'));
  return all.map((f) => {
    const m = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { key: string; length: number };
    const body = path.join(dir, f.replace(/\.meta\.json$/, '.body'));
    return { key: m.key, length: m.length, bodySize: fs.existsSync(body) ? fs.statSync(body).size : null };
  });
}

function temps(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.tmp')).map((f) => path.join(dir, f));
}

async function originRequests(uri: string, atLeast = 0): Promise<number[]> {
  return (await nginx.accessLog(atLeast)).filter((e) => e.uri === uri).map((e) => e.status);
}

before(async () => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  fx = await makeFixtures(FILES);
  nginx = await startNginxOrigin({ root: fx.root });
});

after(async () => {
  for (const p of running) await p.stop();
  await nginx?.stop();
  fx?.cleanup();
});

describe('aludel proxy --cache with kTLS', () => {
  test('MISS, then a HIT by sendfile; 64 MiB and four ranges identical to the file; kTLS on every connection', { timeout: 1_200_000 }, async () => {
    const dir = path.join(fx.dir, 'cache-hit');
    const p = await aludel(`http://127.0.0.1:${nginx.port}`, dir);
    const f = fx.files['big.bin'];
    const url = '/cc/big.bin?cc=max-age=600';
    const tls = curlTlsArgs('1.3', SUITE['1.3']);
    const before = readTlsStat();
    const miss = await get(p, url, ...tls);
    assert.equal(miss.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
    assert.equal(fileSha(miss.file), f.sha256);
    assert.equal(miss.log.cache, 'miss');
    const hit = await get(p, url, ...tls);
    assert.match(hit.headers['cache-status']!, /^aludel; hit; ttl=\d+$/);
    assert.equal(fileSha(hit.file), f.sha256);
    assert.equal(hit.log.cache, 'hit');
    assert.equal(hit.log.body, 'sendfile', JSON.stringify(hit.log));
    assert.equal(hit.log.tx, 'kernel');
    assert.equal(hit.log.bytes, f.size);
    const bytes = fs.readFileSync(f.path);
    const mid = 20 * MiB + 12345;
    const ranges: Array<[string, number, number]> = [['0-0', 0, 0], [`${f.size - 1}-`, f.size - 1, f.size - 1], [`${mid}-${mid + MiB - 1}`, mid, mid + MiB - 1], ['-5000', f.size - 5000, f.size - 1]];
    let rangeBytes = 0;
    for (const [spec, start, end] of ranges) {
      const r = await get(p, url, ...tls, '-r', spec);
      assert.equal(r.status, 206, spec);
      assert.equal(r.headers['content-range'], `bytes ${start}-${end}/${f.size}`);
      assert.equal(fileSha(r.file), sha256(bytes.subarray(start, end + 1)), spec);
      assert.equal(r.log.body, 'sendfile', spec);
      rangeBytes += end - start + 1;
    }
    // TLS 1.2 hits go the same way.
    const hit12 = await get(p, url, ...curlTlsArgs('1.2', SUITE['1.2']), '-r', '0-99999');
    assert.equal(hit12.log.body, 'sendfile');
    assert.equal(hit12.log.tls, 'TLSv1.2');
    const d = delta(before, readTlsStat());
    assert.equal(d.TlsTxSw, 7, `one kTLS TX socket per connection: ${JSON.stringify(d)}`);
    assert.equal(d.TlsDecryptError ?? 0, 0);
    assert.deepEqual(await originRequests(url), [200], 'one origin request for everything');
    // The proxy's own counters: everything after the miss went out by sendfile.
    const stopping = p.mark();
    await p.stop();
    const totals = p.logs.slice(stopping).find((l) => l.msg === 'proxy stopped')?.totals as { bodies: Record<string, { bytes: number }>; cache: { bytes: Record<string, number>; responses: Record<string, number> } };
    const sent = f.size + rangeBytes + 100_000;
    assert.equal(totals.bodies.sendfile!.bytes, sent, JSON.stringify(totals));
    assert.equal(totals.bodies.write!.bytes, f.size, 'the miss was copied');
    assert.equal(totals.cache.bytes.hit, sent);
    assert.deepEqual(totals.cache.responses, { hit: 6, revalidated: 0, collapsed: 0, miss: 1, stale: 0, bypass: 0, 'stale-while-revalidate': 0, 'stale-if-error': 0 });
  });

  test('after max-age a conditional request goes to nginx; its 304 keeps the stored body serving', { timeout: 600_000 }, async () => {
    const p = await aludel(`http://127.0.0.1:${nginx.port}`, path.join(fx.dir, 'cache-revalidate'));
    // max-age 5: the freshened response must still be fresh one request later in the emulated VM.
    const url = '/cc/small.bin?cc=max-age=5';
    const first = await get(p, url);
    assert.equal(fileSha(first.file), fx.files['small.bin'].sha256);
    await new Promise((r) => setTimeout(r, 6000));
    const again = await get(p, url);
    assert.match(again.headers['cache-status']!, /^aludel; fwd=stale; fwd-status=304; ttl=[0-5]$/);
    assert.equal(again.log.cache, 'revalidated');
    assert.equal(again.log.body, 'sendfile');
    assert.equal(fileSha(again.file), fx.files['small.bin'].sha256);
    const fresh = await get(p, url);
    assert.match(fresh.headers['cache-status']!, /; hit;/);
    assert.deepEqual(await originRequests(url, 2), [200, 304]);
  });

  test('no-store and private responses never reach the disk', { timeout: 600_000 }, async () => {
    const dir = path.join(fx.dir, 'cache-private');
    const p = await aludel(`http://127.0.0.1:${nginx.port}`, dir);
    for (const url of ['/cc/small.bin?cc=no-store', '/cc/small.bin?cc=private,max-age=600']) {
      for (let i = 0; i < 2; i++) {
        const a = await get(p, url);
        assert.equal(fileSha(a.file), fx.files['small.bin'].sha256);
        assert.equal(a.log.cache, 'miss');
      }
      assert.deepEqual(await originRequests(url, 2), [200, 200], url);
    }
    assert.deepEqual(metas(dir), []);
    assert.deepEqual(temps(dir), []);
  });

  test('Vary: Accept-Encoding (nginx gzip) keeps two variants apart', { timeout: 600_000 }, async () => {
    const p = await aludel(`http://127.0.0.1:${nginx.port}`, path.join(fx.dir, 'cache-vary'));
    const url = '/gz/small.bin?cc=max-age=600';
    const gz = await get(p, url, '-H', 'Accept-Encoding: gzip');
    const plain = await get(p, url);
    assert.equal(plain.headers['cache-status'], 'aludel; fwd=vary-miss; stored');
    const gzHit = await get(p, url, '-H', 'Accept-Encoding: gzip');
    const plainHit = await get(p, url);
    for (const a of [gzHit, plainHit]) {
      assert.match(a.headers['cache-status']!, /; hit;/);
      assert.equal(a.log.body, 'sendfile');
    }
    assert.equal(gzHit.headers['content-encoding'], 'gzip');
    assert.equal(plainHit.headers['content-encoding'], undefined);
    assert.equal(sha256(zlib.gunzipSync(fs.readFileSync(gzHit.file))), fx.files['small.bin'].sha256);
    assert.equal(fileSha(plainHit.file), fx.files['small.bin'].sha256);
    assert.equal(fileSha(gzHit.file), fileSha(gz.file));
    assert.deepEqual(await originRequests(url, 2), [200, 200]);
  });

  test('16 concurrent clients missing on one cold key: one nginx request; followers stream the fill by sendfile', { timeout: 900_000 }, async () => {
    const p = await aludel(`http://127.0.0.1:${nginx.port}`, path.join(fx.dir, 'cache-collapse'));
    // 4 MiB at 1 MiB/s: the fill lasts about 4 s, long enough for all 16 to arrive.
    const url = '/cc/mid.bin?cc=max-age=600&rate=1m';
    const from = p.mark();
    const before = readTlsStat();
    const results = await Promise.all(Array.from({ length: 16 }, () => curl(['--cacert', fx.certFile, '-D', '-', `https://localhost:${p.port}${url}`], SLOW)));
    const want = fx.files['mid.bin'].sha256;
    for (const r of results) {
      assert.equal(r.code, 0, r.stderr);
      const end = r.stdout.indexOf('\r\n\r\n');
      assert.equal(sha256(r.stdout.subarray(end + 4)), want);
    }
    assert.deepEqual(await originRequests(url, 1), [200], 'exactly one origin request (nginx access log)');
    let lines: LogLine[] = [];
    for (let i = 0; i < 200 && lines.length < 16; i++) {
      await new Promise((r) => setTimeout(r, 50));
      lines = p.logs.slice(from).filter((l) => l.msg === 'request' && l.url === url);
    }
    assert.equal(lines.filter((l) => l.cache === 'miss').length, 1, JSON.stringify(lines.map((l) => l.cache)));
    const followers = lines.filter((l) => l.cache === 'collapsed');
    assert.ok(followers.length >= 8, `followers: ${JSON.stringify(lines.map((l) => l.cache))}`);
    for (const l of followers) assert.equal(l.body, 'sendfile', JSON.stringify(l));
    assert.equal(delta(before, readTlsStat()).TlsTxSw, 16);
  });

  test('kill -9 during a 256 MiB fill, restart: the entry is absent, never short; the next request refills it', { timeout: 1_500_000 }, async () => {
    const dir = path.join(fx.dir, 'cache-kill');
    const size = 256 * MiB;
    const to = `http://127.0.0.1:${nginx.sink.port}`;
    const url = `/cache?cc=${encodeURIComponent('max-age=600')}&size=${size}`;
    const p1 = await aludel(to, dir);
    // 4 MiB/s from the origin: the process dies about 1% into the fill.
    const client = curl(['--cacert', fx.certFile, '-o', '/dev/null', '-H', 'X-Sink-Rate: 4194304', `https://localhost:${p1.port}${url}`], SLOW);
    let partial = 0;
    for (let i = 0; i < 600 && partial < 2 * MiB; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const t = temps(dir);
      partial = t.length === 1 ? fs.statSync(t[0]!).size : 0;
    }
    assert.ok(partial >= 2 * MiB && partial < size, `the fill was under way (${partial} bytes)`);
    p1.child.kill('SIGKILL');
    assert.notEqual((await client).code, 0, 'the client saw the response cut short');
    const p2 = await aludel(to, dir);
    const rebuilt = await p2.waitForLog((l) => l.msg === 'cache index rebuilt', 60_000);
    assert.equal(rebuilt.deletedIncomplete, 1);
    assert.deepEqual(temps(dir), []);
    assert.deepEqual(metas(dir), [], 'absent');
    const refill = await get(p2, url);
    assert.equal(refill.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
    // Compared with the pattern a period-aligned slab at a time (a sha256 of 256 MiB is slow on this CPU).
    const slab = patternBytes(PATTERN_PERIOD * 64);
    const fd = fs.openSync(refill.file, 'r');
    try {
      assert.equal(fs.fstatSync(fd).size, size);
      const buf = Buffer.allocUnsafe(slab.length);
      for (let off = 0; off < size; off += slab.length) {
        const n = fs.readSync(fd, buf, 0, Math.min(slab.length, size - off), off);
        assert.equal(buf.compare(slab, 0, n, 0, n), 0, `bytes at ${off}`);
      }
    } finally {
      fs.closeSync(fd);
    }
    fs.rmSync(refill.file);
    assert.deepEqual(metas(dir).map((m) => [m.length, m.bodySize]), [[size, size]], 'stored complete');
    const head = await get(p2, url, '-I');
    assert.match(head.headers['cache-status']!, /; hit;/);
    assert.equal(head.headers['content-length'], String(size));
  });
});

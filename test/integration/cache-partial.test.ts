/**
 * Partial content in `aludel proxy --cache DIR` (RFC 9111 §3.3, §3.4):
 * 206 responses from Debian's nginx (static files with strong ETags) stored
 * as parts, answered from, combined, completed and replaced; a node origin
 * for a 206 with a weak ETag. Every client is curl; every byte a client got
 * is compared with the file it came from. Where order matters, the commit
 * gate (test/support/cache-commit-gate.ts) or the request log lines set it,
 * never a delay.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { parseHead } from '../support/curl-answer.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { startNginxOrigin, type NginxOrigin } from '../support/origins.js';
import { waitUntil } from '../support/wait.js';
import { commitGate } from '../support/cache-commit-gate.js';

const SIZE = 300_000;

let fx: Fixtures;
let nginx: NginxOrigin;
const running: Running[] = [];
let serial = 0;

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  log: LogLine;
}

async function proxy(to: string, dir: string, env?: NodeJS.ProcessEnv): Promise<Running> {
  const p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', to, '--cache', dir], { env });
  running.push(p);
  return p;
}

/**
 * curl through the proxy, then its request log line (written once the part
 * is committed). Host without the port: the cache key stays the same across
 * a restart on another port.
 */
async function get(p: Running, url: string, ...extra: string[]): Promise<Answer> {
  const from = p.mark();
  const a = await fetchOnly(p, url, ...extra);
  const log = await p.waitForLog((l) => l.msg === 'request' && l.url === url, 10_000, from);
  return { ...a, log };
}

/** curl through the proxy, without waiting for the log line. */
async function fetchOnly(p: Running, url: string, ...extra: string[]): Promise<Omit<Answer, 'log'>> {
  const out = path.join(fx.outDir, `body-${++serial}`);
  const r = await curl(['--cacert', fx.certFile, '-H', 'Host: localhost', '-D', '-', '-o', out, ...extra, `https://localhost:${p.port}${url}`], 60_000);
  assert.equal(r.code, 0, `curl ${url}: ${r.stderr}`);
  const heads = r.stdout.toString('latin1').split('\r\n\r\n').filter((b) => b.startsWith('HTTP/'));
  const { status, headers } = parseHead(heads.at(-1) ?? '');
  const body = fs.existsSync(out) ? fs.readFileSync(out) : Buffer.alloc(0);
  fs.rmSync(out, { force: true });
  return { status, headers, body };
}

/** A new file of random bytes under nginx's root, and its URL (fresh for 60 s). */
function newFile(size = SIZE): { name: string; url: string; bytes: Buffer } {
  const name = `part-${++serial}.bin`;
  const bytes = crypto.randomBytes(size);
  fs.writeFileSync(path.join(fx.root, name), bytes);
  return { name, url: `/cc/${name}?cc=max-age=60`, bytes };
}

/**
 * The one stored response of a cache directory, once the files of those it
 * replaced are gone (they are unlinked in the background).
 */
async function only(dir: string): Promise<Meta> {
  let one: Meta | null = null;
  await waitUntil(() => (one = oneMeta(metas(dir))) !== null, 10_000);
  return one!;
}

type Meta = { file: string; key: string; status: number; length: number; ranges?: Array<[number, number]>; headers: string[] };

/** The one stored entry, read in one pass (files come and go while the cache works), or null when there is not exactly one. */
function oneMeta(ms: Meta[]): Meta | null {
  return ms.length === 1 ? ms[0]! : null;
}

/** The stored metadata files of a cache directory (one unlinked meanwhile, a replaced response's, is left out). */
function metas(dir: string): Meta[] {
  const out: Meta[] = [];
  for (const d of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!d.isFile() || !d.name.endsWith('.meta.json')) continue;
    const file = path.join(d.parentPath, d.name);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') continue;
      throw err;
    }
    out.push({ file, ...(JSON.parse(text) as Omit<Meta, 'file'>) });
  }
  return out;
}

/** A 206 answered for `range` carries exactly those bytes of `bytes`. */
function assertPart(a: Omit<Answer, 'log'>, bytes: Buffer, first: number, last: number): void {
  assert.equal(a.status, 206);
  assert.equal(a.headers['content-range'], `bytes ${first}-${last}/${bytes.length}`);
  assert.ok(a.body.equals(bytes.subarray(first, last + 1)), `bytes ${first}-${last} differ`);
}

function dir(): string {
  return path.join(fx.dir, `cache-${++serial}`);
}

before(async () => {
  fx = await makeFixtures({});
  nginx = await startNginxOrigin({ root: fx.root });
});

after(async () => {
  for (const p of running) await p.stop();
  await nginx?.stop();
  fx?.cleanup();
});

describe('aludel proxy --cache: partial content (RFC 9111 §3.3, §3.4)', () => {
  test('§3.3: two disjoint 206s are stored as parts; a range inside one is a hit with the exact bytes', async () => {
    const d = dir();
    const p = await proxy(`http://127.0.0.1:${nginx.port}`, d);
    const f = newFile();
    const first = await get(p, f.url, '-r', '0-9999');
    assertPart(first, f.bytes, 0, 9999);
    assert.equal(first.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
    const second = await get(p, f.url, '-r', '200000-249999');
    assertPart(second, f.bytes, 200000, 249999);
    assert.equal(second.headers['cache-status'], 'aludel; fwd=partial; stored');
    const meta = await only(d);
    assert.deepEqual(meta!.ranges, [[0, 10000], [200000, 250000]]);
    assert.equal(meta!.length, SIZE);
    for (const [a, b] of [[100, 9999], [210000, 210099], [200000, 249999]] as const) {
      const hit = await get(p, f.url, '-r', `${a}-${b}`);
      assertPart(hit, f.bytes, a, b);
      assert.match(hit.headers['cache-status']!, /^aludel; hit; ttl=\d+; detail=partial$/);
      assert.equal(hit.log.upstream, null, 'answered without the origin');
    }
    // A range straddling a gap goes upstream, and its part joins the others (§3.4, same strong ETag).
    const gap = await get(p, f.url, '-r', '5000-204999');
    assertPart(gap, f.bytes, 5000, 204999);
    assert.equal(gap.headers['cache-status'], 'aludel; fwd=partial; stored');
    assert.deepEqual((await only(d)).ranges, [[0, 250000]]);
    // A plain GET is not answered from parts: it goes upstream, and its 200 replaces them.
    const whole = await get(p, f.url);
    assert.equal(whole.status, 200);
    assert.ok(whole.body.equals(f.bytes));
    assert.equal(whole.headers['cache-status'], 'aludel; fwd=partial; stored');
    const full = await only(d);
    assert.equal(full!.ranges, undefined, 'a complete entry now');
    const hit = await get(p, f.url, '-r', '299990-');
    assertPart(hit, f.bytes, 299990, SIZE - 1);
    assert.match(hit.headers['cache-status']!, /^aludel; hit; ttl=\d+$/);
  });

  test('§3.4: parts that make up the whole body become a complete 200, answered whole to a plain GET', async () => {
    const d = dir();
    const p = await proxy(`http://127.0.0.1:${nginx.port}`, d);
    const f = newFile();
    assertPart(await get(p, f.url, '-r', '0-99999'), f.bytes, 0, 99999);
    assertPart(await get(p, f.url, '-r', '100000-'), f.bytes, 100000, SIZE - 1);
    const meta = await only(d);
    assert.equal(meta!.status, 200);
    assert.equal(meta!.ranges, undefined);
    assert.equal(fs.statSync(meta!.file.replace(/\.meta\.json$/, '.body')).size, SIZE);
    assert.ok(!meta!.headers.some((h) => h.toLowerCase() === 'content-range'), 'Content-Range belongs to the part, not the response');
    const whole = await get(p, f.url);
    assert.equal(whole.status, 200);
    assert.match(whole.headers['cache-status']!, /^aludel; hit; ttl=\d+$/);
    assert.equal(whole.headers['content-length'], String(SIZE));
    assert.ok(whole.body.equals(f.bytes), 'the combined body is the file');
    assert.equal(whole.log.upstream, null);
  });

  test('§3.4: a 206 with another strong ETag replaces the parts instead of joining them', async () => {
    const d = dir();
    const p = await proxy(`http://127.0.0.1:${nginx.port}`, d);
    const f = newFile();
    const old = await get(p, f.url, '-r', '0-999');
    assertPart(old, f.bytes, 0, 999);
    // The file changes (another size, so nginx's ETag changes too).
    const next = crypto.randomBytes(SIZE + 1);
    fs.writeFileSync(path.join(fx.root, f.name), next);
    const fresh = await get(p, f.url, '-r', '1000-1999');
    assertPart(fresh, next, 1000, 1999);
    assert.notEqual(fresh.headers.etag, old.headers.etag);
    assert.equal(fresh.headers['cache-status'], 'aludel; fwd=partial; stored');
    const meta = await only(d);
    assert.deepEqual(meta!.ranges, [[1000, 2000]], 'the old part is gone, not combined');
    assert.equal(meta!.length, SIZE + 1);
    // The old part's bytes are no longer answered from the store.
    const again = await get(p, f.url, '-r', '0-999');
    assertPart(again, next, 0, 999);
    assert.equal(again.headers['cache-status'], 'aludel; fwd=partial; stored');
    const hit = await get(p, f.url, '-r', '0-1999');
    assertPart(hit, next, 0, 1999);
    assert.match(hit.headers['cache-status']!, /; hit;/);
  });

  test('§3.4: parts arriving together are combined one after the other, none lost; each is then a hit', async () => {
    const d = dir();
    const p = await proxy(`http://127.0.0.1:${nginx.port}`, d);
    const f = newFile();
    const parts = [[0, 9999], [50000, 59999], [100000, 109999], [200000, 209999]] as const;
    const from = p.mark();
    const answers = await Promise.all(parts.map(([a, b]) => fetchOnly(p, f.url, '-r', `${a}-${b}`)));
    parts.forEach(([a, b], i) => assertPart(answers[i]!, f.bytes, a, b));
    // Each request's log line is written once its part is committed (or not).
    let lines = 0;
    await p.waitForLog((l) => l.msg === 'request' && l.url === f.url && ++lines === parts.length, 10_000, from);
    assert.deepEqual((await only(d)).ranges, parts.map(([a, b]) => [a, b + 1]));
    for (const [a, b] of parts) {
      const hit = await get(p, f.url, '-r', `${a + 1}-${b}`);
      assertPart(hit, f.bytes, a + 1, b);
      assert.match(hit.headers['cache-status']!, /^aludel; hit; ttl=\d+; detail=partial$/);
    }
  });

  test('§3.3 with a fill under way: covered ranges come from the parts, others follow the fill; its 200 then replaces the parts', async () => {
    const d = dir();
    const gate = commitGate(path.join(fx.dir, `gate-${++serial}`));
    const p = await proxy(`http://127.0.0.1:${nginx.port}`, d, gate.env);
    const f = newFile();
    assertPart(await get(p, f.url, '-r', '0-9999'), f.bytes, 0, 9999);
    // The part is on disk before the gate closes: the gate also holds parts' commits, and must hold only the fill's.
    await waitUntil(() => oneMeta(metas(d))?.ranges !== undefined, 10_000);
    // The plain GET's fill is held before its commit: it is still the fill in progress that requests follow.
    gate.hold();
    const whole = await fetchOnly(p, f.url);
    assert.equal(whole.status, 200);
    assert.ok(whole.body.equals(f.bytes));
    await waitUntil(() => gate.held().length === 1, 10_000);
    const covered = await fetchOnly(p, f.url, '-r', '100-199');
    assertPart(covered, f.bytes, 100, 199);
    assert.match(covered.headers['cache-status']!, /^aludel; hit; ttl=\d+; detail=partial$/);
    const followed = await fetchOnly(p, f.url, '-r', '250000-259999');
    assertPart(followed, f.bytes, 250000, 259999);
    assert.equal(followed.headers['cache-status'], 'aludel; fwd=partial; collapsed');
    gate.release();
    await waitUntil(() => { const m = oneMeta(metas(d)); return m !== null && m.ranges === undefined; }, 10_000);
  });

  test('RFC 9110 §13.1.5: If-Range with another validator gets the whole 200 from upstream, not the parts; that 200 is stored', async () => {
    const d = dir();
    const p = await proxy(`http://127.0.0.1:${nginx.port}`, d);
    const f = newFile();
    const part = await get(p, f.url, '-r', '0-999');
    assertPart(part, f.bytes, 0, 999);
    const other = await get(p, f.url, '-r', '0-999', '-H', 'If-Range: "not-this-one"');
    assert.equal(other.status, 200);
    assert.ok(other.body.equals(f.bytes));
    // The whole response (nginx ignored the Range for the If-Range): it replaces the parts.
    assert.equal(other.headers['cache-status'], 'aludel; fwd=partial; stored; detail=if-range');
    await waitUntil(() => { const m = oneMeta(metas(d)); return m !== null && m.ranges === undefined; }, 10_000);
    const same = await get(p, f.url, '-r', '0-999', '-H', `If-Range: ${part.headers.etag}`);
    assertPart(same, f.bytes, 0, 999);
    assert.match(same.headers['cache-status']!, /^aludel; hit; ttl=\d+$/);
    assert.equal(same.log.upstream, null);
  });

  test('§3.3: restart keeps partial entries and their bytes; a tampered one is dropped, never served', async () => {
    const d = dir();
    const p = await proxy(`http://127.0.0.1:${nginx.port}`, d);
    const f = newFile();
    const g = newFile();
    assertPart(await get(p, f.url, '-r', '0-999'), f.bytes, 0, 999);
    assertPart(await get(p, f.url, '-r', '5000-5999'), f.bytes, 5000, 5999);
    assertPart(await get(p, g.url, '-r', '0-999'), g.bytes, 0, 999);
    await waitUntil(() => metas(d).length === 2, 10_000);
    await p.stop();
    // g's metadata now claims bytes its file never received.
    const gMeta = metas(d).find((m) => m.key.includes(g.name))!;
    const json = JSON.parse(fs.readFileSync(gMeta.file, 'utf8')) as { ranges: Array<[number, number]> };
    json.ranges = [[0, 1000], [1000, 3000]];
    fs.writeFileSync(gMeta.file, JSON.stringify(json));
    const q = await proxy(`http://127.0.0.1:${nginx.port}`, d);
    const rebuilt = await q.waitForLog((l) => l.msg === 'cache index rebuilt');
    assert.equal(rebuilt.entries, 1);
    assert.equal(rebuilt.bytes, fs.statSync(metas(d).find((m) => m.key.includes(f.name))!.file).size + 2000, 'the bytes held, not the holes');
    const hit = await get(q, f.url, '-r', '5100-5999');
    assertPart(hit, f.bytes, 5100, 5999);
    assert.match(hit.headers['cache-status']!, /^aludel; hit; ttl=\d+; detail=partial$/);
    const dropped = await get(q, g.url, '-r', '0-999');
    assertPart(dropped, g.bytes, 0, 999);
    assert.equal(dropped.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
  });

  test('an origin that ignores Range: its 200 is stored, the range answered from it (206), and every later request is a hit', async () => {
    // Serves the file whole whatever the Range (RFC 9110 §14.2 lets it), with a Content-Length or chunked.
    const bytes = crypto.randomBytes(SIZE);
    const file = path.join(fx.root, `ignored-${++serial}.bin`);
    fs.writeFileSync(file, bytes);
    const seen: string[] = [];
    const origin = http.createServer((req, res) => {
      seen.push(req.url!);
      const length = req.url!.startsWith('/chunked') ? {} : { 'Content-Length': bytes.length };
      res.writeHead(200, { 'Cache-Control': 'max-age=60', ETag: '"whole"', ...length }).end(fs.readFileSync(file));
    });
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    try {
      const p = await proxy(`http://127.0.0.1:${(origin.address() as AddressInfo).port}`, dir());
      // The range, cut from the 200 as it is stored: a 206 with the exact bytes.
      const first = await get(p, '/length', '-r', '0-99');
      assertPart(first, bytes, 0, 99);
      assert.equal(first.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
      assert.equal(first.log.cacheDetail, undefined);
      const again = await get(p, '/length', '-r', '0-99');
      assertPart(again, bytes, 0, 99);
      assert.match(again.headers['cache-status']!, /^aludel; hit; ttl=\d+$/);
      const other = await get(p, '/length', '-r', '123456-234567');
      assertPart(other, bytes, 123456, 234567);
      assert.match(other.headers['cache-status']!, /^aludel; hit; ttl=\d+$/);
      const whole = await get(p, '/length');
      assert.equal(whole.status, 200);
      assert.ok(whole.body.equals(bytes), 'the stored 200 is the file');
      assert.match(whole.headers['cache-status']!, /^aludel; hit; ttl=\d+$/);
      assert.deepEqual(seen, ['/length'], 'one request reached the origin');
      // A range past the end: 416 with the length (RFC 9110 §15.5.17), and the 200 stored all the same.
      const past = await get(p, '/past', '-r', `${SIZE}-`);
      assert.equal(past.status, 416);
      assert.equal(past.headers['content-range'], `bytes */${SIZE}`);
      assertPart(await get(p, '/past', '-r', '0-9'), bytes, 0, 9);
      // If-Range naming another validator wants the whole 200 (§13.1.5), which is stored too.
      const ifRange = await get(p, '/if-range', '-r', '0-99', '-H', 'If-Range: "not-this-one"');
      assert.equal(ifRange.status, 200);
      assert.ok(ifRange.body.equals(bytes));
      assert.equal(ifRange.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
      assertPart(await get(p, '/if-range', '-r', '0-99', '-H', 'If-Range: "whole"'), bytes, 0, 99);
      // Chunked: no length for a Content-Range yet, so the whole 200 (stored); then ranges are hits.
      const chunked = await get(p, '/chunked', '-r', '0-99');
      assert.equal(chunked.status, 200);
      assert.ok(chunked.body.equals(bytes));
      assert.equal(chunked.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
      const chunkedHit = await get(p, '/chunked', '-r', '1000-1999');
      assertPart(chunkedHit, bytes, 1000, 1999);
      assert.match(chunkedHit.headers['cache-status']!, /^aludel; hit; ttl=\d+$/);
      assert.deepEqual(seen, ['/length', '/past', '/if-range', '/chunked'], 'one origin request per URL');
    } finally {
      await new Promise((resolve) => origin.close(resolve));
    }
  });

  test('§3.4: a 206 with a weak ETag is relayed, not stored (detail=no-strong-validator)', async () => {
    const body = crypto.randomBytes(4000);
    const origin = http.createServer((req, res) => {
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
      if (m === null) {
        res.writeHead(200, { 'Cache-Control': 'max-age=60', ETag: 'W/"w1"', 'Content-Length': body.length }).end(body);
        return;
      }
      const [a, b] = [Number(m[1]), Math.min(Number(m[2]), body.length - 1)];
      res.writeHead(206, { 'Cache-Control': 'max-age=60', ETag: 'W/"w1"', 'Content-Range': `bytes ${a}-${b}/${body.length}`, 'Content-Length': b - a + 1 }).end(body.subarray(a, b + 1));
    });
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    try {
      const d = dir();
      const p = await proxy(`http://127.0.0.1:${(origin.address() as AddressInfo).port}`, d);
      for (let i = 0; i < 2; i++) {
        const a = await get(p, '/weak', '-r', '10-19');
        assert.equal(a.status, 206);
        assert.ok(a.body.equals(body.subarray(10, 20)));
        assert.equal(a.headers['cache-status'], 'aludel; fwd=uri-miss; detail=no-strong-validator');
        assert.equal(a.log.cacheDetail, 'no-strong-validator');
      }
      assert.equal(metas(d).length, 0);
    } finally {
      await new Promise((resolve) => origin.close(resolve));
    }
  });
});

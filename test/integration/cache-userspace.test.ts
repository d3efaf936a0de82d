/**
 * `aludel proxy --cache DIR` on this kernel (no kTLS: hits are sent by read +
 * SSL_write, logged as body "write"; test/ktls/cache-ktls.test.ts checks
 * sendfile and the kernel's counters). Real origins: the node sink's /cache
 * route (fields from the query string, a request counter in the body) and
 * Debian's nginx (static files with ETag/Last-Modified, access log). Every
 * client is curl; every check looks at what reached the origin, what the
 * client got, and what is in the cache directory.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { parseHead } from '../support/curl-answer.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { patternBytes, patternSha256, startNginxOrigin, startSinkOrigin, type NginxOrigin, type SinkOrigin } from '../support/origins.js';

const MiB = 1024 * 1024;
const FILES = { 'small.txt': 3000, 'big.bin': 5 * MiB };

let fx: Fixtures<keyof typeof FILES>;
let nginx: NginxOrigin;
let sink: SinkOrigin;
const running: Running[] = [];
let serial = 0;

interface Answer {
  status: number;
  /** The final response's fields, lowercase names, repeated ones joined with ", ". */
  headers: Record<string, string>;
  /** Every header block curl saw (interim responses first). */
  heads: string[];
  body: Buffer;
}

function cacheDir(): string {
  return path.join(fx.dir, `cache-${++serial}`);
}

async function proxy(to: string, dir: string, ...extra: string[]): Promise<Running> {
  const p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', to, '--cache', dir, ...extra]);
  running.push(p);
  return p;
}

/** curl, headers to stdout, body to a file. */
async function fetch(port: number, urlPath: string, ...extra: string[]): Promise<Answer> {
  const out = path.join(fx.outDir, `body-${++serial}`);
  const r = await curl(['--cacert', fx.certFile, '-D', '-', '-o', out, ...extra, `https://localhost:${port}${urlPath}`], 60_000);
  assert.equal(r.code, 0, `curl ${urlPath}: ${r.stderr}`);
  const heads = r.stdout.toString('latin1').split('\r\n\r\n').filter((b) => b.startsWith('HTTP/'));
  const { status, headers } = parseHead(heads.at(-1) ?? '');
  const body = fs.existsSync(out) ? fs.readFileSync(out) : Buffer.alloc(0);
  fs.rmSync(out, { force: true });
  return { status, headers, heads, body };
}

/** The request log line of the next request for `url` logged after `from`. */
function logged(p: Running, url: string, from: number, timeoutMs = 10_000): Promise<LogLine> {
  // Not a PURGE of the same URL sent just before: its line can be written after the next request's mark.
  return p.waitForLog((l) => l.msg === 'request' && l.url === url && l.method !== 'PURGE', timeoutMs, from);
}

/** GET through the proxy and wait for its log line (the entry is committed when the line is written). */
async function get(p: Running, url: string, ...extra: string[]): Promise<Answer & { log: LogLine }> {
  const from = p.mark();
  const a = await fetch(p.port, url, ...extra);
  return { ...a, log: await logged(p, url, from) };
}

/** The sink's JSON body: n counts its /cache requests, so equal n means the same origin response. */
function n(a: Answer): number {
  return (JSON.parse(a.body.toString()) as { n: number }).n;
}

function sinkCount(url: string): number {
  return sink.requests.filter((r) => r.url === url).length;
}

/** Files in the cache directory, by kind (no stat: evictions unlink files in the background). */
function stored(dir: string): { bodies: string[]; metas: string[]; temps: string[] } {
  const all = fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => path.join(d.parentPath, d.name));
  return { bodies: all.filter((f) => f.endsWith('.body')), metas: all.filter((f) => f.endsWith('.meta.json')), temps: all.filter((f) => f.endsWith('.tmp')) };
}

/** The metadata of every stored response, with its body's size (call when no eviction is under way). */
function storedMetas(dir: string): Array<{ key: string; length: number; bodySize: number | null }> {
  return stored(dir).metas.map((m) => {
    const meta = JSON.parse(fs.readFileSync(m, 'utf8')) as { key: string; length: number };
    const body = m.replace(/\.meta\.json$/, '.body');
    return { key: meta.key, length: meta.length, bodySize: fs.existsSync(body) ? fs.statSync(body).size : null };
  });
}

const enc = encodeURIComponent;

before(async () => {
  fx = await makeFixtures(FILES);
  nginx = await startNginxOrigin({ root: fx.root });
  sink = await startSinkOrigin();
});

after(async () => {
  for (const p of running) await p.stop();
  await nginx?.stop();
  await sink?.stop();
  fx?.cleanup();
});

describe('aludel proxy --cache (userspace TLS)', () => {
  test('MISS then HIT: one origin request, Cache-Status and Age, HEAD from the stored response', async () => {
    const dir = cacheDir();
    const p = await proxy(`http://127.0.0.1:${sink.port}`, dir);
    const url = `/cache?cc=${enc('max-age=60')}&etag=t1`;
    const miss = await get(p, url);
    assert.equal(miss.status, 200);
    assert.equal(miss.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
    assert.equal(miss.log.cache, 'miss');
    const hit = await get(p, url);
    assert.equal(hit.status, 200);
    assert.match(hit.headers['cache-status']!, /^aludel; hit; ttl=(59|60)$/);
    assert.match(hit.headers.age!, /^[01]$/);
    assert.equal(hit.headers.etag, '"t1"');
    assert.deepEqual(hit.body, miss.body);
    assert.equal(hit.log.cache, 'hit');
    assert.equal(hit.log.upstream, null);
    assert.equal(hit.log.body, 'write', 'no kTLS here: read + SSL_write');
    assert.equal(hit.log.bytes, hit.body.length);
    const head = await get(p, url, '-I');
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(miss.body.length));
    assert.match(head.headers['cache-status']!, /; hit;/);
    assert.equal(sinkCount(url), 1);
    assert.equal(stored(dir).bodies.length, 1);
  });

  test('Vary: Accept-Encoding keeps two variants apart; Vary: * is never reused', async () => {
    const p = await proxy(`http://127.0.0.1:${sink.port}`, cacheDir());
    const url = `/cache?cc=${enc('max-age=60')}&vary=Accept-Encoding`;
    const gz = await get(p, url, '-H', 'Accept-Encoding: gzip');
    const plain = await get(p, url);
    assert.equal(plain.headers['cache-status'], 'aludel; fwd=vary-miss; stored', 'the URI is stored, not this variant');
    const gzHit = await get(p, url, '-H', 'Accept-Encoding: gzip');
    const plainHit = await get(p, url);
    assert.equal(n(gzHit), n(gz));
    assert.equal(n(plainHit), n(plain));
    assert.notEqual(n(gz), n(plain));
    assert.equal(JSON.parse(gzHit.body.toString()).ae, 'gzip');
    assert.equal(JSON.parse(plainHit.body.toString()).ae, null);
    assert.match(gzHit.headers['cache-status']!, /; hit;/);
    assert.equal(sinkCount(url), 2);
    const star = `/cache?cc=${enc('max-age=60')}&vary=*`;
    const s1 = await get(p, star);
    const s2 = await get(p, star);
    assert.equal(s1.headers['cache-status'], 'aludel; fwd=uri-miss; detail=vary-star');
    assert.notEqual(n(s1), n(s2));
  });

  test('a Vary field the client names in Connection selects as absent: the origin never saw it (no hop-by-hop poisoning)', async () => {
    const p = await proxy(`http://127.0.0.1:${sink.port}`, cacheDir());
    const url = `/cache?cc=${enc('max-age=60')}&vary=Accept-Encoding&hop=1`;
    // RFC 9110 §7.6.1: the proxy removes a field named in Connection, so the origin answers as if
    // there were no Accept-Encoding. That answer must not be stored as the gzip variant.
    const attacker = await get(p, url, '--http1.1', '-H', 'Accept-Encoding: gzip', '-H', 'Connection: Accept-Encoding');
    assert.equal(JSON.parse(attacker.body.toString()).ae, null, 'the origin did not get the Accept-Encoding named in Connection');
    const victim = await get(p, url, '-H', 'Accept-Encoding: gzip');
    assert.equal(JSON.parse(victim.body.toString()).ae, 'gzip', "the gzip variant is the origin's answer to a gzip request");
    assert.equal(victim.headers['cache-status'], 'aludel; fwd=vary-miss; stored');
    // What the attacker's request did store is the no-Accept-Encoding variant, which it is.
    const plain = await get(p, url);
    assert.match(plain.headers['cache-status']!, /; hit;/);
    assert.equal(n(plain), n(attacker));
    assert.equal(sinkCount(url), 2);
  });

  test('an absolute-form target with a query right after the authority has the key of its target URI: hit and invalidation', async () => {
    // Every answer cacheable, numbered: equal numbers are one stored response.
    let count = 0;
    const seen: string[] = [];
    const origin = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.writeHead(200, { 'Cache-Control': 'max-age=60', 'Content-Type': 'text/plain' }).end(`n=${++count}\n`);
    });
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    try {
      const p = await proxy(`http://127.0.0.1:${(origin.address() as AddressInfo).port}`, cacheDir());
      const absolute = `http://localhost:${p.port}?q=1`;
      // RFC 9112 §3.2.2, §3.3: "http://host?q=1" is the target URI https://host/?q=1, as "/?q=1" with that Host.
      const mark = p.mark();
      const first = await fetch(p.port, '/?q=1', '--http1.1', '--request-target', absolute);
      await logged(p, absolute, mark);
      assert.equal(first.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
      const second = await get(p, '/?q=1');
      assert.match(second.headers['cache-status']!, /; hit;/, 'the same target URI, the same stored response');
      assert.equal(second.body.toString(), first.body.toString());
      // §4.4: an unsafe method on that target invalidates it, whichever form named it.
      const post = await fetch(p.port, '/?q=1', '--http1.1', '-X', 'POST', '--request-target', absolute);
      assert.equal(post.status, 200);
      const third = await get(p, '/?q=1');
      assert.equal(third.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
      assert.deepEqual(seen, ['GET /?q=1', 'POST /?q=1', 'GET /?q=1']);
    } finally {
      await new Promise<void>((resolve) => origin.close(() => resolve()));
    }
  });

  test('no-store, private, Authorization and Set-Cookie never reach the disk', async () => {
    const dir = cacheDir();
    const p = await proxy(`http://127.0.0.1:${sink.port}`, dir);
    const lm = Math.floor(Date.now() / 1000) - 86_400;
    const cases = [
      { url: `/cache?cc=${enc('no-store, max-age=60')}`, extra: [], detail: 'no-store' },
      { url: `/cache?cc=${enc('private, max-age=60')}`, extra: [], detail: 'private' },
      { url: `/cache?cc=${enc('max-age=60')}&a=1`, extra: ['-H', 'Authorization: Basic dTpw'], detail: 'authorization' },
      { url: `/cache?lm=${lm}&cookie=id%3D7`, extra: [], detail: 'set-cookie' },
      // Explicitly cacheable, but one user's session cookie must not be replayed to others (nginx's default too).
      { url: `/cache?cc=${enc('public, max-age=60')}&cookie=session%3D7`, extra: [], detail: 'set-cookie' },
      { url: `/cache?cc=${enc('max-age=60')}&b=1`, extra: ['-H', 'Cache-Control: no-store'], detail: 'no-store' },
    ];
    for (const c of cases) {
      const a = await get(p, c.url, ...c.extra);
      const b = await get(p, c.url, ...c.extra);
      assert.notEqual(n(a), n(b), `${c.url}: both from the origin`);
      if (c.detail !== null) assert.equal(a.headers['cache-status'], `aludel; fwd=uri-miss; detail=${c.detail}`, c.url);
      assert.equal(b.log.cache, 'miss');
    }
    assert.deepEqual(stored(dir), { bodies: [], metas: [], temps: [] });
    // Stored when the origin allows it explicitly: public with Authorization (§3.5).
    const pub = `/cache?cc=${enc('public, max-age=60')}`;
    const a1 = await get(p, pub, '-H', 'Authorization: Basic dTpw');
    const a2 = await get(p, pub, '-H', 'Authorization: Basic b3RoZXI6eA==');
    assert.equal(n(a1), n(a2));
    assert.equal(stored(dir).bodies.length, 1);
  });

  test('a 304 bringing Set-Cookie, private, no-store or Vary: * is not merged into the stored response (§3.2, §4.3.4): only the validated request gets it, the entry goes', async () => {
    const dir = cacheDir();
    const p = await proxy(`http://127.0.0.1:${sink.port}`, dir);
    // Age: 100 with max-age=60: stored (it has an ETag) but stale, so the next request validates it. The 304
    // says Age: 0, so a stored response it freshened would be fresh, and the request after it a hit.
    const cases = [
      { nm: 'Set-Cookie:session=victim', field: 'set-cookie', value: 'session=victim', detail: 'set-cookie' },
      { nm: 'Cache-Control:private, max-age=60', field: 'cache-control', value: 'private, max-age=60', detail: 'private' },
      { nm: 'Cache-Control:no-store, max-age=60', field: 'cache-control', value: 'no-store, max-age=60', detail: 'no-store' },
      { nm: 'Vary:*', field: 'vary', value: '*', detail: 'vary-star' },
    ];
    for (const [i, c] of cases.entries()) {
      const url = `/cache?cc=${enc('max-age=60')}&age=100&etag=u${i}&nm=${enc('Age:0')}&nm=${enc(c.nm)}`;
      const first = await get(p, url);
      assert.equal(first.headers['cache-status'], 'aludel; fwd=uri-miss; stored', c.nm);
      const validated = await get(p, url);
      const next = await get(p, url);
      assert.notEqual(next.headers[c.field], c.value, `${c.nm}: another client never gets the 304's field`);
      assert.equal(next.log.cache, 'miss', `${c.nm}: the entry was dropped`);
      assert.equal(validated.headers['cache-status'], `aludel; fwd=stale; fwd-status=304; detail=${c.detail}`, c.nm);
      assert.equal(validated.log.cache, 'revalidated');
      assert.equal(n(validated), n(first), `${c.nm}: the stored body`);
      assert.equal(validated.headers[c.field], c.value, `${c.nm}: the answer to the request it validated carries the 304's field`);
      assert.equal(next.headers['cache-status'], 'aludel; fwd=uri-miss; stored', c.nm);
      assert.equal(sinkCount(url), 3, c.nm);
    }
    for (const m of stored(dir).metas) {
      const { headers } = JSON.parse(fs.readFileSync(m, 'utf8')) as { headers: string[] };
      assert.doesNotMatch(headers.join('\n'), /victim|private|no-store|^\*$/m, m);
    }
  });

  test('§5.2.2.7: a stored private="Set-Cookie" keeps out the cookie of a 304 without Cache-Control: freshened and hit without it, the validated request gets it', async () => {
    const p = await proxy(`http://127.0.0.1:${sink.port}`, cacheDir());
    const q = `/cache?cc=${enc('max-age=60, private="Set-Cookie"')}&cookie=first%3D1&age=100&etag=q&nm=${enc('Age:0')}&nm=${enc('Cache-Control:')}&nm=${enc('Set-Cookie:session=victim')}`;
    const first = await get(p, q);
    assert.equal(first.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
    const validated = await get(p, q);
    const hit = await get(p, q);
    assert.equal(hit.headers['set-cookie'], undefined, 'another client never gets the cookie the 304 brought');
    assert.match(hit.headers['cache-status']!, /^aludel; hit; ttl=/);
    assert.equal(n(hit), n(first));
    assert.match(validated.headers['cache-status']!, /^aludel; fwd=stale; fwd-status=304; ttl=/);
    assert.equal(validated.headers['set-cookie'], 'session=victim', 'the request the 304 answered gets its cookie');
  });

  test('--cache-cookies: max-age with Set-Cookie is stored and replayed (§7.3); a heuristic one still is not', async () => {
    const dir = cacheDir();
    const p = await proxy(`http://127.0.0.1:${sink.port}`, dir, '--cache-cookies');
    const cookie = `/cache?cc=${enc('max-age=60')}&cookie=shared%3D1`;
    await get(p, cookie);
    const c2 = await get(p, cookie);
    assert.match(c2.headers['cache-status']!, /; hit;/);
    assert.equal(c2.headers['set-cookie'], 'shared=1');
    const lm = Math.floor(Date.now() / 1000) - 86_400;
    const h1 = await get(p, `/cache?lm=${lm}&cookie=id%3D8`);
    assert.equal(h1.headers['cache-status'], 'aludel; fwd=uri-miss; detail=set-cookie');
    assert.equal(stored(dir).bodies.length, 1);
  });

  test('conditional requests are answered from the cache (304) without the origin', async () => {
    const p = await proxy(`http://127.0.0.1:${sink.port}`, cacheDir());
    const lm = Math.floor(Date.now() / 1000) - 3600;
    const url = `/cache?cc=${enc('max-age=60')}&etag=c1&lm=${lm}`;
    const first = await get(p, url);
    const inm = await get(p, url, '-H', 'If-None-Match: "other", "c1"');
    assert.equal(inm.status, 304);
    assert.equal(inm.headers.etag, '"c1"');
    assert.equal(inm.headers['cache-control'], 'max-age=60');
    assert.match(inm.headers['cache-status']!, /; hit;/);
    assert.equal(inm.body.length, 0);
    const ims = await get(p, url, '-H', `If-Modified-Since: ${new Date(lm * 1000).toUTCString()}`);
    assert.equal(ims.status, 304);
    // The stored Last-Modified is read only for a request that compares with it: an earlier date gets the body.
    const before = await get(p, url, '-H', `If-Modified-Since: ${new Date((lm - 60) * 1000).toUTCString()}`);
    assert.equal(before.status, 200);
    assert.deepEqual(before.body, first.body);
    assert.match(before.headers['cache-status']!, /; hit;/);
    const changed = await get(p, url, '-H', 'If-None-Match: "old"');
    assert.equal(changed.status, 200);
    assert.deepEqual(changed.body, first.body);
    // If-Match is the origin's to evaluate (§4.3.2): forwarded.
    const ifMatch = await get(p, url, '-H', 'If-Match: "c1"');
    assert.equal(ifMatch.headers['cache-status'], 'aludel; fwd=request; detail=precondition');
    assert.equal(ifMatch.log.cacheDetail, 'precondition');
    assert.equal(sinkCount(url), 2);
  });

  test('Range hits: first byte, last byte, middle, suffix match the file; 416 beyond it', async () => {
    const p = await proxy(`http://127.0.0.1:${nginx.port}`, cacheDir());
    const f = fx.files['big.bin'];
    // nginx's $arg_cc is the raw query text: no percent-encoding.
    const url = '/cc/big.bin?cc=max-age=600';
    const full = await get(p, url);
    assert.equal(sha256(full.body), f.sha256);
    const bytes = fs.readFileSync(f.path);
    const mid = Math.floor(f.size / 2);
    const ranges: Array<[string, number, number]> = [['0-0', 0, 0], [`${f.size - 1}-${f.size - 1}`, f.size - 1, f.size - 1], [`${mid}-${mid + MiB}`, mid, mid + MiB], ['-1000', f.size - 1000, f.size - 1]];
    for (const [spec, start, end] of ranges) {
      const r = await get(p, url, '-r', spec);
      assert.equal(r.status, 206, spec);
      assert.equal(r.headers['content-range'], `bytes ${start}-${end}/${f.size}`);
      assert.equal(sha256(r.body), sha256(bytes.subarray(start, end + 1)), spec);
      assert.match(r.headers['cache-status']!, /; hit;/);
      assert.equal(r.log.bytes, end - start + 1);
    }
    const beyond = await get(p, url, '-r', `${f.size}-`);
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers['content-range'], `bytes */${f.size}`);
    // If-Range with the stored ETag gets the range; with another, the whole body (RFC 9110 §13.1.5).
    assert.equal((await get(p, url, '-r', '0-9', '-H', `If-Range: ${full.headers.etag}`)).status, 206);
    assert.equal((await get(p, url, '-r', '0-9', '-H', 'If-Range: "nope"')).status, 200);
    // A date in If-Range is compared with the stored Last-Modified: equal, the range; another, the whole body.
    const lastModified = full.headers['last-modified']!;
    assert.equal((await get(p, url, '-r', '0-9', '-H', `If-Range: ${lastModified}`)).status, 206);
    assert.equal((await get(p, url, '-r', '0-9', '-H', `If-Range: ${new Date(Date.parse(lastModified) - 1000).toUTCString()}`)).status, 200);
    const entries = (await nginx.accessLog()).filter((e) => e.uri === url);
    assert.equal(entries.length, 1, 'one origin request for all of them');
  });

  test('after max-age a conditional request goes to the origin; its 304 keeps the stored body serving', async () => {
    const p = await proxy(`http://127.0.0.1:${nginx.port}`, cacheDir());
    // max-age 3: long enough that the freshened response is still fresh for the next request on a loaded machine.
    const url = '/cc/small.txt?cc=max-age=3';
    const first = await get(p, url);
    assert.equal(sha256(first.body), fx.files['small.txt'].sha256);
    await new Promise((r) => setTimeout(r, 3100));
    const again = await get(p, url);
    assert.equal(again.status, 200);
    assert.match(again.headers['cache-status']!, /^aludel; fwd=stale; fwd-status=304; ttl=[0-3]$/);
    assert.equal(again.log.cache, 'revalidated');
    assert.deepEqual(again.body, first.body);
    const fresh = await get(p, url);
    assert.match(fresh.headers['cache-status']!, /; hit;/, 'the 304 freshened the stored response');
    const entries = (await nginx.accessLog(2)).filter((e) => e.uri === url);
    assert.deepEqual(entries.map((e) => e.status), [200, 304]);
    // A request no-cache validates even a fresh response (§5.2.1.4).
    const forced = await get(p, url, '-H', 'Cache-Control: no-cache');
    assert.match(forced.headers['cache-status']!, /^aludel; fwd=(request|stale); fwd-status=304/);
  });

  test('a changed file on the origin: its 200 replaces the stale response', async () => {
    const dir = cacheDir();
    const p = await proxy(`http://127.0.0.1:${nginx.port}`, dir);
    const file = path.join(fx.root, 'changing.txt');
    fs.writeFileSync(file, 'version 1\n');
    const url = '/cc/changing.txt?cc=max-age=2';
    assert.equal((await get(p, url)).body.toString(), 'version 1\n');
    await new Promise((r) => setTimeout(r, 3100));
    // A new size and mtime: nginx's ETag changes, so the validation gets a 200.
    fs.writeFileSync(file, 'version two\n');
    const changed = await get(p, url);
    assert.equal(changed.body.toString(), 'version two\n');
    assert.equal(changed.headers['cache-status'], 'aludel; fwd=stale; fwd-status=200; stored');
    assert.equal(changed.log.cache, 'stale');
    const hit = await get(p, url);
    assert.equal(hit.body.toString(), 'version two\n');
    assert.match(hit.headers['cache-status']!, /; hit;/);
    for (let i = 0; i < 50 && stored(dir).metas.length > 1; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(storedMetas(dir).length, 1, 'the new response replaced the old one');
  });

  test('without an ETag, validation sends the stored Last-Modified', async () => {
    const dir = cacheDir();
    const p = await proxy(`http://127.0.0.1:${sink.port}`, dir);
    const url = `/cache?cc=${enc('max-age=1')}&lm=1000000000`;
    const first = await get(p, url);
    await new Promise((r) => setTimeout(r, 2100));
    const revalidated = await get(p, url);
    assert.equal(revalidated.log.cache, 'revalidated');
    assert.equal(n(revalidated), n(first));
    const lastRequest = sink.requests.filter((r) => r.url === url).at(-1)!;
    const sentIms = lastRequest.headers.findIndex((h) => h.toLowerCase() === 'if-modified-since');
    assert.equal(lastRequest.headers[sentIms + 1], new Date(1_000_000_000_000).toUTCString(), 'validated with the stored Last-Modified');
    assert.equal(storedMetas(dir).length, 1);
  });

  test('unsafe methods invalidate the target and a same-host Location', async () => {
    const p = await proxy(`http://127.0.0.1:${sink.port}`, cacheDir());
    const a = `/cache?cc=${enc('max-age=60')}&item=a`;
    const b = `/cache?cc=${enc('max-age=60')}&item=b`;
    const first = { a: await get(p, a), b: await get(p, b) };
    assert.match((await get(p, a)).headers['cache-status']!, /; hit;/);
    const postA = await curl(['--cacert', fx.certFile, '-sS', '-o', '/dev/null', '-w', '%{http_code}', '--data', 'x', '-X', 'POST', `https://localhost:${p.port}${a}`]);
    assert.equal(postA.stdout.toString(), '200');
    const afterA = await get(p, a);
    assert.notEqual(n(afterA), n(first.a), 'the POST target was invalidated');
    assert.match((await get(p, b)).headers['cache-status']!, /; hit;/, 'b untouched so far');
    const withLocation = `/cache?cc=${enc('max-age=60')}&item=c&location=${enc(`https://localhost:${p.port}${b}`)}`;
    const put = await curl(['--cacert', fx.certFile, '-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'PUT', '--data', 'y', `https://localhost:${p.port}${withLocation}`]);
    assert.equal(put.stdout.toString(), '200');
    const afterB = await get(p, b);
    assert.notEqual(n(afterB), n(first.b), 'the Location of the PUT answer was invalidated');
    const post2 = await get(p, a);
    assert.match(post2.headers['cache-status']!, /; hit;/);
  });

  test('16 concurrent clients missing on one cold key: one origin request, every client the whole body', async () => {
    const p = await proxy(`http://127.0.0.1:${sink.port}`, cacheDir());
    const size = 2 * MiB + 3;
    // The origin waits before its head and then sends at 4 MiB/s, so all 16 arrive while the fill is under way.
    const url = `/cache?cc=${enc('max-age=600')}&size=${size}&delay=1500`;
    const from = p.mark();
    const answers = await Promise.all(Array.from({ length: 16 }, () => fetch(p.port, url, '-H', 'X-Sink-Rate: 4194304')));
    for (const a of answers) {
      assert.equal(a.status, 200);
      assert.equal(sha256(a.body), patternSha256(size));
    }
    assert.equal(sinkCount(url), 1, 'exactly one origin request');
    for (let i = 0; i < 100 && p.logs.slice(from).filter((l) => l.msg === 'request').length < 16; i++) await new Promise((r) => setTimeout(r, 50));
    const outcomes = p.logs.slice(from).filter((l) => l.msg === 'request').map((l) => l.cache);
    assert.equal(outcomes.filter((o) => o === 'miss').length, 1, outcomes.join(','));
    assert.ok(outcomes.filter((o) => o === 'collapsed').length >= 8, `followers streamed the fill: ${outcomes.join(',')}`);
    const collapsed = answers.find((a) => a.headers['cache-status']?.includes('collapsed'));
    assert.equal(collapsed?.headers['cache-status'], 'aludel; fwd=uri-miss; collapsed');
  });

  test('a chunked origin body is stored (complete by its last chunk) and followed as chunks', async () => {
    const p = await proxy(`http://127.0.0.1:${sink.port}`, cacheDir());
    const size = MiB + 17;
    const url = `/cache?cc=${enc('max-age=600')}&size=${size}&chunked=1&delay=800`;
    const [a, b] = await Promise.all([fetch(p.port, url, '-H', 'X-Sink-Rate: 2097152'), fetch(p.port, url, '-H', 'X-Sink-Rate: 2097152')]);
    for (const x of [a!, b!]) assert.equal(sha256(x.body), patternSha256(size));
    assert.ok([a!, b!].some((x) => x.headers['cache-status']?.includes('collapsed') && x.headers['transfer-encoding'] === 'chunked'));
    await logged(p, url, 0);
    for (let i = 0; i < 50 && p.logs.filter((l) => l.msg === 'request' && l.url === url).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
    const hit = await get(p, url);
    assert.equal(hit.headers['content-length'], String(size), 'stored with its length');
    assert.equal(sha256(hit.body), patternSha256(size));
    assert.equal(sinkCount(url), 1);
  });

  test('an origin dying mid-fill: every client following it sees an aborted response, nothing is stored', async () => {
    const dir = cacheDir();
    const p = await proxy(`http://127.0.0.1:${sink.port}`, dir, '--max-fails', '0');
    const size = 4 * MiB;
    const url = `/cache?cc=${enc('max-age=600')}&size=${size}&die=${MiB}&delay=800`;
    const results = await Promise.all([0, 1].map(() => curl(['--cacert', fx.certFile, '-o', '/dev/null', '-w', '%{size_download}', `https://localhost:${p.port}${url}`])));
    for (const r of results) {
      assert.notEqual(r.code, 0, 'never a clean end');
      assert.ok(Number(r.stdout.toString()) < size);
    }
    for (let i = 0; i < 50 && p.logs.filter((l) => l.msg === 'request' && l.url === url).length < 2; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(stored(dir), { bodies: [], metas: [], temps: [] });
    assert.equal(sinkCount(url), 1);
  });

  test('kill -9 during a large fill, restart on the same directory: the entry is absent, never short; the next request refills it', async () => {
    const dir = cacheDir();
    const size = 64 * MiB;
    const url = `/cache?cc=${enc('max-age=600')}&size=${size}&kill=1`;
    const p1 = await proxy(`http://127.0.0.1:${sink.port}`, dir);
    // 2 MiB/s: the fill is far from done when the process dies.
    const client = curl(['--cacert', fx.certFile, '-o', '/dev/null', '-H', 'X-Sink-Rate: 2097152', `https://localhost:${p1.port}${url}`], 60_000);
    let partial = 0;
    for (let i = 0; i < 100 && partial < 512 * 1024; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const t = stored(dir).temps;
      partial = t.length === 1 ? fs.statSync(t[0]!).size : 0;
    }
    assert.ok(partial >= 512 * 1024, 'the fill was under way');
    p1.child.kill('SIGKILL');
    assert.notEqual((await client).code, 0, 'the client saw the response cut short');
    assert.equal(stored(dir).temps.length, 1, 'the killed fill left its temporary file');
    const p2 = await proxy(`http://127.0.0.1:${sink.port}`, dir);
    const rebuilt = await p2.waitForLog((l) => l.msg === 'cache index rebuilt');
    assert.equal(rebuilt.deletedIncomplete, 1);
    assert.deepEqual(stored(dir).temps, []);
    for (const m of storedMetas(dir)) assert.equal(m.bodySize, m.length, `${m.key} complete`);
    assert.equal(storedMetas(dir).filter((m) => m.key.endsWith(url)).length, 0, 'absent');
    const refill = await get(p2, url);
    assert.equal(refill.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
    assert.equal(sha256(refill.body), patternSha256(size));
    const hit = await get(p2, url);
    assert.match(hit.headers['cache-status']!, /; hit;/);
    assert.equal(sha256(hit.body), patternSha256(size));
    assert.deepEqual(storedMetas(dir).filter((m) => m.key.endsWith(url)).map((m) => [m.length, m.bodySize]), [[size, size]]);
  });

  test('--cache-size: least recently used responses are evicted', async () => {
    const dir = cacheDir();
    const p = await proxy(`http://127.0.0.1:${sink.port}`, dir, '--cache-size', `${2 * MiB + MiB / 2}`);
    const url = (k: string) => `/cache?cc=${enc('max-age=600')}&size=${MiB}&lru=${k}`;
    await get(p, url('a'));
    await get(p, url('b'));
    assert.match((await get(p, url('a'))).headers['cache-status']!, /; hit;/);
    await get(p, url('c'));
    assert.match((await get(p, url('a'))).headers['cache-status']!, /; hit;/);
    assert.match((await get(p, url('c'))).headers['cache-status']!, /; hit;/);
    const b = await get(p, url('b'));
    assert.equal(b.headers['cache-status'], 'aludel; fwd=uri-miss; stored', 'b was the least recently used');
    assert.equal(sinkCount(url('b')), 2);
    for (let i = 0; i < 50 && stored(dir).bodies.length > 2; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(stored(dir).bodies.length, 2);
    const total = stored(dir).bodies.concat(stored(dir).metas).reduce((t, f) => t + fs.statSync(f).size, 0);
    assert.ok(total <= 2 * MiB + MiB / 2, `${total} bytes on disk`);
  });

  test('a stored body replaced by a FIFO or a directory, or truncated, is dropped and fetched again: no hang, no hit failing forever', async () => {
    const dir = cacheDir();
    const p = await proxy(`http://127.0.0.1:${sink.port}`, dir);
    const bodyOf = (url: string): string => {
      const meta = stored(dir).metas.find((m) => (JSON.parse(fs.readFileSync(m, 'utf8')) as { key: string }).key.endsWith(url))!;
      return meta.replace(/\.meta\.json$/, '.body');
    };
    // --max-time bounds the hang before the fix (open(2) of a FIFO blocked the whole process); it is not what is checked.
    const bounded = ['--max-time', '20'];
    const directory = `/cache?cc=${enc('max-age=600')}&k=dir`;
    const d1 = await get(p, directory);
    const dirBody = bodyOf(directory);
    fs.rmSync(dirBody);
    fs.mkdirSync(dirBody);
    const d2 = await get(p, directory, ...bounded);
    assert.equal(d2.log.cache, 'miss', 'a directory is not a body: fetched again');
    assert.equal(n(d2), n(d1) + 1);

    // Truncated under a descriptor a hit keeps open: that hit is aborted (its head is out), the next one refetches.
    const cut = `/cache?size=${64 * 1024}&cc=${enc('max-age=600')}&k=cut`;
    await get(p, cut);
    assert.match((await get(p, cut)).headers['cache-status']!, /; hit;/);
    fs.truncateSync(bodyOf(cut), 1000);
    const from = p.mark();
    const aborted = await curl(['--cacert', fx.certFile, '-o', '/dev/null', ...bounded, `https://localhost:${p.port}${cut}`], 30_000);
    assert.notEqual(aborted.code, 0, 'the head went out before the short read: aborted, never ended short');
    assert.equal((await logged(p, cut, from)).error, 'ERR_FILE_TRUNCATED');
    const again = await get(p, cut, ...bounded);
    assert.equal(again.log.cache, 'miss', 'the truncated entry was dropped');
    assert.equal(sha256(again.body), patternSha256(64 * 1024));
    assert.equal(sinkCount(cut), 2);

    const fifo = `/cache?cc=${enc('max-age=600')}&k=fifo`;
    const f1 = await get(p, fifo);
    const fifoBody = bodyOf(fifo);
    fs.rmSync(fifoBody);
    execFileSync('mkfifo', [fifoBody]);
    const f2 = await get(p, fifo, ...bounded);
    assert.equal(f2.log.cache, 'miss', 'the FIFO is not a body: fetched again');
    assert.equal(f2.headers['cache-status'], 'aludel; fwd=miss; stored; detail=evicted');
    assert.equal(n(f2), n(f1) + 1);
    assert.ok(p.logs.some((l) => l.msg.startsWith('cache: a stored body is not the file that was committed') && l.code === 'ERR_CACHE_BODY_CHANGED'));
    assert.match((await get(p, fifo)).headers['cache-status']!, /; hit;/);
  });

  test('ENOSPC while filling: the client gets the whole response, one log line per failed store, nothing half-stored', async () => {
    const dir = cacheDir();
    fs.mkdirSync(dir);
    // A 1 MiB tmpfs over the cache directory, in a mount namespace of the proxy's own (gone with it).
    const p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${sink.port}`, '--cache', dir], {
      prefix: ['unshare', '-rm', 'sh', '-c', 'mount -t tmpfs -o size=1m,mode=0700 aludel-test "$0" && exec "$@"', dir],
    });
    running.push(p);
    const size = 3 * MiB;
    const url = `/cache?cc=${enc('max-age=600')}&size=${size}&enospc=1`;
    const a = await get(p, url);
    assert.equal(a.status, 200);
    assert.equal(sha256(a.body), patternSha256(size));
    const line = await p.waitForLog((l) => l.msg.startsWith('cache: could not write a response body'));
    assert.equal(line.code, 'ENOSPC');
    const b = await get(p, url);
    assert.equal(sha256(b.body), patternSha256(size));
    assert.equal(b.log.cache, 'miss');
    // One warn line per failed store (with its errno), not once per error code: each one is a response not stored.
    const warns = p.logs.filter((l) => l.msg.startsWith('cache: could not write'));
    assert.deepEqual(warns.map((l) => [l.level, l.code, l.errno]), [[40, 'ENOSPC', -28], [40, 'ENOSPC', -28]]);
    // RFC 9211 §2.5: while the last write failed, a miss's head does not say `stored`.
    assert.doesNotMatch(b.headers['cache-status']!, /stored/);
    // What fits is still stored.
    const small = `/cache?cc=${enc('max-age=600')}&size=10000&enospc=2`;
    await get(p, small);
    assert.match((await get(p, small)).headers['cache-status']!, /; hit;/);
    assert.equal(sha256((await get(p, small)).body), sha256(patternBytes(10000)));
  });

  test('interim 103 Early Hints pass through and are never stored', async () => {
    const p = await proxy(`http://127.0.0.1:${sink.port}`, cacheDir());
    const url = `/cache?cc=${enc('max-age=60')}&hints=1`;
    const miss = await get(p, url);
    assert.equal(miss.heads.length, 2);
    assert.match(miss.heads[0]!, /^HTTP\/1\.1 103 Early Hints\r\nLink: <\/style\.css>; rel=preload; as=style/);
    const hit = await get(p, url);
    assert.equal(hit.heads.length, 1, 'the stored response has no interim response');
    assert.match(hit.headers['cache-status']!, /; hit;/);
  });

  test('PURGE from loopback removes every variant; only-if-cached; the request log and counters', async () => {
    const dir = cacheDir();
    const p = await proxy(`http://127.0.0.1:${sink.port}`, dir);
    const url = `/cache?cc=${enc('max-age=60')}&vary=Accept-Encoding&purge=1`;
    await get(p, url);
    await get(p, url, '-H', 'Accept-Encoding: br');
    assert.equal((await get(p, url, '-H', 'Cache-Control: only-if-cached')).status, 200);
    const purge = await curl(['--cacert', fx.certFile, '-sS', '-X', 'PURGE', `https://localhost:${p.port}${url}`]);
    assert.deepEqual(JSON.parse(purge.stdout.toString()), { key: `https://localhost:${p.port}${url}`, purged: 2 });
    for (let i = 0; i < 500 && stored(dir).bodies.length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(stored(dir).bodies, []);
    const again = await curl(['--cacert', fx.certFile, '-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'PURGE', `https://localhost:${p.port}${url}`]);
    assert.equal(again.stdout.toString(), '404');
    const gone = await get(p, url, '-H', 'Cache-Control: only-if-cached');
    assert.equal(gone.status, 504, 'only-if-cached and nothing stored (§5.2.1.7)');
    assert.equal(gone.headers['cache-status'], 'aludel; detail=only-if-cached', 'RFC 9211 §2.8: the refusal names its reason');
    assert.equal(gone.log.cacheDetail, 'only-if-cached');
    assert.equal(sinkCount(url), 2);
    const stopped = p.mark();
    await p.stop();
    const totals = p.logs.slice(stopped).find((l) => l.msg === 'proxy stopped')?.totals as { cache: { responses: Record<string, number> } } | undefined;
    assert.equal(totals?.cache.responses.hit, 1);
    assert.equal(totals?.cache.responses.miss, 2);
  });

  test('purge by URL on the admin listener (POST /purge?url=)', async () => {
    const dir = cacheDir();
    const p = await proxy(`http://127.0.0.1:${sink.port}`, dir, '--admin', '127.0.0.1:0');
    const adminAt = String((await p.waitForLog((l) => l.msg === 'admin listening')).admin);
    const url = `/cache?cc=${enc('max-age=60')}&adminpurge=1`;
    await get(p, url);
    assert.match((await get(p, url)).headers['cache-status']!, /; hit;/);
    const full = `https://localhost:${p.port}${url}`;
    const r = await curl(['-sS', '-X', 'POST', `http://${adminAt}/purge?url=${encodeURIComponent(full)}`]);
    assert.deepEqual(JSON.parse(r.stdout.toString()), { url: full, purged: 1 });
    assert.match((await get(p, url)).headers['cache-status']!, /fwd=(uri-)?miss/, 'the next request goes to the origin');
    assert.equal(sinkCount(url), 2);
    const none = await curl(['-sS', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', `http://${adminAt}/purge`]);
    assert.equal(none.stdout.toString(), '400');
  });

  test('POST /purge from a web page (Origin or Sec-Fetch-Site, as any browser sends) is refused with 403 and a log line; the entry stays', async () => {
    const dir = cacheDir();
    const p = await proxy(`http://127.0.0.1:${sink.port}`, dir, '--admin', '127.0.0.1:0');
    const adminAt = String((await p.waitForLog((l) => l.msg === 'admin listening')).admin);
    const url = `/cache?cc=${enc('max-age=60')}&webpagepurge=1`;
    await get(p, url);
    const purgeUrl = `http://${adminAt}/purge?url=${encodeURIComponent(`https://localhost:${p.port}${url}`)}`;
    // What a page on another site sends (a simple POST needs no CORS preflight), and what a DNS-rebinding page sends.
    for (const headers of [['Origin: https://evil.example', 'Sec-Fetch-Site: cross-site'], [`Origin: http://rebound.example:${adminAt.split(':')[1]}`], ['Sec-Fetch-Site: same-site']]) {
      const from = p.mark();
      const r = await curl(['-sS', '-w', '%{http_code}', '-X', 'POST', ...headers.flatMap((h) => ['-H', h]), purgeUrl]);
      assert.match(r.stdout.toString(), /^refused: this request came from a web page.*\n403$/s, headers.join(', '));
      await p.waitForLog((l) => l.level === 40 && l.msg.startsWith('admin: POST /purge from a web page refused'), 5000, from);
    }
    assert.match((await get(p, url)).headers['cache-status']!, /; hit;/, 'still cached');
    assert.equal(sinkCount(url), 1);
  });

  test('settings from a config file: cache and cache-size', async () => {
    const dir = cacheDir();
    const file = path.join(fx.dir, 'cache-proxy.yaml');
    await fs.promises.writeFile(file, `listen: 127.0.0.1:0\ncert: ${fx.certFile}\nkey: ${fx.keyFile}\nto: http://127.0.0.1:${sink.port}\ncache: ${path.basename(dir)}\ncache-size: 64MiB\n`);
    const p = await startAludel(['proxy', '--config', file]);
    running.push(p);
    const line = p.logs.find((l) => l.msg === 'cache index rebuilt')!;
    assert.equal(line.dir, dir, 'relative to the config file');
    assert.equal(line.maxBytes, 64 * MiB);
    const url = `/cache?cc=${enc('max-age=60')}&config=1`;
    await get(p, url);
    assert.match((await get(p, url)).headers['cache-status']!, /; hit;/);
  });
});

describe('issue 16: targeted fields (RFC 9213), status codes, Vary normalisation, Cache-Status detail (RFC 9211 §2.8)', () => {
  const sinkUrl = (): string => `http://127.0.0.1:${sink.port}`;
  const field = (f: string): string => `field=${enc(f)}`;

  /** The stored fields of the one response in `dir`. */
  function storedFields(dir: string): string[] {
    const metas = stored(dir).metas;
    assert.equal(metas.length, 1);
    return (JSON.parse(fs.readFileSync(metas[0]!, 'utf8')) as { headers: string[] }).headers;
  }

  test('RFC 9213 §2.1: CDN-Cache-Control max-age over Cache-Control no-store: stored and hit; the field never reaches the client', async () => {
    const dir = cacheDir();
    const p = await proxy(sinkUrl(), dir);
    const url = `/cache?cc=no-store&${field('CDN-Cache-Control: max-age=60')}&etag=cdn1`;
    const miss = await get(p, url);
    assert.equal(miss.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
    assert.equal(miss.headers['cache-control'], 'no-store', "Cache-Control goes on as the origin sent it: it is the browser's");
    assert.equal(miss.headers['cdn-cache-control'], undefined, 'consumed by this cache');
    const hit = await get(p, url);
    assert.match(hit.headers['cache-status']!, /^aludel; hit; ttl=\d+$/);
    assert.equal(hit.headers['cdn-cache-control'], undefined);
    assert.equal(hit.headers['cache-control'], 'no-store');
    assert.equal(n(hit), n(miss));
    assert.equal(sinkCount(url), 1);
    assert.ok(storedFields(dir).includes('CDN-Cache-Control'), 'kept on disk, for the lifetime after a restart');
  });

  test('RFC 9213 §2.1: CDN-Cache-Control no-store over Cache-Control public; §2.2: an unparsable one is ignored (Cache-Control applies)', async () => {
    const dir = cacheDir();
    const p = await proxy(sinkUrl(), dir);
    const noStore = `/cache?cc=${enc('public, max-age=60')}&${field('CDN-Cache-Control: no-store')}`;
    const a = await get(p, noStore);
    assert.equal(a.headers['cache-status'], 'aludel; fwd=uri-miss; detail=no-store');
    assert.equal(a.log.cacheDetail, 'no-store');
    assert.equal(a.headers['cdn-cache-control'], undefined, 'removed from responses not stored too');
    assert.equal(a.headers['cache-control'], 'public, max-age=60');
    // RFC 8941 keys are lowercase: "Max-Age=60" fails to parse, so the field is ignored and no-store applies.
    const invalid = `/cache?cc=no-store&${field('CDN-Cache-Control: Max-Age=60')}`;
    const b = await get(p, invalid);
    assert.equal(b.headers['cache-status'], 'aludel; fwd=uri-miss; detail=no-store');
    assert.equal(b.headers['cdn-cache-control'], undefined);
    assert.deepEqual(stored(dir), { bodies: [], metas: [], temps: [] });
  });

  test('--targeted-cache-control Aludel-Cache-Control: first on the list (RFC 9213 §2.1), CDN-Cache-Control next; neither is forwarded', async () => {
    const dir = cacheDir();
    const p = await proxy(sinkUrl(), dir, '--targeted-cache-control', 'Aludel-Cache-Control');
    const url = `/cache?cc=no-store&${field('CDN-Cache-Control: no-store')}&${field('Aludel-Cache-Control: max-age=60')}`;
    const miss = await get(p, url);
    assert.equal(miss.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
    assert.equal(miss.headers['aludel-cache-control'], undefined);
    assert.equal(miss.headers['cdn-cache-control'], undefined);
    const hit = await get(p, url);
    assert.match(hit.headers['cache-status']!, /^aludel; hit;/);
    assert.equal(hit.headers['aludel-cache-control'], undefined);
    assert.equal(hit.headers['cdn-cache-control'], undefined);
    assert.equal(sinkCount(url), 1);
    // Without the configured field, CDN-Cache-Control decides.
    const cdnOnly = `/cache?cc=${enc('max-age=60')}&${field('CDN-Cache-Control: no-store')}&t=2`;
    assert.equal((await get(p, cdnOnly)).headers['cache-status'], 'aludel; fwd=uri-miss; detail=no-store');
  });

  test('RFC 9111 §3: a final status code Aludel does not know is stored with explicit freshness, not with must-understand (§5.2.2.3)', async () => {
    const dir = cacheDir();
    const p = await proxy(sinkUrl(), dir);
    const teapot = `/cache?cc=${enc('max-age=60')}&status=418`;
    const a = await get(p, teapot);
    assert.equal(a.status, 418);
    assert.equal(a.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
    const b = await get(p, teapot);
    assert.equal(b.status, 418);
    assert.match(b.headers['cache-status']!, /^aludel; hit;/);
    assert.equal(n(b), n(a));
    const mu = `/cache?cc=${enc('max-age=60, must-understand')}&status=418`;
    assert.equal((await get(p, mu)).headers['cache-status'], 'aludel; fwd=uri-miss; detail=must-understand');
    // Heuristic freshness only for the codes RFC 9110 §15.1 makes heuristically cacheable.
    const lm = Math.floor(Date.now() / 1000) - 86_400;
    assert.equal((await get(p, `/cache?lm=${lm}&status=302`)).headers['cache-status'], 'aludel; fwd=uri-miss; detail=not-cacheable');
    assert.equal((await get(p, `/cache?lm=${lm}&status=410`)).headers['cache-status'], 'aludel; fwd=uri-miss; stored');
    assert.equal(stored(dir).bodies.length, 2);
  });

  test('RFC 9111 §4.1: Accept-Encoding and Accept-Language differing in whitespace, case or order of equal weights select the same variant', async () => {
    const p = await proxy(sinkUrl(), cacheDir());
    const url = `/cache?cc=${enc('max-age=60')}&vary=${enc('Accept-Encoding, Accept-Language')}`;
    const first = await get(p, url, '-H', 'Accept-Encoding: gzip, br', '-H', 'Accept-Language: en-US, fr;q=0.5, de;q=0.5');
    assert.equal(first.headers['cache-status'], 'aludel; fwd=uri-miss; stored');
    for (const [ae, al] of [
      ['BR,gzip', 'EN-us,de;q=0.5,fr;q=0.5'],
      ['gzip;q=1.0 , br', 'fr; q=0.50, en-us, DE;q=0.5'],
    ] as const) {
      const again = await get(p, url, '-H', `Accept-Encoding: ${ae}`, '-H', `Accept-Language: ${al}`);
      assert.match(again.headers['cache-status']!, /^aludel; hit;/, `${ae} / ${al}`);
      assert.equal(n(again), n(first));
    }
    const other = await get(p, url, '-H', 'Accept-Encoding: gzip;q=0.5, br', '-H', 'Accept-Language: en-US, fr;q=0.5, de;q=0.5');
    assert.equal(other.headers['cache-status'], 'aludel; fwd=vary-miss; stored', 'another weight is another preference');
    assert.equal(sinkCount(url), 2);
  });

  test('RFC 9211 §2.8: each refusal to reuse and each request not fetched to be stored names its reason, in Cache-Status and the log line', async () => {
    const p = await proxy(sinkUrl(), cacheDir());
    // Age: 30 from an upstream cache, so a request max-age=10 refuses it whatever the clock does.
    const url = `/cache?cc=${enc('max-age=600')}&etag=d1&age=30`;
    await get(p, url);
    const cases: Array<{ extra: string[]; status: RegExp; detail: string }> = [
      { extra: ['-H', 'Cache-Control: no-cache'], status: /^aludel; fwd=request; fwd-status=304; ttl=\d+; detail=req-no-cache$/, detail: 'req-no-cache' },
      { extra: ['-H', 'Cache-Control: max-age=10'], status: /^aludel; fwd=request; fwd-status=304; ttl=\d+; detail=req-max-age$/, detail: 'req-max-age' },
      { extra: ['-H', 'Cache-Control: min-fresh=3600'], status: /^aludel; fwd=request; fwd-status=304; ttl=\d+; detail=req-min-fresh$/, detail: 'req-min-fresh' },
    ];
    for (const c of cases) {
      const a = await get(p, url, ...c.extra);
      assert.match(a.headers['cache-status']!, c.status, c.detail);
      assert.equal(a.log.cacheDetail, c.detail);
    }
    // A response no-cache: stored, and validated before each reuse.
    const noCache = `/cache?cc=${enc('no-cache, max-age=60')}&etag=d2`;
    await get(p, noCache);
    const v = await get(p, noCache);
    assert.match(v.headers['cache-status']!, /^aludel; fwd=request; fwd-status=304; ttl=\d+; detail=no-cache$/);
    // Requests forwarded as they are, not fetched to be stored.
    const fresh = (k: string): string => `/cache?cc=${enc('max-age=60')}&fwd=${k}`;
    const head = await get(p, fresh('head'), '-I');
    assert.equal(head.headers['cache-status'], 'aludel; fwd=uri-miss; detail=head');
    // If-Range without Range (a Range request's whole 200 is stored: cache-partial.test.ts).
    const range = await get(p, fresh('range'), '-H', 'If-Range: "zz"');
    assert.equal(range.headers['cache-status'], 'aludel; fwd=uri-miss; detail=range');
    const cond = await get(p, fresh('cond'), '-H', 'If-None-Match: "zz"');
    assert.equal(cond.headers['cache-status'], 'aludel; fwd=uri-miss; detail=conditional');
    assert.equal(cond.log.cacheDetail, 'conditional');
    // §3.5: a stored variant that may not answer a request with Authorization.
    const auth = await get(p, url, '-H', 'Authorization: Basic dTpw');
    assert.equal(auth.headers['cache-status'], 'aludel; fwd=vary-miss; detail=authorization', 'refused for reuse and for storing: one reason');
  });
});

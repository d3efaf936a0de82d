/**
 * A hit's fields come from a memo per stored field list (send-stored.ts
 * fieldsForClient): every input of a hit's answer must still reach the
 * client. Through `aludel proxy --cache`, on keep-alive connections (the
 * lane) followed by a pipelined closing request: Vary variants with their
 * own ETags served alternately (and a conditional request judged against
 * the variant's own ETag, RFC 9110 §13.1.2), a response replaced after a
 * PURGE (the new ETag, never the old one), a HEAD and a GET of one entry,
 * and a stale response freshened by 304s that each bring a new field value
 * (RFC 9111 §4.3.4).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startAludel, type Running } from '../support/aludel-process.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { listenLocal, rawTls, splitHttp } from '../support/raw-http.js';

let fx: StandardFixtures;
let origin: http.Server;
let p: Running;
/** Bumped by the test: the origin's next full response for /r carries it in its ETag and body. */
let generation = 1;
let revalidations = 0;

/** The origin's answer: status, fields, body. */
function answer(target: string, lang: string | undefined, ifNoneMatch: string | undefined): [number, Record<string, string>, string] {
  if (target === '/v') return [200, { 'Cache-Control': 'max-age=600', Vary: 'Accept-Language', ETag: `"v-${lang ?? 'none'}"` }, lang ?? 'none'];
  if (target === '/r') return [200, { 'Cache-Control': 'max-age=600', ETag: `"r${generation}"` }, `r${generation}`];
  // /s: stale at once; each revalidation's 304 brings a new X-Round (kept in the store, RFC 9111 §3.2).
  if (ifNoneMatch === '"s"') return [304, { ETag: '"s"', 'Cache-Control': 'max-age=0', 'X-Round': String(++revalidations) }, ''];
  return [200, { ETag: '"s"', 'Cache-Control': 'max-age=0', 'X-Round': '0' }, 's'];
}

before(async () => {
  fx = await makeFixtures();
  origin = http.createServer((req, res) => {
    const [status, fields, body] = answer(req.url ?? '/', req.headers['accept-language'], req.headers['if-none-match']);
    res.writeHead(status, fields).end(body);
  });
  const originPort = await listenLocal(origin);
  p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${originPort}`, '--max-fails', '0', '--cache', `${fx.dir}/cache`]);
});

after(async () => {
  await p?.stop();
  origin?.close();
  fx?.cleanup();
});

/** One keep-alive request (the lane's), then a pipelined closing one; the first answer. */
async function get(method: string, target: string, extra = ''): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const raw = await rawTls(p.port, fx.certPem, `${method} ${target} HTTP/1.1\r\nHost: x\r\n${extra}\r\nGET /v HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const r = splitHttp(raw);
  const length = method === 'HEAD' ? 0 : Number(r.headers['content-length'] ?? 0);
  return { status: r.status, headers: r.headers, body: r.body.subarray(0, length).toString('latin1') };
}

/** A closing GET of `target` until its answer is logged: stored then (committed before the log line). */
async function prime(target: string, extra = ''): Promise<void> {
  const from = p.mark();
  await rawTls(p.port, fx.certPem, `GET ${target} HTTP/1.1\r\nHost: x\r\n${extra}Connection: close\r\n\r\n`);
  await p.waitForLog((l) => l.msg === 'request' && l.url === target, 10_000, from);
}

describe('cache hits: each input of the answer reaches the client', () => {
  test('Vary: each variant with its own ETag and body, alternately; a conditional judged against the variant it selects', async () => {
    for (const lang of ['en', 'fr']) await prime('/v', `Accept-Language: ${lang}\r\n`);
    for (let round = 0; round < 3; round++) {
      for (const lang of ['en', 'fr']) {
        const r = await get('GET', '/v', `Accept-Language: ${lang}\r\n`);
        assert.equal(r.body, lang);
        assert.equal(r.headers.etag, `"v-${lang}"`);
        assert.match(r.headers['cache-status'] ?? '', /; hit/);
      }
    }
    assert.equal((await get('GET', '/v', 'Accept-Language: en\r\nIf-None-Match: "v-en"\r\n')).status, 304);
    assert.equal((await get('GET', '/v', 'Accept-Language: fr\r\nIf-None-Match: "v-en"\r\n')).status, 200, 'fr is another variant: en\'s ETag does not match it');
  });

  test('a response replaced after a PURGE: its new ETag and body; the old ETag no longer matches', async () => {
    generation = 1;
    await prime('/r');
    const first = await get('GET', '/r');
    assert.equal(first.headers.etag, '"r1"');
    assert.match(first.headers['cache-status'] ?? '', /; hit/);
    assert.equal((await get('PURGE', '/r')).status, 200);
    generation = 2;
    await prime('/r');
    const second = await get('GET', '/r');
    assert.deepEqual([second.headers.etag, second.body], ['"r2"', 'r2']);
    assert.match(second.headers['cache-status'] ?? '', /; hit/);
    assert.equal((await get('GET', '/r', 'If-None-Match: "r1"\r\n')).status, 200);
    assert.equal((await get('GET', '/r', 'If-None-Match: "r2"\r\n')).status, 304);
  });

  test('HEAD and GET of one stored response: the same fields, a body only for GET', async () => {
    const h = await get('HEAD', '/r');
    const g = await get('GET', '/r');
    assert.equal(h.status, 200);
    assert.equal(h.headers.etag, g.headers.etag);
    assert.equal(h.headers['content-length'], g.headers['content-length']);
    assert.equal(g.body.length, 2);
  });

  test('a stale response freshened by 304s: each answer carries the field value of its own 304', async () => {
    await prime('/s');
    for (let i = 0; i < 3; i++) {
      const before = revalidations;
      const r = await get('GET', '/s');
      assert.equal(r.body, 's');
      assert.equal(revalidations, before + 1, 'revalidated');
      assert.equal(r.headers['x-round'], String(before + 1));
    }
  });
});

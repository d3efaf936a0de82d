/**
 * `aludel proxy --cache`: a small fresh hit is answered and logged in the
 * turn its request was read (cache-layer.ts handle, send-stored.ts, the
 * proxy's handle: no promise per hit), while every other answer goes on as
 * a promise. Pipelined behind one another, on the lane and on node's server
 * (a field given twice, which the lane hands over), hits, a miss that waits
 * on the origin, a 304, a HEAD and a 206 are answered in request order (RFC
 * 9112 §9.3.2) and logged in that order, each line with the status, bytes
 * and cache outcome of its own answer. Two hits of one entry a second
 * apart each carry their own Date and Age (RFC 9111 §5.1, RFC 9110 §6.6.1).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startAludel, type Running } from '../support/aludel-process.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { listenLocal, rawTls, splitHttp } from '../support/raw-http.js';
import { delay, waitUntil } from '../support/wait.js';

let fx: StandardFixtures;
let origin: http.Server;
let p: Running;

const ONE = Buffer.alloc(1024);
for (let i = 0; i < ONE.length; i++) ONE[i] = (i * 13 + 7) & 0xff;
const ETAG = '"one-v1"';
/** The origin's Date for /one.bin: the stored response's, not the hits'. */
const ORIGIN_DATE = new Date(Date.now() - 5000).toUTCString();

before(async () => {
  fx = await makeFixtures();
  origin = http.createServer((req, res) => {
    if (req.url === '/one.bin') {
      res.writeHead(200, { 'cache-control': 'max-age=600', etag: ETAG, date: ORIGIN_DATE, 'content-type': 'application/octet-stream', 'content-length': ONE.length });
      res.end(ONE);
      return;
    }
    // A miss that waits on the origin a little, so that what is pipelined behind it waits too.
    setTimeout(() => {
      res.writeHead(200, { 'cache-control': 'no-store', 'content-length': Buffer.byteLength(req.url ?? '') });
      res.end(req.url);
    }, 30);
  });
  const port = await listenLocal(origin);
  p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${port}`, '--max-fails', '0', '--cache', `${fx.dir}/cache`]);
  const from = p.mark();
  const primed = splitHttp(await rawTls(p.port, fx.certPem, 'GET /one.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
  assert.deepEqual(primed.body, ONE);
  await p.waitForLog((l) => l.msg === 'request' && l.url === '/one.bin' && l.cache === 'miss', 10_000, from);
});

after(async () => {
  await p?.stop();
  origin?.close();
  fx?.cleanup();
});

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Consecutive responses in `raw`, `bodiless[i]` saying the i-th has no body whatever its Content-Length (a 304, a HEAD's). */
function answers(raw: Buffer, bodiless: boolean[]): Answer[] {
  const out: Answer[] = [];
  let rest = raw;
  for (const none of bodiless) {
    const r = splitHttp(rest);
    const length = none ? 0 : Number(r.headers['content-length']);
    out.push({ status: r.status, headers: r.headers, body: r.body.subarray(0, length) });
    rest = r.body.subarray(length);
  }
  assert.equal(rest.length, 0, 'bytes after the last answer');
  return out;
}

/** A request head, with a field given twice when it is to go to node's server (the lane hands such a head over). */
function head(method: string, target: string, viaNode: boolean, extra = ''): string {
  return `${method} ${target} HTTP/1.1\r\nHost: x\r\n${viaNode ? 'X-Twice: 1\r\nX-Twice: 2\r\n' : ''}${extra}\r\n`;
}

describe('aludel proxy --cache: small hits answered in their turn', () => {
  for (const viaNode of [false, true]) {
    const path = viaNode ? "node's server" : 'the lane';

    test(`pipelined hits, a miss, a 304, a HEAD and a 206: answered and logged in order, each as its own (${path})`, async () => {
      const miss = `/miss-${viaNode ? 'node' : 'lane'}`;
      const requests: Array<{ method: string; url: string; extra?: string; status: number; bytes: number; cache: string; body?: Buffer }> = [
        { method: 'GET', url: '/one.bin', status: 200, bytes: 1024, cache: 'hit', body: ONE },
        { method: 'GET', url: miss, status: 200, bytes: miss.length, cache: 'miss', body: Buffer.from(miss) },
        { method: 'GET', url: '/one.bin', status: 200, bytes: 1024, cache: 'hit', body: ONE },
        { method: 'GET', url: '/one.bin', extra: `If-None-Match: ${ETAG}\r\n`, status: 304, bytes: 0, cache: 'hit' },
        { method: 'HEAD', url: '/one.bin', status: 200, bytes: 0, cache: 'hit' },
        { method: 'GET', url: '/one.bin', extra: 'Range: bytes=10-19\r\n', status: 206, bytes: 10, cache: 'hit', body: ONE.subarray(10, 20) },
        { method: 'GET', url: '/one.bin', extra: 'Connection: close\r\n', status: 200, bytes: 1024, cache: 'hit', body: ONE },
      ];
      const from = p.mark();
      const raw = await rawTls(p.port, fx.certPem, requests.map((r) => head(r.method, r.url, viaNode, r.extra)).join(''));
      const got = answers(raw, requests.map((r) => r.body === undefined));
      assert.deepEqual(got.map((a) => a.status), requests.map((r) => r.status));
      for (const [i, r] of requests.entries()) {
        if (r.body !== undefined) assert.deepEqual(got[i]!.body, r.body, `answer ${i + 1}'s body`);
        if (r.cache === 'hit') assert.match(got[i]!.headers['cache-status'] ?? '', /; hit/, `answer ${i + 1}'s Cache-Status`);
      }
      const lines = () => p.logs.slice(from).filter((l) => l.msg === 'request');
      await waitUntil(() => lines().length === requests.length, 10_000);
      const logged = lines().map((l) => JSON.stringify({ method: l.method, url: l.url, status: l.status, bytes: l.bytes, cache: l.cache, error: l.error }));
      const expected = requests.map((r) => JSON.stringify({ method: r.method, url: r.url, status: r.status, bytes: r.bytes, cache: r.cache, error: undefined }));
      // The lane takes one request at a time: each is logged before the next is read. node's server
      // reads them all at once, and an answer that waits for nothing (the 304, the HEAD's) goes into
      // its queue of responses, and is logged, while the miss ahead of it still waits on the origin.
      if (viaNode) assert.deepEqual(logged.sort(), expected.sort());
      else assert.deepEqual(logged, expected);
    });
  }

  test('two hits of one entry a second apart: each its own Date and Age, the stored Date and body unchanged', async () => {
    const hit = async (): Promise<Answer> => splitHttp(await rawTls(p.port, fx.certPem, head('GET', '/one.bin', false, 'Connection: close\r\n')));
    const first = await hit();
    const firstAt = Date.now();
    // Past the next whole second, so that the clock's Date and the Age both move on.
    await delay(1000 - (firstAt % 1000) + 1100);
    const second = await hit();
    for (const a of [first, second]) {
      assert.equal(a.status, 200);
      assert.deepEqual(a.body, ONE);
      assert.equal(a.headers.etag, ETAG);
    }
    // The stored response's Date goes out with it (RFC 9111 §3: the stored fields), the same on both.
    assert.equal(first.headers.date, ORIGIN_DATE);
    assert.equal(second.headers.date, ORIGIN_DATE);
    const age1 = Number(first.headers.age);
    const age2 = Number(second.headers.age);
    assert.ok(age1 >= 5, `first Age ${first.headers.age}`);
    assert.ok(age2 >= age1 + 1, `the second hit's Age ${age2} is not a second past the first's ${age1}`);
  });
});

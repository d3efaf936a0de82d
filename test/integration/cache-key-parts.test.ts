/**
 * `aludel proxy --cache`: a stored response answers only a request with its
 * key (RFC 9111 §2: the target URI, its authority from Host, lowercased, or
 * from an absolute-form target, RFC 9112 §3.2.2) and its Vary selection
 * (§4.1). The key is found by the request's own Host and target strings
 * (src/cache/request-key.ts); here requests that differ by one part only
 * (Host, path, query, a Vary field's value) are each stored once and then
 * answered from the cache, pipelined on one keep-alive connection in
 * another order, each with its own stored body, while requests that differ
 * in no part of the key (Host in other letter case, the absolute form of
 * the same URI) get the stored response of the request they equal.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startAludel, type Running } from '../support/aludel-process.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { listenLocal, pipelinedBodies, rawTls } from '../support/raw-http.js';

let fx: StandardFixtures;
let origin: http.Server;
let p: Running;
/** The origin's answers, by what they say (Host, target, Accept-Language as the origin got them). */
const fetched = new Map<string, number>();

/** A request: its Host, its target, and an Accept-Language (the Vary field of the /v paths) or none. */
interface Req {
  host: string;
  target: string;
  lang?: string;
}

function head(r: Req, close = false): string {
  return `GET ${r.target} HTTP/1.1\r\nHost: ${r.host}\r\n${r.lang === undefined ? '' : `Accept-Language: ${r.lang}\r\n`}${close ? 'Connection: close\r\n' : ''}\r\n`;
}

/** What the origin answers `r` with: its own Host, target and language, so each stored body names its request. */
function said(host: string, target: string, lang: string | undefined): string {
  return `${host} ${target} ${lang ?? '-'}`;
}

/** Each differs from the first in one part of the key, or of the Vary selection (the /v ones). */
const DISTINCT: Req[] = [
  { host: 'a.example', target: '/p' },
  { host: 'b.example', target: '/p' },
  { host: 'a.example', target: '/q' },
  { host: 'a.example', target: '/p?x=1' },
  { host: 'a.example', target: '/p?x=2' },
  { host: 'a.example', target: '/p/' },
  { host: 'a.example:8443', target: '/p' },
  { host: 'a.example', target: '/v', lang: 'en' },
  { host: 'a.example', target: '/v', lang: 'de' },
  { host: 'b.example', target: '/v', lang: 'en' },
];

before(async () => {
  fx = await makeFixtures();
  origin = http.createServer((req, res) => {
    const lang = req.headers['accept-language'];
    const body = said(req.headers.host ?? '', req.url ?? '', lang);
    fetched.set(body, (fetched.get(body) ?? 0) + 1);
    const vary: Record<string, string> = req.url === '/v' ? { vary: 'Accept-Language' } : {};
    res.writeHead(200, { 'cache-control': 'max-age=600', 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body), ...vary });
    res.end(body);
  });
  const port = await listenLocal(origin);
  p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${port}`, '--max-fails', '0', '--cache', `${fx.dir}/cache`]);
  // Each stored: one request at a time, each until its log line (its fill done).
  for (const r of DISTINCT) {
    const from = p.mark();
    const got = pipelinedBodies(await rawTls(p.port, fx.certPem, head(r, true)));
    assert.deepEqual(got.map((b) => b.toString()), [said(r.host, r.target, r.lang)]);
    await p.waitForLog((l) => l.msg === 'request' && l.url === r.target && l.cache === 'miss', 10_000, from);
  }
});

after(async () => {
  await p?.stop();
  origin?.close();
  fx?.cleanup();
});

/** `reqs` pipelined on one keep-alive connection (the lane's kind of request; the last closes it): the bodies in order. */
async function pipelined(reqs: Req[]): Promise<string[]> {
  const text = reqs.map((r, i) => head(r, i === reqs.length - 1)).join('');
  const bodies = pipelinedBodies(await rawTls(p.port, fx.certPem, text));
  return bodies.map((b) => b.toString());
}

describe('cache key parts', () => {
  test('requests differing in one part of the key or the Vary selection each get their own stored response', async () => {
    const before = [...fetched.entries()];
    // Reversed, then in the stored order, then each twice in a row: every key after every other.
    const order = [...DISTINCT].reverse().concat(DISTINCT, DISTINCT.flatMap((r) => [r, r]));
    const got = await pipelined(order);
    assert.deepEqual(got, order.map((r) => said(r.host, r.target, r.lang)));
    // All of them from the cache: the origin was asked nothing more.
    assert.deepEqual([...fetched.entries()], before);
  });

  test('requests with the same key get the same stored response: Host in any case, the absolute form', async () => {
    const before = [...fetched.entries()];
    const got = await pipelined([
      { host: 'A.Example', target: '/p' },
      { host: 'a.example', target: '/p' },
      { host: 'B.EXAMPLE', target: '/v', lang: 'en' },
      { host: 'A.EXAMPLE:8443', target: '/p' },
      // RFC 9112 §3.2.2: the absolute form's authority is the key's, whatever Host says (node's server reads it).
      { host: 'a.example', target: 'http://b.example/p' },
      { host: 'b.example', target: 'https://A.example/p?x=2' },
    ]);
    assert.deepEqual(got, [
      said('a.example', '/p', undefined),
      said('a.example', '/p', undefined),
      said('b.example', '/v', 'en'),
      said('a.example:8443', '/p', undefined),
      said('b.example', '/p', undefined),
      said('a.example', '/p?x=2', undefined),
    ]);
    assert.deepEqual([...fetched.entries()], before);
  });
});

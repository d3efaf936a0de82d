/**
 * Serving stale responses (RFC 5861, RFC 9111 §4.2.4) on a real `aludel
 * proxy --cache`, with curl as the client and an origin the test switches
 * between answering, failing (503, a reset, no answer past
 * --upstream-headers-timeout, stopped: connections refused) and holding its
 * answer behind a gate (test/support/switch-origin.ts).
 *
 * Stored responses are made stale without waiting: the origin sends
 * `Age: 100` with `max-age=1`, so each is about 99 s stale as soon as it is
 * stored (RFC 9111 §4.2.3), and a window of 600 covers that, one of 30
 * does not.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curlAnswer, type CurlAnswer } from '../support/curl-answer.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { startSwitchOrigin, type OriginAnswer, type SwitchOrigin } from '../support/switch-origin.js';
import { waitUntil } from '../support/wait.js';

let fx: Fixtures;
const running: Running[] = [];
const origins: SwitchOrigin[] = [];
let serial = 0;
const enc = encodeURIComponent;

before(async () => {
  fx = await makeFixtures({});
});

after(async () => {
  for (const p of running) await p.stop();
  for (const o of origins) await o.stop();
  fx?.cleanup();
});

async function origin(): Promise<SwitchOrigin> {
  const o = await startSwitchOrigin();
  origins.push(o);
  return o;
}

async function proxy(o: SwitchOrigin, ...extra: string[]): Promise<Running> {
  const dir = path.join(fx.dir, `cache-stale-${++serial}`);
  const p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${o.port}`, '--cache', dir, '--log-level', 'debug', ...extra]);
  running.push(p);
  return p;
}

/** A stored response about 99 s stale on arrival, with these extra directives and (optionally) an ETag. */
function staleUrl(name: string, directives: string, etag = true): string {
  return `/${name}?cc=${enc(`max-age=1, ${directives}`)}&age=100${etag ? `&etag=${name}` : ''}`;
}

/** GET through the proxy, and its request log line (the response is committed to the store before that line). */
async function get(p: Running, url: string, ...extra: string[]): Promise<CurlAnswer & { log: LogLine }> {
  const from = p.mark();
  const a = await curlAnswer(p.port, fx.certFile, url, ...extra);
  const log = await p.waitForLog((l) => l.msg === 'request' && l.url === url, 10_000, from);
  return { ...a, log };
}

function n(a: CurlAnswer): number {
  return (JSON.parse(a.body) as { n: number }).n;
}

/** Stores `url` (a miss) and returns the origin's n of the stored response. */
async function prime(p: Running, url: string): Promise<number> {
  const a = await get(p, url);
  assert.equal(a.headers['cache-status'], 'aludel; fwd=uri-miss; stored', url);
  return n(a);
}

function logCount(p: Running, msg: string, key: string): number {
  return p.logs.filter((l) => l.msg.startsWith(msg) && typeof l.key === 'string' && l.key.endsWith(key)).length;
}

describe('RFC 5861 §4 stale-if-error', () => {
  test('503, a reset, no answer within --upstream-headers-timeout and a refused connection: the stale response within its window; past it, or under must-revalidate, the error', async () => {
    const o = await origin();
    const p = await proxy(o, '--upstream-headers-timeout', '1s');
    const inWindow = staleUrl('in', 'stale-if-error=600');
    // Without a validator the refetch is a plain GET (the fill path), not a conditional one.
    const noValidator = staleUrl('noval', 'stale-if-error=600', false);
    const pastWindow = staleUrl('past', 'stale-if-error=30');
    // RFC 9111 §4.2.4: must-revalidate forbids any stale response; s-maxage implies proxy-revalidate (§5.2.2.10).
    const forbidden = [staleUrl('mr', 'must-revalidate, stale-if-error=600'), `/smax?cc=${enc('s-maxage=1, stale-if-error=600')}&age=100&etag=smax`];
    const stored = new Map<string, number>();
    for (const url of [inWindow, noValidator, pastWindow, ...forbidden]) stored.set(url, await prime(p, url));

    const failures: Array<{ answer: OriginAnswer | 'refused'; clientGets: number; fwdStatus: string }> = [
      { answer: 503, clientGets: 503, fwdStatus: '; fwd-status=503' },
      { answer: 'reset', clientGets: 502, fwdStatus: '' },
      { answer: 'hang', clientGets: 504, fwdStatus: '' },
      { answer: 'refused', clientGets: 502, fwdStatus: '' },
    ];
    for (const f of failures) {
      if (f.answer === 'refused') await o.stop();
      else o.answer = f.answer;
      for (const url of [inWindow, noValidator]) {
        const warned = p.mark();
        const a = await get(p, url);
        assert.equal(a.status, 200, `${f.answer} ${url}`);
        assert.equal(n(a), stored.get(url), `${f.answer}: the stored body`);
        assert.match(a.headers['cache-status']!, new RegExp(`^aludel; fwd=stale${f.fwdStatus}; ttl=-\\d+; detail=stale-if-error$`), `${f.answer} ${url}`);
        assert.ok(Number(a.headers.age) >= 100, `Age ${a.headers.age} counts on from the stored Age (§4.2.3)`);
        assert.equal(a.headers.warning, undefined, 'no Warning (obsoleted by RFC 9111 §5.5)');
        assert.equal(a.log.cache, 'stale-if-error');
        const line = p.logs.slice(warned).find((l) => l.msg.startsWith('cache: the upstream failed; the stale stored response is sent instead'));
        assert.ok(line, `${f.answer}: logged`);
        assert.equal(line.key, `https://localhost:${p.port}${url}`);
      }
      for (const url of [pastWindow, ...forbidden]) {
        const a = await get(p, url);
        assert.equal(a.status, f.clientGets, `${f.answer} ${url}: the error, not the stored response`);
        assert.notEqual(a.log.cache, 'stale-if-error');
      }
    }
  });

  test('--cache-stale-if-error is the window of responses without one; the request\'s own stale-if-error; off by default', async () => {
    const o = await origin();
    const withDefault = await proxy(o, '--cache-stale-if-error', '10m');
    const byDefault = await proxy(o);
    const plain = `/plain?cc=${enc('max-age=1')}&age=100&etag=plain`;
    const ownWindow = staleUrl('own', 'stale-if-error=30');
    const n1 = await prime(withDefault, plain);
    await prime(withDefault, ownWindow);
    const n2 = await prime(byDefault, plain);
    o.answer = 503;

    const a = await get(withDefault, plain);
    assert.equal(a.status, 200);
    assert.equal(n(a), n1);
    assert.match(a.headers['cache-status']!, /^aludel; fwd=stale; fwd-status=503; ttl=-\d+; detail=stale-if-error$/);
    assert.equal((await get(withDefault, ownWindow)).status, 503, "the response's stale-if-error=30 wins over the default");

    const b = await get(byDefault, plain);
    assert.equal(b.status, 503, 'without --cache-stale-if-error, as before: the error');
    assert.equal(b.log.cache, 'stale');
    // RFC 5861 §4: the request directive; it also overrides the client's own max-age=0.
    const c = await get(byDefault, plain, '-H', 'Cache-Control: max-age=0, stale-if-error=600');
    assert.equal(c.status, 200);
    assert.equal(n(c), n2);
    assert.equal(c.log.cache, 'stale-if-error');
    assert.equal((await get(byDefault, plain, '-H', 'Cache-Control: stale-if-error=30')).status, 503, 'past the request window');
  });
});

describe('RFC 5861 §3 stale-while-revalidate', () => {
  test('8 concurrent stale hits are answered at once; exactly one background revalidation, whose response then replaces the stored one', async () => {
    const o = await origin();
    const p = await proxy(o);
    const url = staleUrl('swr', 'stale-while-revalidate=600', false);
    const n1 = await prime(p, url);
    let open!: () => void;
    o.gate = new Promise((resolve) => (open = resolve));
    o.fresh = 'max-age=600';
    const from = p.mark();
    const answers = await Promise.all(Array.from({ length: 8 }, () => curlAnswer(p.port, fx.certFile, url)));
    for (const a of answers) {
      assert.equal(a.status, 200);
      assert.equal(n(a), n1, 'the stored response, while the origin holds its answer');
      assert.match(a.headers['cache-status']!, /^aludel; hit; ttl=-\d+; detail=stale-while-revalidate$/);
      assert.ok(Number(a.headers.age) >= 100, `Age ${a.headers.age}`);
    }
    await waitUntil(() => p.logs.slice(from).filter((l) => l.msg === 'request' && l.url === url).length === 8, 10_000);
    assert.deepEqual(p.logs.slice(from).filter((l) => l.msg === 'request' && l.url === url).map((l) => l.cache), Array(8).fill('stale-while-revalidate'));
    assert.equal(logCount(p, 'cache: background revalidation started', url), 1, 'one background revalidation for 8 stale hits');
    await waitUntil(() => o.count(url) === 2, 10_000);
    const done = p.waitForLog((l) => l.msg.startsWith('cache: background revalidation done'), 10_000, from);
    open();
    await done;
    const fresh = await get(p, url);
    assert.match(fresh.headers['cache-status']!, /^aludel; hit; ttl=\d+$/);
    assert.equal(n(fresh), n1 + 1, 'the background response was stored');
    assert.equal(o.count(url), 2, 'one initial request and one background revalidation reached the origin');
  });

  test('a failing background revalidation leaves the stored response and is logged; a 304 then freshens it', async () => {
    const o = await origin();
    const p = await proxy(o);
    const url = staleUrl('swr304', 'stale-while-revalidate=600');
    const n1 = await prime(p, url);
    o.answer = 503;
    for (let round = 1; round <= 2; round++) {
      const failed = p.waitForLog((l) => l.msg.startsWith('cache: background revalidation failed'), 10_000, p.mark());
      const a = await get(p, url);
      assert.equal(a.status, 200);
      assert.equal(n(a), n1);
      assert.equal(a.log.cache, 'stale-while-revalidate');
      assert.equal((await failed).error, 'ERR_UPSTREAM_STATUS', `round ${round}: the 503 is logged`);
    }
    o.answer = 'ok';
    o.fresh = 'max-age=600';
    const done = p.waitForLog((l) => l.msg.startsWith('cache: background revalidation done') && l.status === 304, 10_000, p.mark());
    assert.equal(n(await get(p, url)), n1);
    await done;
    const last = o.requests.filter((r) => r.url === url).at(-1)!;
    assert.equal(last.ifNoneMatch, '"swr304"', 'validated with the stored ETag (RFC 9111 §4.3.1)');
    const fresh = await get(p, url);
    assert.match(fresh.headers['cache-status']!, /^aludel; hit; ttl=\d+$/, 'the 304 freshened it (§4.3.4)');
    assert.equal(n(fresh), n1, 'the stored body kept');
  });

  test('never under must-revalidate, proxy-revalidate or s-maxage (RFC 9111 §4.2.4); a request with no-cache or max-age=0 still goes upstream', async () => {
    const o = await origin();
    const p = await proxy(o);
    const forbidden = [
      staleUrl('swrmr', 'must-revalidate, stale-while-revalidate=600'),
      staleUrl('swrpr', 'proxy-revalidate, stale-while-revalidate=600'),
      `/swrsm?cc=${enc('s-maxage=1, stale-while-revalidate=600')}&age=100&etag=swrsm`,
    ];
    for (const url of forbidden) {
      await prime(p, url);
      const a = await get(p, url);
      assert.match(a.headers['cache-status']!, /^aludel; fwd=stale; fwd-status=304; ttl=-\d+$/, url);
      assert.equal(o.count(url), 2, `${url}: validated before use`);
    }
    const url = staleUrl('swrreq', 'stale-while-revalidate=600');
    await prime(p, url);
    for (const [i, cc] of ['no-cache', 'max-age=0'].entries()) {
      const a = await get(p, url, '-H', `Cache-Control: ${cc}`);
      // The request's own refusal is named (RFC 9211 §2.8 detail).
      assert.match(a.headers['cache-status']!, /^aludel; fwd=stale; fwd-status=304; ttl=-\d+; detail=req-(no-cache|max-age)$/, cc);
      assert.equal(o.count(url), 2 + i, `${cc}: its own upstream request`);
    }
    assert.equal(logCount(p, 'cache: background revalidation started', ''), 0);
  });
});

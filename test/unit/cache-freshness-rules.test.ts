/**
 * Issue 16, the RFC clauses behind each defect, one describe per clause,
 * with fixed clocks: followers of a fill in progress get only what RFC 9111
 * §4 allows (policy.followable, HttpCache.follow); a list-based Age uses its
 * first member (§5.1); cache recipients read HTTP-dates in all three formats
 * with names in any case (RFC 9110 §5.6.7, RFC 9111 §4.2); a storable fill
 * that is not committed says why (RFC 9211 §2.8).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { HttpCache } from '../../src/cache/cache.js';
import { ageValue, followable, freshnessLifetime, initialAge, requestDirectives, storability, type StoredTiming } from '../../src/cache/policy.js';
import { parseHttpDate } from '../../src/http/conditional.js';
import { silentLogger } from '../../src/log/logger.js';

const T0 = Date.UTC(2024, 2, 5, 10, 0, 0);
const http = (ms: number): string => new Date(ms).toUTCString();
const none = requestDirectives([]);
const req = (cc: string) => requestDirectives(['Cache-Control', cc]);

/** A fill's head as followable() sees it: received at T0 after `delayMs`, with `age` from upstream. */
function fill(cc: string, more: { age?: string; delayMs?: number } = {}): StoredTiming {
  const headers = ['Cache-Control', cc, 'Date', http(T0), ...(more.age !== undefined ? ['Age', more.age] : [])];
  return { status: 200, headers, lifetime: freshnessLifetime(200, headers, T0).seconds, initialAge: initialAge(headers, T0 - (more.delayMs ?? 0), T0), responseTime: T0 };
}

describe('RFC 9111 §4: a follower of a fill in progress gets only a reusable response', () => {
  it('a fresh response, with no directive against it, is followed', () => {
    assert.deepEqual(followable(fill('max-age=60'), none, T0 + 2000), { follow: true, ttl: 58 });
  });

  it('§5.2.2.4: unqualified no-cache in the response is never followed (validation first); a qualified one is', () => {
    assert.deepEqual(followable(fill('no-cache'), none, T0), { follow: false, why: 'no-cache' });
    assert.deepEqual(followable(fill('no-cache, max-age=60'), none, T0), { follow: false, why: 'no-cache' });
    assert.equal(followable(fill('no-cache="Set-Cookie", max-age=60'), none, T0).follow, true);
  });

  it('§4.2.4: a response stale on arrival (Age 25, lifetime 20) is never followed, not even with max-stale', () => {
    assert.deepEqual(followable(fill('max-age=20', { age: '25' }), none, T0), { follow: false, why: 'stale-on-arrival' });
    assert.deepEqual(followable(fill('max-age=20', { age: '25' }), req('max-stale=3600'), T0), { follow: false, why: 'stale-on-arrival' });
    assert.deepEqual(followable(fill('max-age=0'), none, T0), { follow: false, why: 'stale-on-arrival' });
  });

  it('§5.2.1.4: request no-cache; §5.2.1.3: min-fresh beyond the ttl', () => {
    assert.deepEqual(followable(fill('max-age=60'), req('no-cache'), T0), { follow: false, why: 'req-no-cache' });
    assert.deepEqual(followable(fill('max-age=60'), req('min-fresh=120'), T0), { follow: false, why: 'req-min-fresh' });
    assert.equal(followable(fill('max-age=60'), req('min-fresh=30'), T0).follow, true);
  });

  it('§5.2.1.1: max-age compares the exact age, so max-age=0 never collapses into an earlier response', () => {
    // 1 ms of response delay, followed 300 ms later: age 0.301 s, whole seconds would say 0.
    assert.deepEqual(followable(fill('max-age=60', { delayMs: 1 }), req('max-age=0'), T0 + 300), { follow: false, why: 'req-max-age' });
    assert.equal(followable(fill('max-age=60', { delayMs: 1 }), req('max-age=5'), T0 + 300).follow, true);
    assert.deepEqual(followable(fill('max-age=60'), req('max-age=5'), T0 + 6000), { follow: false, why: 'req-max-age' });
  });

  it('a response that became stale while streaming is not followed, unless max-stale allows it (§4.2.4)', () => {
    assert.deepEqual(followable(fill('max-age=2'), none, T0 + 3000), { follow: false, why: 'stale' });
    assert.equal(followable(fill('max-age=2'), req('max-stale=10'), T0 + 3000).follow, true);
    assert.equal(followable(fill('max-age=2, must-revalidate'), req('max-stale=10'), T0 + 3000).follow, false);
  });
});

describe('RFC 9111 §4 in HttpCache.follow(): the rules apply after waiting for a pending head', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-follow-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function pendingThenHead(cc: string, followerCc: string | null): Promise<boolean> {
    const cache = await HttpCache.open({ dir, maxBytes: 1 << 20, log: silentLogger });
    const key = `https://x/${cc}/${followerCc ?? ''}`;
    const leader = cache.beginFill(key, []);
    const followerHeaders = followerCc === null ? [] : ['Cache-Control', followerCc];
    // The follower arrives while the head is still pending ...
    const followed = cache.follow(key, followerHeaders, false, requestDirectives(followerHeaders));
    // ... then the upstream answers, storable.
    const now = Date.now();
    const headers = ['Cache-Control', cc, 'ETag', '"v"', 'Date', http(now)];
    const file = await cache.createBody();
    assert.ok(file);
    leader.start({ key, vary: null, status: 200, reason: 'OK', headers, requestTime: now, responseTime: now, initialAge: initialAge(headers, now, now) }, 1, file);
    const got = await followed;
    got.fill?.release();
    await leader.append(Buffer.from('x'));
    leader.finish();
    await cache.endFill(leader);
    return got.fill !== null;
  }

  it('no-cache head: the waiting follower goes upstream itself', async () => {
    assert.equal(await pendingThenHead('no-cache', null), false);
  });

  it('fresh head: followed; but not by a max-age=0 or no-cache request', async () => {
    assert.equal(await pendingThenHead('max-age=60', null), true);
    assert.equal(await pendingThenHead('max-age=60', 'no-cache'), false);
    // Sub-millisecond ages exist: the follow decision runs after the head is known, at least a tick later.
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(await pendingThenHead('max-age=60', 'min-fresh=61'), false);
  });
});

describe('RFC 9111 §5.1: Age', () => {
  it('a list-based value: the first member is used, the rest discarded ("Age: 7200, 0" is 7200)', () => {
    assert.equal(ageValue(['Age', '7200, 0']), 7200);
    assert.equal(ageValue(['Age', '7200,0']), 7200);
    assert.equal(ageValue(['Age', '7200', 'Age', '0']), 7200, 'two field lines form one list (RFC 9110 §5.3)');
    assert.equal(ageValue(['Age', ' , 30, 5']), 30, 'empty elements are not members (RFC 9110 §5.6.1)');
  });

  it('an invalid value (after discarding the other members) is ignored: age_value 0, as without the field', () => {
    for (const v of ['old', '-5', '1.5', '0x10', 'old, 7200', '']) assert.equal(ageValue(['Age', v]), 0, v);
    assert.equal(ageValue([]), 0);
  });

  it('"Age: 7200, 0" with max-age=3600 makes the response stale on arrival, so it is stored for validation only', () => {
    const headers = ['Cache-Control', 'max-age=3600', 'ETag', '"a"', 'Age', '7200, 0', 'Date', http(T0)];
    assert.equal(initialAge(headers, T0, T0), 7200);
    assert.deepEqual(followable({ status: 200, headers, lifetime: 3600, initialAge: 7200, responseTime: T0 }, none, T0), { follow: false, why: 'stale-on-arrival' });
    assert.deepEqual(storability({ method: 'GET', requestHeaders: [], status: 200, responseHeaders: headers, framing: 'length', responseTime: T0, cacheCookies: false }), { store: true });
  });
});

describe('RFC 9110 §5.6.7 and RFC 9111 §4.2: Expires, Date and Last-Modified as a cache reads them', () => {
  const date = ['Date', 'Tue, 05 Mar 2024 10:00:00 GMT'];
  const lifetime = (expires: string) => freshnessLifetime(200, ['Expires', expires, ...date], T0).seconds;

  it('IMF-fixdate, RFC 850 and asctime are all accepted (recipients MUST accept the three formats)', () => {
    assert.equal(lifetime('Tue, 05 Mar 2024 11:00:00 GMT'), 3600);
    assert.equal(lifetime('Tuesday, 05-Mar-24 11:00:00 GMT'), 3600);
    assert.equal(lifetime('Tue Mar  5 11:00:00 2024'), 3600);
  });

  it('§4.2: day, month and zone names match case-insensitively for a cache recipient', () => {
    assert.equal(lifetime('tue, 05 mar 2024 11:00:00 gmt'), 3600);
    assert.equal(lifetime('TUE, 05 MAR 2024 11:00:00 GMT'), 3600);
    assert.equal(lifetime('TUESDAY, 05-mAr-24 11:00:00 Gmt'), 3600);
    assert.equal(lifetime('tue mar  5 11:00:00 2024'), 3600);
    assert.equal(freshnessLifetime(200, ['Expires', 'Tue, 05 Mar 2024 11:00:00 GMT', 'Date', 'tue, 05 mar 2024 10:30:00 gmt'], T0).seconds, 1800, 'Date too');
    assert.equal(freshnessLifetime(200, ['Last-Modified', 'mon, 04 mar 2024 10:00:00 gmt', ...date], T0).seconds, 8640, 'Last-Modified too (heuristic)');
  });

  it('§4.2: a zone other than GMT, and anything else invalid, means already expired (§5.3)', () => {
    for (const v of ['Tue, 05 Mar 2024 11:00:00 UTC', 'Tue, 05 Mar 2024 11:00:00 +0000', 'Tue, 5 Mar 2024 11:00:00 GMT', 'Tue, 30 Feb 2024 11:00:00 GMT', '0', 'tomorrow']) {
      assert.equal(lifetime(v), 0, v);
    }
  });

  it('RFC 9110 §5.6.7 itself stays case-sensitive outside the cache (preconditions of aludel serve)', () => {
    assert.equal(parseHttpDate('tue, 05 mar 2024 11:00:00 gmt'), undefined);
    assert.equal(parseHttpDate('tue, 05 mar 2024 11:00:00 gmt', { anyCase: true })?.getTime(), Date.UTC(2024, 2, 5, 11));
  });

  it('§5.6.7: a two-digit year more than 50 years ahead is the most recent past year with those digits', () => {
    const year = new Date().getUTCFullYear();
    const ahead = (year + 60) % 100;
    const d = parseHttpDate(`Sunday, 06-NOV-${String(ahead).padStart(2, '0')} 08:49:37 GMT`, { anyCase: true });
    assert.equal(d?.getUTCFullYear(), year + 60 - 100);
  });
});

describe('RFC 9211 §2.8: why a storable fill was not committed (the leader\'s log line; its head already said `stored`)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-commit-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function filled(cache: HttpCache, key: string, bytes: number): Promise<ReturnType<HttpCache['beginFill']>> {
    const f = cache.beginFill(key, []);
    const file = await cache.createBody();
    assert.ok(file);
    const now = Date.now();
    const headers = ['Cache-Control', 'max-age=60', 'Date', http(now)];
    f.start({ key, vary: null, status: 200, reason: 'OK', headers, requestTime: now, responseTime: now, initialAge: 0 }, bytes, file);
    await f.append(Buffer.alloc(bytes, 0x61));
    f.finish();
    return f;
  }

  it('committed: no reason; body and metadata over the cache size: too-large; an unsafe method meanwhile (§4.4): invalidated', async () => {
    const cache = await HttpCache.open({ dir, maxBytes: 4096, log: silentLogger });
    const ok = await filled(cache, 'https://x/ok', 10);
    assert.notEqual(await cache.endFill(ok), null);
    assert.equal(ok.notCommitted, null);
    // 4096 body bytes fit --cache-size at the head, but not with their metadata.
    const big = await filled(cache, 'https://x/big', 4096);
    assert.equal(await cache.endFill(big), null);
    assert.equal(big.notCommitted, 'too-large');
    const gone = await filled(cache, 'https://x/gone', 10);
    cache.invalidate('https://x/gone');
    assert.equal(await cache.endFill(gone), null);
    assert.equal(gone.notCommitted, 'invalidated');
  });
});

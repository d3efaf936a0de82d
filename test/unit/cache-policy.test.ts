/**
 * RFC 9111 decisions of the shared cache (src/cache/policy.ts and
 * cache-control.ts), section by section, with fixed clocks.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deltaSeconds, parseCacheControl, qualifiedFieldNames } from '../../src/cache/cache-control.js';
import {
  answeredHeaders,
  cacheKey,
  cacheStatus,
  currentAge,
  freshenHeaders,
  freshnessLifetime,
  headersToStore,
  initialAge,
  invalidationKeys,
  isUnsafe,
  notKeptAfterUpdate,
  notModifiedApplies,
  notModifiedFields,
  requestDirectives,
  reusableWithAuthorization,
  reuse,
  storability,
  varyMatches,
  varyNames,
  varySelection,
  type StoreInput,
} from '../../src/cache/policy.js';

const T0 = Date.UTC(2024, 2, 5, 10, 0, 0);
const http = (ms: number): string => new Date(ms).toUTCString();

function store(res: string[], more: Partial<StoreInput> = {}) {
  return storability({ method: 'GET', requestHeaders: [], status: 200, responseHeaders: res, framing: 'length', responseTime: T0, cacheCookies: false, ...more });
}

describe('Cache-Control parsing (§5.2)', () => {
  it('lowercases names, unquotes arguments, keeps commas inside quotes', () => {
    const d = parseCacheControl(['Max-Age=60, private="Set-Cookie, X-User"', 'No-Cache']);
    assert.equal(d.get('max-age'), '60');
    assert.equal(d.get('private'), 'Set-Cookie, X-User');
    assert.equal(d.get('no-cache'), null);
    assert.deepEqual(qualifiedFieldNames(d, 'private'), ['set-cookie', 'x-user']);
  });

  it('accepts the quoted-string form of any argument, with escapes', () => {
    const d = parseCacheControl(['max-age="120", x-ext="a\\"b"']);
    assert.equal(deltaSeconds(d.get('max-age')), 120);
    assert.equal(d.get('x-ext'), 'a"b');
  });

  it('keeps the first of duplicated directives (§4.2.1)', () => {
    assert.equal(parseCacheControl(['max-age=10', 'max-age=99']).get('max-age'), '10');
  });

  it('skips empty and non-token elements without inventing directives', () => {
    const d = parseCacheControl([', ,public,, "junk" , no-store']);
    assert.deepEqual([...d.keys()], ['public', 'no-store']);
  });

  it('delta-seconds: digits only, capped at 2^31 (§1.2.2)', () => {
    assert.equal(deltaSeconds('0'), 0);
    assert.equal(deltaSeconds('99999999999999'), 2 ** 31);
    assert.equal(deltaSeconds('-1'), undefined);
    assert.equal(deltaSeconds('1.5'), undefined);
    assert.equal(deltaSeconds(null), undefined);
  });
});

describe('storing responses (§3)', () => {
  it('stores a GET 200 with max-age', () => {
    assert.deepEqual(store(['Cache-Control', 'max-age=60']), { store: true });
  });

  it('stores only GET', () => {
    assert.deepEqual(store(['Cache-Control', 'max-age=60'], { method: 'HEAD' }), { store: false, reason: 'method' });
    assert.deepEqual(store(['Cache-Control', 'max-age=60'], { method: 'POST' }), { store: false, reason: 'method' });
  });

  it('no-store in the response or the request (§5.2.2.5, §5.2.1.5)', () => {
    assert.deepEqual(store(['Cache-Control', 'max-age=60, no-store']), { store: false, reason: 'no-store' });
    assert.deepEqual(store(['Cache-Control', 'max-age=60'], { requestHeaders: ['Cache-Control', 'no-store'] }), { store: false, reason: 'no-store' });
  });

  it('must-understand lets an understood status override no-store, and refuses an unknown one (§5.2.2.3)', () => {
    assert.deepEqual(store(['Cache-Control', 'max-age=60, must-understand, no-store']), { store: true });
    assert.deepEqual(store(['Cache-Control', 'max-age=60, must-understand, no-store'], { status: 299 }), { store: false, reason: 'must-understand' });
    assert.deepEqual(store(['Cache-Control', 'max-age=60, must-understand'], { status: 418 }), { store: false, reason: 'must-understand' });
  });

  it('§3: any final status code with explicit freshness may be stored, understood or not', () => {
    for (const status of [299, 418, 451, 499, 599, 201, 302, 307, 500]) {
      assert.deepEqual(store(['Cache-Control', 'max-age=60'], { status }), { store: true }, `max-age, ${status}`);
      assert.deepEqual(store(['Cache-Control', 's-maxage=60'], { status }), { store: true }, `s-maxage, ${status}`);
      assert.deepEqual(store(['Expires', http(T0 + 60_000), 'Date', http(T0)], { status }), { store: true }, `Expires, ${status}`);
    }
    assert.equal(freshnessLifetime(418, ['Cache-Control', 'max-age=60'], T0).seconds, 60);
  });

  it('§3: "the response status code is final": 1xx and codes outside 100..599 (RFC 9110 §15) are never stored', () => {
    for (const status of [100, 103, 199, 600, 999]) assert.deepEqual(store(['Cache-Control', 'max-age=60'], { status }), { store: false, reason: 'status' }, String(status));
  });

  it('§4.2.2 and RFC 9110 §15.1: heuristic freshness only for 200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501 (or public)', () => {
    const lm = ['Last-Modified', http(T0 - 100 * 86_400_000), 'Date', http(T0)];
    const heuristic = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501];
    for (const status of heuristic) {
      assert.deepEqual(store(lm, { status }), { store: true }, String(status));
      assert.deepEqual(freshnessLifetime(status, lm, T0), { seconds: 86_400, heuristic: true }, String(status));
    }
    assert.deepEqual(freshnessLifetime(206, lm, T0), { seconds: 86_400, heuristic: true }, '206 is heuristically cacheable, though never stored here (206 storage is §3.4)');
    for (const status of [201, 202, 205, 302, 303, 307, 400, 403, 418, 500, 502, 503, 504, 599]) {
      assert.deepEqual(store(lm, { status }), { store: false, reason: 'not-cacheable' }, String(status));
      assert.deepEqual(freshnessLifetime(status, lm, T0), { seconds: 0, heuristic: false }, String(status));
      assert.deepEqual(store([...lm, 'Cache-Control', 'public'], { status }), { store: true }, `public, ${status}`);
    }
  });

  it('unqualified private is never stored by a shared cache; qualified private is, without its fields (§5.2.2.7)', () => {
    assert.deepEqual(store(['Cache-Control', 'private, max-age=60']), { store: false, reason: 'private' });
    assert.deepEqual(store(['Cache-Control', 'private="Set-Cookie", max-age=60', 'Set-Cookie', 'a=1']), { store: true });
    const kept = headersToStore(['Cache-Control', 'private="Set-Cookie", max-age=60', 'Set-Cookie', 'a=1', 'ETag', '"x"'], T0);
    assert.equal(kept.find((h) => h.toLowerCase() === 'set-cookie'), undefined);
    assert.ok(kept.includes('ETag'));
  });

  it('Authorization: only public, must-revalidate or s-maxage allow storing and reuse (§3.5)', () => {
    const auth = { requestHeaders: ['Authorization', 'Basic eDp5'] };
    assert.deepEqual(store(['Cache-Control', 'max-age=60'], auth), { store: false, reason: 'authorization' });
    for (const cc of ['public, max-age=60', 'must-revalidate, max-age=60', 's-maxage=60']) {
      assert.deepEqual(store(['Cache-Control', cc], auth), { store: true }, cc);
      assert.equal(reusableWithAuthorization(['Cache-Control', cc]), true, cc);
    }
    assert.equal(reusableWithAuthorization(['Cache-Control', 'max-age=60']), false);
  });

  it('Vary: * is never stored (it never matches, §4.1)', () => {
    assert.deepEqual(store(['Cache-Control', 'max-age=60', 'Vary', 'Accept, *']), { store: false, reason: 'vary-star' });
  });

  it('without explicit freshness only heuristically cacheable statuses or public (§3, RFC 9110 §15.1)', () => {
    const lm = ['Last-Modified', http(T0 - 100 * 86_400_000), 'Date', http(T0)];
    assert.deepEqual(store(lm), { store: true });
    assert.deepEqual(store(lm, { status: 404 }), { store: true });
    assert.deepEqual(store(lm, { status: 302 }), { store: false, reason: 'not-cacheable' });
    assert.deepEqual(store(lm, { status: 500 }), { store: false, reason: 'not-cacheable' });
    assert.deepEqual(store([...lm, 'Cache-Control', 'public'], { status: 302 }), { store: true });
    assert.deepEqual(store(['Cache-Control', 'max-age=60'], { status: 302 }), { store: true });
  });

  it('Set-Cookie: not stored by default (as nginx); with cacheCookies, stored when explicitly cacheable (§7.3), never on a heuristic', () => {
    const lm = ['Last-Modified', http(T0 - 100 * 86_400_000), 'Set-Cookie', 'id=1'];
    assert.deepEqual(store(lm), { store: false, reason: 'set-cookie' });
    assert.deepEqual(store([...lm, 'Cache-Control', 'max-age=60']), { store: false, reason: 'set-cookie' });
    assert.deepEqual(store([...lm, 'Cache-Control', 'public, max-age=60']), { store: false, reason: 'set-cookie' });
    const optIn = { cacheCookies: true };
    assert.deepEqual(store(lm, optIn), { store: false, reason: 'set-cookie' });
    assert.deepEqual(store([...lm, 'Cache-Control', 'max-age=60'], optIn), { store: true });
    assert.deepEqual(store([...lm, 'Expires', http(T0 + 60_000), 'Date', http(T0)], optIn), { store: true });
    // A qualified private="Set-Cookie" stores the response without the cookie: no opt-in needed.
    assert.deepEqual(store(['Cache-Control', 'no-cache="Set-Cookie", max-age=60', 'Set-Cookie', 'a=1']), { store: true });
  });

  it('refuses 206, 304 and close-delimited bodies; keeps 204 with no body', () => {
    assert.deepEqual(store(['Cache-Control', 'max-age=60'], { status: 206 }), { store: false, reason: 'status' });
    assert.deepEqual(store(['Cache-Control', 'max-age=60'], { status: 304 }), { store: false, reason: 'status' });
    assert.deepEqual(store(['Cache-Control', 'max-age=60'], { framing: 'close' }), { store: false, reason: 'framing' });
    assert.deepEqual(store(['Cache-Control', 'max-age=60'], { status: 204, framing: 'none' }), { store: true });
    assert.deepEqual(store(['Cache-Control', 'max-age=60'], { framing: 'chunked' }), { store: true });
  });

  it('does not store what could never be reused: stale at once and no validator', () => {
    assert.deepEqual(store(['Cache-Control', 'max-age=0']), { store: false, reason: 'no-validator' });
    assert.deepEqual(store(['Cache-Control', 'max-age=0', 'ETag', '"v1"']), { store: true });
    assert.deepEqual(store(['Cache-Control', 'no-cache', 'Last-Modified', http(T0 - 1000)]), { store: true });
    assert.deepEqual(store([]), { store: false, reason: 'no-validator' });
  });
});

describe('stored header fields (§3.1, §3.2)', () => {
  it('drops hop-by-hop, Connection-named, Content-Length and Age; adds a Date when there was none', () => {
    const kept = headersToStore(['Connection', 'X-Hop', 'X-Hop', '1', 'Keep-Alive', 't=5', 'Content-Length', '10', 'Age', '5', 'ETag', '"a"'], T0);
    assert.deepEqual(kept, ['ETag', '"a"', 'Date', http(T0)]);
    assert.deepEqual(headersToStore(['Date', 'x'], T0), ['Date', 'x']);
  });

  it('qualified no-cache fields are not stored (§5.2.2.4)', () => {
    assert.deepEqual(headersToStore(['Cache-Control', 'no-cache="X-Token"', 'X-Token', 's', 'Date', 'd'], T0), ['Cache-Control', 'no-cache="X-Token"', 'Date', 'd']);
  });

  it('a 304 replaces every stored field it carries, never Content-Length (§3.2)', () => {
    const stored = ['Cache-Control', 'max-age=1', 'ETag', '"a"', 'X-Old', '1', 'X-Multi', 'a', 'X-Multi', 'b', 'Date', http(T0)];
    const update = ['Cache-Control', 'max-age=100', 'X-Multi', 'c', 'Content-Length', '0', 'Connection', 'close', 'Date', http(T0 + 5000)];
    assert.deepEqual(freshenHeaders(stored, update, T0 + 5000), ['ETag', '"a"', 'X-Old', '1', 'Cache-Control', 'max-age=100', 'X-Multi', 'c', 'Date', http(T0 + 5000)]);
  });

  it('a stored qualified private keeps out the field a 304 brings without Cache-Control (§5.2.2.7); the validated request gets it', () => {
    const stored = ['Cache-Control', 'max-age=60, private="Set-Cookie"', 'ETag', '"a"', 'Date', http(T0)];
    const update = ['ETag', '"a"', 'Set-Cookie', 's=1', 'Connection', 'close', 'Date', http(T0 + 5000)];
    assert.deepEqual(freshenHeaders(stored, update, T0 + 5000), ['Cache-Control', 'max-age=60, private="Set-Cookie"', 'ETag', '"a"', 'Date', http(T0 + 5000)]);
    assert.deepEqual(answeredHeaders(stored, update, T0 + 5000), ['Cache-Control', 'max-age=60, private="Set-Cookie"', 'ETag', '"a"', 'Set-Cookie', 's=1', 'Date', http(T0 + 5000)]);
  });

  it('a stored response a 304 made unstorable is not kept (§3 after §3.2); one it freshened is', () => {
    const stored = ['Cache-Control', 'max-age=60', 'ETag', '"a"', 'Date', http(T0)];
    const after = (update: string[]): string[] => freshenHeaders(stored, update, T0 + 5000);
    assert.equal(notKeptAfterUpdate(200, after(['Cache-Control', 'max-age=100']), T0 + 5000, false), null);
    assert.equal(notKeptAfterUpdate(200, after(['Set-Cookie', 's=1']), T0 + 5000, false), 'set-cookie');
    // --cache-cookies: explicitly fresh, so kept with its cookie, as a 200 with it would be stored.
    assert.equal(notKeptAfterUpdate(200, after(['Set-Cookie', 's=1']), T0 + 5000, true), null);
    assert.equal(notKeptAfterUpdate(200, after(['Set-Cookie', 's=1', 'Cache-Control', 'max-age=60, private="Set-Cookie"']), T0 + 5000, false), null);
    assert.equal(notKeptAfterUpdate(200, after(['Cache-Control', 'private, max-age=60']), T0 + 5000, false), 'private');
    assert.equal(notKeptAfterUpdate(200, after(['Cache-Control', 'no-store']), T0 + 5000, false), 'no-store');
    assert.equal(notKeptAfterUpdate(200, after(['Vary', '*']), T0 + 5000, false), 'vary-star');
  });

  it('a 304 built from the cache carries the fields of RFC 9110 §15.4.5', () => {
    const stored = ['Content-Type', 'text/plain', 'ETag', '"a"', 'Last-Modified', http(T0), 'Vary', 'Accept', 'Cache-Control', 'max-age=5', 'Date', 'd', 'Expires', 'e'];
    assert.deepEqual(notModifiedFields(stored), ['ETag', '"a"', 'Vary', 'Accept', 'Cache-Control', 'max-age=5', 'Date', 'd', 'Expires', 'e']);
    assert.deepEqual(notModifiedFields(['Last-Modified', 'lm', 'Content-Type', 'x']), ['Last-Modified', 'lm']);
  });
});

describe('freshness lifetime (§4.2.1) and heuristics (§4.2.2)', () => {
  const date = ['Date', http(T0)];
  it('s-maxage wins over max-age, which wins over Expires', () => {
    assert.deepEqual(freshnessLifetime(200, ['Cache-Control', 'max-age=10, s-maxage=20', 'Expires', http(T0 + 999_000), ...date], T0), { seconds: 20, heuristic: false });
    assert.deepEqual(freshnessLifetime(200, ['Cache-Control', 'max-age=10', 'Expires', http(T0 + 999_000), ...date], T0), { seconds: 10, heuristic: false });
  });

  it('Expires minus Date; without Date, minus the time received', () => {
    assert.equal(freshnessLifetime(200, ['Expires', http(T0 + 60_000), ...date], T0).seconds, 60);
    assert.equal(freshnessLifetime(200, ['Expires', http(T0 + 60_000)], T0 + 20_000).seconds, 40);
  });

  it('an invalid Expires (such as "0") means already expired (§5.3)', () => {
    assert.deepEqual(freshnessLifetime(200, ['Expires', '0', 'Last-Modified', http(T0 - 86_400_000 * 100), ...date], T0), { seconds: 0, heuristic: false });
    assert.equal(freshnessLifetime(200, ['Expires', http(T0 + 5000), 'Expires', http(T0 + 9000), ...date], T0).seconds, 0);
  });

  it('an unreadable max-age means stale, not a heuristic', () => {
    assert.deepEqual(freshnessLifetime(200, ['Cache-Control', 'max-age=soon', 'Last-Modified', http(T0 - 86_400_000), ...date], T0), { seconds: 0, heuristic: false });
  });

  it('heuristic: 10% of Date - Last-Modified, at most a day, only where allowed', () => {
    assert.deepEqual(freshnessLifetime(200, ['Last-Modified', http(T0 - 3_600_000), ...date], T0), { seconds: 360, heuristic: true });
    assert.equal(freshnessLifetime(200, ['Last-Modified', http(T0 - 400 * 86_400_000), ...date], T0).seconds, 86_400);
    assert.equal(freshnessLifetime(302, ['Last-Modified', http(T0 - 3_600_000), ...date], T0).seconds, 0);
    assert.equal(freshnessLifetime(302, ['Cache-Control', 'public', 'Last-Modified', http(T0 - 3_600_000), ...date], T0).seconds, 360);
    assert.deepEqual(freshnessLifetime(200, [...date], T0), { seconds: 0, heuristic: true });
  });
});

describe('age (§4.2.3, §5.1)', () => {
  it('corrected initial age: the larger of apparent age and Age plus the response delay', () => {
    // Origin clock 10 s behind ours: apparent age 10 s.
    assert.equal(initialAge(['Date', http(T0 - 10_000)], T0 - 500, T0), 10);
    // Age 30 from an upstream cache plus 2 s of delay beats a 0 apparent age.
    assert.equal(initialAge(['Date', http(T0), 'Age', '30'], T0 - 2000, T0), 32);
    // A Date in the future never makes the age negative.
    assert.equal(initialAge(['Date', http(T0 + 60_000)], T0, T0), 0);
    // Junk Age is ignored.
    assert.equal(initialAge(['Date', http(T0), 'Age', 'old'], T0, T0), 0);
  });

  it('current age adds the resident time and is sent whole, capped at 2^31', () => {
    assert.equal(currentAge(10, T0, T0 + 5900), 15);
    assert.equal(currentAge(2 ** 31, T0, T0 + 10_000), 2 ** 31);
  });
});

describe('reuse (§4, §4.2.4, §5.2)', () => {
  const none = requestDirectives([]);
  const stored = (cc: string, lifetime: number) => ({ status: 200, headers: ['Cache-Control', cc], lifetime, initialAge: 0, responseTime: T0 });

  it('fresh while age < lifetime, with the ttl left', () => {
    assert.deepEqual(reuse(stored('max-age=60', 60), none, T0 + 10_000), { use: 'fresh', ttl: 50 });
    assert.deepEqual(reuse(stored('max-age=60', 60), none, T0 + 60_000), { use: 'validate', ttl: 0, stale: true, why: 'stale' });
  });

  it('the directives read once per stored head: a new head (freshened) and other targets are read anew (RFC 9213)', () => {
    const entry = stored('max-age=60', 60);
    assert.equal(reuse(entry, none, T0).use, 'fresh');
    assert.equal(reuse(entry, none, T0).use, 'fresh', 'the same head again');
    // A freshened entry gets a new field list (freshenHeaders): its no-cache counts at once.
    entry.headers = ['Cache-Control', 'no-cache, max-age=60'];
    assert.equal(reuse(entry, none, T0).use, 'validate');
    // The same list read for other targets (a reload's --cache-targets): a targeted field now rules.
    const targeted = { ...stored('max-age=60', 60), headers: ['Cache-Control', 'max-age=60', 'X-Cache-Control', 'no-cache'] };
    assert.equal(reuse(targeted, none, T0).use, 'fresh');
    assert.equal(reuse(targeted, none, T0, ['x-cache-control']).use, 'validate');
    assert.equal(reuse(targeted, none, T0).use, 'fresh', 'and back');
  });

  it('response no-cache always validates; a qualified one does not (§5.2.2.4)', () => {
    assert.equal(reuse(stored('no-cache, max-age=60', 60), none, T0).use, 'validate');
    assert.equal(reuse(stored('no-cache="X-A", max-age=60', 60), none, T0).use, 'fresh');
  });

  it('request no-cache, max-age and min-fresh (§5.2.1)', () => {
    assert.deepEqual(reuse(stored('max-age=60', 60), requestDirectives(['Cache-Control', 'no-cache']), T0), { use: 'validate', ttl: 60, stale: false, why: 'req-no-cache' });
    assert.equal(reuse(stored('max-age=60', 60), requestDirectives(['Cache-Control', 'max-age=5']), T0 + 10_000).use, 'validate');
    assert.equal(reuse(stored('max-age=60', 60), requestDirectives(['Cache-Control', 'max-age=15']), T0 + 10_000).use, 'fresh');
    assert.equal(reuse(stored('max-age=60', 60), requestDirectives(['Cache-Control', 'min-fresh=55']), T0 + 10_000).use, 'validate');
    assert.equal(reuse(stored('max-age=60', 60), requestDirectives(['Cache-Control', 'max-age=junk']), T0 + 1000).use, 'validate');
  });

  it('RFC 9211 §2.8 detail: every refusal to reuse names its reason (§4.2.4, §5.2.1, §5.2.2.4)', () => {
    const why = (cc: string, req: string | null, at: number) => {
      const r = reuse(stored(cc, 60), requestDirectives(req === null ? [] : ['Cache-Control', req]), at);
      return r.use === 'fresh' ? 'fresh' : r.why;
    };
    assert.equal(why('max-age=60', null, T0 + 61_000), 'stale');
    assert.equal(why('max-age=60, no-cache', null, T0), 'no-cache');
    assert.equal(why('max-age=60', 'no-cache', T0), 'req-no-cache');
    assert.equal(why('max-age=60', 'max-age=5', T0 + 10_000), 'req-max-age');
    assert.equal(why('max-age=60', 'min-fresh=55', T0 + 10_000), 'req-min-fresh');
    assert.equal(why('max-age=60', 'max-stale=5', T0 + 70_000), 'stale', 'beyond the staleness the client accepts');
    assert.equal(why('max-age=60, must-revalidate', 'max-stale', T0 + 70_000), 'must-revalidate');
    assert.equal(why('max-age=60, proxy-revalidate', 'max-stale', T0 + 70_000), 'must-revalidate');
    assert.equal(why('max-age=60', null, T0 + 1000), 'fresh');
  });

  it('max-stale allows a stale response unless must-revalidate, proxy-revalidate or s-maxage forbid it (§4.2.4)', () => {
    const late = T0 + 70_000;
    assert.deepEqual(reuse(stored('max-age=60', 60), requestDirectives(['Cache-Control', 'max-stale=20']), late), { use: 'fresh', ttl: -10 });
    assert.equal(reuse(stored('max-age=60', 60), requestDirectives(['Cache-Control', 'max-stale=5']), late).use, 'validate');
    assert.equal(reuse(stored('max-age=60', 60), requestDirectives(['Cache-Control', 'max-stale']), late).use, 'fresh');
    for (const cc of ['max-age=60, must-revalidate', 'max-age=60, proxy-revalidate', 's-maxage=60']) {
      assert.equal(reuse(stored(cc, 60), requestDirectives(['Cache-Control', 'max-stale']), late).use, 'validate', cc);
    }
  });

  it('request directives: only-if-cached, no-store', () => {
    const d = requestDirectives(['Cache-Control', 'only-if-cached, no-store']);
    assert.equal(d.onlyIfCached, true);
    assert.equal(d.noStore, true);
    assert.equal(d.noCache, false);
  });
});

describe('validation (§4.3.4)', () => {
  it('a 304 applies when its validator is the stored one', () => {
    assert.equal(notModifiedApplies(['ETag', '"a"'], ['ETag', '"a"']), true);
    assert.equal(notModifiedApplies(['ETag', 'W/"a"'], ['ETag', '"a"']), true);
    assert.equal(notModifiedApplies(['ETag', '"a"'], ['ETag', '"b"']), false);
    assert.equal(notModifiedApplies(['Last-Modified', 'x'], ['Last-Modified', 'x']), true);
    assert.equal(notModifiedApplies(['Last-Modified', 'x'], ['Last-Modified', 'y']), false);
    assert.equal(notModifiedApplies(['ETag', '"a"'], []), true);
  });
});

describe('Vary (§4.1)', () => {
  it('names, lowercased and deduplicated, across field lines; * anywhere is *', () => {
    assert.deepEqual(varyNames(['Vary', 'Accept-Encoding, accept-encoding', 'vary', 'User-Agent']), ['accept-encoding', 'user-agent']);
    assert.equal(varyNames(['Vary', 'Accept', 'Vary', '*']), '*');
    assert.deepEqual(varyNames([]), []);
  });

  it('selection normalises list whitespace and field lines; absent is null and matches only absent', () => {
    const sel = varySelection(['accept-encoding', 'x-absent'], ['Accept-Encoding', 'gzip,br', 'accept-encoding', ' zstd ']);
    assert.deepEqual(sel, { 'accept-encoding': 'br, gzip, zstd', 'x-absent': null }, 'equal weights in one canonical order (below)');
    assert.equal(varyMatches(sel, ['accept-encoding', 'gzip, br, zstd']), true);
    assert.equal(varyMatches(sel, ['accept-encoding', 'gzip, br, zstd', 'X-Absent', '']), false, 'an empty field is present, not absent');
    assert.equal(varyMatches(sel, ['accept-encoding', 'gzip']), false);
    assert.equal(varyMatches(sel, ['accept-encoding', 'gzip, br, zstd', 'X-Absent', 'v']), false);
    assert.equal(varyMatches({}, ['anything', 'x']), true);
  });

  it("a field the request's Connection names, or a hop-by-hop one, selects as absent: the origin never got it (RFC 9110 §7.6.1)", () => {
    const hidden = ['Accept-Language', 'fr', 'Connection', 'keep-alive, ACCEPT-LANGUAGE'];
    assert.deepEqual(varySelection(['accept-language'], hidden), { 'accept-language': null });
    assert.equal(varyMatches({ 'accept-language': 'fr' }, hidden), false, 'not the variant the origin gave to "fr"');
    assert.equal(varyMatches({ 'accept-language': null }, hidden), true);
    assert.deepEqual(varySelection(['te', 'upgrade'], ['TE', 'trailers', 'Upgrade', 'x']), { te: null, upgrade: null });
    // Host is kept upstream whatever Connection says (forward-headers.ts).
    assert.deepEqual(varySelection(['host'], ['Host', 'a', 'Connection', 'host']), { host: 'a' });
    assert.deepEqual(varySelection(['accept-language'], ['Accept-Language', 'fr', 'Connection', 'close']), { 'accept-language': 'fr' });
  });

  it('§4.1 normalisation "known to have identical semantics": Accept-Encoding whitespace, case and order of equal weights', () => {
    const sel = varySelection(['accept-encoding'], ['Accept-Encoding', 'gzip, br']);
    for (const same of ['br,gzip', 'GZIP, BR', 'br ;q=1, gzip', 'gzip;q=1.0,br', ' br , gzip ', 'Br;Q=1.000, Gzip']) {
      assert.equal(varyMatches(sel, ['Accept-Encoding', same]), true, same);
    }
    for (const other of ['gzip', 'gzip, br, zstd', 'gzip;q=0.5, br', 'br;q=0']) assert.equal(varyMatches(sel, ['Accept-Encoding', other]), false, other);
    const weighted = varySelection(['accept-encoding'], ['Accept-Encoding', 'gzip;q=0.8, br, identity;q=0']);
    for (const same of ['br, gzip; q=0.80, identity;q=0.0', 'identity;Q=0, GZIP;q=0.8,br', 'br;q=1, gzip ; q = 0.8, identity; q=0']) {
      assert.equal(varyMatches(weighted, ['Accept-Encoding', same]), true, same);
    }
    assert.equal(varyMatches(weighted, ['Accept-Encoding', 'br, gzip;q=0.7, identity;q=0']), false, 'a different weight');
  });

  it('§4.1 normalisation: Accept-Language tags are case-insensitive (RFC 4647 §2), equal weights unordered', () => {
    const sel = varySelection(['accept-language'], ['Accept-Language', 'en-US, fr;q=0.5, de;q=0.5']);
    for (const same of ['EN-us,de;q=0.5,fr;q=0.5', 'fr; q=0.50, en-us, DE;q=0.5', 'en-US;q=1.0, de ;q=0.5 , fr;Q=0.500']) {
      assert.equal(varyMatches(sel, ['Accept-Language', same]), true, same);
    }
    assert.equal(varyMatches(sel, ['accept-language', 'en-us', 'accept-language', 'de;q=0.5, fr;q=0.5']), true, 'two field lines');
    assert.equal(varyMatches(sel, ['Accept-Language', 'fr, en-US;q=0.5, de;q=0.5']), false, 'another preference');
    assert.equal(varyMatches(sel, ['Accept-Language', 'en-GB, fr;q=0.5, de;q=0.5']), false);
  });

  it('§4.1: other fields keep their case and order (Accept media type parameters may be case-sensitive)', () => {
    const sel = varySelection(['accept', 'x-tenant'], ['Accept', 'text/html, application/json', 'X-Tenant', 'A']);
    assert.equal(varyMatches(sel, ['Accept', 'text/html,application/json', 'X-Tenant', 'A']), true);
    assert.equal(varyMatches(sel, ['Accept', 'application/json, text/html', 'X-Tenant', 'A']), false);
    assert.equal(varyMatches(sel, ['Accept', 'text/html, application/json', 'X-Tenant', 'a']), false);
  });
});

describe('keys and invalidation (§2, §4.4)', () => {
  it('key: https, lowercase authority, target as sent; absolute-form wins over Host', () => {
    assert.equal(cacheKey('Example.COM:8443', '/a/b?c=D'), 'https://example.com:8443/a/b?c=D');
    assert.equal(cacheKey('ignored', 'http://Other.example/x'), 'https://other.example/x');
    assert.equal(cacheKey('ignored', 'http://other.example'), 'https://other.example/');
    // The authority ends at "?" or "#" too (RFC 3986 §3.2), as for the target sent upstream.
    assert.equal(cacheKey('ignored', 'http://Other.example?q=/x'), 'https://other.example/?q=/x');
    assert.equal(cacheKey('ignored', 'https://other.example#/x'), 'https://other.example/#/x');
  });

  it('unsafe methods are everything but GET, HEAD, OPTIONS, TRACE (RFC 9110 §9.2.1)', () => {
    for (const m of ['POST', 'PUT', 'DELETE', 'PATCH', 'PURGE', 'FROB']) assert.equal(isUnsafe(m), true, m);
    for (const m of ['GET', 'HEAD', 'OPTIONS', 'TRACE']) assert.equal(isUnsafe(m), false, m);
  });

  it('2xx/3xx to an unsafe method invalidate the target and same-authority Location/Content-Location', () => {
    const key = 'https://h.example/items';
    assert.deepEqual(invalidationKeys('POST', 201, key, ['Location', '/items/7', 'Content-Location', 'http://h.example/items?x=1']), [key, 'https://h.example/items/7', 'https://h.example/items?x=1']);
    assert.deepEqual(invalidationKeys('POST', 303, key, ['Location', 'https://evil.example/items']), [key]);
    assert.deepEqual(invalidationKeys('DELETE', 500, key, []), []);
    assert.deepEqual(invalidationKeys('GET', 200, key, ['Location', '/x']), []);
    assert.deepEqual(invalidationKeys('PUT', 204, key, ['Location', 'http://[bad']), [key]);
  });
});

describe('Cache-Status (RFC 9211)', () => {
  it('one list member with its parameters in order', () => {
    assert.equal(cacheStatus({ hit: true, ttl: 59.7 }), 'aludel; hit; ttl=59');
    assert.equal(cacheStatus({ fwd: 'uri-miss', stored: true }), 'aludel; fwd=uri-miss; stored');
    assert.equal(cacheStatus({ fwd: 'stale', fwdStatus: 304, ttl: 60 }), 'aludel; fwd=stale; fwd-status=304; ttl=60');
    assert.equal(cacheStatus({ fwd: 'uri-miss', collapsed: true }), 'aludel; fwd=uri-miss; collapsed');
    assert.equal(cacheStatus({ fwd: 'uri-miss', detail: 'no-store' }), 'aludel; fwd=uri-miss; detail=no-store');
  });
});

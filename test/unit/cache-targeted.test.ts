/**
 * Targeted cache-control fields (RFC 9213) as the shared cache reads them
 * (src/cache/targeted.ts, policy.ts), and the RFC 8941 Dictionary parser
 * they rest on (src/http/structured-field.ts). Fixed clocks.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDictionary } from '../../src/http/structured-field.js';
import { CDN_CACHE_CONTROL, targetedDirectives, targetList } from '../../src/cache/targeted.js';
import { followable, freshnessLifetime, headersToStore, requestDirectives, responseControl, reusableWithAuthorization, reuse, storability } from '../../src/cache/policy.js';

const T0 = Date.UTC(2024, 2, 5, 10, 0, 0);
const http = (ms: number): string => new Date(ms).toUTCString();
const ALUDEL = targetList('Aludel-Cache-Control');
const CDN = targetList(null);

function store(res: string[], targets = CDN) {
  return storability({ method: 'GET', requestHeaders: [], status: 200, responseHeaders: res, framing: 'length', responseTime: T0, cacheCookies: false, targets });
}

describe('RFC 8941 §4.2.2: Dictionary parsing', () => {
  it('members with and without values, parameters, inner lists', () => {
    const d = parseDictionary(['max-age=60, no-store, private="set-cookie", x;a=1, l=(a "b");p']);
    assert.ok(d);
    assert.deepEqual(d.get('max-age'), { value: 60, params: new Map() });
    assert.deepEqual(d.get('no-store'), { value: true, params: new Map() });
    assert.deepEqual(d.get('private'), { value: 'set-cookie', params: new Map() });
    assert.deepEqual(d.get('x'), { value: true, params: new Map([['a', 1]]) });
    assert.deepEqual(d.get('l'), { items: [{ value: { token: 'a' }, params: new Map() }, { value: 'b', params: new Map() }], params: new Map([['p', true]]) });
  });

  it('§4.2: field lines are combined with commas; §4.2.2: a key given twice keeps the last value', () => {
    const d = parseDictionary(['max-age=10', 'max-age=99, no-cache']);
    assert.equal((d?.get('max-age') as { value: unknown }).value, 99);
    assert.equal(d?.has('no-cache'), true);
  });

  it('§4.2: any syntax error fails the whole field', () => {
    for (const bad of ['Max-Age=60', 'max-age=60,', 'max-age=60,,no-store', 'max-age=', 'max-age="unterminated', 'a=1 b=2', 'a=?2', 'a=1.2345', 'a=1234567890123456', 'a=:not base64!:', '1a=1', 'a=(1 2']) {
      assert.equal(parseDictionary([bad]), null, bad);
    }
  });

  it('§4.2: surrounding spaces are allowed, an empty field is an empty Dictionary', () => {
    assert.equal(parseDictionary(['  max-age=60  '])?.size, 1);
    assert.equal(parseDictionary([''])?.size, 0);
    assert.equal(parseDictionary([])?.size, 0);
  });
});

describe('RFC 9213 §2.1: the target list', () => {
  it('the configured field first, then CDN-Cache-Control (§2.1: the most specific field)', () => {
    assert.deepEqual(CDN, [CDN_CACHE_CONTROL]);
    assert.deepEqual(ALUDEL, ['aludel-cache-control', 'cdn-cache-control']);
  });

  it('the first field with a valid, non-empty value wins, whatever its position among the header fields', () => {
    const h = ['CDN-Cache-Control', 'max-age=10', 'Aludel-Cache-Control', 'max-age=99'];
    assert.equal(targetedDirectives(h, ALUDEL)?.field, 'aludel-cache-control');
    assert.equal(targetedDirectives(h, ALUDEL)?.directives.get('max-age'), '99');
    assert.equal(targetedDirectives(h, CDN)?.directives.get('max-age'), '10', 'a field not on the list does not change the cache (§2.1)');
  });

  it('§2.2: an invalid or empty targeted field is ignored, the next one (or Cache-Control) applies', () => {
    const cc = ['Cache-Control', 'max-age=5'];
    assert.equal(targetedDirectives(['Aludel-Cache-Control', 'Max-Age=99', 'CDN-Cache-Control', 'max-age=10'], ALUDEL)?.field, 'cdn-cache-control');
    assert.equal(targetedDirectives(['Aludel-Cache-Control', '', 'CDN-Cache-Control', 'max-age=10'], ALUDEL)?.field, 'cdn-cache-control');
    assert.equal(freshnessLifetime(200, [...cc, 'CDN-Cache-Control', 'max-age=60,'], T0, CDN).seconds, 5, 'unparsable: Cache-Control');
    assert.equal(freshnessLifetime(200, [...cc, 'CDN-Cache-Control', ''], T0, CDN).seconds, 5, 'empty: Cache-Control');
    assert.equal(responseControl(cc, CDN).targeted, false);
  });

  it('§2.2: values as RFC 8941 gives them: ?0 is false (directive absent), a decimal max-age is invalid (stale)', () => {
    assert.deepEqual(store(['CDN-Cache-Control', 'max-age=60, no-store=?0']), { store: true });
    assert.equal(freshnessLifetime(200, ['CDN-Cache-Control', 'max-age=60.5', 'Cache-Control', 'max-age=600'], T0, CDN).seconds, 0);
    assert.equal(targetedDirectives(['CDN-Cache-Control', 'private=("set-cookie" "x-user")'], CDN)?.directives.get('private'), 'set-cookie, x-user');
  });
});

describe('RFC 9213 §2.1: a valid targeted field replaces Cache-Control and Expires for the cache', () => {
  it('freshness: CDN-Cache-Control max-age over Cache-Control max-age and s-maxage, and over Expires', () => {
    const h = ['Cache-Control', 'max-age=5, s-maxage=7', 'Expires', http(T0 + 3_600_000), 'Date', http(T0), 'CDN-Cache-Control', 'max-age=600'];
    assert.equal(freshnessLifetime(200, h, T0, CDN).seconds, 600);
    assert.equal(freshnessLifetime(200, h, T0, []).seconds, 7, 'with an empty target list, Cache-Control as before');
    // Expires is ignored too: a targeted field without freshness leaves only the heuristic.
    assert.deepEqual(freshnessLifetime(200, ['Expires', http(T0 + 3_600_000), 'Date', http(T0), 'CDN-Cache-Control', 'must-revalidate'], T0, CDN), { seconds: 0, heuristic: true });
  });

  it('the configured field over CDN-Cache-Control (§2.1: first on the target list)', () => {
    const h = ['Cache-Control', 'no-store', 'CDN-Cache-Control', 'max-age=60', 'Aludel-Cache-Control', 'max-age=3600'];
    assert.equal(freshnessLifetime(200, h, T0, ALUDEL).seconds, 3600);
    assert.equal(freshnessLifetime(200, h, T0, CDN).seconds, 60);
  });

  it('storage: CDN-Cache-Control no-store / private forbid what Cache-Control allows, and allow what it forbids', () => {
    assert.deepEqual(store(['Cache-Control', 'public, max-age=60', 'CDN-Cache-Control', 'no-store']), { store: false, reason: 'no-store' });
    assert.deepEqual(store(['Cache-Control', 'max-age=60', 'CDN-Cache-Control', 'private']), { store: false, reason: 'private' });
    assert.deepEqual(store(['Cache-Control', 'no-store, private', 'CDN-Cache-Control', 'max-age=60']), { store: true }, 'the browser may not store it; the CDN-class cache may');
    assert.deepEqual(store(['Cache-Control', 'no-store', 'Aludel-Cache-Control', 'max-age=60'], ALUDEL), { store: true });
    assert.deepEqual(store(['Cache-Control', 'no-store', 'Aludel-Cache-Control', 'max-age=60'], CDN), { store: false, reason: 'no-store' }, 'not on the list: no effect');
    assert.deepEqual(store(['Cache-Control', 'max-age=60', 'CDN-Cache-Control', 'max-age=60', 'Aludel-Cache-Control', 'no-store'], ALUDEL), { store: false, reason: 'no-store' });
  });

  it('reuse: no-cache and must-revalidate from the targeted field (§2.1: MUST implement max-age, must-revalidate, no-store, no-cache, private)', () => {
    const stored = (h: string[]) => ({ status: 200, headers: h, lifetime: freshnessLifetime(200, h, T0, CDN).seconds, initialAge: 0, responseTime: T0 });
    const none = requestDirectives([]);
    const noCache = stored(['Cache-Control', 'max-age=60', 'CDN-Cache-Control', 'no-cache, max-age=60']);
    assert.deepEqual(reuse(noCache, none, T0, CDN), { use: 'validate', ttl: 60, stale: false, why: 'no-cache' });
    assert.deepEqual(followable(noCache, none, T0, CDN), { follow: false, why: 'no-cache' });
    const ccNoCache = stored(['Cache-Control', 'no-cache', 'CDN-Cache-Control', 'max-age=60']);
    assert.deepEqual(reuse(ccNoCache, none, T0, CDN), { use: 'fresh', ttl: 60 }, "Cache-Control's no-cache is the browser's");
    const mr = stored(['CDN-Cache-Control', 'max-age=60, must-revalidate']);
    assert.equal(reuse(mr, requestDirectives(['Cache-Control', 'max-stale']), T0 + 70_000, CDN).use, 'validate');
  });

  it('§3.5 Authorization and qualified private fields read from the targeted field', () => {
    assert.equal(reusableWithAuthorization(['Cache-Control', 'max-age=60', 'CDN-Cache-Control', 'public, max-age=60'], CDN), true);
    assert.equal(reusableWithAuthorization(['Cache-Control', 'public', 'CDN-Cache-Control', 'max-age=60'], CDN), false);
    const kept = headersToStore(['CDN-Cache-Control', 'max-age=60, private="x-user"', 'X-User', 'u1', 'ETag', '"e"'], T0, CDN);
    assert.equal(kept.find((h) => h.toLowerCase() === 'x-user'), undefined);
    assert.ok(kept.includes('CDN-Cache-Control'), 'kept with the stored response: it sets the lifetime again after a restart');
  });
});

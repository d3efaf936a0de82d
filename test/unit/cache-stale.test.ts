/**
 * Serving stale responses (src/cache/stale.ts): RFC 5861 stale-while-revalidate
 * and stale-if-error, and what RFC 9111 §4.2.4 forbids, with fixed clocks.
 * Each stored response here has max-age=60 (lifetime 60 s) and was received
 * at T0 with age 0, so at T0 + 70 s it is 10 s stale.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { requestDirectives, type StoredTiming } from '../../src/cache/policy.js';
import { isErrorStatus, requestStaleIfError, staleForbidden, staleIfError, staleWhileRevalidate } from '../../src/cache/stale.js';
import { parseCacheControl } from '../../src/cache/cache-control.js';

const T0 = Date.UTC(2024, 2, 5, 10, 0, 0);
/** 10 s past a 60 s lifetime. */
const LATE = T0 + 70_000;
const none = requestDirectives([]);
const req = (cc: string) => requestDirectives(['Cache-Control', cc]);
const stored = (cc: string, lifetime = 60): StoredTiming => ({ status: 200, headers: ['Cache-Control', cc], lifetime, initialAge: 0, responseTime: T0 });
const noWindows = { request: null, fallback: 0 };

describe('RFC 5861 §3 stale-while-revalidate', () => {
  it('RFC 5861 §3: a response stale by no more than its window is served while it is revalidated', () => {
    assert.equal(staleWhileRevalidate(stored('max-age=60, stale-while-revalidate=30'), none, LATE), true);
    assert.equal(staleWhileRevalidate(stored('max-age=60, stale-while-revalidate=10'), none, LATE), true, 'staleness equal to the window');
    assert.equal(staleWhileRevalidate(stored('max-age=60, stale-while-revalidate=9'), none, LATE), false, 'past the window');
    assert.equal(staleWhileRevalidate(stored('max-age=60'), none, LATE), false, 'no directive, no stale serving');
  });

  it('RFC 5861 §3: only for stale responses (a fresh one is a plain hit)', () => {
    assert.equal(staleWhileRevalidate(stored('max-age=60, stale-while-revalidate=30'), none, T0 + 10_000), false);
    assert.equal(staleWhileRevalidate(stored('max-age=60, stale-while-revalidate=30'), none, T0 + 60_000), true, 'ttl 0 is stale (§4.2)');
  });

  it('RFC 9111 §4.2.4: never past must-revalidate, proxy-revalidate, s-maxage (§5.2.2.10) or an unqualified no-cache (§5.2.2.4)', () => {
    for (const cc of ['max-age=60, must-revalidate', 'max-age=60, proxy-revalidate', 's-maxage=60', 'no-cache, max-age=60']) {
      assert.equal(staleWhileRevalidate(stored(`${cc}, stale-while-revalidate=600`), none, LATE), false, cc);
    }
    assert.equal(staleWhileRevalidate(stored('no-cache="Set-Cookie", max-age=60, stale-while-revalidate=600'), none, LATE), true, 'a qualified no-cache only removed its fields');
  });

  it('RFC 9111 §5.2.1.1, §5.2.1.3, §5.2.1.4: a request with no-cache, max-age=0 or min-fresh still goes upstream', () => {
    const swr = stored('max-age=60, stale-while-revalidate=600');
    for (const cc of ['no-cache', 'max-age=0', 'max-age=69', 'min-fresh=1']) assert.equal(staleWhileRevalidate(swr, req(cc), LATE), false, cc);
    assert.equal(staleWhileRevalidate(swr, req('max-age=70'), LATE), true, 'an age the client accepts');
  });

  it('RFC 9111 §1.2.2: an unreadable window is 0 (only a response stale by 0 s qualifies)', () => {
    assert.equal(staleWhileRevalidate(stored('max-age=60, stale-while-revalidate=soon'), none, LATE), false);
    assert.equal(staleWhileRevalidate(stored('max-age=60, stale-while-revalidate'), none, T0 + 60_000), true);
  });
});

describe('RFC 5861 §4 stale-if-error', () => {
  it('RFC 5861 §4: the errors are the answers 500, 502, 503 and 504 (and no answer at all, decided by the caller)', () => {
    assert.deepEqual([500, 501, 502, 503, 504, 505, 404, 200].filter(isErrorStatus), [500, 502, 503, 504]);
  });

  it('RFC 5861 §4 response directive: within its window only', () => {
    assert.equal(staleIfError(stored('max-age=60, stale-if-error=10'), none, noWindows, LATE), true);
    assert.equal(staleIfError(stored('max-age=60, stale-if-error=9'), none, noWindows, LATE), false);
    assert.equal(staleIfError(stored('max-age=60'), none, noWindows, LATE), false, 'no directive and no default: the error goes through');
  });

  it('RFC 5861 §4: --cache-stale-if-error is the window of responses that give none, and does not widen one they give', () => {
    assert.equal(staleIfError(stored('max-age=60'), none, { request: null, fallback: 600 }, LATE), true);
    assert.equal(staleIfError(stored('max-age=60'), none, { request: null, fallback: 5 }, LATE), false);
    assert.equal(staleIfError(stored('max-age=60, stale-if-error=5'), none, { request: null, fallback: 600 }, LATE), false, "the response's own window wins");
    assert.equal(staleIfError(stored('max-age=60, stale-if-error=junk'), none, { request: null, fallback: 600 }, LATE), false, 'an unreadable window is 0, not the default');
  });

  it('RFC 5861 §4 request directive: the client accepts this much staleness when the check fails, even after no-cache or max-age=0', () => {
    assert.equal(requestStaleIfError(['Cache-Control', 'stale-if-error=30']), 30);
    assert.equal(requestStaleIfError(['Cache-Control', 'max-age=0']), null);
    assert.equal(staleIfError(stored('max-age=60'), req('stale-if-error=30'), { request: 30, fallback: 0 }, LATE), true);
    assert.equal(staleIfError(stored('max-age=60'), req('stale-if-error=5'), { request: 5, fallback: 0 }, LATE), false);
    assert.equal(staleIfError(stored('max-age=60'), req('no-cache, stale-if-error=30'), { request: 30, fallback: 0 }, LATE), true);
  });

  it('RFC 9111 §5.2.1.1, §5.2.1.4: a request asking for a validated or younger response gets the error, unless it carries stale-if-error', () => {
    const sie = stored('max-age=60, stale-if-error=600');
    for (const cc of ['no-cache', 'max-age=0', 'min-fresh=5']) assert.equal(staleIfError(sie, req(cc), noWindows, LATE), false, cc);
    assert.equal(staleIfError(sie, req('max-age=600'), noWindows, LATE), true);
  });

  it('RFC 9111 §4.2.4: never past must-revalidate, proxy-revalidate, s-maxage (§5.2.2.10) or no-cache, not even for the request directive', () => {
    const windows = { request: 600, fallback: 600 };
    for (const cc of ['max-age=60, must-revalidate', 'max-age=60, proxy-revalidate', 's-maxage=60', 'no-cache, max-age=60']) {
      assert.equal(staleIfError(stored(`${cc}, stale-if-error=600`), none, windows, LATE), false, cc);
    }
    assert.equal(staleForbidden(parseCacheControl(['max-age=60, stale-if-error=600'])), false);
  });

  it('RFC 5861 §4: only for stale responses', () => {
    assert.equal(staleIfError(stored('max-age=60, stale-if-error=600'), req('no-cache'), { request: 600, fallback: 0 }, T0 + 10_000), false);
  });
});

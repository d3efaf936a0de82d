/**
 * src/cache/request-key.ts: the key found by a request's Host and target is
 * the one cacheKey makes of them (RFC 9111 §2), asked once or again, among
 * other keys, and past the memo's bound; and policy.ts cacheStatus's fresh
 * hits (RFC 9211), kept per ttl, read as the general form does.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cacheKey, cacheStatus } from '../../src/cache/policy.js';
import { keysKept, requestKey } from '../../src/cache/request-key.js';

/** Each differs from the others in one part of the key, or is the same key written another way. */
const ASKED: Array<[string | undefined, string]> = [
  ['a.example', '/p'],
  ['b.example', '/p'],
  ['A.Example', '/p'],
  ['a.example:8443', '/p'],
  ['a.example', '/q'],
  ['a.example', '/p?x=1'],
  ['a.example', '/p?x=2'],
  ['a.example', '/p/'],
  [undefined, '/p'],
  ['', '/p'],
  ['a.example', 'http://B.example/p'],
  ['b.example', 'http://B.example/p'],
  ['a.example', 'https://b.example?q=/x'],
  // A copy that kept one byte per character would make these two one key.
  ['a.example', '/\u0101'],
  ['a.example', '/\u0001'],
  ['\u0101.example', '/p'],
  ['\u0001.example', '/p'],
  // A lone surrogate (an HTTP/2 :path is any string node decoded).
  ['a.example', '/\ud800'],
  ['a.example', '/\u0000'],
  // Sliced from a longer string, as a request head's values are.
  ['a-long-host-name.example'.slice(0, 20), '/a/longer/target?with=a&query'.slice(0, 25)],
];

describe('requestKey', () => {
  it('is cacheKey of the same Host and target, the first time and every time after', () => {
    for (let round = 0; round < 3; round++) {
      for (const [host, target] of round === 1 ? [...ASKED].reverse() : ASKED) {
        assert.equal(requestKey(host, target), cacheKey(host, target), `${host} ${target}`);
      }
    }
  });

  it('keeps the keys of different requests apart and gives equal ones one key', () => {
    const keys = ASKED.map(([h, t]) => requestKey(h, t));
    const made = ASKED.map(([h, t]) => cacheKey(h, t));
    for (let i = 0; i < keys.length; i++) {
      for (let j = 0; j < keys.length; j++) assert.equal(keys[i] === keys[j], made[i] === made[j], `${String(ASKED[i])} / ${String(ASKED[j])}`);
    }
    // The Host's case is not the key's (RFC 3986 §6.2.2.1), its port and the path's every character are.
    assert.equal(requestKey('A.Example', '/p'), requestKey('a.example', '/p'));
    assert.notEqual(requestKey('a.example', '/\u0101'), requestKey('a.example', '/\u0001'));
  });

  it('stays right past its bound, for keys kept before and after it forgot them', () => {
    for (let i = 0; i < 10_000; i++) {
      const host = `h${i % 7}.example`;
      const target = `/t/${i}?q=${i % 3}`;
      assert.equal(requestKey(host, target), cacheKey(host, target));
      if (i % 1000 === 0) for (const [h, t] of ASKED) assert.equal(requestKey(h, t), cacheKey(h, t));
    }
    for (const [h, t] of ASKED) assert.equal(requestKey(h, t), cacheKey(h, t));
  });
});

describe('cacheStatus of a fresh hit', () => {
  it('reads as the general form for every ttl, kept or not, whatever shares its slot', () => {
    const ttls = [59.7, 0, -0.5, 3, 67, 131, 3, 600, 664, 1e10, 2 ** 31 + 5, -3, -67, 0.2, 86400, 86400 - 64];
    for (let round = 0; round < 3; round++) {
      for (const ttl of ttls) assert.equal(cacheStatus({ hit: true, ttl }), `aludel; hit; ttl=${Math.trunc(ttl)}`, String(ttl));
    }
  });

  it('leaves every other member to the general form', () => {
    assert.equal(cacheStatus({ hit: true, ttl: 5 }), 'aludel; hit; ttl=5');
    assert.equal(cacheStatus({ hit: true, ttl: 5, detail: 'authorization' }), 'aludel; hit; ttl=5; detail=authorization');
    assert.equal(cacheStatus({ hit: true, ttl: 5, fwd: 'stale', fwdStatus: 304 }), 'aludel; hit; fwd=stale; fwd-status=304; ttl=5');
    assert.equal(cacheStatus({ hit: true, ttl: 5, stored: true }), 'aludel; hit; ttl=5; stored');
    assert.equal(cacheStatus({ hit: true, ttl: 5, collapsed: true }), 'aludel; hit; ttl=5; collapsed');
    assert.equal(cacheStatus({ hit: true }), 'aludel; hit');
    assert.equal(cacheStatus({ ttl: 5 }), 'aludel; ttl=5');
    assert.equal(cacheStatus({ hit: true, ttl: 5 }), 'aludel; hit; ttl=5');
  });
});

describe('requestKey: long request lines', () => {
  it('has their key made as cacheKey makes it, and keeps none of them', () => {
    requestKey('warm.example', '/warm');
    const before = keysKept();
    for (let i = 0; i < 100; i++) {
      const target = `/${'x'.repeat(4000)}?${i}`;
      assert.equal(requestKey('a.example', target), cacheKey('a.example', target));
      const host = `${'h'.repeat(600)}.example`;
      assert.equal(requestKey(host, '/p'), cacheKey(host, '/p'));
    }
    assert.equal(keysKept(), before, 'no key of a long target or Host is kept');
    requestKey('new.example', `/${'y'.repeat(100)}`);
    assert.equal(keysKept(), before + 1, 'a short one is');
  });
});

/**
 * Partial content in the cache (src/cache/partial.ts): which 206 responses
 * are stored (RFC 9111 §3.3), when parts combine (§3.4), and which ranges a
 * stored partial entry answers (RFC 9110 §14, §13.1.5), with fixed clocks.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  addRange,
  combinedHead,
  covers,
  heldBytes,
  isWhole,
  parseContentRange,
  partStorability,
  rangeFromParts,
  sameStrongValidator,
  strongEtag,
  subtractRange,
  validRanges,
} from '../../src/cache/partial.js';
import { cacheStatus, fieldValue, type StoreInput } from '../../src/cache/policy.js';

const T0 = Date.UTC(2024, 2, 5, 10, 0, 0);

function part(headers: string[], over: Partial<StoreInput> = {}): ReturnType<typeof partStorability> {
  return partStorability({ method: 'GET', requestHeaders: ['Range', 'bytes=0-9'], status: 206, responseHeaders: headers, framing: 'length', responseTime: T0, cacheCookies: false, ...over });
}

const OK_206 = ['Content-Range', 'bytes 0-9/100', 'ETag', '"v1"', 'Cache-Control', 'max-age=60'];

describe('RFC 9110 §14.4 Content-Range of a 206', () => {
  it('bytes first-last/complete-length is the part [first, last+1) of a known length', () => {
    assert.deepEqual(parseContentRange('bytes 10-19/100'), { start: 10, end: 20, complete: 100 });
    assert.deepEqual(parseContentRange('BYTES 0-0/1'), { start: 0, end: 1, complete: 1 });
  });
  it('an unknown complete length (/*), an unsatisfied-range, another unit or an invalid range is no part', () => {
    for (const v of ['bytes 0-9/*', 'bytes */100', 'items 0-9/100', 'bytes 9-0/100', 'bytes 0-100/100', 'bytes 0-9', 'bytes=0-9/100', undefined]) {
      assert.equal(parseContentRange(v), null, String(v));
    }
  });
});

describe('RFC 9110 §8.8.3 strong validators (RFC 9111 §3.4: parts combine only with the same strong validator)', () => {
  it('a W/ entity-tag is weak, a quoted one strong', () => {
    assert.equal(strongEtag(['ETag', '"abc"']), '"abc"');
    assert.equal(strongEtag(['ETag', 'W/"abc"']), null);
    assert.equal(strongEtag(['Last-Modified', 'Tue, 05 Mar 2024 09:00:00 GMT']), null, 'Last-Modified alone is not taken as strong');
  });
  it('§8.8.3.2 strong comparison: both strong and equal', () => {
    assert.equal(sameStrongValidator(['ETag', '"a"'], ['etag', '"a"']), true);
    assert.equal(sameStrongValidator(['ETag', '"a"'], ['ETag', '"b"']), false);
    assert.equal(sameStrongValidator(['ETag', 'W/"a"'], ['ETag', 'W/"a"']), false);
  });
});

describe('RFC 9111 §3.3 storing a 206', () => {
  it('a single-part 206 with a known length, a strong ETag and §3 storability is stored as a part', () => {
    assert.deepEqual(part(OK_206), { store: true, range: { start: 0, end: 10, complete: 100 } });
  });
  it('RFC 9110 §14.6 multipart/byteranges is not stored', () => {
    assert.deepEqual(part(['Content-Type', 'multipart/byteranges; boundary=x', 'ETag', '"v1"']), { store: false, reason: 'multipart' });
  });
  it('§3.4: without a strong validator the part could never be combined, so it is not stored', () => {
    assert.deepEqual(part(['Content-Range', 'bytes 0-9/100', 'ETag', 'W/"v1"', 'Cache-Control', 'max-age=60']), { store: false, reason: 'no-strong-validator' });
    assert.deepEqual(part(['Content-Range', 'bytes 0-9/100', 'Cache-Control', 'max-age=60']), { store: false, reason: 'no-strong-validator' });
  });
  it('Content-Range with an unknown complete length is not stored', () => {
    assert.deepEqual(part(['Content-Range', 'bytes 0-9/*', 'ETag', '"v1"']), { store: false, reason: 'content-range' });
  });
  it('§3: the usual rules apply to the 200 the part belongs to (no-store, private)', () => {
    assert.deepEqual(part([...OK_206.slice(0, 4), 'Cache-Control', 'no-store']), { store: false, reason: 'no-store' });
    assert.deepEqual(part([...OK_206.slice(0, 4), 'Cache-Control', 'private']), { store: false, reason: 'private' });
  });
});

describe('RFC 9111 §3.4 combining parts: byte ranges', () => {
  it('disjoint ranges stay apart, sorted', () => {
    assert.deepEqual(addRange(addRange([], 50, 60), 0, 10), [[0, 10], [50, 60]]);
  });
  it('adjacent and overlapping ranges merge', () => {
    assert.deepEqual(addRange([[0, 10], [50, 60]], 10, 50), [[0, 60]]);
    assert.deepEqual(addRange([[0, 10], [20, 30], [40, 50]], 5, 45), [[0, 50]]);
    assert.deepEqual(addRange([[10, 20]], 12, 15), [[10, 20]]);
  });
  it('subtracting a range leaves what it does not hold (the bytes copied from the stored parts)', () => {
    assert.deepEqual(subtractRange([[0, 10], [20, 30]], 5, 25), [[0, 5], [25, 30]]);
    assert.deepEqual(subtractRange([[0, 10]], 0, 10), []);
  });
  it('a range is covered only when every byte is held', () => {
    assert.equal(covers([[0, 10], [20, 30]], 20, 30), true);
    assert.equal(covers([[0, 10], [20, 30]], 5, 25), false);
    assert.equal(covers([[0, 10]], 0, 11), false);
  });
  it('the parts are the whole body once one range is [0, length)', () => {
    assert.equal(isWhole([[0, 100]], 100), true);
    assert.equal(isWhole([[0, 50], [51, 100]], 100), false);
    assert.equal(heldBytes([[0, 50], [60, 100]]), 90);
  });
  it('ranges read back after a restart must be sorted, merged and within the length', () => {
    assert.equal(validRanges([[0, 10], [20, 30]], 30), true);
    assert.equal(validRanges([[0, 10], [10, 30]], 30), false, 'adjacent: not merged');
    assert.equal(validRanges([[20, 30], [0, 10]], 30), false);
    assert.equal(validRanges([[0, 31]], 30), false);
    assert.equal(validRanges([[5, 5]], 30), false);
  });
});

describe('RFC 9110 §14.2, §13.1.5: a request answered from a partial entry', () => {
  const stored = { length: 100, ranges: [[0, 10], [50, 60]] as const, headers: ['ETag', '"v1"', 'Last-Modified', 'Tue, 05 Mar 2024 09:00:00 GMT'] };
  it('a single range held whole is answered', () => {
    assert.deepEqual(rangeFromParts(stored, 'bytes=52-59', undefined), { start: 52, end: 60 });
    assert.deepEqual(rangeFromParts(stored, 'bytes=0-9', '"v1"'), { start: 0, end: 10 });
  });
  it('a range with a missing byte goes upstream', () => {
    assert.equal(rangeFromParts(stored, 'bytes=5-14', undefined), 'not-covered');
    assert.equal(rangeFromParts(stored, 'bytes=-10', undefined), 'not-covered');
  });
  it('§13.1.5: If-Range not naming the stored strong entity-tag wants the whole 200; a date is not evaluated', () => {
    assert.equal(rangeFromParts(stored, 'bytes=0-9', '"v2"'), 'if-range');
    assert.equal(rangeFromParts(stored, 'bytes=0-9', 'Tue, 05 Mar 2024 09:00:00 GMT'), 'if-range');
  });
  it('§14.2: no Range, several ranges or an unsatisfiable one are not answered from parts', () => {
    assert.equal(rangeFromParts(stored, undefined, undefined), 'no-range');
    assert.equal(rangeFromParts(stored, 'bytes=0-1,50-51', undefined), 'no-range');
    assert.equal(rangeFromParts(stored, 'bytes=200-300', undefined), 'no-range');
  });
});

describe('RFC 9211 §2.2 Cache-Status for partial content', () => {
  it('fwd=partial: a stored partial response could not answer, the request went forward', () => {
    assert.equal(cacheStatus({ fwd: 'partial', stored: true }), 'aludel; fwd=partial; stored');
    assert.equal(cacheStatus({ hit: true, ttl: 59.5, detail: 'partial' }), 'aludel; hit; ttl=59; detail=partial');
  });
});

describe('RFC 9111 §3.4 combining parts: the head of the combination', () => {
  it('the newer response\'s fields replace the other\'s of the same names and its times are kept, whichever was stored first', () => {
    const date = (t: number): string => new Date(t).toUTCString();
    const older = { headers: ['ETag', '"v"', 'Cache-Control', 'max-age=60', 'X-Only-Old', '1', 'Date', date(T0)], requestTime: T0 - 5, responseTime: T0, initialAge: 0 };
    const newer = { headers: ['ETag', '"v"', 'Cache-Control', 'max-age=120', 'Date', date(T0 + 10_000)], requestTime: T0 + 9_000, responseTime: T0 + 10_000, initialAge: 3 };
    // Stored first, or the part combined now: a part received earlier can be combined later (another worker held the key).
    for (const [held, part] of [[older, newer], [newer, older]] as const) {
      const h = combinedHead(held, part);
      assert.deepEqual([h.requestTime, h.responseTime, h.initialAge], [T0 + 9_000, T0 + 10_000, 3]);
      assert.equal(fieldValue(h.headers, 'cache-control'), 'max-age=120');
      assert.equal(fieldValue(h.headers, 'date'), date(T0 + 10_000));
      assert.equal(fieldValue(h.headers, 'x-only-old'), '1', 'a field only the older has is kept');
    }
  });
});

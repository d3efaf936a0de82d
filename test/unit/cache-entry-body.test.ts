/**
 * A stored entry's body as sendStored reads it (src/cache/entry-body.ts):
 * a complete entry's length and availability are the entry's own, read
 * when asked; only a partial entry's body answers covers(), and by the
 * entry's ranges as they are when asked, so that a hole of its file never
 * goes out (sendStored sends without the check when covers is undefined).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EntryBody, PartialEntryBody } from '../../src/cache/entry-body.js';
import type { Entry } from '../../src/cache/store.js';
import type { ByteRanges } from '../../src/cache/partial.js';

function entry(length: number, ranges: ByteRanges | null = null): Entry {
  return {
    id: 'e1', bodyFile: '/nowhere', lifetime: 60, diskBytes: length, key: 'https://h/x', vary: null, status: 200, reason: 'OK',
    headers: ['ETag', '"a"'], length, ranges, requestTime: 0, responseTime: 0, initialAge: 0,
  };
}

describe('EntryBody', () => {
  it('a complete entry: all of its length is there, nothing to wait for, and no covers()', async () => {
    const e = entry(1024);
    const b = new EntryBody(e, 200, 'OK', e.headers, 7, 3);
    assert.deepEqual([b.status, b.reason, b.headers, b.fd, b.age], [200, 'OK', e.headers, 7, 3]);
    assert.equal(b.length(), 1024);
    assert.equal(b.available(), 1024);
    assert.equal(b.complete(), true);
    assert.equal(await b.progress(), undefined);
    assert.equal((b as { covers?: unknown }).covers, undefined, 'sendStored checks no range of a complete entry');
    assert.equal((b as { inFile?: unknown }).inFile, undefined);
    e.length = 2048;
    assert.equal(b.length(), 2048, 'read from the entry when asked');
  });

  it("a partial entry: covers() by the entry's ranges, holes refused", () => {
    const e = entry(1000, [[0, 100], [500, 600]]) as Entry & { ranges: ByteRanges };
    const b = new PartialEntryBody(e, 206, 'Partial Content', e.headers, 7, 0);
    assert.equal(b.covers(0, 100), true);
    assert.equal(b.covers(510, 590), true);
    assert.equal(b.covers(50, 150), false, 'a range running into a hole');
    assert.equal(b.covers(100, 500), false, 'the hole itself');
    e.ranges = [[0, 1000]];
    assert.equal(b.covers(100, 500), true, "the entry's ranges as they are when asked");
    assert.equal(b.length(), 1000);
  });
});

/**
 * The memo of a stored response's fields as a hit sends them
 * (src/cache/send-stored.ts fieldsForClient): the consumed targeted fields
 * dropped and the ETag found once per stored field list. Each input misses
 * it: another list (a 304 freshened the entry, or a new response replaced
 * it: store.ts gives a new list each time), another set of consumed names;
 * and what it hands out is never the stored list itself.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fieldsForClient } from '../../src/cache/send-stored.js';

const consumed = new Set(['cdn-cache-control']);

describe('fieldsForClient', () => {
  it('drops the consumed fields and finds the ETag; the same list and names give the same answer', () => {
    const stored = ['ETag', '"a"', 'CDN-Cache-Control', 'max-age=60', 'Content-Type', 'text/plain'];
    const f = fieldsForClient(stored, consumed);
    assert.deepEqual(f.forClient, ['ETag', '"a"', 'Content-Type', 'text/plain']);
    assert.equal(f.etag, '"a"');
    assert.equal(fieldsForClient(stored, consumed), f, 'a hit of the same stored list: the memo');
    assert.deepEqual(stored, ['ETag', '"a"', 'CDN-Cache-Control', 'max-age=60', 'Content-Type', 'text/plain'], 'the stored list is left as it was');
    assert.notEqual(f.forClient, stored);
  });

  it('another stored list (the entry freshened by a 304, or replaced) is read anew, even with the same fields', () => {
    const before = ['ETag', '"a"', 'Content-Type', 'text/plain'];
    const freshened = ['ETag', '"b"', 'Content-Type', 'text/html'];
    assert.equal(fieldsForClient(before, consumed).etag, '"a"');
    const f = fieldsForClient(freshened, consumed);
    assert.equal(f.etag, '"b"');
    assert.deepEqual(f.forClient, freshened);
    // A list equal in content but another array (a replacing response with the same fields): its own answer, equal.
    const same = [...before];
    assert.notEqual(fieldsForClient(same, consumed), fieldsForClient(before, consumed));
    assert.deepEqual(fieldsForClient(same, consumed).forClient, before);
  });

  it('other consumed names (another cache on the same list) miss the memo', () => {
    const stored = ['Surrogate-Control', 'max-age=5', 'CDN-Cache-Control', 'max-age=60', 'X', '1'];
    assert.deepEqual(fieldsForClient(stored, consumed).forClient, ['Surrogate-Control', 'max-age=5', 'X', '1']);
    assert.deepEqual(fieldsForClient(stored, new Set(['surrogate-control'])).forClient, ['CDN-Cache-Control', 'max-age=60', 'X', '1']);
    assert.deepEqual(fieldsForClient(stored, null).forClient, stored, 'none consumed: all of them');
    assert.deepEqual(fieldsForClient(stored, consumed).forClient, ['Surrogate-Control', 'max-age=5', 'X', '1'], 'and back');
  });

  it('no ETag: an empty one, as before', () => {
    assert.equal(fieldsForClient(['Content-Type', 'text/plain'], null).etag, '');
  });
});

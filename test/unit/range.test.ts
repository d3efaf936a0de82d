import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseRange } from '../../src/http/range.js';

describe('parseRange', () => {
  it('returns none without a header', () => {
    assert.deepEqual(parseRange(undefined, 100), { kind: 'none' });
  });

  it('parses a closed range', () => {
    assert.deepEqual(parseRange('bytes=0-0', 100), { kind: 'single', start: 0, end: 0 });
    assert.deepEqual(parseRange('bytes=10-19', 100), { kind: 'single', start: 10, end: 19 });
  });

  it('parses an open-ended range', () => {
    assert.deepEqual(parseRange('bytes=99-', 100), { kind: 'single', start: 99, end: 99 });
    assert.deepEqual(parseRange('bytes=0-', 100), { kind: 'single', start: 0, end: 99 });
  });

  it('parses suffix ranges and clamps them to the size', () => {
    assert.deepEqual(parseRange('bytes=-1', 100), { kind: 'single', start: 99, end: 99 });
    assert.deepEqual(parseRange('bytes=-500', 100), { kind: 'single', start: 0, end: 99 });
  });

  it('clamps last-pos to size-1, even beyond 2^53', () => {
    assert.deepEqual(parseRange('bytes=5-1000', 100), { kind: 'single', start: 5, end: 99 });
    assert.deepEqual(parseRange('bytes=5-99999999999999999999999', 100), { kind: 'single', start: 5, end: 99 });
  });

  it('tolerates whitespace and a case-insensitive unit', () => {
    assert.deepEqual(parseRange('  BYTES = 1 - 2 ', 100), { kind: 'single', start: 1, end: 2 });
    assert.deepEqual(parseRange('Bytes=\t-3', 100), { kind: 'single', start: 97, end: 99 });
    assert.deepEqual(parseRange('bytes=, 1-2 ,', 100), { kind: 'single', start: 1, end: 2 });
  });

  it('ignores unknown units and invalid syntax', () => {
    for (const header of [
      'items=0-1',
      'bytes',
      'bytes=',
      'bytes=-',
      'bytes=a-b',
      'bytes=1-2-3',
      'bytes=5-4',
      'bytes=+1-2',
      'bytes=1.5-2',
      'bytes=0x10-20',
      'bytes=1-2,x',
      'bytes=--1',
      'bytes=\u0661-2',
      'bytes 0-1',
    ]) {
      assert.deepEqual(parseRange(header, 100), { kind: 'none' }, header);
    }
  });

  it('reports multiple ranges as multi', () => {
    assert.deepEqual(parseRange('bytes=0-1,5-6', 100), { kind: 'multi' });
    assert.deepEqual(parseRange('bytes=0-1, -1', 100), { kind: 'multi' });
    // One satisfiable member is enough for the set to be satisfiable (§14.1.1).
    assert.deepEqual(parseRange('bytes=500-600, 0-1', 100), { kind: 'multi' });
  });

  it('reports ranges starting at or beyond the end as unsatisfiable', () => {
    assert.deepEqual(parseRange('bytes=100-', 100), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange('bytes=100-200', 100), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange('bytes=99999999999999999999-', 100), { kind: 'unsatisfiable' });
    assert.deepEqual(parseRange('bytes=200-300,400-', 100), { kind: 'unsatisfiable' });
  });

  it('treats a zero-length suffix as unsatisfiable', () => {
    assert.deepEqual(parseRange('bytes=-0', 100), { kind: 'unsatisfiable' });
  });

  it('treats every range of an empty representation as unsatisfiable', () => {
    for (const header of ['bytes=0-', 'bytes=0-0', 'bytes=-1', 'bytes=-0', 'bytes=0-1,-5']) {
      assert.deepEqual(parseRange(header, 0), { kind: 'unsatisfiable' }, header);
    }
  });

  it('accepts leading zeros', () => {
    assert.deepEqual(parseRange('bytes=0010-0020', 100), { kind: 'single', start: 10, end: 20 });
    assert.deepEqual(parseRange('bytes=010-9', 100), { kind: 'none' });
  });
});

/**
 * This process's holds on the key locks across the workers
 * (src/cache/key-locks.ts): operations of one process on one key (a fill, a
 * background revalidation, a part being combined) share its hold, and the
 * key goes back to the primary only when the last of them ends.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KeyLocks } from '../../src/cache/key-locks.js';

function locks(): { l: KeyLocks; unlocked: string[] } {
  const unlocked: string[] = [];
  return { l: new KeyLocks((k) => unlocked.push(k)), unlocked };
}

describe('KeyLocks', () => {
  it('a key this process does not hold cannot be joined; release of it does nothing', () => {
    const { l, unlocked } = locks();
    assert.equal(l.join('k'), false);
    assert.equal(l.holds('k'), false);
    l.release('k');
    assert.deepEqual(unlocked, []);
  });

  it('a granted key is given back when its only holder ends', () => {
    const { l, unlocked } = locks();
    l.granted('k');
    assert.equal(l.holds('k'), true);
    l.release('k');
    assert.deepEqual(unlocked, ['k']);
    assert.equal(l.holds('k'), false);
    assert.equal(l.join('k'), false, 'given back: a new holder must ask the primary');
  });

  it('holders that joined keep the key until the last one ends, whatever the order', () => {
    const { l, unlocked } = locks();
    l.granted('k');
    assert.equal(l.join('k'), true);
    assert.equal(l.join('k'), true);
    l.granted('other');
    l.release('k');
    l.release('k');
    assert.deepEqual(unlocked, [], 'one holder left');
    l.release('other');
    assert.deepEqual(unlocked, ['other']);
    l.release('k');
    assert.deepEqual(unlocked, ['other', 'k']);
    l.release('k');
    assert.deepEqual(unlocked, ['other', 'k'], 'an extra release gives nothing back twice');
  });
});

/**
 * Recent uses of stored responses sent to the other workers in batches
 * (src/cache/touch-batch.ts): never one message per hit; a batch goes out
 * when full or after its time, in the order of last use.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TouchBatch } from '../../src/cache/touch-batch.js';

describe('TouchBatch', () => {
  it('many uses make one message, the ids in the order of their last use', async () => {
    const sent: string[][] = [];
    const b = new TouchBatch((ids) => sent.push(ids), 100, 30);
    for (let i = 0; i < 50; i++) b.add(['a', 'b', 'c'][i % 3]!);
    b.add('a');
    assert.deepEqual(sent, [], 'nothing is sent on a use');
    assert.equal(b.size, 3);
    await new Promise((r) => setTimeout(r, 80));
    assert.deepEqual(sent, [['c', 'b', 'a']]);
    assert.equal(b.size, 0);
  });

  it('a full batch goes at once; the next one starts empty', () => {
    const sent: string[][] = [];
    const b = new TouchBatch((ids) => sent.push(ids), 3, 60_000);
    b.add('a');
    b.add('b');
    b.add('a');
    assert.deepEqual(sent, [], 'two distinct ids: not full');
    b.add('c');
    assert.deepEqual(sent, [['b', 'a', 'c']]);
    b.add('d');
    b.flush();
    assert.deepEqual(sent, [['b', 'a', 'c'], ['d']]);
  });

  it('an empty batch sends nothing, and no timer is left behind', async () => {
    const sent: string[][] = [];
    const b = new TouchBatch((ids) => sent.push(ids), 10, 10);
    b.flush();
    b.add('x');
    b.flush();
    await new Promise((r) => setTimeout(r, 40));
    assert.deepEqual(sent, [['x']], 'flushed once; the timer of that batch was cleared');
  });

  it('the same id added again and again is sent once; another id in between moves it to the end again; a flush starts afresh', () => {
    const sent: string[][] = [];
    const b = new TouchBatch((ids) => sent.push(ids), 100, 60_000);
    for (const id of ['a', 'a', 'b', 'b', 'a', 'a']) b.add(id);
    b.flush();
    assert.deepEqual(sent, [['b', 'a']], 'a was used last');
    b.add('a');
    b.flush();
    assert.deepEqual(sent, [['b', 'a'], ['a']], 'after a flush the same id starts a new batch');
  });
});

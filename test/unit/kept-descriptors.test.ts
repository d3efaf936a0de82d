/**
 * KeptDescriptors' least-recently-used order (src/transport/kept-descriptors.ts):
 * a use re-inserts its key unless it is already the newest, and making room
 * still closes the one used longest ago.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { isOpen } from '../support/descriptors.js';
import { KeptDescriptors } from '../../src/transport/kept-descriptors.js';

describe('KeptDescriptors', () => {
  it('closes the least recently used to make room, whether a use re-inserted its key or found it the newest already', () => {
    const kept = new KeptDescriptors<null>(2);
    const a = fs.openSync('/dev/null', 'r');
    const b = fs.openSync('/dev/null', 'r');
    const c = fs.openSync('/dev/null', 'r');
    const d = fs.openSync('/dev/null', 'r');
    assert.ok(kept.add('a', a, null, 0));
    kept.release('a', a, 0);
    assert.ok(kept.add('b', b, null, 0));
    kept.release('b', b, 0);
    // b is the newest: used again and again without moving; then a, which moves to the end.
    for (let i = 0; i < 3; i++) kept.release('b', kept.use('b')!.fd, 0);
    kept.release('a', kept.use('a')!.fd, 0);
    kept.release('a', kept.use('a')!.fd, 0);
    assert.ok(kept.add('c', c, null, 0));
    kept.release('c', c, 0);
    assert.ok(!isOpen(b) && isOpen(a), 'b, used longest ago, made room');
    // c is the newest now; a used again becomes the newest, so d pushes c out.
    kept.release('a', kept.use('a')!.fd, 0);
    assert.ok(kept.add('d', d, null, 0));
    kept.release('d', d, 0);
    assert.ok(!isOpen(c) && isOpen(a) && isOpen(d));
    assert.equal(kept.size, 2);
    kept.clear();
    assert.ok(!isOpen(a) && !isOpen(d));
  });

  it('a newest key closed and kept again is the newest again', () => {
    const kept = new KeptDescriptors<null>(2);
    const fds = [0, 1, 2, 3].map(() => fs.openSync('/dev/null', 'r'));
    kept.add('x', fds[0]!, null, 0);
    kept.release('x', fds[0]!, 0);
    kept.add('y', fds[1]!, null, 0);
    kept.release('y', fds[1]!, 0);
    kept.drop('y');
    assert.ok(!isOpen(fds[1]!));
    kept.add('y', fds[2]!, null, 0);
    kept.release('y', fds[2]!, 0);
    kept.release('x', kept.use('x')!.fd, 0);
    kept.add('z', fds[3]!, null, 0);
    kept.release('z', fds[3]!, 0);
    assert.ok(!isOpen(fds[2]!) && isOpen(fds[0]!) && isOpen(fds[3]!), 'y, kept again before x was used, made room');
    kept.clear();
  });
});

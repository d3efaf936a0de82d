/**
 * The cache's body descriptors kept open between hits (src/cache/open-bodies.ts),
 * on real files: reused while the entry is indexed, closed when it leaves the
 * index or when the bound needs room, never while a hit sends from it; an
 * unlinked body (another worker's purge) is not served; fs.fstatSync stands in
 * for the addon's linkCount.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isOpen } from '../support/descriptors.js';
import { descriptorLimit, linkCountByFstat, OpenBodies, openBodiesBound, type OpenBodiesOptions } from '../../src/cache/open-bodies.js';
import { loadAddon } from '../../src/native/binding.js';

let dir: string;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'open-bodies-'));
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

function body(name: string, text: string): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text);
  return file;
}


/** OpenBodies counting its open(2) calls. */
function bodies(o: Partial<OpenBodiesOptions> = {}): { b: OpenBodies; opens: () => number } {
  let opens = 0;
  const b = new OpenBodies({ max: 8, shared: false, linkCount: linkCountByFstat, ...o, open: (file) => (opens++, fs.openSync(file, 'r')) });
  return { b, opens: () => opens };
}

const read = (fd: number): string => {
  const buf = Buffer.alloc(64);
  return buf.subarray(0, fs.readSync(fd, buf, 0, 64, 0)).toString();
};

describe('OpenBodies', () => {
  test('a second hit on an entry reuses its descriptor: one open(2) for many hits', () => {
    const file = body('a.body', 'alpha');
    const { b, opens } = bodies();
    for (let i = 0; i < 5; i++) {
      const lease = b.acquire('a', file)!;
      assert.equal(read(lease.fd), 'alpha');
      b.release('a', lease);
    }
    assert.equal(opens(), 1);
    assert.equal(b.size, 1);
  });

  test('an entry that leaves the index closes its descriptor at once when idle, after the last hit when in use', () => {
    const file = body('b.body', 'beta');
    const { b } = bodies();
    const idle = b.acquire('b', file)!;
    b.release('b', idle);
    b.drop('b');
    assert.equal(isOpen(idle.fd), false, 'idle: closed at once');

    const first = b.acquire('b', file)!;
    const second = b.acquire('b', file)!;
    assert.equal(first.fd, second.fd);
    b.drop('b');
    assert.equal(isOpen(first.fd), true, 'two hits still send from it');
    b.release('b', first);
    assert.equal(isOpen(first.fd), true, 'one hit still sends from it');
    b.release('b', second);
    assert.equal(isOpen(first.fd), false, 'closed when the last hit is done');
    assert.equal(b.size, 0);
  });

  test('at the bound the least recently used idle descriptor is closed; one in use never is (the hit then gets its own)', () => {
    const files = ['c0', 'c1', 'c2'].map((n) => body(`${n}.body`, n));
    const { b } = bodies({ max: 2 });
    const l0 = b.acquire('c0', files[0]!)!;
    b.release('c0', l0);
    const l1 = b.acquire('c1', files[1]!)!;
    b.release('c1', l1);
    // c0 used again: c1 is now the least recently used.
    b.release('c0', b.acquire('c0', files[0]!)!);
    const l2 = b.acquire('c2', files[2]!)!;
    assert.equal(isOpen(l1.fd), false, 'c1 made room');
    assert.equal(isOpen(l0.fd), true);
    assert.equal(b.size, 2);

    // Both kept ones in use: a third entry's hit opens its own, closed at release.
    const busy0 = b.acquire('c0', files[0]!)!;
    const own = b.acquire('c1', files[1]!)!;
    assert.equal(own.kept, false);
    assert.equal(read(own.fd), 'c1');
    b.release('c1', own);
    assert.equal(isOpen(own.fd), false);
    assert.equal(isOpen(busy0.fd), true);
    b.release('c0', busy0);
    b.release('c2', l2);
  });

  test('a file that is gone gives null, not a throw; other open errors are thrown', () => {
    const { b } = bodies();
    assert.equal(b.acquire('gone', path.join(dir, 'never.body')), null);
    assert.throws(() => b.acquire('dir', dir + '/\0'), (err: Error & { code?: string }) => err.code !== 'ENOENT');
  });

  for (const [name, linkCount] of [['the addon\'s linkCount', null], ['fs.fstatSync (no addon)', linkCountByFstat]] as const) {
    test(`shared with other workers: a kept descriptor whose file was unlinked (a purge elsewhere) is not served (${name})`, () => {
      let count = linkCount;
      if (count === null) {
        const addon = loadAddon();
        if (addon instanceof Error) throw addon;
        assert.equal(typeof addon.linkCount, 'function', 'this build of the addon has linkCount');
        count = (fd: number) => addon.linkCount!(fd);
      }
      const file = body('d.body', 'delta');
      const { b, opens } = bodies({ shared: true, linkCount: count });
      const first = b.acquire('d', file)!;
      b.release('d', first);
      assert.ok(count(first.fd) >= 1);
      fs.unlinkSync(file);
      assert.equal(count(first.fd), 0, 'st_nlink 0 once unlinked');
      assert.equal(b.acquire('d', file), null, 'gone, as a fresh open(2) would say');
      assert.equal(isOpen(first.fd), false, 'and its descriptor closed');
      assert.equal(opens(), 1);
    });
  }

  test('alone (not shared), a kept descriptor is reused without a link check', () => {
    const file = body('e.body', 'echo');
    let checks = 0;
    const { b } = bodies({ linkCount: (fd) => (checks++, linkCountByFstat(fd)) });
    b.release('e', b.acquire('e', file)!);
    b.release('e', b.acquire('e', file)!);
    assert.equal(checks, 0);
  });
});

describe('openBodiesBound', () => {
  test('an eighth of the descriptor limit, at most 1,000; 1,000 when the limit is unknown', () => {
    assert.equal(openBodiesBound(1024), 128);
    assert.equal(openBodiesBound(1_048_576), 1000);
    assert.equal(openBodiesBound(4), 0);
    assert.equal(openBodiesBound(null), 1000);
  });

  test('max 0 keeps nothing: every hit opens and closes its own', () => {
    const file = body('z.body', 'zero');
    const { b, opens } = bodies({ max: 0 });
    const lease = b.acquire('z', file)!;
    assert.equal(lease.kept, false);
    b.release('z', lease);
    assert.equal(isOpen(lease.fd), false);
    b.release('z', b.acquire('z', file)!);
    assert.equal(opens(), 2);
    assert.equal(b.size, 0);
  });

  test('the limit is read from /proc/self/limits', () => {
    const n = descriptorLimit();
    assert.ok(n === null || (Number.isSafeInteger(n) && n > 0));
  });
});

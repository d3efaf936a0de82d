/**
 * File reads that never wait for the disk on the event loop (transport/copy-file.ts
 * readAt): preadv2(RWF_NOWAIT) inline when the bytes are cached, libuv's thread
 * pool otherwise, and the thread pool alone where the kernel or filesystem
 * has no RWF_NOWAIT (the fallback every native path keeps).
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AGAIN, NOWAIT_UNSUPPORTED, loadAddon } from '../../src/native/binding.js';
import { readAtWith, type InlineRead } from '../../src/transport/copy-file.js';

let dir: string;
let file: string;
let fd: number;
const bytes = crypto.randomBytes(100_000);

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-read-at-'));
  file = path.join(dir, 'f.bin');
  fs.writeFileSync(file, bytes);
  fd = fs.openSync(file, 'r');
});
after(() => {
  fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('readAt: inline when cached, the thread pool otherwise', () => {
  test('preadNowait (preadv2 RWF_NOWAIT) reads a just-written, cached file inline: the bytes at the position, 0 at the end', () => {
    const addon = loadAddon();
    assert.ok(!(addon instanceof Error), `the addon loads: ${String(addon)}`);
    const buf = Buffer.alloc(4096);
    const n = addon.preadNowait(fd, buf, 4096, 50_000);
    if (n === NOWAIT_UNSUPPORTED) assert.fail('this kernel/filesystem has no RWF_NOWAIT: the test machine should (Linux >= 4.14, ext4/tmpfs/xfs/btrfs)');
    assert.equal(n, 4096);
    assert.deepEqual(buf, bytes.subarray(50_000, 54_096));
    assert.equal(addon.preadNowait(fd, buf, 4096, bytes.length), 0, 'end of file');
    assert.throws(() => addon.preadNowait(fd, buf, 8192, 0), /ERR_OUT_OF_RANGE|at least length/, 'never past the buffer');
    assert.throws(() => addon.preadNowait(-1, buf, 10, 0), (err: Error & { code?: string }) => err.code === 'EBADF');
  });

  for (const [name, state] of [['AGAIN (not cached)', AGAIN], ['NOWAIT_UNSUPPORTED', NOWAIT_UNSUPPORTED]] as const) {
    test(`inline ${name}: the same bytes come from the thread pool`, async () => {
      let calls = 0;
      const stub: InlineRead = () => {
        calls++;
        return state;
      };
      const buf = Buffer.alloc(10_000);
      assert.equal(await readAtWith(stub, fd, buf, 10_000, 90_000), 10_000);
      assert.equal(calls, 1);
      assert.deepEqual(buf, bytes.subarray(90_000, 100_000));
    });
  }

  test('inline bytes are used as they are: no thread-pool read after them', async () => {
    const buf = Buffer.alloc(8);
    const n = await readAtWith((_fd, b) => b.write('inline!!', 'latin1'), fd, buf, 8, 0);
    assert.equal(n, 8);
    assert.equal(buf.toString('latin1'), 'inline!!', 'not overwritten by a read of the file');
  });

  test('no addon (null): the thread pool alone; an inline error rejects', async () => {
    const buf = Buffer.alloc(100);
    assert.equal(await readAtWith(null, fd, buf, 100, 0), 100);
    assert.deepEqual(buf, bytes.subarray(0, 100));
    await assert.rejects(readAtWith(() => { throw Object.assign(new Error('EIO'), { code: 'EIO' }); }, fd, buf, 100, 0), /EIO/);
  });
});

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeEtag } from '../../src/http/conditional.js';
import { STAT_SLOTS, statFromSlots } from '../../src/http/file-stat.js';
import { loadAddon, type Native } from '../../src/native/binding.js';

describe('openBeneathStat: open and fstat in one call, read as fs.fstatSync reads them', () => {
  let tmp = '';
  let dir = -1;
  let addon: Native;

  before(() => {
    const loaded = loadAddon();
    if (loaded instanceof Error) throw loaded;
    addon = loaded;
    tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-file-stat-')));
    fs.mkdirSync(path.join(tmp, 'sub'));
    fs.writeFileSync(path.join(tmp, 'sub', 'f.bin'), Buffer.alloc(12345, 7));
    // A modification time with nanoseconds that do not fit a millisecond.
    fs.utimesSync(path.join(tmp, 'sub', 'f.bin'), 1_700_000_000.123456, 1_700_000_000.987654);
    fs.writeFileSync(path.join(tmp, 'outside-target'), 'x');
    fs.symlinkSync(path.join(tmp, 'outside-target'), path.join(tmp, 'sub', 'abs-link'));
    dir = fs.openSync(path.join(tmp, 'sub'), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  });

  after(() => {
    if (dir >= 0) fs.closeSync(dir);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('a file: size, mtimeMs (to the bit), inode, device, type and so the ETag are those of fs.fstatSync', () => {
    const slots = new Float64Array(STAT_SLOTS);
    const fd = addon.openBeneathStat!(dir, 'f.bin', slots);
    assert.ok(fd >= 0, `fd ${fd}`);
    try {
      const ours = statFromSlots(slots);
      const node = fs.fstatSync(fd);
      assert.deepEqual({ size: ours.size, mtimeMs: ours.mtimeMs, ino: ours.ino, dev: ours.dev }, { size: node.size, mtimeMs: node.mtimeMs, ino: node.ino, dev: node.dev });
      assert.equal(ours.isFile(), true);
      assert.equal(ours.isDirectory(), false);
      assert.equal(makeEtag(ours), makeEtag(node));
      // The slots are reused by the next call: what statFromSlots made is a copy.
      slots.fill(0);
      assert.equal(ours.size, 12345);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('a directory is one, not a file', () => {
    const slots = new Float64Array(STAT_SLOTS);
    const fd = addon.openBeneathStat!(dir, '.', slots);
    assert.ok(fd >= 0);
    fs.closeSync(fd);
    const ours = statFromSlots(slots);
    assert.equal(ours.isDirectory(), true);
    assert.equal(ours.isFile(), false);
  });

  it('refusals are -errno as openBeneath says them, and leave no descriptor open', () => {
    const slots = new Float64Array(STAT_SLOTS);
    const before = fs.readdirSync('/proc/self/fd').length;
    for (const name of ['../outside-target', 'abs-link', 'missing']) {
      const refused = addon.openBeneathStat!(dir, name, slots);
      assert.ok(refused < 0, `${name}: ${refused}`);
      assert.equal(refused, addon.openBeneath(dir, name), name);
    }
    assert.throws(() => addon.openBeneathStat!(dir, 'f.bin', new Float64Array(2)), /6 slots/);
    assert.equal(fs.readdirSync('/proc/self/fd').length, before);
  });
});

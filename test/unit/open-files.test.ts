/**
 * serve's descriptors kept between requests (src/http/open-files.ts), on real
 * files with the addon's openBeneathStat and statAt: a kept descriptor is
 * used only while the path names the same, unchanged file; every change a
 * deploy or an admin makes (rename over it, write in place, touch, chmod,
 * unlink, a symlink swapped in) makes the next request open it afresh, and
 * the stale descriptor is closed once no response reads it. Unused ones are
 * closed by the sweep, and at most `max` are kept.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isOpen } from '../support/descriptors.js';
import { FILE_SLOTS, OpenFiles } from '../../src/http/open-files.js';
import { statFromSlots } from '../../src/http/file-stat.js';
import { loadAddon, type Native } from '../../src/native/binding.js';

const addon = loadAddon();
const usable = !(addon instanceof Error) && typeof addon.statAt === 'function' && typeof addon.openBeneathStat === 'function';

let dir: string;
let dirFd: number;
before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'open-files-'));
  dirFd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
});
after(() => {
  fs.closeSync(dirFd);
  fs.rmSync(dir, { recursive: true, force: true });
});


const read = (fd: number): string => {
  const buf = Buffer.alloc(64);
  return buf.subarray(0, fs.readSync(fd, buf, 0, 64, 0)).toString();
};

/** What serve does per request: a kept descriptor if find() gives one, else openBeneathStat and keep(). */
function serveOnce(files: OpenFiles, a: Native, relative: string): { fd: number; fresh: boolean } {
  const found = files.find(relative);
  if (found !== undefined) return { fd: found.fd, fresh: false };
  const slots = new Float64Array(FILE_SLOTS);
  const fd = a.openBeneathStat!(dirFd, relative, slots);
  assert.ok(fd >= 0, `opened ${relative}: ${fd}`);
  files.keep(relative, fd, statFromSlots(slots), slots);
  return { fd, fresh: true };
}

/**
 * Both ways a kept descriptor is checked: statAt into the OpenFiles' own
 * slots, and statAtShared into the addon's one shared array (served-root.ts),
 * with the same outcome for every change.
 */
const checks: Array<[string, (a: Native, max: number) => OpenFiles]> = [
  ['statAt', (a, max) => new OpenFiles((relative, out) => a.statAt!(dirFd, relative, out), max)],
  ['statAtShared', (a, max) => new OpenFiles((relative) => a.statAtShared!(dirFd, relative), max, a.statSlots!())],
];
const sharedUsable = usable && typeof (addon as Native).statAtShared === 'function';
for (const [check, makeWith] of checks) describe(`OpenFiles, checked by ${check}`, { skip: (check === 'statAt' ? usable : sharedUsable) ? false : `the addon has no ${check} (older build)` }, () => {
  const a = addon as Native;
  const make = (max = 8): OpenFiles => makeWith(a, max);
  const write = (name: string, text: string): void => fs.writeFileSync(path.join(dir, name), text);

  test('an unchanged file: one open for many requests, the same descriptor each time', () => {
    write('a.txt', 'alpha');
    const files = make();
    const first = serveOnce(files, a, 'a.txt');
    files.release('a.txt', first.fd);
    for (let i = 0; i < 5; i++) {
      const again = serveOnce(files, a, 'a.txt');
      assert.equal(again.fresh, false);
      assert.equal(again.fd, first.fd);
      assert.equal(read(again.fd), 'alpha');
      files.release('a.txt', again.fd);
    }
    assert.equal(files.size, 1);
    assert.ok(isOpen(first.fd), 'kept open between requests');
  });

  // Each change a deploy or an admin makes: the next request opens the file afresh.
  const changes: Array<[string, (file: string) => void, string]> = [
    ['replaced by rename (an atomic deploy)', (file) => { fs.writeFileSync(`${file}.new`, 'BETA!'); fs.renameSync(`${file}.new`, file); }, 'BETA!'],
    ['written in place, longer', (file) => fs.appendFileSync(file, '++'), 'alpha++'],
    ['written in place, same length, mtime moved', (file) => { fs.writeFileSync(file, 'ALPHA'); fs.utimesSync(file, new Date(), new Date(Date.now() + 5000)); }, 'ALPHA'],
    ['chmod', (file) => fs.chmodSync(file, 0o600), 'alpha'],
    // rsync --inplace --times: the bytes change, the size and mtime are put back; only ctime tells.
    ['written in place with its mtime put back (only ctime moves)', (file) => {
      const before = fs.statSync(file, { bigint: true });
      fs.writeFileSync(file, 'ALPHA');
      fs.utimesSync(file, 1_700_000_000, 1_700_000_000);
      const after = fs.statSync(file, { bigint: true });
      assert.equal(after.mtimeNs, before.mtimeNs, 'the mtime is put back exactly');
      assert.equal(after.size, before.size);
      assert.notEqual(after.ctimeNs, before.ctimeNs, 'only ctime moves');
    }, 'ALPHA'],
  ];
  for (const [what, change, now] of changes) {
    test(`a file ${what}: opened afresh, the stale descriptor closed`, () => {
      write('c.txt', 'alpha');
      fs.chmodSync(path.join(dir, 'c.txt'), 0o644);
      // utimes takes seconds as a double, which cannot hold every nanosecond: a
      // whole second, so that a change can put the mtime back exactly.
      fs.utimesSync(path.join(dir, 'c.txt'), 1_700_000_000, 1_700_000_000);
      const files = make();
      const first = serveOnce(files, a, 'c.txt');
      files.release('c.txt', first.fd);
      // Past the kernel's coarse timestamp tick (a jiffy), so that ctime can move.
      const until = Date.now() + 20;
      while (Date.now() < until);
      change(path.join(dir, 'c.txt'));
      const next = serveOnce(files, a, 'c.txt');
      assert.equal(next.fresh, true, 'opened afresh');
      assert.equal(read(next.fd), now);
      files.release('c.txt', next.fd);
      assert.equal(isOpen(first.fd) && first.fd !== next.fd, false, 'the stale descriptor is closed');
      assert.equal(files.size, 1);
    });
  }

  test('an unlinked file: not found, its descriptor closed (its disk space comes back)', () => {
    write('u.txt', 'gone soon');
    const files = make();
    const first = serveOnce(files, a, 'u.txt');
    files.release('u.txt', first.fd);
    fs.unlinkSync(path.join(dir, 'u.txt'));
    assert.equal(files.find('u.txt'), undefined);
    assert.equal(isOpen(first.fd), false);
    assert.equal(files.size, 0);
  });

  test('a symlink swapped in for the file: not the kept descriptor (statAt does not follow it)', () => {
    // Each check's suite runs in the same directory: the link the one before left goes first.
    fs.rmSync(path.join(dir, 's.txt'), { force: true });
    write('s.txt', 'real');
    write('other.txt', 'other');
    const files = make();
    const first = serveOnce(files, a, 's.txt');
    files.release('s.txt', first.fd);
    fs.rmSync(path.join(dir, 's.txt'));
    fs.symlinkSync(path.join(dir, 'other.txt'), path.join(dir, 's.txt'));
    assert.equal(files.find('s.txt'), undefined);
    assert.equal(isOpen(first.fd), false);
  });

  test('a stale descriptor still read by a response stays open until that response is done', () => {
    write('r.txt', 'one');
    const files = make();
    const reading = serveOnce(files, a, 'r.txt'); // not released: a sendfile still reads it
    fs.writeFileSync(path.join(dir, 'r.txt.new'), 'two!');
    fs.renameSync(path.join(dir, 'r.txt.new'), path.join(dir, 'r.txt'));
    const next = serveOnce(files, a, 'r.txt');
    assert.equal(read(next.fd), 'two!');
    assert.ok(isOpen(reading.fd), 'still open for the response reading it');
    assert.equal(read(reading.fd), 'one');
    files.release('r.txt', reading.fd);
    assert.equal(isOpen(reading.fd) && reading.fd !== next.fd, false, 'closed once that response is done');
    files.release('r.txt', next.fd);
  });

  test('the sweep closes descriptors no request used since the sweep before, and only those', () => {
    write('idle.txt', 'idle');
    write('busy.txt', 'busy');
    const files = make();
    const idle = serveOnce(files, a, 'idle.txt');
    files.release('idle.txt', idle.fd);
    const busy = serveOnce(files, a, 'busy.txt');
    files.release('busy.txt', busy.fd);
    assert.equal(files.sweep(), 0, 'both used since the last sweep');
    files.release('busy.txt', serveOnce(files, a, 'busy.txt').fd);
    assert.equal(files.sweep(), 1);
    assert.equal(isOpen(idle.fd), false);
    assert.ok(isOpen(busy.fd));
    const inUse = serveOnce(files, a, 'busy.txt');
    files.sweep();
    files.sweep();
    assert.ok(isOpen(inUse.fd), 'never closed while a response reads it');
    files.release('busy.txt', inUse.fd);
  });

  test('at most max kept: the least recently used unused one makes room; with none unused, a descriptor is only lent', () => {
    for (const n of ['1', '2', '3']) write(`${n}.txt`, n);
    const files = make(2);
    const one = serveOnce(files, a, '1.txt');
    files.release('1.txt', one.fd);
    const two = serveOnce(files, a, '2.txt');
    files.release('2.txt', two.fd);
    const three = serveOnce(files, a, '3.txt');
    assert.equal(isOpen(one.fd) && one.fd !== three.fd, false, 'the least recently used went');
    assert.equal(files.size, 2);
    // 2 and 3 in use: a fourth request's own descriptor is not kept, and closed when it is done.
    const two2 = serveOnce(files, a, '2.txt');
    const own = serveOnce(files, a, '1.txt');
    assert.equal(files.size, 2);
    files.release('1.txt', own.fd);
    assert.equal(isOpen(own.fd) && own.fd !== two2.fd && own.fd !== three.fd, false, 'a descriptor not kept is closed on release');
    files.release('2.txt', two2.fd);
    files.release('3.txt', three.fd);
  });
});

describe('the addon\'s shared stat slots (statSlots, statAtShared)', { skip: sharedUsable ? false : 'the addon has no statAtShared (older build)' }, () => {
  const a = addon as Native;

  test('one array, the same on every call, filled as statAt fills its own', () => {
    fs.writeFileSync(path.join(dir, 'sh.txt'), 'shared');
    const slots = a.statSlots!();
    assert.equal(slots, a.statSlots!());
    assert.equal(slots.length, FILE_SLOTS);
    const own = new Float64Array(FILE_SLOTS);
    assert.equal(a.statAt!(dirFd, 'sh.txt', own), 0);
    assert.equal(a.statAtShared!(dirFd, 'sh.txt'), 0);
    assert.deepEqual([...slots], [...own]);
    assert.equal(a.statAtShared!(dirFd, 'no-such-file'), -os.constants.errno.ENOENT);
  });

  test('two roots checked through the same slots keep apart: a change under one misses there only', () => {
    const dir2 = fs.mkdtempSync(path.join(os.tmpdir(), 'open-files-2-'));
    const dir2Fd = fs.openSync(dir2, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      fs.writeFileSync(path.join(dir, 'same.txt'), 'one');
      fs.writeFileSync(path.join(dir2, 'same.txt'), 'two');
      const one = new OpenFiles((relative) => a.statAtShared!(dirFd, relative), 8, a.statSlots!());
      const two = new OpenFiles((relative) => a.statAtShared!(dir2Fd, relative), 8, a.statSlots!());
      const keep = (files: OpenFiles, root: number): number => {
        const slots = new Float64Array(FILE_SLOTS);
        const fd = a.openBeneathStat!(root, 'same.txt', slots);
        files.keep('same.txt', fd, statFromSlots(slots), slots);
        files.release('same.txt', fd);
        return fd;
      };
      const fd1 = keep(one, dirFd);
      const fd2 = keep(two, dir2Fd);
      fs.writeFileSync(path.join(dir2, 'same.new'), 'TWO!');
      fs.renameSync(path.join(dir2, 'same.new'), path.join(dir2, 'same.txt'));
      const found1 = one.find('same.txt');
      assert.equal(found1?.fd, fd1, 'unchanged under the first root: its kept descriptor');
      one.release('same.txt', fd1);
      assert.equal(two.find('same.txt'), undefined, 'replaced under the second: a miss');
      assert.equal(isOpen(fd2) && fd2 !== fd1, false);
      one.close();
      two.close();
    } finally {
      fs.closeSync(dir2Fd);
      fs.rmSync(dir2, { recursive: true, force: true });
    }
  });

  test('an OpenFiles given fewer slots than it compares is refused', () => {
    assert.throws(() => new OpenFiles(() => 0, 8, new Float64Array(6)), RangeError);
  });
});

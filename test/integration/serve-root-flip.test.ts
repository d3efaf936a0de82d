/**
 * `serve --root current`, with current a symlink a deploy flips from one
 * release to the next (ln -s then rename over it): the new release is served
 * within about a second, as nginx (which resolves root per request) serves
 * it at once; Aludel kept serving the old release until a reload. The old
 * release's descriptors (its directory's, its files kept open) close once
 * nothing serves it, and a flip to a path that is briefly gone keeps the
 * last root.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startAludel, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';

let fx: Fixtures;
let dir: string;
let p: Running;

function get(file: string, server = p): Promise<string> {
  return curl(['-s', '--cacert', fx.certFile, '--resolve', `localhost:${server.port}:127.0.0.1`, `https://localhost:${server.port}/${file}`]).then((r) => r.stdout.toString());
}

/** Where the server's descriptors point, those beneath `base`. */
function openBeneath(base: string, pid = p.child.pid): string[] {
  const out: string[] = [];
  for (const f of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const target = fs.readlinkSync(`/proc/${pid}/fd/${f}`);
      if (target === base || target.startsWith(`${base}/`)) out.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** Polls `file` until its body is `text`; the ms it took. */
async function servedWithin(file: string, text: string, ms: number, server = p): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if ((await get(file, server)) === text) return Date.now() - t0;
    if (Date.now() - t0 > ms) throw new Error(`/${file} was not ${JSON.stringify(text)} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function flip(to: string): void {
  fs.symlinkSync(to, path.join(dir, 'current.new'));
  fs.renameSync(path.join(dir, 'current.new'), path.join(dir, 'current'));
}

before(async () => {
  fx = await makeFixtures({});
  dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-flip-')));
  for (const [release, text] of [['r1', 'one'], ['r2', 'two!']] as const) {
    fs.mkdirSync(path.join(dir, release));
    fs.writeFileSync(path.join(dir, release, 'a.txt'), text);
  }
  fs.symlinkSync(path.join(dir, 'r1'), path.join(dir, 'current'));
  p = await startAludel(['serve', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--root', path.join(dir, 'current'), '--offload', 'userspace']);
});

after(async () => {
  await p?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
  fx?.cleanup();
});

test('a deploy flips the root symlink: the new release is served within about a second, the old one\'s descriptors close', { timeout: 30_000 }, async () => {
  assert.equal(await get('a.txt'), 'one');
  assert.equal(await get('a.txt'), 'one', 'again: now from a kept descriptor');
  assert.ok(openBeneath(path.join(dir, 'r1')).length > 0, 'the old release is open while served');
  const from = p.mark();
  flip(path.join(dir, 'r2'));
  const took = await servedWithin('a.txt', 'two!', 5000);
  assert.ok(took < 3000, `served within ${took} ms`);
  const line = await p.waitForLog((l) => l.msg === 'root now names another directory: serving it', 2000, from);
  assert.equal(line.now, path.join(dir, 'r2'));
  assert.equal(line.before, path.join(dir, 'r1'));
  assert.deepEqual(openBeneath(path.join(dir, 'r1')), [], 'nothing of the old release stays open');

  // The link gone for a moment (rm, then ln): the last root serves on meanwhile.
  fs.unlinkSync(path.join(dir, 'current'));
  await new Promise((r) => setTimeout(r, 1200));
  assert.equal(await get('a.txt'), 'two!');
  fs.symlinkSync(path.join(dir, 'r1'), path.join(dir, 'current'));
  await servedWithin('a.txt', 'one', 5000);
});

test('reloads, then flips: the generations a reload retired hold nothing of the old release (each held its directory and kept files for good)', { timeout: 30_000 }, async () => {
  const link = path.join(dir, 'reloaded');
  fs.symlinkSync(path.join(dir, 'r1'), link);
  const q = await startAludel(['serve', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--root', link, '--offload', 'userspace']);
  try {
    const r1 = path.join(dir, 'r1');
    for (let i = 0; i < 4; i++) {
      assert.equal(await get('a.txt', q), 'one');
      const from = q.mark();
      q.child.kill('SIGHUP');
      await q.waitForLog((l) => l.msg.startsWith('reloaded:'), 5000, from);
    }
    assert.equal(await get('a.txt', q), 'one');
    assert.ok(openBeneath(r1, q.child.pid!).length > 0, 'the release served is open');
    fs.symlinkSync(path.join(dir, 'r2'), `${link}.new`);
    fs.renameSync(`${link}.new`, link);
    await servedWithin('a.txt', 'two!', 5000, q);
    // The retired generations were drained (their connections were idle): nothing of r1 is left.
    assert.deepEqual(openBeneath(r1, q.child.pid!), [], 'nothing of the old release stays open');
    // And they no longer follow the link: a flip back is served by the current generation alone.
    fs.symlinkSync(r1, `${link}.new`);
    fs.renameSync(`${link}.new`, link);
    await servedWithin('a.txt', 'one', 5000, q);
    assert.deepEqual(openBeneath(path.join(dir, 'r2'), q.child.pid!), [], 'nothing of r2 stays open after the flip back');
  } finally {
    await q.stop();
  }
});

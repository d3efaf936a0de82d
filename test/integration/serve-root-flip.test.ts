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

function get(file: string): Promise<string> {
  return curl(['-s', '--cacert', fx.certFile, '--resolve', `localhost:${p.port}:127.0.0.1`, `https://localhost:${p.port}/${file}`]).then((r) => r.stdout.toString());
}

/** Where the server's descriptors point, those beneath `base`. */
function openBeneath(base: string): string[] {
  const out: string[] = [];
  for (const f of fs.readdirSync(`/proc/${p.child.pid}/fd`)) {
    try {
      const target = fs.readlinkSync(`/proc/${p.child.pid}/fd/${f}`);
      if (target === base || target.startsWith(`${base}/`)) out.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** Polls `file` until its body is `text`; the ms it took. */
async function servedWithin(file: string, text: string, ms: number): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if ((await get(file)) === text) return Date.now() - t0;
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

/**
 * The --cache directory: created 0700 (as nginx creates proxy_cache_path),
 * and refused when another user can write it, since whoever writes there
 * chooses what the cache serves. Found by testing: `--cache` on a directory
 * of mode 0777 (or /tmp itself) was used as it was.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { runCli, startAludel } from '../support/aludel-process.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';

let fx: Fixtures;
before(async () => {
  fx = await makeFixtures();
});
after(() => fx?.cleanup());

function proxyArgs(dir: string): string[] {
  return ['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', 'http://127.0.0.1:9', '--cache', dir];
}

test('a new cache directory and its levels are created 0700', async () => {
  const dir = path.join(fx.dir, 'new-cache', 'inner');
  const p = await startAludel(proxyArgs(dir));
  try {
    assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
    assert.equal(fs.statSync(path.join(dir, '0a')).mode & 0o777, 0o700);
  } finally {
    await p.stop();
  }
});

test('a cache directory, or one of its levels, writable by group or others is refused with the reason', async () => {
  for (const [name, writable] of [['top', ''], ['level', '7f']] as const) {
    const dir = path.join(fx.dir, `open-cache-${name}`);
    fs.mkdirSync(path.join(dir, '7f'), { recursive: true, mode: 0o700 });
    fs.chmodSync(path.join(dir, writable), 0o777);
    const r = await runCli(proxyArgs(dir));
    assert.equal(r.code, 2, `${name}: ${r.stdout} ${r.stderr}`);
    assert.match(r.stderr, /it is writable by its group or by others \(mode 777\); chmod go-w it: anyone who can write the cache directory can change what is served/, name);
    assert.ok(r.stderr.includes(path.join(dir, writable)), r.stderr);
  }
});

test('a cache directory owned by another user (not root) is refused', async () => {
  const dir = path.join(fx.dir, 'foreign-cache');
  fs.mkdirSync(dir, { mode: 0o700 });
  fs.chownSync(dir, 65534, 65534);
  const r = await runCli(proxyArgs(dir));
  assert.equal(r.code, 2, r.stdout);
  assert.match(r.stderr, /it belongs to user 65534, who can write it/);
});

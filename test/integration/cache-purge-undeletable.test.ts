/**
 * PURGE (and the admin listener's POST /purge) when the cache files cannot
 * be deleted (EROFS, EACCES). Purge is how an admin removes content (a
 * leaked file, a takedown): found by testing, it answered {"purged": 1}
 * though both files were still on disk (a warn line only), and a restart
 * served the response again. Now it answers 500 naming the files, logs at
 * error, and this process never serves the entry again.
 *
 * Making the directory unwritable: root ignores directory modes (unlink(2)
 * needs write permission on the directory, which CAP_DAC_OVERRIDE bypasses),
 * so as root (CI) the cache directory is bind-mounted read-only in the
 * aludel process's own mount namespace (unshare -m, then nsenter): unlink(2)
 * fails with EROFS there, and nothing outside that namespace changes. As
 * another user, chmod a-w of the entry's directory gives EACCES.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { startAludel, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { startSinkOrigin, type SinkOrigin } from '../support/origins.js';

let fx: Fixtures;
let sink: SinkOrigin;
const running: Running[] = [];
const ROOT = process.getuid?.() === 0;

before(async () => {
  fx = await makeFixtures();
  sink = await startSinkOrigin();
});
after(async () => {
  for (const p of running) await p.stop();
  await sink?.stop();
  // The chmod case: give the directories back their write bit so the fixtures can be removed.
  if (!ROOT) for (const d of fs.readdirSync(fx.dir, { recursive: true, withFileTypes: true })) if (d.isDirectory()) fs.chmodSync(path.join(d.parentPath, d.name), 0o700);
  fx?.cleanup();
});

function files(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => path.join(d.parentPath, d.name)).sort();
}

/** Makes `dir` (the whole cache directory) unwritable for the aludel process `p`, by the means described in the header. */
function makeUnwritable(p: Running, dir: string): void {
  if (ROOT) {
    const pid = String(p.child.pid);
    execFileSync('nsenter', ['-t', pid, '-m', 'mount', '--bind', dir, dir]);
    execFileSync('nsenter', ['-t', pid, '-m', 'mount', '-o', 'remount,bind,ro', dir, dir]);
  } else {
    for (const f of files(dir)) fs.chmodSync(path.dirname(f), 0o500);
  }
}

function makeWritable(p: Running, dir: string): void {
  if (ROOT) execFileSync('nsenter', ['-t', String(p.child.pid), '-m', 'umount', dir]);
  else for (const f of files(dir)) fs.chmodSync(path.dirname(f), 0o700);
}

async function status(p: Running, url: string, ...extra: string[]): Promise<{ code: string; body: string }> {
  const r = await curl(['--cacert', fx.certFile, '-sS', '-w', '\n%{http_code}', ...extra, `https://localhost:${p.port}${url}`]);
  const out = r.stdout.toString();
  const nl = out.lastIndexOf('\n');
  return { code: out.slice(nl + 1), body: out.slice(0, nl) };
}

test('a purge whose files cannot be deleted answers 500 with the error, logs at error, and the entry is never served again', async () => {
  const dir = path.join(fx.dir, 'cache');
  // Private mount propagation: the read-only bind mount stays in aludel's namespace.
  const prefix = ROOT ? ['unshare', '-m', '--propagation', 'private'] : [];
  const p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${sink.port}`, '--cache', dir, '--admin', '127.0.0.1:0'], { prefix });
  running.push(p);
  const adminAt = String((await p.waitForLog((l) => l.msg === 'admin listening')).admin);
  const urls = ['/cache?cc=max-age%3D600&undeletable=1', '/cache?cc=max-age%3D600&undeletable=2'];
  for (const url of urls) {
    const from = p.mark();
    assert.equal((await status(p, url)).code, '200');
    await p.waitForLog((l) => l.msg === 'request' && l.url === url, 10_000, from);
    assert.equal((await status(p, url, '-H', 'Cache-Control: only-if-cached')).code, '200', 'stored');
  }
  const before = files(dir);
  assert.equal(before.length, 4, before.join(' '));
  makeUnwritable(p, dir);

  // PURGE on the proxy's own port.
  let from = p.mark();
  const purge = await status(p, urls[0]!, '-X', 'PURGE');
  assert.equal(purge.code, '500', purge.body);
  const answer = JSON.parse(purge.body) as { key: string; purged: number; error: string; undeleted: Array<{ file: string; code: string }> };
  assert.equal(answer.key, `https://localhost:${p.port}${urls[0]}`);
  assert.match(answer.error, /could not be deleted/);
  const code = ROOT ? 'EROFS' : 'EACCES';
  assert.deepEqual(answer.undeleted.map((u) => [u.code, path.basename(u.file).replace(/^[^.]+/, '')]), [[code, '.meta.json'], [code, '.body']]);
  const line = await p.waitForLog((l) => l.msg.startsWith('cache purge'), 5000, from);
  assert.equal(line.level, 50, `an error-level line: ${JSON.stringify(line)}`);

  // POST /purge on the admin listener.
  from = p.mark();
  const full = `https://localhost:${p.port}${urls[1]}`;
  const admin = await curl(['-sS', '-w', '\n%{http_code}', '-X', 'POST', `http://${adminAt}/purge?url=${encodeURIComponent(full)}`]);
  const out = admin.stdout.toString();
  assert.equal(out.slice(out.lastIndexOf('\n') + 1), '500', out);
  const adminAnswer = JSON.parse(out.slice(0, out.lastIndexOf('\n'))) as { url: string; purged: number; undeleted: unknown[] };
  assert.equal(adminAnswer.url, full);
  assert.equal(adminAnswer.undeleted.length, 2);
  assert.equal((await p.waitForLog((l) => l.msg.startsWith('cache purge (admin)'), 5000, from)).level, 50);

  // Both files are still there, and neither response is served by this process.
  assert.deepEqual(files(dir), before);
  for (const url of urls) {
    const gone = await status(p, url, '-H', 'Cache-Control: only-if-cached');
    assert.equal(gone.code, '504', `${url}: not served from the cache after the purge`);
  }

  // The directory fixed, purging again deletes what the first purge could not (the entries are no longer in the index).
  makeWritable(p, dir);
  for (const url of urls) {
    const again = await status(p, url, '-X', 'PURGE');
    assert.equal(again.code, '200', again.body);
    assert.equal((JSON.parse(again.body) as { purged: number }).purged, 1);
  }
  assert.deepEqual(files(dir), []);
});

/**
 * --access-log FILE when the file fails (src/log/access-file.ts), as nginx
 * behaves: a full disk, a reopen that cannot open the file and a reader that
 * stopped never stop the server. Found by testing: a full disk left the
 * process answering nothing and deaf to SIGTERM; a failed reopen on SIGUSR1
 * ended it; a stalled FIFO reader grew its memory without bound.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli, serveArgs, startAludel, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { run } from '../support/run-process.js';
import { waitUntil } from '../support/wait.js';

let fx: StandardFixtures;
before(async () => {
  fx = await makeFixtures();
});
after(() => fx?.cleanup());

async function get(p: Running, userAgent = 'test'): Promise<number> {
  const r = await curl(['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '5', '-A', userAgent, '--cacert', fx.certFile, '--resolve', `localhost:${p.port}:127.0.0.1`, `https://localhost:${p.port}/${fx.files.one.name}`]);
  return Number(r.stdout.toString());
}

/** SIGTERM, and how long until the process exited (null: still running after `ms`). */
async function stopWithin(p: Running, ms: number): Promise<number | null> {
  const started = Date.now();
  p.child.kill('SIGTERM');
  const exited = await Promise.race([new Promise<boolean>((resolve) => p.child.once('exit', () => resolve(true))), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))]);
  return exited || p.child.exitCode !== null ? Date.now() - started : null;
}

describe('--access-log FILE fails', { timeout: 120_000 }, () => {
  test('a full disk: requests are still answered, one error line says why, SIGTERM still stops it; room again: lines come back, with the count dropped', async () => {
    // A 64 KiB tmpfs in a mount namespace of the server's own; its own request lines fill it.
    const dir = path.join(fx.outDir, 'full-disk');
    fs.mkdirSync(dir);
    const log = path.join(dir, 'access.log');
    const p = await startAludel(serveArgs(fx, '--access-log', log, '--access-log-format', 'combined'), {
      prefix: ['unshare', '-rm', 'sh', '-c', 'mount -t tmpfs -o size=64k,mode=0700 aludel-test "$0" && exec "$@"', dir],
    });
    try {
      const big = 'a'.repeat(4000);
      for (let i = 0; i < 30; i++) assert.equal(await get(p, big), 200, `request ${i}`);
      const failed = await p.waitForLog((l) => l.msg === 'access log write failed: request lines are dropped until the file can be written again', 10_000);
      assert.equal(failed.code, 'ENOSPC');
      for (let i = 0; i < 5; i++) assert.equal(await get(p), 200, 'still answering');
      // Room again (the server's view of the directory, through its own root), and the next try writes.
      fs.truncateSync(`/proc/${p.child.pid}/root${log}`, 0);
      const from = p.mark();
      for (let i = 0; i < 4; i++) {
        await new Promise((r) => setTimeout(r, 3_000));
        assert.equal(await get(p, `after-room-${i}`), 200);
      }
      const back = await p.waitForLog((l) => l.msg === 'access log written again', 10_000, from);
      assert.ok(Number(back.dropped) > 0, `lines dropped meanwhile are counted: ${JSON.stringify(back)}`);
      await waitUntil(() => fs.readFileSync(`/proc/${p.child.pid}/root${log}`, 'utf8').includes('after-room-'), 10_000);
      assert.notEqual(await stopWithin(p, 5_000), null, 'SIGTERM ends it');
    } finally {
      await p.stop();
    }
  });

  test('SIGUSR1 when the file cannot be opened again (its directory moved): it keeps writing to the file it had, and serving', async () => {
    const dir = path.join(fx.outDir, 'moving');
    fs.mkdirSync(dir);
    const log = path.join(dir, 'access.log');
    const p = await startAludel(serveArgs(fx, '--access-log', log, '--access-log-format', 'combined'));
    try {
      assert.equal(await get(p, 'before-move'), 200);
      fs.renameSync(dir, `${dir}.moved`);
      const from = p.mark();
      p.child.kill('SIGUSR1');
      const line = await p.waitForLog((l) => l.msg === 'access log not reopened: lines go on to the file it had', 5000, from);
      assert.equal(line.code, 'ENOENT');
      assert.equal(await get(p, 'after-failed-reopen'), 200);
      await waitUntil(() => fs.readFileSync(path.join(`${dir}.moved`, 'access.log'), 'utf8').includes('after-failed-reopen'), 5000);
      assert.equal(p.child.exitCode, null, 'still running');
    } finally {
      await p.stop();
    }
  });

  test('a FIFO whose reader stopped: lines past the queue are dropped and counted, not held in memory', async () => {
    const fifo = path.join(fx.outDir, 'access.fifo');
    await run('mkfifo', [fifo]);
    // The shipper: opens the FIFO and never reads (the pipe holds 64 KiB, then the server's queue fills).
    const reader = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    const p = await startAludel(serveArgs(fx, '--access-log', fifo));
    try {
      const ua = 'u'.repeat(4000);
      const h2 = await run('h2load', ['-n', '6000', '-c', '10', '-m', '10', '-H', `user-agent: ${ua}`, `https://127.0.0.1:${p.port}/${fx.files.one.name}`], { timeoutMs: 60_000 });
      assert.match(h2.stdout.toString(), /6000 succeeded/);
      const warn = await p.waitForLog((l) => l.msg === 'access log is not keeping up (a reader that stopped, a stalled disk): request lines dropped', 15_000);
      assert.equal(warn.queueMax, 16 * 1024 * 1024);
    } finally {
      fs.closeSync(reader);
      await p.stop();
    }
  });

  test('a path that cannot be written stops start-up with the reason (not a stack trace)', async () => {
    const r = await runCli(serveArgs(fx, '--access-log', path.join(fx.outDir, 'no-such-dir', 'access.log')));
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^aludel: --access-log \S+no-such-dir\/access\.log: ENOENT .*give a file this user can create or append to$/m);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });
});

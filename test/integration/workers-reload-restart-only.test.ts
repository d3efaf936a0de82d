/**
 * --workers 2 with --config, on the real CLI with curl: a reload (HUP) that
 * changes a restart-only setting (here the listen address, with the root)
 * applies what a reload can to every worker (the root) and keeps the
 * restart-only values as started ("these take effect only on a restart"),
 * and a worker restarted later (kill -9) starts the same way: the new root,
 * the address everyone listens on. It started from the primary's reloaded
 * text as it was, so it bound the new address alone, beside workers on the
 * old one, while nginx keeps listening where it listened and a reload
 * applies to all workers alike.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { accepts, freePort } from '../support/loopback-port.js';
import { waitUntil } from '../support/wait.js';

let fx: Fixtures<'small'>;
let dir: string;
let config: string;

before(async () => {
  fx = await makeFixtures({ small: { name: 'small.bin', size: 100 } });
  dir = fs.mkdtempSync(path.join(fx.outDir, 'restart-only-'));
  for (const name of ['a', 'b']) {
    fs.mkdirSync(path.join(dir, name));
    fs.writeFileSync(path.join(dir, name, 'who.txt'), name.toUpperCase());
  }
  config = path.join(dir, 'aludel.yaml');
});
after(() => fx?.cleanup());

/** Kills one worker with -9 and waits for its replacement to be ready: its 'worker listening' line. */
async function respawn(p: Running, victim: number): Promise<LogLine> {
  const mark = p.mark();
  process.kill(victim, 'SIGKILL');
  const died = await p.waitForLog((l) => l.workerPid === victim && l.signal === 'SIGKILL', 10_000, mark);
  const back = await p.waitForLog((l) => l.msg === 'worker ready' && l.worker === died.worker, 20_000, mark);
  const listening = p.logs.slice(mark).find((l) => l.msg === 'worker listening' && l.pid === back.workerPid);
  assert.ok(listening, 'the replacement said where it listens');
  return listening;
}

/** One connection per request until `pid` answered one and there were 8: the bodies seen. */
async function bodies(p: Running, port: number, pid: number): Promise<Set<string>> {
  const seen = new Set<string>();
  let byPid = false;
  for (let i = 0; i < 80 && (i < 8 || !byPid); i++) {
    const mark = p.mark();
    const r = await curl(['--cacert', fx.certFile, `https://localhost:${port}/who.txt`]);
    assert.equal(r.code, 0, r.stderr);
    await waitUntil(() => p.logs.slice(mark).some((l: LogLine) => l.msg === 'TLS established'), 5_000);
    if (p.logs.slice(mark).find((l) => l.msg === 'TLS established')!.pid === pid) byPid = true;
    seen.add(r.stdout.toString());
  }
  assert.ok(byPid, `worker ${pid} answered none of the requests`);
  return seen;
}

describe('--workers: a reload that changes a restart-only setting', () => {
  test('the listen address stays as started for every worker, a restarted one too; the rest of the reload applies to all', { timeout: 120_000 }, async () => {
    const logA = path.join(dir, 'access-a.log');
    const logB = path.join(dir, 'access-b.log');
    fs.writeFileSync(config, `listen: 127.0.0.1:0\nroot: a\naccess-log: ${logA}\n`);
    const p = await startAludel(['serve', '--cert', fx.certFile, '--key', fx.keyFile, '--config', config, '--workers', '2']);
    try {
      const pids = (await p.waitForLog((l) => Array.isArray(l.workerPids))).workerPids as number[];
      const started = `127.0.0.1:${p.port}`;
      const moved = await freePort();
      // One address more (the worker gets the primary's socket for the first, by position), another access log.
      fs.writeFileSync(config, `listen: [127.0.0.1:0, 127.0.0.1:${moved}]\nroot: b\naccess-log: ${logB}\n`);
      const from = p.mark();
      p.child.kill('SIGHUP');
      await waitUntil(() => new Set(p.logs.slice(from).filter((l) => String(l.msg).startsWith('reloaded:')).map((l) => l.pid)).size === 2, 20_000);
      const kept = p.logs.slice(from).filter((l) => String(l.msg).includes('take effect only on a restart'));
      // Said once, by the primary, not once per worker.
      assert.ok(kept.length === 1 && kept[0]!.pid === p.child.pid && ['listen', 'accessLog'].every((k) => (kept[0]!.settings as string[]).includes(k)), JSON.stringify(kept));

      const fresh = await respawn(p, pids[0]!);
      assert.deepEqual([fresh.listen, fresh.addresses], [started, [started]], 'the restarted worker listens where the others do');
      assert.equal(await accepts(moved), false, 'nobody listens on the address only a restart would move to');
      assert.deepEqual([...await bodies(p, p.port, fresh.pid as number)], ['B'], 'every worker, the restarted one too, serves the reloaded root');
      await waitUntil(() => fs.readFileSync(logA, 'utf8').includes(`"pid":${fresh.pid as number}`), 5_000).catch(() => undefined);
      assert.ok(fs.readFileSync(logA, 'utf8').includes(`"pid":${fresh.pid as number}`), 'the restarted worker logs where the others do');
      assert.equal(fs.existsSync(logB), false, 'no worker opened the access log only a restart would switch to');

      // A reload with the file unchanged keeps it so: nothing moves.
      const again = p.mark();
      p.child.kill('SIGHUP');
      await waitUntil(() => new Set(p.logs.slice(again).filter((l) => String(l.msg).startsWith('reloaded:')).map((l) => l.pid)).size === 2, 20_000);
      assert.equal(await accepts(moved), false);
      assert.deepEqual([...await bodies(p, p.port, fresh.pid as number)], ['B']);
    } finally {
      await p.stop();
    }
  });

  test('aludel proxy --cache: a reload that names another cache directory leaves every worker, a restarted one too, on the one it started with', { timeout: 120_000 }, async () => {
    const origin = http.createServer((req, res) => res.writeHead(200, { 'Cache-Control': 'max-age=60', 'Content-Length': 2 }).end('ok'));
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    const to = `http://127.0.0.1:${(origin.address() as { port: number }).port}`;
    const cacheA = path.join(dir, 'cache-a');
    const cacheB = path.join(dir, 'cache-b');
    const proxyConfig = path.join(dir, 'proxy.yaml');
    fs.writeFileSync(proxyConfig, `listen: 127.0.0.1:0\nto: ${to}\ncache: ${cacheA}\n`);
    const p = await startAludel(['proxy', '--cert', fx.certFile, '--key', fx.keyFile, '--config', proxyConfig, '--workers', '2']);
    try {
      const pids = (await p.waitForLog((l) => Array.isArray(l.workerPids))).workerPids as number[];
      const started = `127.0.0.1:${p.port}`;
      fs.writeFileSync(proxyConfig, `listen: 127.0.0.1:0\nto: ${to}\ncache: ${cacheB}\n`);
      const from = p.mark();
      p.child.kill('SIGHUP');
      await waitUntil(() => new Set(p.logs.slice(from).filter((l) => String(l.msg).startsWith('reloaded:')).map((l) => l.pid)).size === 2, 20_000);
      assert.ok(p.logs.slice(from).some((l) => String(l.msg).includes('take effect only on a restart') && (l.settings as string[]).includes('cache')));
      const fresh = await respawn(p, pids[0]!);
      assert.equal(fresh.listen, started);
      assert.deepEqual([...await bodies(p, p.port, fresh.pid as number)], ['ok']);
      assert.equal(fs.existsSync(cacheB), false, 'no worker opened the cache directory only a restart would switch to');
    } finally {
      await p.stop();
      await new Promise((r) => origin.close(r));
    }
  });
});

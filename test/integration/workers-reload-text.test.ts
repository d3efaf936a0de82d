/**
 * --workers 2 with --config: a reload (HUP) applies, in every worker, the
 * text the primary read and checked, not the file as it is when a worker
 * gets to it. As nginx's workers take the configuration their master parsed,
 * an edit made after the primary's check (here: a key that is not the
 * certificate's, while both workers are stopped with SIGSTOP) reaches no
 * worker until the next reload, and the primary's copy (from which it
 * restarts a worker) and the running workers agree. The same for the
 * certificate and key files: a pair replaced after the check reaches no
 * worker; every worker serves the pair the primary read. A HUP sent to a worker
 * itself is ignored there, and said so: the reload is the primary's.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli, startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { waitUntil } from '../support/wait.js';

let fx: Fixtures<'small'>;
let dir: string;
let otherKey: string;
/** A second pair, and a third one whose key is the mismatch. */
let second: { certFile: string; keyFile: string };

before(async () => {
  fx = await makeFixtures({ small: { name: 'small.bin', size: 100 } });
  dir = fs.mkdtempSync(path.join(fx.outDir, 'reload-text-'));
  const r = await runCli(['cert', '--out', path.join(dir, 'other')]);
  assert.equal(r.code, 0, r.stderr);
  otherKey = path.join(dir, 'other', 'key.pem');
  const r2 = await runCli(['cert', '--out', path.join(dir, 'second')]);
  assert.equal(r2.code, 0, r2.stderr);
  second = { certFile: path.join(dir, 'second', 'cert.pem'), keyFile: path.join(dir, 'second', 'key.pem') };
  for (const name of ['old', 'new']) {
    fs.mkdirSync(path.join(dir, name));
    fs.writeFileSync(path.join(dir, name, 'which.txt'), name);
  }
});
after(() => fx?.cleanup());

/** As an editor that saves by rename: a reader sees the old file or the new one, never a half-written one. */
function save(file: string, text: string): void {
  fs.writeFileSync(`${file}.tmp`, text);
  fs.renameSync(`${file}.tmp`, file);
}

const FAILED = 'reload failed: still serving with the previous settings and certificates';
const IGNORED = 'SIGHUP ignored by a worker: send it to the primary (primaryPid), which checks the settings and reloads every worker with them';

/** One connection per request until every worker in `pids` answered one (each verified with `cacert`): what each served for /which.txt. */
async function answersByWorker(p: Running, port: number, pids: readonly number[], cacert = fx.certFile): Promise<Map<number, string>> {
  const seen = new Map<number, string>();
  for (let i = 0; i < 80 && seen.size < pids.length; i++) {
    const mark = p.mark();
    const r = await curl(['--cacert', cacert, `https://localhost:${port}/which.txt`]);
    assert.equal(r.code, 0, `--cacert ${path.basename(path.dirname(cacert))}: ${r.stderr}`);
    await waitUntil(() => p.logs.slice(mark).some((l: LogLine) => l.msg === 'TLS established'), 5_000);
    seen.set(p.logs.slice(mark).find((l) => l.msg === 'TLS established')!.pid as number, r.stdout.toString());
  }
  assert.deepEqual([...seen.keys()].sort(), [...pids].sort(), 'every worker answered');
  return seen;
}

describe('--workers 2 --config: a reload applies the text the primary checked', () => {
  test('an edit made after the primary checked the file reaches no worker; both serve the checked root', { timeout: 120_000 }, async () => {
    const config = path.join(dir, 'aludel.yaml');
    const setup = (root: string, key: string) => `listen: 127.0.0.1:0\nworkers: 2\ncert: ${fx.certFile}\nkey: ${key}\nroot: ${path.join(dir, root)}\n`;
    fs.writeFileSync(config, setup('old', fx.keyFile));
    const p = await startAludel(['serve', '--config', config], { workers: null });
    const stopped: number[] = [];
    try {
      const ready = await p.waitForLog((l) => Array.isArray(l.workerPids));
      const pids = ready.workerPids as number[];
      assert.equal(pids.length, 2);
      for (const v of (await answersByWorker(p, p.port, pids)).values()) assert.equal(v, 'old');

      // Both workers stopped: whatever they do on the HUP, they do it after the next edit.
      for (const pid of pids) {
        process.kill(pid, 'SIGSTOP');
        stopped.push(pid);
      }
      const from = p.mark();
      save(config, setup('new', fx.keyFile));
      p.child.kill('SIGHUP');
      await p.waitForLog((l) => l.pid === p.child.pid && (l.msg === FAILED || String(l.msg).startsWith('reload: passing')), 20_000, from);
      assert.ok(!p.logs.slice(from).some((l) => l.msg === FAILED), 'the primary loaded the new root');
      // After the primary's check: a key that is not the certificate's.
      save(config, setup('new', otherKey));
      for (const pid of stopped.splice(0)) process.kill(pid, 'SIGCONT');

      await waitUntil(() => new Set(p.logs.slice(from).filter((l) => pids.includes(l.pid as number) && (l.msg === FAILED || String(l.msg).startsWith('reloaded:'))).map((l) => l.pid)).size === 2, 20_000);
      const failed = p.logs.slice(from).filter((l) => l.msg === FAILED);
      assert.deepEqual(failed, [], 'no worker read the edit the primary never checked');
      for (const [pid, v] of await answersByWorker(p, p.port, pids)) assert.equal(v, 'new', `worker ${pid} serves the root the primary checked`);
    } finally {
      for (const pid of stopped) process.kill(pid, 'SIGCONT');
      await p.stop();
    }
  });

  test('a HUP sent to a worker itself is ignored and logged; the edit applies when the primary reloads', { timeout: 120_000 }, async () => {
    const config = path.join(dir, 'direct.yaml');
    const setup = (root: string) => `listen: 127.0.0.1:0\nworkers: 2\ncert: ${fx.certFile}\nkey: ${fx.keyFile}\nroot: ${path.join(dir, root)}\n`;
    fs.writeFileSync(config, setup('old'));
    const p = await startAludel(['serve', '--config', config], { workers: null });
    try {
      const ready = await p.waitForLog((l) => Array.isArray(l.workerPids));
      const pids = ready.workerPids as number[];
      save(config, setup('new'));
      const from = p.mark();
      process.kill(pids[0]!, 'SIGHUP');
      const said = await p.waitForLog((l) => l.pid === pids[0] && l.msg === IGNORED, 10_000, from);
      assert.equal(said.primaryPid, p.child.pid);
      for (const [pid, v] of await answersByWorker(p, p.port, pids)) assert.equal(v, 'old', `worker ${pid} still serves what the primary checked`);
      assert.ok(!p.logs.slice(from).some((l) => String(l.msg).startsWith('reloaded:')), 'no worker reloaded');

      p.child.kill('SIGHUP');
      await waitUntil(() => new Set(p.logs.slice(from).filter((l) => String(l.msg).startsWith('reloaded:')).map((l) => l.pid)).size === 2, 20_000);
      for (const [pid, v] of await answersByWorker(p, p.port, pids)) assert.equal(v, 'new', `worker ${pid} serves the reloaded root`);
    } finally {
      await p.stop();
    }
  });

  test('a key replaced after the primary checked the pair reaches no worker; both serve the pair the primary read', { timeout: 120_000 }, async () => {
    const live = path.join(dir, 'live');
    fs.mkdirSync(live);
    const install = (from: string, name: 'cert.pem' | 'key.pem'): void => save(path.join(live, name), fs.readFileSync(from, 'utf8'));
    install(fx.certFile, 'cert.pem');
    install(fx.keyFile, 'key.pem');
    const config = path.join(dir, 'files.yaml');
    fs.writeFileSync(config, `listen: 127.0.0.1:0\nworkers: 2\ncert: ${path.join(live, 'cert.pem')}\nkey: ${path.join(live, 'key.pem')}\nroot: ${path.join(dir, 'old')}\n`);
    const p = await startAludel(['serve', '--config', config], { workers: null });
    const stopped: number[] = [];
    try {
      const ready = await p.waitForLog((l) => Array.isArray(l.workerPids));
      const pids = ready.workerPids as number[];
      for (const pid of pids) {
        process.kill(pid, 'SIGSTOP');
        stopped.push(pid);
      }
      const from = p.mark();
      install(second.certFile, 'cert.pem');
      install(second.keyFile, 'key.pem');
      p.child.kill('SIGHUP');
      await p.waitForLog((l) => l.pid === p.child.pid && (l.msg === FAILED || String(l.msg).startsWith('reload: passing')), 20_000, from);
      assert.ok(!p.logs.slice(from).some((l) => l.msg === FAILED), 'the primary loaded the second pair');
      // After the primary's check: a key that is not the certificate's.
      install(otherKey, 'key.pem');
      for (const pid of stopped.splice(0)) process.kill(pid, 'SIGCONT');

      await waitUntil(() => new Set(p.logs.slice(from).filter((l) => pids.includes(l.pid as number) && (l.msg === FAILED || String(l.msg).startsWith('reloaded:'))).map((l) => l.pid)).size === 2, 20_000);
      assert.deepEqual(p.logs.slice(from).filter((l) => l.msg === FAILED), [], 'no worker read the key the primary never checked');
      await answersByWorker(p, p.port, pids, second.certFile);
    } finally {
      for (const pid of stopped) process.kill(pid, 'SIGCONT');
      await p.stop();
    }
  });
});

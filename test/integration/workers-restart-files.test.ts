/**
 * --workers 2: a worker the primary restarts starts from the certificate,
 * key and --ticket-keys bytes of the last load that succeeded, held by the
 * primary (held-files.ts), not from the files as they are on disk when it
 * starts. nginx's master reads them at each (re)load and a respawned worker
 * inherits them; read by path, a certificate half-written or a key file
 * deleted meanwhile kept every restarted worker from starting (exit 2, then
 * again for ever with the backoff), and with all of them down the primary
 * still held the listening socket: clients waited in the accept queue for
 * an answer that never came.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { fingerprint, presented, rotatingCert } from '../support/sni-certs.js';
import { waitUntil } from '../support/wait.js';

const FILES = { small: { name: 'small.bin', size: 1000 } };
let fx: Fixtures<keyof typeof FILES>;

before(async () => {
  fx = await makeFixtures(FILES);
});
after(() => fx?.cleanup());

async function workerPids(p: Running): Promise<number[]> {
  return (await p.waitForLog((l) => Array.isArray(l.workerPids))).workerPids as number[];
}

/** The pids of the workers that are ready now: the last 'worker ready' of each index. */
function readyPids(p: Running, from: number): Map<number, number> {
  const ready = new Map<number, number>();
  for (const l of p.logs.slice(from) as LogLine[]) if (l.msg === 'worker ready') ready.set(l.worker as number, l.workerPid as number);
  return ready;
}

/** kill -9 of every worker; resolves once both have been restarted and are ready. */
async function killAllWorkers(p: Running, pids: number[]): Promise<number[]> {
  const mark = p.mark();
  for (const pid of pids) process.kill(pid, 'SIGKILL');
  await waitUntil(() => readyPids(p, mark).size === pids.length, 30_000).catch(() => {
    const why = p.logs.slice(mark).filter((l) => l.level >= 50).map((l) => l.msg);
    assert.fail(`the restarted workers did not become ready: ${JSON.stringify(why.slice(0, 4))}`);
  });
  return [...readyPids(p, mark).values()];
}

function breakFiles(files: string[]): void {
  for (const f of files) fs.writeFileSync(f, 'half-written\n');
}

describe('--workers 2: a restarted worker starts from the files the primary last loaded', () => {
  test('certificate, key and ticket key file broken on disk, every worker killed: the replacements start and serve the last loaded certificate', { timeout: 120_000 }, async () => {
    const dir = fs.mkdtempSync(path.join(fx.outDir, 'held-'));
    const { live, old, next, install } = await rotatingCert(dir);
    const ticketKey = path.join(dir, 'ticket.key');
    fs.writeFileSync(ticketKey, crypto.randomBytes(80), { mode: 0o600 });
    const p = await startAludel(['serve', '--listen', '127.0.0.1:0', '--cert', live.certFile, '--key', live.keyFile, '--ticket-keys', ticketKey, '--root', fx.root, '--workers', '2']);
    try {
      let pids = await workerPids(p);
      const url = `https://localhost:${p.port}/${FILES.small.name}`;

      breakFiles([live.certFile, live.keyFile]);
      fs.unlinkSync(ticketKey);
      let mark = p.mark();
      pids = await killAllWorkers(p, pids);
      assert.equal(p.logs.slice(mark).filter((l) => /exited with status/.test(l.msg)).length, 0, 'no restart failed');
      assert.equal((await presented(p.port, 'localhost')).leaf.fingerprint256, fingerprint(old.certFile), 'the certificate loaded at start');
      const r = await curl(['--cacert', old.certFile, url]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha256(r.stdout), fx.files.small.sha256);

      // A HUP that loads is what the next restart starts from; one that does not load changes nothing.
      install(next);
      fs.writeFileSync(ticketKey, crypto.randomBytes(80), { mode: 0o600 });
      mark = p.mark();
      p.child.kill('SIGHUP');
      await waitUntil(() => p.logs.slice(mark).filter((l) => String(l.msg).startsWith('reloaded:')).length === 2, 20_000);
      breakFiles([live.certFile, ticketKey]);
      mark = p.mark();
      p.child.kill('SIGHUP');
      // Checked by the primary, which says it once and tells no worker (workers-reload-mistakes.test.ts).
      await waitUntil(() => p.logs.slice(mark).filter((l) => l.pid === p.child.pid && String(l.msg).startsWith('reload failed')).length === 1, 20_000);
      pids = await killAllWorkers(p, pids);
      assert.equal((await presented(p.port, 'localhost')).leaf.fingerprint256, fingerprint(next.certFile), 'the certificate of the last reload that loaded');
      const again = await curl(['--cacert', next.certFile, url]);
      assert.equal(again.code, 0, again.stderr);
    } finally {
      await p.stop();
    }
  });
});

/**
 * --workers 2 with --config: an admin's reload (HUP) mistakes, on the real
 * CLI with curl. As nginx's master checks a reloaded configuration before any
 * worker sees it, each mistake is one line, from the primary, and every worker
 * keeps serving the previous setup: a file that is not YAML, a certificate
 * and key that do not match, a listener removed (restart-only: it keeps
 * listening). A file changed to another, valid certificate reaches every worker.
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
let other: { certFile: string; keyFile: string };

before(async () => {
  fx = await makeFixtures({ small: { name: 'small.bin', size: 100 } });
  dir = fs.mkdtempSync(path.join(fx.outDir, 'reload-mistakes-'));
  const r = await runCli(['cert', '--out', path.join(dir, 'other')]);
  assert.equal(r.code, 0, r.stderr);
  other = { certFile: path.join(dir, 'other', 'cert.pem'), keyFile: path.join(dir, 'other', 'key.pem') };
});
after(() => fx?.cleanup());

/** As an editor that saves by rename: a reader sees the old file or the new one, never a half-written one. */
function save(file: string, text: string): void {
  fs.writeFileSync(`${file}.tmp`, text);
  fs.renameSync(`${file}.tmp`, file);
}

const FAILED = 'reload failed: still serving with the previous settings and certificates';

/** HUP, then a good reload after it (the workers take HUPs in order): the lines logged until both workers reloaded the good one. */
async function hupThenGood(p: Running, config: string, bad: string, good: string): Promise<LogLine[]> {
  const from = p.mark();
  save(config, bad);
  p.child.kill('SIGHUP');
  // Done with it: the primary refused it, or passed it on and both workers answered (reloaded, or failed).
  await waitUntil(() => {
    const lines = p.logs.slice(from);
    const primary = lines.filter((l) => l.pid === p.child.pid);
    if (primary.some((l) => l.msg === FAILED)) return true;
    const answered = new Set(lines.filter((l) => l.pid !== p.child.pid && (l.msg === FAILED || String(l.msg).startsWith('reloaded:'))).map((l) => l.pid));
    return primary.some((l) => l.msg === 'reload: passing the checked settings to every worker') && answered.size === 2;
  }, 20_000);
  const second = p.mark();
  save(config, good);
  p.child.kill('SIGHUP');
  await waitUntil(() => new Set(p.logs.slice(second).filter((l) => String(l.msg).startsWith('reloaded:')).map((l) => l.pid)).size === 2, 20_000);
  return p.logs.slice(from);
}

/** One connection per request until every worker in `pids` answered one: each with `cacert`, which must verify. */
async function everyWorkerServes(p: Running, port: number, pids: readonly number[], cacert: string): Promise<void> {
  const seen = new Set<number>();
  for (let i = 0; i < 80 && seen.size < pids.length; i++) {
    const mark = p.mark();
    const r = await curl(['--cacert', cacert, `https://localhost:${port}/small.bin`]);
    assert.equal(r.code, 0, `port ${port}, --cacert ${path.basename(path.dirname(cacert))}: ${r.stderr}`);
    await waitUntil(() => p.logs.slice(mark).some((l: LogLine) => l.msg === 'TLS established'), 5_000);
    seen.add(p.logs.slice(mark).find((l) => l.msg === 'TLS established')!.pid as number);
  }
  assert.equal(seen.size, pids.length, `workers that answered: ${[...seen].join(', ')} of ${pids.join(', ')}`);
}

describe('--workers 2 --config: reload mistakes', () => {
  test('a broken file, a key that is not the certificate\'s, a removed listener: one line each, from the primary; the previous setup serves', { timeout: 180_000 }, async () => {
    const config = path.join(dir, 'aludel.yaml');
    const setup = (cert: string, key: string, listen = '[127.0.0.1:0, 127.0.0.1:0]') => `listen: ${listen}\ncert: ${cert}\nkey: ${key}\nroot: ${fx.root}\n`;
    const good = setup(fx.certFile, fx.keyFile);
    fs.writeFileSync(config, good);
    const p = await startAludel(['serve', '--config', config, '--workers', '2']);
    try {
      const ready = await p.waitForLog((l) => Array.isArray(l.workerPids));
      const pids = ready.workerPids as number[];
      const ports = (ready.addresses as string[]).map((a) => Number(a.slice(a.lastIndexOf(':') + 1)));
      const mistakes: Array<[string, string, (l: LogLine) => boolean]> = [
        ['not YAML', `${good}listen: [\n`, (l) => l.msg === FAILED && /not valid YAML/.test(String(l.detail))],
        ['a key that is not the certificate\'s', setup(fx.certFile, other.keyFile), (l) => l.msg === FAILED && /does not match --cert/.test(String(l.detail))],
        ['a removed listener', setup(fx.certFile, fx.keyFile, '127.0.0.1:0'), (l) => String(l.msg).includes('take effect only on a restart') && (l.settings as string[]).includes('listen')],
      ];
      for (const [what, bad, expected] of mistakes) {
        const lines = await hupThenGood(p, config, bad, good);
        const said = lines.filter((l) => l.level >= 40 && l.msg !== 'connection reset by peer');
        assert.equal(said.length, 1, `${what}: ${JSON.stringify(said)}`);
        assert.ok(expected(said[0]!), `${what}: ${JSON.stringify(said[0])}`);
        assert.equal(said[0]!.pid, p.child.pid, `${what}: said by the primary`);
        for (const port of ports) await everyWorkerServes(p, port, pids, fx.certFile);
      }

      // A valid change: every worker, on every address, serves the other certificate.
      const from = p.mark();
      save(config, setup(other.certFile, other.keyFile));
      p.child.kill('SIGHUP');
      await waitUntil(() => new Set(p.logs.slice(from).filter((l) => String(l.msg).startsWith('reloaded:')).map((l) => l.pid)).size === 2, 20_000);
      for (const port of ports) await everyWorkerServes(p, port, pids, other.certFile);
    } finally {
      await p.stop();
    }
  });
});

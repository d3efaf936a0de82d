/**
 * --workers 2, `aludel proxy` to an https:// upstream verified with
 * --upstream-ca: the CA bundle a worker trusts is the one the primary read
 * and checked (at start, at the last HUP that loaded), held like the
 * certificate, key and ticket key files (held-files.ts), never the file as
 * it is when a worker gets to it. nginx reads proxy_ssl_trusted_certificate
 * when its master loads the configuration, and its workers (restarted ones
 * too) verify with that. Read by path, a bundle replaced after the
 * primary's check reached the reloading workers unchecked, and a worker
 * restarted after such an edit trusted other CAs than the running ones:
 * here, one that does not sign the upstream, and every request it took got
 * 502.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { runCli, startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { waitUntil } from '../support/wait.js';

let fx: Fixtures;
let dir: string;
/** The upstream's self-signed certificate (its own CA), and one that signs nothing the upstream shows. */
let upstreamCert: string;
let otherCert: string;
let origin: https.Server;
let originPort: number;

before(async () => {
  fx = await makeFixtures({});
  dir = fs.mkdtempSync(path.join(fx.outDir, 'upstream-ca-'));
  for (const name of ['upstream', 'other']) {
    const r = await runCli(['cert', '--out', path.join(dir, name)]);
    assert.equal(r.code, 0, r.stderr);
  }
  upstreamCert = path.join(dir, 'upstream', 'cert.pem');
  otherCert = path.join(dir, 'other', 'cert.pem');
  origin = https.createServer({ cert: fs.readFileSync(upstreamCert), key: fs.readFileSync(path.join(dir, 'upstream', 'key.pem')) }, (_req, res) => res.end('from the upstream'));
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
  originPort = (origin.address() as AddressInfo).port;
});
after(async () => {
  origin?.closeAllConnections();
  await new Promise((resolve) => origin?.close(resolve));
  fx?.cleanup();
});

/** As an editor that saves by rename: a reader sees the old file or the new one. */
function install(from: string, to: string): void {
  fs.writeFileSync(`${to}.tmp`, fs.readFileSync(from));
  fs.renameSync(`${to}.tmp`, to);
}

const FAILED = 'reload failed: still serving with the previous settings and certificates';

/** One connection per request until every worker in `pids` answered one: each one's status and body. */
async function answersByWorker(p: Running, pids: readonly number[]): Promise<Map<number, string>> {
  const seen = new Map<number, string>();
  for (let i = 0; i < 80 && seen.size < pids.length; i++) {
    const mark = p.mark();
    const r = await curl(['--cacert', fx.certFile, '-s', '-w', ' %{http_code}', `https://localhost:${p.port}/`]);
    assert.equal(r.code, 0, r.stderr);
    await waitUntil(() => p.logs.slice(mark).some((l: LogLine) => l.msg === 'TLS established'), 5_000);
    seen.set(p.logs.slice(mark).find((l) => l.msg === 'TLS established')!.pid as number, r.stdout.toString());
  }
  assert.deepEqual([...seen.keys()].sort(), [...pids].sort(), 'every worker answered');
  return seen;
}

async function startProxy(name: string, pair = { certFile: fx.certFile, keyFile: fx.keyFile }, bundle = upstreamCert): Promise<{ p: Running; pids: number[]; ca: string }> {
  const ca = path.join(dir, `${name}-ca.pem`);
  install(bundle, ca);
  const config = path.join(dir, `${name}.yaml`);
  fs.writeFileSync(config, [
    'listen: 127.0.0.1:0', 'workers: 2', `cert: ${pair.certFile}`, `key: ${pair.keyFile}`,
    `to: https://127.0.0.1:${originPort}`, 'upstream-servername: localhost', `upstream-ca: ${ca}`, '',
  ].join('\n'));
  const p = await startAludel(['proxy', '--config', config], { workers: null });
  const pids = (await p.waitForLog((l) => Array.isArray(l.workerPids))).workerPids as number[];
  assert.equal(pids.length, 2);
  for (const [pid, v] of await answersByWorker(p, pids)) assert.equal(v, 'from the upstream 200', `worker ${pid} at start`);
  return { p, pids, ca };
}

describe('--workers 2: the --upstream-ca bundle the workers trust is the one the primary checked', () => {
  test('a bundle replaced after the primary checked a reload reaches no worker; both verify with the checked one', { timeout: 120_000 }, async () => {
    const { p, pids, ca } = await startProxy('reload');
    const stopped: number[] = [];
    try {
      // Both workers stopped: whatever they do on the HUP, they do it after the next edit.
      for (const pid of pids) {
        process.kill(pid, 'SIGSTOP');
        stopped.push(pid);
      }
      const from = p.mark();
      p.child.kill('SIGHUP');
      await p.waitForLog((l) => l.pid === p.child.pid && (l.msg === FAILED || String(l.msg).startsWith('reload: passing')), 20_000, from);
      assert.ok(!p.logs.slice(from).some((l) => l.msg === FAILED), 'the primary loaded the bundle');
      // After the primary's check: a bundle that does not sign the upstream.
      install(otherCert, ca);
      for (const pid of stopped.splice(0)) process.kill(pid, 'SIGCONT');

      await waitUntil(() => new Set(p.logs.slice(from).filter((l) => pids.includes(l.pid as number) && (l.msg === FAILED || String(l.msg).startsWith('reloaded:'))).map((l) => l.pid)).size === 2, 20_000);
      assert.deepEqual(p.logs.slice(from).filter((l) => l.msg === FAILED), [], 'both workers reloaded');
      for (const [pid, v] of await answersByWorker(p, pids)) assert.equal(v, 'from the upstream 200', `worker ${pid} verifies the upstream with the bundle the primary checked`);
    } finally {
      for (const pid of stopped) process.kill(pid, 'SIGCONT');
      await p.stop();
    }
  });

  test('a bundle replaced on disk without a reload: workers restarted after kill -9 trust the bundle of the last load, as the running ones', { timeout: 120_000 }, async () => {
    const { p, pids, ca } = await startProxy('restart');
    try {
      install(otherCert, ca);
      const mark = p.mark();
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      const ready = (): number[] => p.logs.slice(mark).filter((l) => l.msg === 'worker ready').map((l) => l.workerPid as number);
      await waitUntil(() => ready().length === 2, 30_000);
      for (const [pid, v] of await answersByWorker(p, ready())) assert.equal(v, 'from the upstream 200', `restarted worker ${pid} verifies with the bundle loaded at start`);
    } finally {
      await p.stop();
    }
  });

  test('no --config: a HUP reads the bundle again, and the workers trust the new one', { timeout: 120_000 }, async () => {
    const ca = path.join(dir, 'flags-ca.pem');
    install(otherCert, ca);
    const p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--workers', '2', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `https://127.0.0.1:${originPort}`, '--upstream-servername', 'localhost', '--upstream-ca', ca], { workers: null });
    try {
      const pids = (await p.waitForLog((l) => Array.isArray(l.workerPids))).workerPids as number[];
      for (const [pid, v] of await answersByWorker(p, pids)) assert.match(v, / 502$/, `worker ${pid}: the bundle at start does not sign the upstream`);
      install(upstreamCert, ca);
      const from = p.mark();
      p.child.kill('SIGHUP');
      await waitUntil(() => new Set(p.logs.slice(from).filter((l) => pids.includes(l.pid as number) && (l.msg === FAILED || String(l.msg).startsWith('reloaded:'))).map((l) => l.pid)).size === 2, 20_000);
      assert.deepEqual(p.logs.slice(from).filter((l) => l.msg === FAILED), [], 'both workers reloaded');
      for (const [pid, v] of await answersByWorker(p, pids)) assert.equal(v, 'from the upstream 200', `worker ${pid} trusts the bundle read at the HUP`);
    } finally {
      await p.stop();
    }
  });

  test('a bundle too large to hand over (as the system one) is read by path, said once; the pair is still held: workers restarted with it broken on disk serve', { timeout: 120_000 }, async () => {
    // The upstream's certificate among some 200 KiB of others: past what one environment string can hold.
    const bundle = path.join(dir, 'big-bundle.pem');
    const other = fs.readFileSync(otherCert, 'latin1');
    fs.writeFileSync(bundle, [fs.readFileSync(upstreamCert, 'latin1'), ...Array.from({ length: Math.ceil((200 * 1024) / other.length) }, () => other)].join(''));
    const live = { certFile: path.join(dir, 'live-cert.pem'), keyFile: path.join(dir, 'live-key.pem') };
    install(fx.certFile, live.certFile);
    install(fx.keyFile, live.keyFile);
    const { p, pids, ca } = await startProxy('big', live, bundle);
    try {
      const said = p.logs.find((l) => l.pid === p.child.pid && /too large to hand to the workers/.test(String(l.msg)));
      assert.deepEqual(said?.files, [ca], `one line names the bundle left out: ${JSON.stringify(said)}`);
      for (const f of [live.certFile, live.keyFile]) fs.writeFileSync(f, 'half-written\n');
      const mark = p.mark();
      for (const pid of pids) process.kill(pid, 'SIGKILL');
      const ready = (): number[] => p.logs.slice(mark).filter((l) => l.msg === 'worker ready').map((l) => l.workerPid as number);
      await waitUntil(() => ready().length === 2, 30_000).catch(() => {
        assert.fail(`the restarted workers did not start: ${JSON.stringify(p.logs.slice(mark).filter((l) => l.level >= 50).map((l) => l.msg).slice(0, 4))}`);
      });
      for (const [pid, v] of await answersByWorker(p, ready())) assert.equal(v, 'from the upstream 200', `restarted worker ${pid}`);
    } finally {
      await p.stop();
    }
  });
});

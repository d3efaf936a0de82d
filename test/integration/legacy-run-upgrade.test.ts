/**
 * nginx's binary upgrade under `aludel run`: SIGUSR2 to the master makes it
 * fork and execve() its own binary with only TZ, NGINX and its `env`
 * directives in the environment (ngx_exec_new_binary, ngx_set_environment),
 * then QUIT to the old master leaves the new one serving ("Upgrading
 * executable on the fly", nginx's control docs). LD_PRELOAD used to be lost
 * there, so the new master and its workers ran without the preload, silently.
 * The preload's execve hook (native/preload-exec.c) gives a process that
 * re-executes itself its LD_PRELOAD and ALUDEL_PRELOAD_* back.
 *
 * nginx 1.11.1 (its OpenSSL 1.0.2f found by rpath): Debian 11's nginx runs
 * behind a wrapper script that sets LD_LIBRARY_PATH, which the upgrade loses
 * as well, with or without run.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { curl } from '../support/clients.js';
import { makeFixtures, sha256, type StandardFixtures } from '../support/fixtures.js';
import { CLI } from '../support/aludel-process.js';
import { legacyNginxConf, legacyPath, tls12Ciphers } from '../support/legacy.js';
import { accepts, freePort } from '../support/loopback-port.js';
import { preloadLog } from '../support/run-origins.js';
import { run } from '../support/run-process.js';
import { delay } from '../support/wait.js';

let fx: StandardFixtures;

before(async () => {
  fx = await makeFixtures();
});

after(() => fx?.cleanup());

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function alive(pid: number): boolean {
  const stat = readOr(`/proc/${pid}/stat`);
  return stat !== '' && !/^\d+ \(.*\) Z /.test(stat);
}

function childrenOf(pid: number): number[] {
  return readOr(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/).filter(Boolean).map(Number);
}

function mapsPreload(pid: number): boolean {
  return readOr(`/proc/${pid}/maps`).includes('aludel-preload.so');
}

async function until(what: string, cond: () => boolean, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(50);
  }
}

/** The user nginx's workers run as: this process's own (as root, root: the fixture root is 0700). */
const SELF_USER = `${os.userInfo().username} ${execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim()}`;

describe('nginx binary upgrade (USR2) under aludel run', { timeout: 120_000 }, () => {
  for (const replaced of [false, true]) {
    test(`nginx 1.11.1${replaced ? ', its binary replaced by a new file before USR2 (as an upgrade does)' : ''}: the new master and its workers map the preload, log its line and serve intact bytes after the old master QUITs`, async () => {
      const log = preloadLog(fx.dir, `upgrade-${replaced}`);
      const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-upgrade-'));
      // A copy (its OpenSSL comes by an absolute RUNPATH) that can be replaced the way a package upgrade does:
      // a new file renamed over the old name, so the running master's /proc/PID/exe reads "... (deleted)".
      const bin = replaced ? path.join(dir, 'nginx') : legacyPath('nginx-1.11.1');
      if (replaced) await fs.promises.copyFile(legacyPath('nginx-1.11.1'), bin);
      await fs.promises.mkdir(path.join(dir, 'logs')); // nginx 1.11.1 opens <prefix>/logs/error.log before its config
      const port = await freePort();
      const opts = { nginx: 'nginx-1.11.1', root: fx.root, certFile: fx.certFile, keyFile: fx.keyFile, protocols: 'TLSv1.2', ciphers: tls12Ciphers('1.0.2f'), workersAs: SELF_USER } as const;
      const conf = path.join(dir, 'nginx.conf');
      await fs.promises.writeFile(conf, legacyNginxConf(dir, port, opts));
      const errorLog = (): string => readOr(path.join(dir, 'error.log'));
      const pidFile = path.join(dir, 'nginx.pid');
      let oldMaster = 0;
      let newMaster = 0;
      try {
        // Daemonized, as nginx is run for upgrades: with `daemon off` its parent stays the one that
        // started it, and nginx then ignores USR2 ("the changing binary signal is ignored").
        const started = await run(process.execPath, [CLI, 'run', '--', bin, '-p', `${dir}/`, '-c', conf], { env: { ALUDEL_PRELOAD_LOG: log.file }, timeoutMs: 60_000 });
        assert.equal(started.code, 0, `aludel run -- nginx (daemon): ${started.stderr}\n${errorLog()}`);
        await until('nginx to listen', () => Number(readOr(pidFile).trim()) > 0);
        oldMaster = Number(readOr(pidFile).trim());
        assert.ok(await accepts(port, 10_000), `nginx on port ${port}:\n${errorLog()}`);
        await until("the old master's two workers", () => childrenOf(oldMaster).length === 2);
        assert.ok(mapsPreload(oldMaster), 'the old master runs with the preload');
        if (replaced) {
          await fs.promises.copyFile(legacyPath('nginx-1.11.1'), `${bin}.new`);
          await fs.promises.chmod(`${bin}.new`, 0o755);
          await fs.promises.rename(`${bin}.new`, bin);
          assert.match(fs.readlinkSync(`/proc/${oldMaster}/exe`), / \(deleted\)$/, 'the old master runs a replaced file');
        }
        process.kill(oldMaster, 'SIGUSR2');
        // The old master renames its pid file to .oldbin; the new one writes nginx.pid once it has started.
        await until('the new master', () => {
          const pid = Number(readOr(pidFile).trim());
          return fs.existsSync(`${pidFile}.oldbin`) && pid > 0 && pid !== oldMaster && alive(pid);
        }).catch((err: Error) => {
          throw new Error(`${err.message}; nginx's error log:\n${errorLog()}`);
        });
        newMaster = Number(readOr(pidFile).trim());
        await until("the new master's two workers", () => childrenOf(newMaster).length === 2);
        const procs = [newMaster, ...childrenOf(newMaster)];
        assert.deepEqual(
          procs.map((p) => [p, mapsPreload(p)]),
          procs.map((p) => [p, true]),
          `new master ${newMaster} and its workers map aludel-preload.so; error log:\n${errorLog()}`,
        );
        await until("the new master's preload line", () => log.lines().some((l) => l.startsWith(`aludel-preload: pid ${newMaster}: strategy keys`)), 5000).catch(() => {
          throw new Error(`no strategy line from the new master ${newMaster} in ALUDEL_PRELOAD_LOG (the variables were not given back):\n${log.lines().join('\n')}`);
        });
        process.kill(oldMaster, 'SIGQUIT');
        await until('the old master and its workers to exit', () => !alive(oldMaster));
        for (const f of [fx.files.big, fx.files.mid]) {
          const r = await curl(['-sS', '--cacert', fx.certFile, `https://localhost:${port}/${f.name}`]);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout.length, f.size, `${f.name}: size`);
          assert.equal(sha256(r.stdout), f.sha256, `${f.name}: sha256`);
        }
        assert.deepEqual(errorLog().split('\n').filter((l) => /\[(emerg|alert|crit)\]/.test(l)), [], 'nginx error log: no [crit]/[alert]/[emerg]');
      } finally {
        for (const pid of [newMaster, oldMaster]) if (pid > 0 && alive(pid)) process.kill(pid, 'SIGTERM');
        await until('nginx to stop', () => ![newMaster, oldMaster].some((p) => p > 0 && alive(p))).catch(() => undefined);
        await fs.promises.rm(dir, { recursive: true, force: true });
      }
    });
  }

  test('an exec of another program with an environment lacking the preload is left alone', async () => {
    // env under run execs cat with an empty environment (env -i): cat is not env, so nothing is added.
    const r = await run(process.execPath, [CLI, 'run', '--', '/usr/bin/env', '-i', '/bin/cat', '/proc/self/environ'], { timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString('latin1'), '', "cat's environment stays empty");
  });
});

/**
 * ALUDEL_PRELOAD_LOG with nginx started as root and its workers running as
 * `user nobody`, the usual production set-up, under `aludel run`.
 *
 * The log file is created 0600 by the root master. The workers, which handle
 * every connection and so log every event line, used to open it per line,
 * failed as nobody, and wrote their lines to stderr, that is into nginx's
 * error_log. The preload now opens the file once when it is loaded, in the
 * master, and the workers inherit the descriptor across fork.
 * ALUDEL_PRELOAD_DEBUG makes each connection an event line (on this kernel:
 * "stays with OpenSSL: the kernel refused the keys"), logged by a worker.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { curl } from '../support/clients.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { startLegacyNginx, tls12Ciphers, LIBRARY_OF, type LegacyNginxName } from '../support/legacy.js';
import { aludelRun, preloadLog } from '../support/run-origins.js';
import { delay } from '../support/wait.js';

let fx: StandardFixtures;

before(async () => {
  fx = await makeFixtures();
});

after(() => fx?.cleanup());

/** The real uid of `pid` (/proc/PID/status "Uid:" real, effective, saved, fs). */
function uidOf(pid: number): number {
  return Number(/^Uid:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? -1);
}

function childrenOf(pid: number): number[] {
  return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
}

/** `user nobody <its group>`: nginx takes a group of the user's name when none is given, and Debian has no group nobody (nogroup). */
const NOBODY = `nobody ${execFileSync('id', ['-gn', 'nobody'], { encoding: 'utf8' }).trim()}`;

const EVENT = /^aludel-preload: pid (\d+): fd \d+(?: stays with OpenSSL|: TLS )/;

describe('ALUDEL_PRELOAD_LOG: lines of nginx workers running as nobody reach the file', { timeout: 120_000 }, () => {
  for (const name of ['nginx-1.11.1', 'nginx-1.18'] as LegacyNginxName[]) {
    test(`${name} as root with user nobody: the workers' event lines are in the 0600 log file, none in nginx's error log`, async () => {
      assert.equal(process.geteuid?.(), 0, 'nginx changes to `user nobody` for its workers only when started as root: run the tests as root (CI and the VM do)');
      const log = preloadLog(fx.dir, `workers-${name}`);
      const nginx = await startLegacyNginx({
        nginx: name,
        root: fx.root,
        certFile: fx.certFile,
        keyFile: fx.keyFile,
        protocols: 'TLSv1.2',
        ciphers: tls12Ciphers(LIBRARY_OF[name]),
        workersAs: NOBODY,
        wrapper: aludelRun(),
        env: { ALUDEL_PRELOAD_LOG: log.file, ALUDEL_PRELOAD_DEBUG: '1' },
        readyTimeoutMs: 30_000,
      });
      try {
        // The master writes its pid file before it forks the workers, and they change user after fork.
        const ready = Date.now() + 10_000;
        while (!(childrenOf(nginx.pid).length === 2 && childrenOf(nginx.pid).every((w) => uidOf(w) === 65534)) && Date.now() < ready) await delay(50);
        const workers = childrenOf(nginx.pid);
        assert.ok(workers.length >= 1 && workers.every((w) => uidOf(w) === 65534), `nginx's workers run as nobody: ${workers.map((w) => `${w}:${uidOf(w)}`).join(' ')}`);
        for (let i = 0; i < 3; i++) {
          // Its root is not readable by nobody: the answer may be 403; the handshake is what logs.
          const r = await curl(['-sk', '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${nginx.port}/${fx.files.one.name}`]);
          assert.equal(r.code, 0, r.stderr);
        }
        const deadline = Date.now() + 5000;
        while (log.lines().filter((l) => EVENT.test(l)).length < 3 && Date.now() < deadline) await delay(50);
        const lines = log.lines();
        const events = lines.filter((l) => EVENT.test(l));
        assert.equal(events.length, 3, `one event line per connection in ${log.file}:\n${lines.join('\n')}\nnginx error log:\n${nginx.errorLog()}`);
        for (const l of events) assert.ok(workers.includes(Number(EVENT.exec(l)![1])), `logged by a worker (${workers.join(' ')}): ${l}`);
        assert.ok(/^aludel-preload: pid \d+: strategy keys/.test(lines[0]!), `the strategy line first: ${lines[0]}`);
        assert.equal(fs.statSync(log.file).mode & 0o777, 0o600, 'the log file stays 0600');
        assert.deepEqual(nginx.errorLog().split('\n').filter((l) => l.includes('aludel-preload')), [], "no preload line in nginx's error log");
      } finally {
        await nginx.stop();
      }
    });
  }
});

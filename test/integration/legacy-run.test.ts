/**
 * `aludel run` with no flag on the real legacy programs (../shared/legacy),
 * on this machine's kernel: nginx 1.11.1 with OpenSSL 1.0.2f, Debian 11's
 * nginx 1.18 with OpenSSL 1.1.1w, and `openssl s_server -WWW` of both. Where
 * the kernel has no TLS ULP the preload's setsockopt(TCP_ULP) fails and the
 * connection must stay with OpenSSL: every suite still serves intact bytes,
 * over keep-alive too, and the preload names its strategy once. The same
 * matrix runs with the kernel's counters in test/ktls/legacy-run-ktls.test.ts.
 * Client side: `s_client` of both versions under `aludel run` fetches intact bytes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import {
  fetchRow,
  KERNEL_SUITES,
  LIBRARY_OF,
  legacyPath,
  sClientFetch,
  sClientSuiteArgs,
  startLegacyServer,
  type LegacyOpenssl,
  type LegacyServer,
  type LegacyServerName,
  type RowFiles,
} from '../support/legacy.js';
import { aludelRun, preloadLog, startSServer } from '../support/run-origins.js';
import { sha256 } from '../support/fixtures.js';
import { hasKernelTls } from '../support/tls-stat.js';

/**
 * The preload's one line per process once it has chosen by itself (no flag):
 * `aludel-preload: pid N: strategy keys (why): ...`. Adjust here if its wording changes.
 */
const STRATEGY_KEYS_LINE = /^aludel-preload: pid (\d+): strategy keys\b/;

const MiB = 1024 * 1024;
const FILES = { 'big.bin': 16 * MiB, 'small.bin': 16385 };
let fx: Fixtures<keyof typeof FILES>;
let files: RowFiles;

before(async () => {
  fx = await makeFixtures(FILES);
  files = { certFile: fx.certFile, outDir: fx.outDir, big: fx.files['big.bin'], small: fx.files['small.bin'] };
});

after(() => fx?.cleanup());

const SERVERS: LegacyServerName[] = ['nginx-1.11.1', 'nginx-1.18', 'openssl-1.0.2f', 'openssl-1.1.1w'];

for (const name of SERVERS) {
  const lib = LIBRARY_OF[name];
  describe(`aludel run -- ${name === 'nginx-1.11.1' || name === 'nginx-1.18' ? name : `${name} s_server -WWW`} (OpenSSL ${lib}), no flag, this kernel`, { timeout: 180_000 }, () => {
    let server: LegacyServer;
    let log: ReturnType<typeof preloadLog>;

    before(async () => {
      log = preloadLog(fx.dir, name);
      server = await startLegacyServer(name, { root: fx.root, certFile: fx.certFile, keyFile: fx.keyFile, wrapper: aludelRun(), env: { ALUDEL_PRELOAD_LOG: log.file }, readyTimeoutMs: 30_000 });
    });

    after(async () => {
      await server?.stop();
    });

    for (const suite of KERNEL_SUITES[lib]) {
      test(`TLS ${suite.version} ${suite.name}: 16 MiB and a small file intact (curl, keep-alive on nginx; s_client)`, async () => {
        await fetchRow(server, suite, files);
      });
    }

    test('the preload says once that it took the keys strategy, from the server process', () => {
      const lines = log.lines();
      assert.ok(lines.length >= 1, `no preload line (ALUDEL_PRELOAD_LOG ${log.file}); the server's output:\n${server.daemon.output()}`);
      const m = STRATEGY_KEYS_LINE.exec(lines[0]!);
      assert.ok(m, `first line: ${lines[0]}`);
      assert.equal(Number(m[1]), server.pid, 'logged by the server program');
      assert.equal(lines.filter((l) => STRATEGY_KEYS_LINE.test(l)).length, 1, `one strategy line per process:\n${lines.join('\n')}`);
      // What the kernel answered, not what the strategy would do with kTLS (aludel run warns the same).
      if (!hasKernelTls()) assert.match(lines[0]!, /: kernel TLS is not available here \(setsockopt TCP_ULP "tls": ENOENT, no CONFIG_TLS or tls module\): .* connections stay in OpenSSL's userspace TLS \(OpenSSL 1\.[01]\.[12]/);
      else assert.match(lines[0]!, /connections handed to kernel TLS after the handshake, both directions/);
    });
  });
}

describe('client side: legacy s_client under aludel run (no flag) against the system s_server, this kernel', { timeout: 180_000 }, () => {
  for (const client of ['openssl-1.0.2f', 'openssl-1.1.1w'] as LegacyOpenssl[]) {
    const lib = LIBRARY_OF[client];
    for (const suite of KERNEL_SUITES[lib].filter((s) => s.name.includes('AES128') || s.name === 'TLS_AES_128_GCM_SHA256')) {
      test(`${client} s_client, TLS ${suite.version} ${suite.name}: 16 MiB intact; the preload names the keys strategy`, async () => {
        const log = preloadLog(fx.dir, `client-${client}-${suite.name}`);
        const srv = await startSServer({ root: fx.root, certFile: fx.certFile, keyFile: fx.keyFile, args: sClientSuiteArgs(suite) });
        try {
          const r = await sClientFetch({ port: srv.port, certFile: fx.certFile, suite, path: `/${files.big.name}`, openssl: legacyPath(client), wrapper: aludelRun(), env: { ALUDEL_PRELOAD_LOG: log.file } });
          assert.match(r.status, /^HTTP\/1\.0 200/, r.client.stderr());
          assert.equal(r.body.length, files.big.size);
          assert.equal(sha256(r.body), files.big.sha256);
          const lines = log.lines();
          assert.ok(lines.length >= 1 && STRATEGY_KEYS_LINE.test(lines[0]!), `preload lines:\n${lines.join('\n')}`);
        } finally {
          await srv.stop();
        }
      });
    }
  }
});

/**
 * A connection that `aludel run` cannot hand to the kernel says so, without
 * ALUDEL_PRELOAD_DEBUG: the real legacy nginx (1.11.1 with OpenSSL 1.0.2f,
 * Debian 11's 1.18 with OpenSSL 1.1.1w) on a CBC suite, which kernel TLS
 * cannot take (Documentation/networking/tls.rst: AES-GCM, AES-CCM,
 * ChaCha20-Poly1305 only). The connection stays with OpenSSL and serves
 * intact bytes; the first such connection of the process gets one line naming
 * the reason, the protocol and the suite, the next ones none (a busy server
 * with old clients must not get a line per connection).
 *
 * Found by a tester: an admin whose clients negotiated CBC suites saw no line
 * at all (only ALUDEL_PRELOAD_DEBUG, one line per connection, said why), so
 * nobody could tell why those connections had no kTLS. Decided before the
 * kernel is asked, so this holds on this kernel too (it has no TLS ULP; that
 * refusal is not repeated per process, aludel run says it at start).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { curl } from '../support/clients.js';
import { makeFixtures, sha256, type StandardFixtures } from '../support/fixtures.js';
import { startLegacyNginx, type LegacyNginxName } from '../support/legacy.js';
import { aludelRun, preloadLog } from '../support/run-origins.js';
import { delay } from '../support/wait.js';

/** The CBC suite offered (the fixture certificate is ECDSA P-256); both 1.0.2f and 1.1.1w have it. */
const CBC = 'ECDHE-ECDSA-AES128-SHA256';
const FALLBACK = new RegExp(`^aludel-preload: pid (\\d+): fd \\d+ stays with OpenSSL: suite without kernel TLS \\(TLS 1\\.2 ${CBC}\\); later connections`);

let fx: StandardFixtures;

before(async () => {
  fx = await makeFixtures();
});

after(() => fx?.cleanup());

describe('aludel run: a connection on a suite the kernel cannot take is logged, once per process', { timeout: 120_000 }, () => {
  for (const name of ['nginx-1.11.1', 'nginx-1.18'] as LegacyNginxName[]) {
    test(`${name}, TLS 1.2 ${CBC}: bytes intact over three connections; one line saying why, from nginx`, async () => {
      const log = preloadLog(fx.dir, `fallback-${name}`);
      const nginx = await startLegacyNginx({
        nginx: name,
        root: fx.root,
        certFile: fx.certFile,
        keyFile: fx.keyFile,
        protocols: 'TLSv1.2',
        ciphers: CBC,
        wrapper: aludelRun(),
        env: { ALUDEL_PRELOAD_LOG: log.file },
        readyTimeoutMs: 30_000,
      });
      try {
        for (let i = 0; i < 3; i++) {
          const r = await curl(['-sk', '--tlsv1.2', '--tls-max', '1.2', '--ciphers', CBC, `https://127.0.0.1:${nginx.port}/${fx.files.big.name}`]);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(sha256(r.stdout), fx.files.big.sha256, `connection ${i + 1}`);
        }
        const access = await nginx.accessLog(3);
        assert.deepEqual(access.map((a) => a.tlsCipher), [CBC, CBC, CBC], 'nginx negotiated the CBC suite');
        // The line is written after the handshake, before the response; give a worker's write a moment anyway.
        const deadline = Date.now() + 2000;
        while (!log.lines().some((l) => FALLBACK.test(l)) && Date.now() < deadline) await delay(20);
        const lines = log.lines();
        const fallbacks = lines.filter((l) => FALLBACK.test(l));
        assert.equal(fallbacks.length, 1, `one line for three connections in ${log.file}:\n${lines.join('\n')}`);
        assert.equal(Number(FALLBACK.exec(fallbacks[0]!)![1]), nginx.pid, 'logged by nginx');
        assert.deepEqual(lines.filter((l) => !FALLBACK.test(l) && !/: strategy keys /.test(l)), [], 'no other line (the missing TLS ULP of this kernel is not logged per process)');
        assert.deepEqual(nginx.severe(), [], 'nginx error log: no [crit]/[alert]/[emerg]');
      } finally {
        await nginx.stop();
      }
    });
  }
});

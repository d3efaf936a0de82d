/**
 * The keys strategy takes the TLS 1.3 traffic secrets from OpenSSL 1.1.1's
 * keylog callback and counts records through its message callback. A program
 * that set callbacks of its own must see them keep working: `openssl
 * s_server` 1.1.1w with `-keylogfile` (SSL_CTX_set_keylog_callback) and
 * `-msg` (SSL_set_msg_callback), under `aludel run`, in the kTLS VM.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { curl, curlTlsArgs } from '../support/clients.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { legacyPath } from '../support/legacy.js';
import { aludelRun, preloadLog, startSServer } from '../support/run-origins.js';
import { delta, hasKernelTls, readTlsStat } from '../support/tls-stat.js';

const FILES = { 'mid.bin': 3 * 1024 * 1024 + 7 };
let fx: Fixtures<'mid.bin'>;

before(async () => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  fx = await makeFixtures(FILES);
});

after(() => fx?.cleanup());

describe('OpenSSL 1.1.1 program callbacks under the keys strategy', { timeout: 600_000 }, () => {
  test('-keylogfile still gets every secret and -msg still sees every message, while both directions go to the kernel', async () => {
    const keylog = path.join(fx.dir, 'keylog.txt');
    const log = preloadLog(fx.dir, 'callbacks');
    const srv = await startSServer({
      root: fx.root,
      certFile: fx.certFile,
      keyFile: fx.keyFile,
      openssl: legacyPath('openssl-1.1.1w'),
      wrapper: aludelRun('--offload', 'kernel'),
      env: { ALUDEL_PRELOAD_LOG: log.file, ALUDEL_PRELOAD_DEBUG: '1' },
      args: ['-keylogfile', keylog, '-msg'],
    });
    try {
      for (const [version, suite] of [
        ['1.3', 'TLS_AES_128_GCM_SHA256'],
        ['1.2', 'ECDHE-ECDSA-AES128-GCM-SHA256'],
      ] as const) {
        const out = path.join(fx.outDir, `cb-${version}`);
        const before = readTlsStat();
        const r = await curl(['--fail', '--cacert', fx.certFile, ...curlTlsArgs(version, suite), '-o', out, `https://localhost:${srv.port}/mid.bin`], 300_000);
        const d = delta(before, readTlsStat());
        assert.equal(r.code, 0, r.stderr);
        assert.equal(sha256(fs.readFileSync(out)), fx.files['mid.bin'].sha256, `TLS ${version}`);
        assert.equal(d.TlsTxSw, 1, `TLS ${version}: ${JSON.stringify(d)}`);
        assert.equal(d.TlsRxSw, 1, `TLS ${version}: ${JSON.stringify(d)}`);
        assert.equal(d.TlsDecryptError ?? 0, 0);
      }
      // The program's keylog callback got the TLS 1.3 lines (NSS key log format) and TLS 1.2's CLIENT_RANDOM.
      const lines = fs.readFileSync(keylog, 'utf8').split('\n');
      for (const label of ['CLIENT_HANDSHAKE_TRAFFIC_SECRET', 'SERVER_HANDSHAKE_TRAFFIC_SECRET', 'CLIENT_TRAFFIC_SECRET_0', 'SERVER_TRAFFIC_SECRET_0', 'CLIENT_RANDOM']) {
        assert.equal(lines.filter((l) => l.startsWith(`${label} `)).length, 1, `${label} once in ${keylog}:\n${lines.join('\n')}`);
      }
      // The program's message callback printed the handshake both ways, record headers included (s_server's -msg format).
      const output = srv.daemon.output();
      assert.match(output, /<<< TLS 1\.3, Handshake \[length [0-9a-f]+\], ClientHello/);
      assert.match(output, />>> TLS 1\.3, Handshake \[length [0-9a-f]+\], NewSessionTicket/);
      // Record headers too (1.1.1 prints them as "???"): the program's callback sees what ours counts.
      assert.match(output, /<<< \?\?\? \[length 0005\]\n {4}16 03 01/);
      assert.match(output, />>> TLS 1\.2, ChangeCipherSpec \[length 0001\]/);
      // The preload counted the two NewSessionTickets the server sent under the application keys.
      assert.ok(log.lines().some((l) => /TLS 1\.3 AES-128-GCM to the kernel, rx seq 0, tx seq 2$/.test(l)), log.lines().join('\n'));
    } finally {
      await srv.stop();
    }
  });
});

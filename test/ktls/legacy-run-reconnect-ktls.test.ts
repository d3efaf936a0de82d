/**
 * A legacy client under `aludel run` that reuses one SSL object for a new
 * connection, in the kTLS VM: `openssl s_client -reconnect` of OpenSSL 1.0.2f
 * and 1.1.1w. After each handshake it calls SSL_shutdown, then
 * SSL_set_connect_state (not SSL_clear) on the same SSL, closes the socket,
 * opens a new one and hands it over with SSL_set_bio; the session it keeps
 * makes every new handshake a resumption (RFC 5246 §7.3, abbreviated
 * handshake), five times, and the last connection then carries the request.
 *
 * The preload knows connections by their SSL pointer. SSL_set_connect_state
 * and SSL_set_accept_state start a new handshake on that SSL (OpenSSL resets
 * its state machine and cipher state, ssl_lib.c), so the kernel state of the
 * old connection must be forgotten there, as for SSL_clear: otherwise the new
 * connection is taken for the old one, already offloaded, its handshake is
 * skipped, and the program's bytes would go to a socket that has no keys.
 *
 * Per client: exit 0, "Reused" five times, the body intact (sha256), and
 * every one of the six connections in the kernel (the preload's debug lines,
 * TlsTxSw/TlsRxSw +6: nginx here runs without `aludel run`, so each kTLS
 * context counted is the client's).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { legacyPath, splitHttp, startLegacyNginx, type LegacyNginx, type LegacyOpenssl } from '../support/legacy.js';
import { aludelRun, preloadLog } from '../support/run-origins.js';
import { run } from '../support/run-process.js';
import { delta, hasKernelTls, readTlsStat } from '../support/tls-stat.js';

const FILES = { 'small.bin': 16385 };
/** s_client -reconnect: the first connection and five more, each resuming the session (apps/s_client.c). */
const CONNECTIONS = 6;
/** The preload's line for a connection handed to the kernel, with ALUDEL_PRELOAD_DEBUG (native/preload-keys.c). */
const TO_KERNEL = /: fd \d+: TLS 1\.2 AES-128-GCM to the kernel, rx seq 1, tx seq 1$/;

let fx: Fixtures<keyof typeof FILES>;
let nginx: LegacyNginx;

before(async () => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  fx = await makeFixtures(FILES);
  // Without aludel run: only the client's side uses kTLS. A session cache as well as tickets, so that
  // both OpenSSL versions resume whichever they offer.
  nginx = await startLegacyNginx({
    nginx: 'nginx-1.18',
    root: fx.root,
    certFile: fx.certFile,
    keyFile: fx.keyFile,
    protocols: 'TLSv1.2',
    ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256',
    serverLines: ['ssl_session_cache shared:reconnect:1m;'],
    readyTimeoutMs: 60_000,
  });
});

after(async () => {
  await nginx?.stop();
  fx?.cleanup();
});

describe('client side: s_client -reconnect under aludel run reuses its SSL for six connections, each in the kernel', { timeout: 600_000 }, () => {
  for (const client of ['openssl-1.0.2f', 'openssl-1.1.1w'] as LegacyOpenssl[]) {
    test(`${client} s_client -reconnect: five resumptions, the body intact, TlsTxSw/TlsRxSw +${CONNECTIONS}`, async (t) => {
      const log = preloadLog(fx.dir, `reconnect-${client}`);
      const before = readTlsStat();
      const file = fx.files['small.bin'];
      // -ign_eof: stdin's end does not end the connection; s_client reads it only on the last one.
      const r = await run(
        process.execPath,
        [...aludelRun().slice(1), legacyPath(client), 's_client', '-connect', `127.0.0.1:${nginx.port}`, '-tls1_2', '-CAfile', fx.certFile, '-reconnect', '-ign_eof'],
        {
          input: `GET /${file.name} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`,
          timeoutMs: 240_000,
          env: { ALUDEL_PRELOAD_LOG: log.file, ALUDEL_PRELOAD_DEBUG: '1' },
        },
      );
      const d = delta(before, readTlsStat());
      const out = r.stdout.toString('latin1');
      const lines = log.lines();
      t.diagnostic(`exit ${r.code} ${r.signal ?? ''}; TlsTxSw +${d.TlsTxSw} TlsRxSw +${d.TlsRxSw}; preload: ${lines.length} lines`);
      const context = `${out.slice(-1500)}\n--- stderr:\n${r.stderr.slice(-1500)}\n--- preload:\n${lines.join('\n')}`;
      assert.equal(r.code, 0, context);
      assert.equal(out.match(/^Reused, /gm)?.length ?? 0, CONNECTIONS - 1, `every reconnection resumed the session:\n${context}`);
      const at = out.indexOf('HTTP/1.1 200');
      assert.ok(at >= 0, `the last connection got the response:\n${context}`);
      const { body } = splitHttp(Buffer.from(out.slice(at), 'latin1'));
      assert.equal(sha256(body.subarray(0, file.size)), file.sha256, 'sha256 of the body');
      assert.equal(lines.filter((l) => TO_KERNEL.test(l)).length, CONNECTIONS, `each connection handed to the kernel:\n${lines.join('\n')}`);
      assert.equal(d.TlsTxSw, CONNECTIONS, JSON.stringify(d));
      assert.equal(d.TlsRxSw, CONNECTIONS, JSON.stringify(d));
      assert.equal(d.TlsDecryptError, 0, JSON.stringify(d));
      assert.deepEqual(nginx.severe(), [], 'no [crit]/[alert] from nginx');
    });
  }
});

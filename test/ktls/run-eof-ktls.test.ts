/**
 * How the end of a connection reaches a program under `aludel run` once the
 * kernel has it (run in the kTLS VM by scripts/run-tests.sh): a small OpenSSL
 * 1.0.2f server (test/support/ssl-eof-probe.c, built here against the real
 * 1.0.2f headers and library) prints what SSL_read and SSL_peek return and
 * what SSL_get_error says when the client ends the connection, under run and
 * alone; both must print the same.
 *
 * OpenSSL 1.0.2's SSL_read and SSL_get_error manuals: SSL_ERROR_SYSCALL with
 * ret 0 is an EOF that violates the protocol (TCP FIN without close_notify),
 * with ret -1 an I/O error (consult errno). Programs tell them apart by that
 * value (stunnel logs "TLS socket closed" for 0, a socket error for -1).
 */
import assert from 'node:assert/strict';
import type net from 'node:net';
import path from 'node:path';
import type tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { legacyPath, LEGACY_PREFIX } from '../support/legacy.js';
import { run } from '../support/run-process.js';
import { waitFor, withProbe } from '../support/ssl-probe.js';
import { hasKernelTls } from '../support/tls-stat.js';

const PROBE_SOURCE = fileURLToPath(new URL('../../../test/support/ssl-eof-probe.c', import.meta.url));

let fx: Fixtures<'x.bin'>;
let probe: string;

/**
 * The probe (under run or alone) and one TLS 1.2 client (ssl-probe.ts):
 * `end` ends the connection. Returns the probe's last line and the kernel's
 * counters.
 */
async function probeEnd(underRun: boolean, end: (s: tls.TLSSocket, tcp: net.Socket) => void): Promise<{ line: string; tlsRxSw: number }> {
  const { result, tlsRxSw } = await withProbe({ probe, certFile: fx.certFile, keyFile: fx.keyFile, underRun }, async ({ d, s, tcp }) => {
    end(s, tcp);
    await waitFor(() => /^end: .*$/m.test(d.output()) || !d.alive(), "the probe's last line");
    const line = /^end: .*$/m.exec(d.output());
    assert.ok(line, `the probe ended without its line:\n${d.output()}`);
    return line[0];
  });
  return { line: result, tlsRxSw };
}

describe('the end of a connection as OpenSSL 1.0.2 reports it, under aludel run and alone', { timeout: 900_000 }, () => {
  before(async () => {
    assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
    assert.equal(process.geteuid?.(), 0, 'the kernel shows TLS ULP state (sock_diag) to CAP_NET_ADMIN only: run as root (the VM does)');
    legacyPath('openssl-1.0.2f');
    fx = await makeFixtures({ 'x.bin': 1 });
    probe = path.join(fx.dir, 'ssl-eof-probe');
    const lib = path.join(LEGACY_PREFIX, 'openssl-1.0.2f');
    const cc = await run('cc', ['-Wall', '-Werror', '-o', probe, PROBE_SOURCE, `-I${lib}/include`, `-L${lib}/lib`, `-Wl,-rpath,${lib}/lib`, '-lssl', '-lcrypto']);
    assert.equal(cc.code, 0, `building the probe: ${cc.stderr}`);
  });

  after(() => fx?.cleanup());

  test('TCP FIN without close_notify: SSL_read and SSL_peek return 0 with SSL_ERROR_SYSCALL (an EOF, not an I/O error), as without aludel run', async () => {
    const finOnly = (_s: tls.TLSSocket, tcp: net.Socket): void => void tcp.end(); // FIN on the TCP socket under TLS: no close_notify
    const alone = await probeEnd(false, finOnly);
    assert.equal(alone.line, 'end: SSL_read=0 SSL_get_error=5 SSL_peek=0 SSL_get_error=5 shutdown=0', 'OpenSSL 1.0.2f alone');
    const underRun = await probeEnd(true, finOnly);
    assert.equal(underRun.tlsRxSw, 1, 'the connection was in the kernel');
    assert.equal(underRun.line, alone.line, 'under aludel run');
  });

  test('close_notify: SSL_read and SSL_peek return 0 with SSL_ERROR_ZERO_RETURN, SSL_RECEIVED_SHUTDOWN set, as without aludel run', async () => {
    const closeNotify = (s: tls.TLSSocket): void => void s.end(); // node sends close_notify (SSL_shutdown), then FIN
    const alone = await probeEnd(false, closeNotify);
    assert.equal(alone.line, 'end: SSL_read=0 SSL_get_error=6 SSL_peek=0 SSL_get_error=6 shutdown=2', 'OpenSSL 1.0.2f alone');
    const underRun = await probeEnd(true, closeNotify);
    assert.equal(underRun.tlsRxSw, 1, 'the connection was in the kernel');
    assert.equal(underRun.line, alone.line, 'under aludel run');
  });
});

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
import { assertProbeHost, buildProbe, waitFor, withProbe } from '../support/ssl-probe.js';

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
    assertProbeHost();
    fx = await makeFixtures({ 'x.bin': 1 });
    probe = await buildProbe(PROBE_SOURCE, '1.0.2f', path.join(fx.dir, 'ssl-eof-probe'));
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

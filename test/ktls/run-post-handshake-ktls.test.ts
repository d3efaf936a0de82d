/**
 * A server under `aludel run` that starts a handshake message after the
 * handshake, once the kernel has the connection: `openssl s_server` of
 * OpenSSL 1.1.1w (Debian 11) and its `c` command, TLS 1.3 post-handshake
 * client authentication (SSL_verify_client_post_handshake, then
 * SSL_do_handshake; RFC 8446 §4.6.2), to the system's `s_client -enable_pha`.
 *
 * Found by a tester: OpenSSL wrote its CertificateRequest record to the
 * socket itself; kernel TX took that ciphertext as plaintext and encrypted it
 * again, so s_client printed OpenSSL's record bytes as application data, and
 * s_server said "SSL_do_handshake -> 1". Now the request is refused as
 * OpenSSL refuses one it cannot make (s_server: "Failed to initiate
 * request"), with one event line, and the connection goes on intact both ways.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { legacyPath, spawnSClient, type SClient } from '../support/legacy.js';
import { freePort } from '../support/loopback-port.js';
import { aludelRun, preloadLog } from '../support/run-origins.js';
import { reapOnExit } from '../support/run-process.js';
import { delta, hasKernelTls, readTlsStat } from '../support/tls-stat.js';
import { delay } from '../support/wait.js';

/** Start-up under `aludel run` in the VM: node loading the CLI on the emulated CPU takes seconds. */
const READY_MS = 180_000;
const STEP_MS = 30_000;
const IN_KERNEL = /: fd \d+: TLS 1\.3 \S+ to the kernel/;
const REFUSED = /^aludel-preload: pid \d+: fd \d+: TLS 1\.3 post-handshake client authentication \(SSL_verify_client_post_handshake\) refused: the connection is in kernel TLS/;

let fx: StandardFixtures;

before(async () => {
  assert.ok(hasKernelTls(), 'this test needs a kernel with TLS (/proc/net/tls_stat): run it through scripts/run-tests.sh');
  legacyPath('openssl-1.1.1w');
  fx = await makeFixtures();
});

after(() => fx?.cleanup());

async function until(what: string, cond: () => boolean, timeoutMs: number, show: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms:\n${show().slice(-4000)}`);
    await delay(25);
  }
}

describe('aludel run -- openssl 1.1.1w s_server: TLS 1.3 post-handshake authentication on a connection in the kernel', { timeout: 600_000 }, () => {
  let server: ChildProcess | undefined;
  let client: SClient | undefined;

  after(async () => {
    await client?.stop();
    server?.kill('SIGTERM');
  });

  test('the request is refused (nothing written through OpenSSL), one event line, and data goes on intact both ways', async () => {
    const log = preloadLog(fx.dir, 's_server-pha');
    const port = await freePort();
    // stdbuf -oL: s_server prints its answer to `c` with printf, which a pipe would hold until exit
    // (coreutils' stdbuf adds its library after the LD_PRELOAD it finds, so the preload stays).
    const cmd = [...aludelRun(), 'stdbuf', '-oL', legacyPath('openssl-1.1.1w'), 's_server', '-accept', `127.0.0.1:${port}`, '-cert', fx.certFile, '-key', fx.keyFile, '-CAfile', fx.certFile, '-tls1_3'];
    const srv = reapOnExit(spawn(cmd[0]!, cmd.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ALUDEL_PRELOAD_LOG: log.file, ALUDEL_PRELOAD_DEBUG: '1' } }));
    server = srv;
    let out = '';
    srv.stdout!.on('data', (d: Buffer) => (out += d.toString('latin1')));
    srv.stderr!.on('data', (d: Buffer) => (out += d.toString('latin1')));
    srv.stdin!.on('error', () => undefined);
    const serverOut = (): string => `${out}\n--- preload log:\n${log.lines().join('\n')}`;
    await until('ACCEPT from s_server', () => out.includes('ACCEPT'), READY_MS, serverOut);

    const before = readTlsStat();
    // The fixture's self-signed certificate is the client's certificate and its CA too.
    const c = spawnSClient({ port, args: ['-tls1_3', '-enable_pha', '-cert', fx.certFile, '-key', fx.keyFile, '-CAfile', fx.certFile] });
    client = c;
    await c.waitFor('the handshake', (o) => /Verify return code: 0/.test(o), STEP_MS);
    await until("the preload's line: the server's connection in the kernel", () => log.lines().some((l) => IN_KERNEL.test(l)), STEP_MS, serverOut);
    // A line from the server first: what the client printed up to it (tickets included) is set aside.
    srv.stdin!.write('before-pha\n');
    await c.waitFor('before-pha', (o) => o.includes('before-pha\n'), STEP_MS);
    const mark = c.stdout().length;

    // s_server takes its input lines in order: whatever `c` sends is on the wire before after-pha.
    srv.stdin!.write('c\n');
    srv.stdin!.write('after-pha\n');
    await c.waitFor('after-pha', (o) => o.includes('after-pha\n'), STEP_MS);
    assert.equal(c.stdout().subarray(mark).toString('latin1'), 'after-pha\n', 'the client read exactly the server line after the request, no record bytes as data');
    await until("s_server's answer to c", () => /Failed to initiate request|SSL_do_handshake -> /.test(out), STEP_MS, serverOut);
    assert.match(out, /Failed to initiate request/, 's_server was told the request could not be made');
    assert.doesNotMatch(out, /SSL_do_handshake -> /, 's_server did not go on to a handshake');

    c.write('from-client\n');
    await until('the client line at the server', () => out.includes('from-client\n'), STEP_MS, serverOut);
    const refused = log.lines().filter((l) => REFUSED.test(l));
    assert.equal(refused.length, 1, `one event line:\n${log.lines().join('\n')}`);
    assert.equal(delta(before, readTlsStat()).TlsDecryptError, 0, 'TlsDecryptError');
  });
});

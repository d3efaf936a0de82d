/**
 * A server under `aludel run` that starts a handshake message after the
 * handshake, once the kernel has the connection: `openssl s_server` of
 * OpenSSL 1.1.1w (Debian 11) and its `c` command, TLS 1.3 post-handshake
 * client authentication (SSL_verify_client_post_handshake, then
 * SSL_do_handshake; RFC 8446 §4.6.2), to the system's `s_client -enable_pha`.
 *
 * And the client side: `s_client -enable_pha` of 1.1.1w under `aludel run`
 * against the system's `s_server`, whose `c` asks for the client's
 * certificate after the handshake. Only OpenSSL can answer that request (the
 * preload ended the connection with unexpected_message), so a client that
 * offers post-handshake authentication keeps its connection in OpenSSL, with
 * the preload's line saying why; one that does not goes to the kernel.
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

/** `openssl s_server` (interactive: commands and data on stdin), line-buffered output. */
async function startSServer(cmd: string[], env: NodeJS.ProcessEnv, extra: () => string = () => '') {
  // stdbuf -oL: s_server prints its answer to `c` with printf, which a pipe would hold until exit
  // (coreutils' stdbuf adds its library after the LD_PRELOAD it finds, so a preload stays).
  const full = [...cmd.slice(0, cmd.indexOf('s_server') - 1), 'stdbuf', '-oL', ...cmd.slice(cmd.indexOf('s_server') - 1)];
  const child = reapOnExit(spawn(full[0]!, full.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } }));
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString('latin1')));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString('latin1')));
  child.stdin!.on('error', () => undefined);
  const output = (): string => `${out}${extra()}`;
  await until('ACCEPT from s_server', () => out.includes('ACCEPT'), READY_MS, output);
  return { child, out: () => out, output, write: (text: string) => void child.stdin!.write(text) };
}

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
    const cmd = [...aludelRun(), legacyPath('openssl-1.1.1w'), 's_server', '-accept', `127.0.0.1:${port}`, '-cert', fx.certFile, '-key', fx.keyFile, '-CAfile', fx.certFile, '-tls1_3'];
    const s = await startSServer(cmd, { ALUDEL_PRELOAD_LOG: log.file, ALUDEL_PRELOAD_DEBUG: '1' }, () => `\n--- preload log:\n${log.lines().join('\n')}`);
    const srv = s.child;
    server = srv;
    const serverOut = s.output;

    const before = readTlsStat();
    // The fixture's self-signed certificate is the client's certificate and its CA too.
    const c = spawnSClient({ port, args: ['-tls1_3', '-enable_pha', '-cert', fx.certFile, '-key', fx.keyFile, '-CAfile', fx.certFile] });
    client = c;
    await c.waitFor('the handshake', (o) => /Verify return code: 0/.test(o), STEP_MS);
    await until("the preload's line: the server's connection in the kernel", () => log.lines().some((l) => IN_KERNEL.test(l)), STEP_MS, serverOut);
    // A line from the server first: what the client printed up to it (tickets included) is set aside.
    s.write('before-pha\n');
    await c.waitFor('before-pha', (o) => o.includes('before-pha\n'), STEP_MS);
    const mark = c.stdout().length;

    // s_server takes a command only alone in one read of its stdin: the next line waits for its answer.
    s.write('c\n');
    await until("s_server's answer to c", () => /Failed to initiate request|SSL_do_handshake -> /.test(s.out()), STEP_MS, serverOut);
    s.write('after-pha\n');
    await c.waitFor('after-pha', (o) => o.includes('after-pha\n'), STEP_MS);
    assert.equal(c.stdout().subarray(mark).toString('latin1'), 'after-pha\n', 'the client read exactly the server line after the request, no record bytes as data');
    assert.match(s.out(), /Failed to initiate request/, 's_server was told the request could not be made');
    assert.doesNotMatch(s.out(), /SSL_do_handshake -> /, 's_server did not go on to a handshake');

    c.write('from-client\n');
    await until('the client line at the server', () => s.out().includes('from-client\n'), STEP_MS, serverOut);
    const refused = log.lines().filter((l) => REFUSED.test(l));
    assert.equal(refused.length, 1, `one event line:\n${log.lines().join('\n')}`);
    assert.equal(delta(before, readTlsStat()).TlsDecryptError, 0, 'TlsDecryptError');
  });
});

describe('aludel run -- openssl 1.1.1w s_client -enable_pha: TLS 1.3 post-handshake authentication asked by the server', { timeout: 600_000 }, () => {
  const FALLBACK = /^aludel-preload: pid \d+: fd \d+ stays with OpenSSL: TLS 1\.3 post-handshake authentication offered \(a CertificateRequest from the server can only be answered by OpenSSL\) \(TLS 1\.3 /;
  let server: Awaited<ReturnType<typeof startSServer>> | undefined;
  const clients: SClient[] = [];

  after(async () => {
    for (const c of clients) await c.stop();
    server?.child.kill('SIGTERM');
  });

  test('the client that offers it stays with OpenSSL, answers with its certificate, and data goes on; one that does not goes to the kernel', async () => {
    const log = preloadLog(fx.dir, 's_client-pha');
    const port = await freePort();
    const s = await startSServer(['openssl', 's_server', '-accept', `127.0.0.1:${port}`, '-cert', fx.certFile, '-key', fx.keyFile, '-CAfile', fx.certFile, '-tls1_3'], {});
    server = s;
    const client = (pha: boolean): SClient => {
      const c = spawnSClient({
        port,
        openssl: legacyPath('openssl-1.1.1w'),
        wrapper: aludelRun(),
        env: { ALUDEL_PRELOAD_LOG: log.file },
        args: ['-tls1_3', ...(pha ? ['-enable_pha'] : []), '-cert', fx.certFile, '-key', fx.keyFile, '-CAfile', fx.certFile],
      });
      clients.push(c);
      return c;
    };

    const before = readTlsStat();
    const c = client(true);
    // The client's connection was examined at the end of SSL_connect, before s_client prints its verify result.
    await c.waitFor('the handshake', (o) => /Verify return code: 0/.test(o), READY_MS);
    s.write('c\n');
    await until("s_server's answer to c", () => /SSL_do_handshake -> |Failed to initiate request/.test(s.out()), STEP_MS, s.output);
    assert.match(s.out(), /SSL_do_handshake -> 1/, 's_server sent its CertificateRequest');
    s.write('after-pha\n');
    await c.waitFor('after-pha', (o) => o.includes('after-pha\n'), STEP_MS);
    c.write('from-client\n');
    await until('the client line at the server', () => s.out().includes('from-client\n'), STEP_MS, s.output);
    // The client answered with its certificate: s_server verified it (depth=0, its callback's lines), after `c`.
    assert.match(s.out().slice(s.out().indexOf('SSL_do_handshake -> ')), /depth=0 CN ?= ?localhost/, `the client's certificate at the server:\n${s.out().slice(-2000)}`);
    assert.doesNotMatch(c.stderr(), /unexpected message/, 'the client did not end the connection');
    const d = delta(before, readTlsStat());
    assert.equal(d.TlsTxSw, 0, `the client offering post-handshake authentication stays with OpenSSL (${JSON.stringify(d)})`);
    await c.stop();

    const plainBefore = readTlsStat();
    const plain = client(false);
    await plain.waitFor('the handshake', (o) => /Verify return code: 0/.test(o), READY_MS);
    s.write('to-plain\n');
    await plain.waitFor('to-plain', (o) => o.includes('to-plain\n'), STEP_MS);
    const dp = delta(plainBefore, readTlsStat());
    await until("the preload's line on the first client's connection", () => log.lines().some((l) => FALLBACK.test(l)), STEP_MS, () => log.lines().join('\n'));
    assert.equal(dp.TlsTxSw, 1, `a client without it is in the kernel (${JSON.stringify(dp)})`);
    assert.equal(dp.TlsRxSw, 1, `a client without it is in the kernel (${JSON.stringify(dp)})`);
    assert.equal(log.lines().filter((l) => FALLBACK.test(l)).length, 1, log.lines().join('\n'));
  });
});

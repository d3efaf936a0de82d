/**
 * Client-initiated TLS 1.2 renegotiation against nginx 1.11.1 (OpenSSL 1.0.2f)
 * under `aludel run`, compared with the same nginx without it (run in the
 * kTLS VM by scripts/run-tests.sh).
 *
 * OpenSSL 1.0.2 has no SSL_OP_NO_RENEGOTIATION: on a client's ClientHello
 * after the handshake it starts a new handshake and first tells the program's
 * info callback (SSL_CB_HANDSHAKE_START). nginx before 1.13 refuses
 * renegotiation there (CVE-2009-3555): its callback marks the connection and,
 * when SSL_read returns, nginx closes it and logs `[notice] SSL renegotiation
 * disabled`. Under `aludel run` the kernel has the connection, so the preload
 * reads the ClientHello; the kernel cannot renegotiate, so it refuses with
 * no_renegotiation, and it must tell the program as OpenSSL would, so that
 * nginx closes the connection and logs the same line as without run.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { connectionsUlp, legacyPath, spawnSClient, startLegacyServer, type ConnectionUlp, type LegacyServer } from '../support/legacy.js';
import { aludelRun, preloadLog } from '../support/run-origins.js';
import { delta, hasKernelTls, readTlsStat } from '../support/tls-stat.js';
import { delay } from '../support/wait.js';

/** Start-up under `aludel run` in the VM: node loading the CLI on the emulated CPU takes seconds. */
const READY_MS = 180_000;
const WAIT_MS = 30_000;
const BODY = 'renegotiation-test-body\n';
const GET = 'GET /a.txt HTTP/1.1\r\nHost: localhost\r\n\r\n';
/** The preload's event lines (not its strategy line). */
const EVENT_LINE = /^aludel-preload: pid \d+: (?!strategy )/;

let fx: Fixtures<'x.bin'>;
let server: LegacyServer;
let plain: LegacyServer;
let log: ReturnType<typeof preloadLog>;

const inKernel = (c: ConnectionUlp): boolean => c.tls !== null && c.tls.txConf !== 'none' && c.tls.rxConf !== 'none';
const answered = (out: string): number => out.split(BODY).length - 1;

async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + WAIT_MS;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out (${WAIT_MS} ms) waiting for ${what}`);
    await delay(50);
  }
}

/** nginx's error log lines as `[level] message`, without time, pid, connection number and addresses. */
function nginxLines(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => l.replace(/^\S+ \S+ \[(\w+)\] \d+#\d+: (\*\d+ )?/, '[$1] ').replace(/, client: .*$/, ''));
}

/**
 * s_client of OpenSSL 1.0.2f: one request answered, then `R` (SSL_renegotiate)
 * and a second request, which sends the ClientHello. Returns what the client
 * and nginx did.
 */
async function renegotiate(srv: LegacyServer, underRun: boolean) {
  const errFrom = srv.nginx!.errorLog().length;
  const c = spawnSClient({ port: srv.port, openssl: legacyPath('openssl-1.0.2f'), args: ['-msg', '-tls1_2', '-CAfile', fx.certFile] });
  try {
    // 1.0.2f does not take a self-signed leaf as its own anchor (code 21): the handshake is what counts here.
    await c.waitFor('handshake', (o) => /Verify return code: \d+/.test(o), 60_000);
    if (underRun) await until(() => connectionsUlp(srv.pid).some(inKernel), "the server's connection in the kernel both ways");
    c.write(GET);
    await c.waitFor('the first response', (o) => answered(o) === 1, WAIT_MS);
    c.write('R\n'); // s_client: "R" alone on a line calls SSL_renegotiate (man s_client, CONNECTED COMMANDS)
    await c.waitFor('RENEGOTIATING', () => /RENEGOTIATING/.test(c.stderr()), WAIT_MS);
    c.write(GET);
    const exited = await Promise.race([c.exited.then(() => true), delay(WAIT_MS).then(() => false)]);
    // The server's side is gone too: no descriptor left open (nginx logs just after closing).
    await until(() => connectionsUlp(srv.pid).length === 0, 'nginx to close the connection');
    await delay(200);
    return { exited, answered: answered(c.output()), nginx: nginxLines(srv.nginx!.errorLog().slice(errFrom)), output: c.output() };
  } finally {
    await c.stop(0);
  }
}

describe('client-initiated renegotiation, nginx 1.11.1 (OpenSSL 1.0.2f) under aludel run vs alone', { timeout: 900_000 }, () => {
  before(async () => {
    assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
    assert.equal(process.geteuid?.(), 0, 'the kernel shows TLS ULP state (sock_diag) to CAP_NET_ADMIN only: run as root (the VM does)');
    fx = await makeFixtures({ 'x.bin': 1 });
    fs.writeFileSync(path.join(fx.root, 'a.txt'), BODY);
    log = preloadLog(fx.dir, 'nginx-1.11.1');
    const common = { root: fx.root, certFile: fx.certFile, keyFile: fx.keyFile, readyTimeoutMs: READY_MS };
    [server, plain] = await Promise.all([
      startLegacyServer('nginx-1.11.1', { ...common, wrapper: aludelRun(), env: { ALUDEL_PRELOAD_LOG: log.file } }),
      startLegacyServer('nginx-1.11.1', common),
    ]);
  });

  after(async () => {
    await Promise.all([server?.stop(), plain?.stop()]);
    fx?.cleanup();
  });

  test('nginx closes the connection and logs "SSL renegotiation disabled", as without aludel run; one preload line', async () => {
    const alone = await renegotiate(plain, false);
    assert.ok(alone.exited, `without run: s_client still connected:\n${alone.output.slice(-3000)}`);
    assert.deepEqual(alone.nginx, ['[notice] SSL renegotiation disabled while keepalive'], 'nginx without aludel run');

    const logFrom = log.lines().length;
    const before = readTlsStat();
    const underRun = await renegotiate(server, true);
    const d = delta(before, readTlsStat());
    assert.ok(underRun.exited, `under run: s_client still connected:\n${underRun.output.slice(-3000)}`);
    assert.equal(d.TlsTxSw, 1, `the connection was in the kernel (${JSON.stringify(d)})`);
    assert.equal(d.TlsDecryptError, 0, 'no record the kernel could not decrypt');
    assert.deepEqual(underRun.nginx, alone.nginx, 'nginx logs what it logs without aludel run');
    assert.equal(underRun.answered, alone.answered, 'the request after the ClientHello: answered as without aludel run');
    assert.equal(underRun.answered, 1);
    const ev = log.lines().slice(logFrom).filter((l) => EVENT_LINE.test(l));
    assert.equal(ev.length, 1, ev.join('\n'));
    assert.match(ev[0]!, new RegExp(`^aludel-preload: pid ${server.pid}: fd \\d+: TLS 1\\.2 renegotiation refused`));
    assert.doesNotMatch(underRun.output, /bad record mac|decryption failed/i);
  });
});

/**
 * A client that closes its side right after its last handshake message, as a
 * TLS health check or a port scanner does (and any client whose FIN arrives
 * before the server has read its Finished), with nginx 1.18 / OpenSSL 1.1.1w
 * under `aludel run`, in the kTLS VM.
 *
 * The kernel takes the TLS ULP only on an ESTABLISHED socket (tls_init:
 * ENOTCONN otherwise); once the peer's FIN is in, the socket is CLOSE_WAIT.
 * The connection then rightly stays with OpenSSL. What the admin reads about
 * it must say so: the preload's once-a-process line for "the kernel refused
 * the keys" is meant for a kernel that cannot take a suite (no ChaCha20
 * before Linux 5.11, no TLS 1.3 before 5.1) and must not be spent, with a
 * misleading reason, on a client that had simply gone.
 *
 * Made deterministic by stopping nginx (SIGSTOP) the moment the client's
 * second flight reaches a relay in between, before nginx reads it: the
 * client's Finished and then its FIN are in nginx's socket (CLOSE_WAIT) when
 * nginx goes on (SIGCONT).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { readProcTcp, socketInodes, TCP_LISTEN } from '../../src/scan/proc-net.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { splitHttp, startLegacyNginx, type LegacyNginx } from '../support/legacy.js';
import { aludelRun, preloadLog } from '../support/run-origins.js';
import { delta, hasKernelTls, readTlsStat } from '../support/tls-stat.js';
import { delay } from '../support/wait.js';

const FILES = { 'small.bin': 16385 };
const TCP_CLOSE_WAIT = 8; // include/net/tcp_states.h
/** The preload's lines other than its strategy line. */
const EVENT = /^aludel-preload: pid \d+: (?!strategy )/;

let fx: Fixtures<keyof typeof FILES>;
let nginx: LegacyNginx;
let log: ReturnType<typeof preloadLog>;

before(async () => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  fx = await makeFixtures(FILES);
  log = preloadLog(fx.dir, 'closed-peer');
  nginx = await startLegacyNginx({
    nginx: 'nginx-1.18',
    root: fx.root,
    certFile: fx.certFile,
    keyFile: fx.keyFile,
    protocols: 'TLSv1.2 TLSv1.3',
    ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256',
    wrapper: aludelRun(),
    env: { ALUDEL_PRELOAD_LOG: log.file },
    readyTimeoutMs: 180_000,
  });
});

/** Lets nginx go on; it may be gone already. */
function resume(): void {
  try {
    process.kill(nginx.pid, 'SIGCONT');
  } catch {
    // ESRCH: nothing left to resume
  }
}

after(async () => {
  if (nginx) resume();
  await nginx?.stop();
  fx?.cleanup();
});

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out (${timeoutMs} ms) waiting for ${what}`);
    await delay(50);
  }
}

/** TCP states of nginx's connections (not its listener). */
function nginxConnectionStates(): number[] {
  const inodes = socketInodes(nginx.pid);
  return readProcTcp(nginx.pid)
    .filter((r) => inodes.has(r.inode) && r.state !== TCP_LISTEN)
    .map((r) => r.state);
}

/**
 * A relay to nginx that stops nginx (SIGSTOP) as the client's second flight
 * (the first client record that is not a handshake record: TLS 1.3's
 * compatibility ChangeCipherSpec, then Finished) arrives, before passing it on.
 */
async function stoppingRelay(): Promise<{ port: number; stopped: () => boolean; close: () => void }> {
  let stopped = false;
  const server = net.createServer({ allowHalfOpen: true }, (down) => {
    const up = net.connect({ host: '127.0.0.1', port: nginx.port, allowHalfOpen: true });
    up.on('data', (d: Buffer) => down.writable && down.write(d));
    up.on('end', () => down.end());
    up.on('error', () => down.destroy());
    down.on('data', (d: Buffer) => {
      if (!stopped && d[0] !== 0x16) {
        process.kill(nginx.pid, 'SIGSTOP');
        stopped = true;
      }
      up.write(d);
    });
    down.on('end', () => up.end());
    down.on('error', () => up.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { port: (server.address() as net.AddressInfo).port, stopped: () => stopped, close: () => server.close() };
}

describe('a client gone right after the handshake (nginx 1.18 under run, TLS 1.3)', { timeout: 400_000 }, () => {
  test('the connection stays with OpenSSL and the line says the client had closed, not that the kernel refused the keys', async () => {
    const relay = await stoppingRelay();
    try {
      const s = tls.connect({ host: '127.0.0.1', port: relay.port, ca: fs.readFileSync(fx.certFile), servername: 'localhost', minVersion: 'TLSv1.3' });
      s.on('error', () => undefined); // nginx may answer the closed connection with a reset
      await new Promise<void>((resolve, reject) => {
        s.once('secureConnect', () => resolve());
        s.once('error', reject);
      });
      s.end(); // close_notify and FIN, behind the Finished
      await until(() => relay.stopped() && nginxConnectionStates().includes(TCP_CLOSE_WAIT), 60_000, "nginx's socket in CLOSE_WAIT (the client's FIN in)");
    } finally {
      resume();
      relay.close();
    }
    await until(() => log.lines().some((l) => EVENT.test(l)), 60_000, "the preload's line for that connection");
    const lines = log.lines().filter((l) => EVENT.test(l));
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0]!, /stays with OpenSSL: the client had already closed the connection/, lines[0]);
    assert.doesNotMatch(lines[0]!, /the kernel refused the keys/, lines[0]);

    // nginx goes on, and the next client's connection is in the kernel.
    const before = readTlsStat();
    const c = tls.connect({ host: '127.0.0.1', port: nginx.port, ca: fs.readFileSync(fx.certFile), servername: 'localhost', minVersion: 'TLSv1.3' });
    const chunks: Buffer[] = [];
    c.on('data', (d: Buffer) => chunks.push(d));
    await new Promise<void>((resolve, reject) => {
      c.once('secureConnect', () => c.write(`GET /${fx.files['small.bin'].name} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`));
      c.once('close', () => resolve());
      c.once('error', reject);
    });
    const { status, body } = splitHttp(Buffer.concat(chunks));
    assert.match(status, /^HTTP\/1\.1 200/);
    assert.equal(sha256(body), fx.files['small.bin'].sha256);
    const d = delta(before, readTlsStat());
    assert.equal(d.TlsTxSw, 1, JSON.stringify(d));
    assert.equal(d.TlsRxSw, 1, JSON.stringify(d));
    assert.deepEqual(nginx.severe(), [], 'no [crit]/[alert] from nginx');
  });
});

/**
 * Garbage on a kTLS socket after the handshake, written under the TLS layer
 * straight onto the TCP socket: well-formed application_data record headers
 * (0x17 0x03 0x03 len) with random payloads, which the kernel fails to
 * decrypt (TlsDecryptError), and random bytes that are no record at all. The
 * abused connections must be closed, a connection opened before and used
 * after the abuse must still get the right bytes, and the process's
 * descriptors must come back.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, test } from 'node:test';
import { serveArgs, startAludel, type Running } from '../support/aludel-process.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { delta, hasKernelTls, readTlsStat } from '../support/tls-stat.js';
import { fdsBeyondKept } from '../fuzz/proc-stats.js';
import { parseResponses } from '../fuzz/response-reader.js';

let fx: Fixtures;
let server: Running;
let ca: Buffer;

before(async () => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  fx = await makeFixtures({ 'small.bin': 20_000 });
  ca = fs.readFileSync(fx.certFile);
  // --offload kernel: refuse to start without kTLS; TLS 1.2, where the kernel also decrypts (RX).
  // Emulated CPU in the VM: long timeouts.
  server = await startAludel(serveArgs(fx, '--offload', 'kernel', '--tls-max', '1.2', '--handshake-timeout', '120s', '--idle-timeout', '300s'), { startTimeoutMs: 120_000 });
});

after(async () => {
  await server?.stop();
  fx?.cleanup();
});

interface Conn {
  tcp: net.Socket;
  tls: tls.TLSSocket;
  closed: Promise<void>;
  isClosed(): boolean;
}

/** A TLS connection over a TCP socket we keep a handle on, to write under the TLS layer. */
async function open(): Promise<Conn> {
  const tcp = net.connect(server.port, '127.0.0.1');
  const s = tls.connect({ socket: tcp, ca, servername: 'localhost' });
  let done = false;
  const closed = new Promise<void>((resolve) => {
    const end = (): void => {
      done = true;
      resolve();
    };
    tcp.once('close', end);
  });
  s.on('error', () => undefined);
  tcp.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    s.once('secureConnect', resolve);
    s.once('error', reject);
  });
  return { tcp, tls: s, closed, isClosed: () => done };
}

/** GET over a keep-alive connection; resolves with the one response. */
function get(c: Conn, path: string, timeoutMs = 120_000): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const t = setTimeout(() => done(new Error(`no response to ${path} within ${timeoutMs} ms`)), timeoutMs);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const p = parseResponses(buf, () => 'GET', false);
      if (p.responses.length > 0) done(null, p.responses[0]!);
    };
    const done = (err: Error | null, r?: { status: number; body: Buffer }): void => {
      clearTimeout(t);
      c.tls.off('data', onData);
      if (err) reject(err);
      else resolve({ status: r!.status, body: r!.body });
    };
    c.tls.on('data', onData);
    c.tls.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
  });
}

async function within(p: Promise<void>, ms: number, what: string): Promise<void> {
  let t: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms)))]);
  clearTimeout(t);
}

function record(type: number, payload: Buffer): Buffer {
  const h = Buffer.from([type, 0x03, 0x03, 0, 0]);
  h.writeUInt16BE(payload.length, 3);
  return Buffer.concat([h, payload]);
}

test('garbage records under a kTLS connection: decrypt errors counted, that connection closed, others unharmed, descriptors back', { timeout: 900_000 }, async (t) => {
  const want = fx.files['small.bin']!;
  const pid = server.child.pid!;
  const from = server.mark();

  // The connection that must survive: opened before the abuse, used before and after.
  const keeper = await open();
  const first = await get(keeper, '/small.bin');
  assert.equal(first.status, 200);
  assert.equal(crypto.createHash('sha256').update(first.body).digest('hex'), want.sha256);
  const established = await server.waitForLog((l) => l.msg === 'TLS established', 60_000, from);
  assert.equal(established.rx, 'kernel', `the server decrypts in the kernel: ${JSON.stringify(established)}`);
  assert.equal(established.tx, 'kernel', `and encrypts there: ${JSON.stringify(established)}`);
  const fdsBefore = fdsBeyondKept(pid)!;
  const statBefore = readTlsStat();

  // 1. Well-formed application_data headers with random payloads: the kernel cannot decrypt them.
  const victim = await open();
  // One real exchange first: the server has then switched this socket's RX to the kernel.
  assert.equal((await get(victim, '/small.bin')).status, 200);
  const victimLog = server.logs.filter((l) => l.msg === 'TLS established').at(-1)!;
  assert.equal(victimLog.rx, 'kernel', `victim connection has kernel RX: ${JSON.stringify(victimLog)}`);
  const garbage = Buffer.concat([record(0x17, crypto.randomBytes(200)), record(0x17, crypto.randomBytes(17)), record(0x17, crypto.randomBytes(4000))]);
  victim.tcp.write(garbage);
  await within(victim.closed, 120_000, 'the connection with undecryptable records closed');
  const d = delta(statBefore, readTlsStat());
  t.diagnostic(`after the garbage records: ${JSON.stringify(d)}`);
  assert.ok((d.TlsDecryptError ?? 0) >= 1, `TlsDecryptError grew: ${JSON.stringify(d)}`);

  // 2. Bytes that are no TLS record at all (unknown content type, bad version), and a record header claiming 64 KiB.
  for (const junk of [Buffer.concat([Buffer.from([0x00, 0xaa]), crypto.randomBytes(300)]), crypto.randomBytes(1000), Buffer.from([0x17, 0x03, 0x03, 0xff, 0xff, 1, 2, 3])]) {
    const c = await open();
    assert.equal((await get(c, '/small.bin')).status, 200);
    c.tcp.write(junk);
    // A record header announcing more than is sent leaves the kernel waiting: the client ends.
    if (junk[0] === 0x17) c.tcp.end();
    await within(c.closed, 120_000, `the connection sent ${junk.length} junk bytes closed`);
  }

  // 3. The connection opened before the abuse still works, with the right bytes.
  const again = await get(keeper, '/small.bin');
  assert.equal(again.status, 200);
  assert.equal(crypto.createHash('sha256').update(again.body).digest('hex'), want.sha256, 'bytes after the abuse');
  assert.equal(keeper.isClosed(), false);
  assert.equal(server.child.exitCode, null, 'server still running');

  // 4. The abused connections' descriptors are released.
  const deadline = Date.now() + 60_000;
  let fds = fdsBeyondKept(pid)!;
  while (fds > fdsBefore && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 200));
    fds = fdsBeyondKept(pid)!;
  }
  t.diagnostic(`descriptors: ${fdsBefore} before the abuse, ${fds} after`);
  assert.ok(fds <= fdsBefore, `descriptors back to ${fdsBefore} (now ${fds})`);
  keeper.tls.destroy();
});

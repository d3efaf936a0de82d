/**
 * Per-connection bounds (issue 12): --max-connections refuses at accept
 * without reading and serves again once a connection closes; a client that
 * stops reading a large file costs the server a bounded amount of memory.
 * Real clients, loopback, port 0.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { openStalled } from '../../bench/stalled-clients.js';
import { serveArgs, startAludel, type Running } from '../support/aludel-process.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { fdsBeyondKept } from '../fuzz/proc-stats.js';

const KiB = 1024;

/** Descriptors, serve's kept files left out (fdsBeyondKept). */
function fdCount(pid: number): number {
  return fdsBeyondKept(pid)!;
}

function rssAnonKiB(pid: number): number {
  return Number(/^RssAnon:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
}

/** Resolves once `check` is true, polling every 50 ms, or rejects after `ms`. */
async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function handshake(port: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'localhost' });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
}

/** A plain TCP connection that sends nothing: resolves with the bytes it got before the server closed it. */
function refusedBytes(port: number): Promise<number> {
  return new Promise((resolve) => {
    let got = 0;
    const s = net.connect(port, '127.0.0.1');
    s.on('data', (d) => (got += d.length));
    s.once('error', () => undefined);
    s.once('close', () => resolve(got));
  });
}

describe('--max-connections', () => {
  let fx: Fixtures;
  let server: Running;
  before(async () => {
    fx = await makeFixtures({ small: 1024 });
    server = await startAludel(serveArgs(fx, '--max-connections', '5', '--offload', 'userspace'));
  });
  after(async () => {
    await server?.stop();
    await fx?.cleanup();
  });

  test('the 6th connection is closed unread and logged; once one closes, connections are served again; fds go back', async () => {
    const pid = server.child.pid!;
    const fdsAtStart = fdCount(pid);
    const open: tls.TLSSocket[] = [];
    for (let i = 0; i < 5; i++) open.push(await handshake(server.port));
    const mark = server.mark();
    assert.equal(await refusedBytes(server.port), 0, 'refused without a byte');
    await assert.rejects(handshake(server.port), 'a TLS client beyond the cap gets no handshake');
    const line = await server.waitForLog((l) => /connection limit reached/.test(l.msg), 5000, mark);
    assert.equal(line.maxConnections, 5);
    assert.ok(Number(line.refused) >= 1);
    open.shift()!.destroy();
    // The server sees the close asynchronously: a new handshake succeeds once it has.
    let again: tls.TLSSocket | null = null;
    const end = Date.now() + 5000;
    while (again === null && Date.now() < end) again = await handshake(server.port).catch(() => null);
    assert.ok(again, 'served again after a connection closed');
    open.push(again);
    for (const s of open) s.destroy();
    await until(() => fdCount(pid) === fdsAtStart, 5000, `fds back at ${fdsAtStart} (now ${fdCount(pid)})`);
  });
});

describe('stalled readers', () => {
  let fx: Fixtures;
  let server: Running;
  before(async () => {
    fx = await makeFixtures({ big: { name: 'big.bin', size: 32 * 1024 * KiB } });
    // A fixed young generation, so that RSS growth is per-connection memory and not V8 sizing its heap to the burst.
    server = await startAludel(serveArgs(fx, '--offload', 'userspace'), { env: { NODE_OPTIONS: '--max-semi-space-size=1' } });
  });
  after(async () => {
    await server?.stop();
    await fx?.cleanup();
  });

  test('200 stalled downloads of a 32 MiB file: under 200 KiB of anonymous memory each (was ~540 with two 256 KiB read buffers)', async () => {
    const pid = server.child.pid!;
    const target = { host: '127.0.0.1', port: server.port, path: '/big.bin' };
    const warm = await openStalled({ ...target, connections: 16 });
    await warm.close();
    await new Promise((r) => setTimeout(r, 1000));
    const beforeKiB = rssAnonKiB(pid);
    const clients = await openStalled({ ...target, connections: 200 });
    try {
      assert.equal(clients.failed, 0, clients.errors.join('; '));
      // The kernel queues fill within moments on loopback; what the server holds then stays.
      await new Promise((r) => setTimeout(r, 2000));
      const perConnection = (rssAnonKiB(pid) - beforeKiB) / clients.stalled;
      assert.ok(perConnection < 200, `${perConnection.toFixed(1)} KiB per stalled connection`);
    } finally {
      await clients.close();
    }
  });
});

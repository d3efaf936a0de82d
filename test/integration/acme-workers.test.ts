/**
 * --acme-domain with --workers 2, against Debian's pebble: the primary orders
 * once for every worker, each worker takes the new certificate into service
 * (handshakes spread over both present it), a pending challenge reaches every
 * worker (one restarted mid-order included) while the primary's
 * --redirect-http answers it for real validation, a TLS-ALPN-01 challenge is
 * answered by every worker on its TLS listener, and a renewal reaches the
 * next handshakes on every worker.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { acmeArgs, ISSUED, peerCertificate } from '../support/acme-serve.js';
import { acmeHooks } from '../support/acme-test-hooks.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { freePort } from '../support/loopback-port.js';
import { adminAddress, status } from '../support/metrics.js';
import { pebbleSkip, startPebble } from '../support/pebble.js';
import { waitUntil } from '../support/wait.js';

const skip = pebbleSkip();
const ORDERING = 'acme: ordering a certificate';
const TAKEN = 'acme: new certificate from the primary in service: new handshakes get it, connections in flight keep theirs';
const CHALLENGE = 'acme: challenge from the primary';

const since = (p: Running, from: number, msg: string): LogLine[] => p.logs.slice(from).filter((l) => l.msg === msg);
const pidsOf = (lines: LogLine[]): Set<number> => new Set(lines.map((l) => l.pid as number));

async function workerPids(p: Running): Promise<number[]> {
  return (await p.waitForLog((l) => Array.isArray(l.workerPids))).workerPids as number[];
}

/** Every worker in `pids` logged `msg` (from `from` on). */
function allLogged(p: Running, pids: readonly number[], msg: string, from = 0): Promise<void> {
  return waitUntil(() => pids.every((pid) => since(p, from, msg).some((l) => l.pid === pid)), 15_000);
}

/**
 * New connections until both workers have handshaked (the kernel picks the
 * worker); each presents a certificate `check` accepts.
 */
async function handshakesOnBoth(p: Running, pids: readonly number[], check: (serial: string, issuerCN: string) => void): Promise<void> {
  const from = p.mark();
  for (let i = 0; i < 40 && pidsOf(since(p, from, 'TLS established')).size < pids.length; i++) {
    const c = await peerCertificate(p.port);
    check(c.serialNumber, String(c.issuer.CN));
    await waitUntil(() => since(p, from, 'TLS established').length > i, 5_000);
  }
  assert.deepEqual([...pidsOf(since(p, from, 'TLS established'))].sort(), [...pids].sort(), 'handshakes reached both workers');
}

/**
 * An acme-tls/1 handshake (RFC 8737) with SNI localhost, as the CA makes it:
 * the leaf presented and the protocol negotiated, once the server has closed
 * (closing first would cut the handshake short on the server's side).
 */
function alpnChallengeHandshake(port: number): Promise<{ raw: Buffer; alpn: string | false | null }> {
  return new Promise((resolve, reject) => {
    let seen: { raw: Buffer; alpn: string | false | null } | null = null;
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ALPNProtocols: ['acme-tls/1'], rejectUnauthorized: false }, () => {
      seen = { raw: s.getPeerCertificate().raw, alpn: s.alpnProtocol };
    });
    s.resume();
    s.once('close', () => (seen ? resolve(seen) : reject(new Error('closed before the handshake completed'))));
    s.once('error', (err) => (seen ? undefined : reject(err)));
    s.setTimeout(10_000, () => s.destroy(new Error('timed out')));
  });
}

describe('ACME with --workers 2 (pebble)', { skip, concurrency: false }, () => {
  let fx: StandardFixtures;
  let work: string;
  before(async () => {
    fx = await makeFixtures();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-acme-workers-'));
  });
  after(() => {
    fx?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('one order, by the primary; new handshakes on both workers present the Pebble-issued certificate; the primary\'s /status shows it', { timeout: 90_000 }, async () => {
    const pebble = await startPebble(path.join(work, 'p1'), { alwaysValid: true });
    const server = await startAludel(acmeArgs(fx, pebble, path.join(work, 'store1'), '--workers', '2'), { startTimeoutMs: 20_000 });
    try {
      const pids = await workerPids(server);
      const issued = await server.waitForLog((l) => l.msg === ISSUED, 30_000);
      assert.equal(issued.pid, server.child.pid, 'the primary orders');
      await allLogged(server, pids, TAKEN);
      await handshakesOnBoth(server, pids, (serial, issuer) => {
        assert.match(issuer, /Pebble Intermediate CA/);
        assert.equal(serial, issued.serial);
      });
      const st = (await status(await adminAddress(server))) as unknown as { acme: Array<Record<string, unknown>>; workers: number[] };
      assert.deepEqual([...st.workers].sort(), [...pids].sort());
      assert.equal(st.acme.length, 1);
      assert.equal(st.acme[0]!.state, 'issued');
      assert.equal(st.acme[0]!.serial, issued.serial);
      // One order for all: no worker orders, and the primary ordered once.
      const orders = since(server, 0, ORDERING);
      assert.deepEqual(orders.map((l) => l.pid), [server.child.pid]);
      assert.equal(since(server, 0, ISSUED).length, 1);
    } finally {
      await server.stop();
      await pebble.stop();
    }
  });

  test('real HTTP-01: the pending challenge reaches every worker (a restarted one too), --redirect-http answers it on every connection, and pebble validates', { timeout: 120_000 }, async () => {
    const redirectPort = await freePort();
    const pebble = await startPebble(path.join(work, 'p2'), { alwaysValid: false, httpPort: redirectPort });
    const hooks = acmeHooks(path.join(work, 'hooks2'));
    hooks.holdChallenge();
    const args = acmeArgs(fx, pebble, path.join(work, 'store2'), '--workers', '2', '--redirect-http', `127.0.0.1:${redirectPort}`, '--log-level', 'debug');
    const server = await startAludel(args, { env: hooks.env, startTimeoutMs: 20_000 });
    try {
      const pids = await workerPids(server);
      await waitUntil(() => hooks.pendingChallenge() !== null, 30_000);
      const pending = hooks.pendingChallenge()!;
      const added = (l: LogLine): boolean => l.msg === CHALLENGE && l.op === 'add' && l.challenge === pending.token;
      await waitUntil(() => pids.every((pid) => server.logs.some((l) => added(l) && l.pid === pid)), 10_000);
      // A worker started while the challenge is pending gets it with its start.
      const mark = server.mark();
      process.kill(pids[0]!, 'SIGKILL');
      const restarted = Number((await server.waitForLog((l) => l.msg === 'worker ready' && l.workerPid !== pids[0], 20_000, mark)).workerPid);
      await waitUntil(() => server.logs.some((l) => added(l) && l.pid === restarted), 10_000);
      // The CA's connections may land anywhere: 20 new connections all get the key authorization.
      for (let i = 0; i < 20; i++) {
        const res = await fetch(`http://127.0.0.1:${redirectPort}/.well-known/acme-challenge/${pending.token}`, { redirect: 'manual' });
        assert.equal(res.status, 200);
        assert.equal(await res.text(), pending.keyAuthorization);
      }
      const released = server.mark();
      hooks.releaseChallenge();
      const issued = await server.waitForLog((l) => l.msg === ISSUED, 30_000, released);
      const now = [pids[1]!, restarted];
      // Pebble's validation went through --redirect-http, which the primary holds.
      const validations = since(server, released, 'acme: HTTP-01 challenge answered');
      assert.ok(validations.length >= 1, 'pebble fetched the token');
      assert.deepEqual([...pidsOf(validations)], [server.child.pid]);
      await allLogged(server, now, TAKEN);
      await handshakesOnBoth(server, now, (serial) => assert.equal(serial, issued.serial));
      // Done: every worker dropped it, and the listener redirects the token again.
      await waitUntil(() => now.every((pid) => server.logs.some((l) => l.msg === CHALLENGE && l.op === 'remove' && l.challenge === pending.token && l.pid === pid)), 10_000);
      const res = await fetch(`http://127.0.0.1:${redirectPort}/.well-known/acme-challenge/${pending.token}`, { redirect: 'manual' });
      assert.equal(res.status, 308);
    } finally {
      hooks.releaseChallenge();
      await server.stop();
      await pebble.stop();
    }
  });

  test('TLS-ALPN-01 (no --redirect-http): a held challenge is answered by both workers on acme-tls/1 handshakes, then pebble validates it', { timeout: 120_000 }, async () => {
    const tlsPort = await freePort();
    const pebble = await startPebble(path.join(work, 'p4'), { alwaysValid: false, tlsPort });
    const hooks = acmeHooks(path.join(work, 'hooks4'));
    hooks.holdChallenge();
    const args = acmeArgs(fx, pebble, path.join(work, 'store4'), '--workers', '2', '--listen', `127.0.0.1:${tlsPort}`);
    const server = await startAludel(args, { env: hooks.env, startTimeoutMs: 20_000 });
    try {
      const pids = await workerPids(server);
      assert.equal((await server.waitForLog((l) => l.msg === ORDERING, 30_000)).challenge, 'tls-alpn-01', 'every worker answers it, so it is the default');
      await waitUntil(() => hooks.pendingChallenge() !== null, 30_000);
      const pending = hooks.pendingChallenge()!;
      assert.equal(pending.kind, 'tls-alpn-01');
      const challengeDer = new X509Certificate(fs.readFileSync(String(pending.file))).raw;
      // New connections until both workers have answered one: each gets the challenge certificate and acme-tls/1.
      const answered = (): Set<number> => pidsOf(since(server, 0, 'acme: TLS-ALPN-01 challenge answered'));
      for (let i = 0; i < 40 && answered().size < 2; i++) {
        const seen = await alpnChallengeHandshake(server.port);
        assert.equal(seen.alpn, 'acme-tls/1');
        assert.ok(seen.raw.equals(challengeDer), 'the challenge certificate');
        await waitUntil(() => since(server, 0, 'acme: TLS-ALPN-01 challenge answered').length > i, 5_000);
      }
      assert.deepEqual([...answered()].sort(), [...pids].sort(), 'both workers answered');
      hooks.releaseChallenge();
      const issued = await server.waitForLog((l) => l.msg === ISSUED, 30_000);
      await allLogged(server, pids, TAKEN);
      await handshakesOnBoth(server, pids, (serial, issuer) => {
        assert.match(issuer, /Pebble Intermediate CA/);
        assert.equal(serial, issued.serial);
      });
      await waitUntil(() => !fs.existsSync(String(pending.file)), 5_000);
    } finally {
      hooks.releaseChallenge();
      await server.stop();
      await pebble.stop();
    }
  });

  test('a forced renewal: the next handshakes on every worker present the new serial', { timeout: 120_000 }, async () => {
    const pebble = await startPebble(path.join(work, 'p3'), { alwaysValid: true });
    const hooks = acmeHooks(path.join(work, 'hooks3'));
    hooks.renewNow();
    hooks.hold();
    const server = await startAludel(acmeArgs(fx, pebble, path.join(work, 'store3'), '--workers', '2'), { env: hooks.env, startTimeoutMs: 20_000 });
    try {
      const pids = await workerPids(server);
      const first = await server.waitForLog((l) => l.msg === ISSUED, 30_000);
      // The renewal is due at once and waits at the gate: the first certificate is in service everywhere meanwhile.
      await waitUntil(() => hooks.waiting(), 10_000);
      await allLogged(server, pids, TAKEN);
      await handshakesOnBoth(server, pids, (serial) => assert.equal(serial, first.serial));
      const mark = server.mark();
      hooks.release();
      const renewed = await server.waitForLog((l) => l.msg === ISSUED, 30_000, mark);
      assert.notEqual(renewed.serial, first.serial);
      await allLogged(server, pids, TAKEN, mark);
      await handshakesOnBoth(server, pids, (serial) => assert.equal(serial, renewed.serial, 'every new handshake presents the renewed certificate'));
    } finally {
      hooks.release();
      await server.stop();
      await pebble.stop();
    }
  });
});

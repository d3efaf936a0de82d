/**
 * ACME (RFC 8555) against a real CA: Debian's pebble on loopback. Aludel
 * orders a certificate for `localhost`, serves it, keeps it 0600 in a 0700
 * directory, renews it with no dropped connection, and keeps serving when the
 * CA is gone. One test lets pebble really validate HTTP-01 (RFC 8555 §8.3)
 * against Aludel's --redirect-http listener.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type tls from 'node:tls';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { runCli, startAludel } from '../support/aludel-process.js';
import { acmeArgs, FAILED, ISSUED, peerCertificate } from '../support/acme-serve.js';
import { doctorSchemaProblems } from '../support/doctor-schema.js';
import { acmeHooks } from '../support/acme-test-hooks.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { freePort } from '../support/loopback-port.js';
import { adminAddress, status } from '../support/metrics.js';
import { pebbleSkip, startPebble } from '../support/pebble.js';
import { run } from '../support/run-process.js';
import { waitUntil } from '../support/wait.js';

const skip = pebbleSkip();

describe('ACME with pebble', { skip, concurrency: false }, () => {
  let fx: StandardFixtures;
  let work: string;
  before(async () => {
    fx = await makeFixtures();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-acme-'));
  });
  after(() => {
    fx?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('obtains a certificate (PEBBLE_VA_ALWAYS_VALID), serves it (openssl s_client shows the Pebble issuer), stores it 0600 in a 0700 directory, /status shows it', async () => {
    const pebble = await startPebble(path.join(work, 'p1'), { alwaysValid: true });
    const storage = path.join(work, 'store1');
    const server = await startAludel(acmeArgs(fx, pebble, storage));
    try {
      await server.waitForLog((l) => l.msg === ISSUED, 30_000);
      const s = await run('openssl', ['s_client', '-connect', `127.0.0.1:${server.port}`, '-servername', 'localhost', '-showcerts'], { input: '', timeoutMs: 10_000 });
      assert.match(s.stdout.toString(), /issuer=.*Pebble Intermediate CA/);
      assert.equal(fs.statSync(storage).mode & 0o777, 0o700);
      assert.equal(fs.statSync(path.join(storage, 'account.key')).mode & 0o777, 0o600);
      const pair = path.join(storage, 'certificates', 'localhost', 'pair.pem');
      assert.equal(fs.statSync(pair).mode & 0o777, 0o600);
      assert.equal(fs.statSync(path.dirname(pair)).mode & 0o777, 0o700);
      await waitUntil(() => !fs.existsSync(path.join(storage, 'certificates', 'localhost', 'lock')), 5000); // released after the order
      const st = (await status(await adminAddress(server))) as unknown as { acme: Array<Record<string, unknown>> };
      const served = await peerCertificate(server.port);
      assert.equal(st.acme.length, 1);
      assert.equal(st.acme[0]!.name, 'localhost');
      assert.equal(st.acme[0]!.state, 'issued');
      assert.equal(st.acme[0]!.serial, served.serialNumber);
      assert.equal(st.acme[0]!.lastError, null);
      assert.equal(new Date(String(st.acme[0]!.notAfter)).getTime(), new Date(served.valid_to).getTime());
      // Pebble's directory has no renewalInfo (RFC 9773): said once, at level info, and the renewal stays at two thirds of the lifetime.
      const noAri = await server.waitForLog((l) => l.msg === 'acme: the CA offers no renewal information (RFC 9773); renewing at two thirds of the lifetime', 10_000);
      assert.equal(noAri.level, 30);
      const from = Date.parse(served.valid_from);
      const twoThirds = from + Math.floor(((Date.parse(served.valid_to) - from) * 2) / 3);
      const next = Date.parse(String(st.acme[0]!.nextRenewal));
      assert.ok(next > Date.now() && Math.abs(next - twoThirds) < 2000, `next renewal ${String(st.acme[0]!.nextRenewal)}, two thirds ${new Date(twoThirds).toISOString()}`);
      assert.equal(st.acme[0]!.ari, null);
    } finally {
      await server.stop();
      await pebble.stop();
    }
  });

  test('renewal while a download runs: the download completes with the same sha256, the next handshake presents the new serial', async () => {
    const pebble = await startPebble(path.join(work, 'p2'), { alwaysValid: true });
    const hooks = acmeHooks(path.join(work, 'hooks2'));
    hooks.renewNow();
    hooks.hold();
    const server = await startAludel(acmeArgs(fx, pebble, path.join(work, 'store2')), { env: hooks.env });
    try {
      const from = server.mark();
      await server.waitForLog((l) => l.msg === ISSUED, 30_000);
      // The renewal is due at once, and waits at the gate until the download is under way.
      await waitUntil(() => hooks.waiting(), 10_000);
      const hash = createHash('sha256');
      let oldSerial = '';
      let received = 0;
      const done = new Promise<void>((resolve, reject) => {
        const req = https.get({ host: '127.0.0.1', port: server.port, path: `/${fx.files.big.name}`, servername: 'localhost', rejectUnauthorized: false }, (res) => {
          oldSerial = (res.socket as tls.TLSSocket).getPeerCertificate().serialNumber;
          res.once('data', (chunk: Buffer) => {
            hash.update(chunk);
            received += chunk.length;
            res.pause();
            hooks.release();
            void server.waitForLog((l) => l.msg === ISSUED, 30_000, server.mark()).then(() => {
              res.on('data', (c: Buffer) => { hash.update(c); received += c.length; });
              res.once('end', () => resolve());
              res.resume();
            }, reject);
          });
          res.once('error', reject);
        });
        req.once('error', reject);
      });
      await done;
      assert.equal(received, fx.files.big.size);
      assert.equal(hash.digest('hex'), fx.files.big.sha256);
      const next = await peerCertificate(server.port);
      assert.notEqual(next.serialNumber, oldSerial, 'the new handshake gets the renewed certificate');
      assert.equal(server.logs.slice(from).filter((l) => l.msg === ISSUED).length, 2);
    } finally {
      hooks.release();
      await server.stop();
      await pebble.stop();
    }
  });

  test('with the CA unreachable, the stored certificate keeps serving; the error is logged and in /status', async () => {
    const pebble = await startPebble(path.join(work, 'p3'), { alwaysValid: true });
    const storage = path.join(work, 'store3');
    const first = await startAludel(acmeArgs(fx, pebble, storage));
    let serial: string;
    try {
      await first.waitForLog((l) => l.msg === ISSUED, 30_000);
      serial = (await peerCertificate(first.port)).serialNumber;
    } finally {
      await first.stop();
      await pebble.stop();
    }
    // Restarted with the same storage, the CA gone, and a renewal forced.
    const hooks = acmeHooks(path.join(work, 'hooks3'));
    hooks.renewNow();
    const server = await startAludel(acmeArgs(fx, pebble, storage), { env: hooks.env });
    try {
      // Any transport failure counts (refused, or a TLS error should another test's server reuse the freed port).
      const failed = await server.waitForLog((l) => l.msg === FAILED, 30_000);
      assert.equal(failed.domain, 'localhost');
      assert.match(String(failed.error), /cannot reach the ACME directory/);
      assert.ok(Number(failed.retryInMs) >= 45_000, `backs off: ${String(failed.retryInMs)}`);
      assert.equal((await peerCertificate(server.port)).serialNumber, serial);
      const st = (await status(await adminAddress(server))) as unknown as { acme: Array<Record<string, unknown>> };
      assert.equal(st.acme[0]!.state, 'issued');
      assert.equal(st.acme[0]!.serial, serial);
      assert.match(String(st.acme[0]!.lastError), /cannot reach the ACME directory/);
      assert.equal(st.acme[0]!.failures, 1);
      // `aludel doctor` reads the same from the storage directory, from another process.
      const doctor = await runCli(['doctor', '--json', '--acme-storage', storage], {}, 60_000);
      const report = JSON.parse(doctor.stdout) as { acme: Array<Record<string, unknown>>; findings: Array<{ level: string; area: string; what: string }> };
      assert.deepEqual(doctorSchemaProblems(report), []);
      assert.equal(report.acme[0]!.serial, serial);
      assert.equal(report.acme[0]!.nextRenewal, st.acme[0]!.nextRenewal);
      assert.match(String(report.acme[0]!.lastError), /cannot reach the ACME directory/);
      const finding = report.findings.find((f) => f.area === 'acme');
      assert.equal(finding?.level, 'warn');
      assert.match(String(finding?.what), /localhost: renewal failing/);
    } finally {
      await server.stop();
    }
  });

  test('a lock held by another live process: no order meanwhile (the stand-in serves); ordered once the lock is gone', async () => {
    const pebble = await startPebble(path.join(work, 'p5'), { alwaysValid: true });
    const storage = path.join(work, 'store5');
    const lockFile = path.join(storage, 'certificates', 'localhost', 'lock');
    fs.mkdirSync(path.dirname(lockFile), { recursive: true, mode: 0o700 });
    fs.writeFileSync(lockFile, `${process.pid}\n`);
    const server = await startAludel(acmeArgs(fx, pebble, storage));
    try {
      const held = await server.waitForLog((l) => l.msg === 'acme: another process is ordering this certificate; using what it stores', 10_000);
      assert.equal(held.pid, process.pid);
      assert.ok(!server.logs.some((l) => l.msg === 'acme: ordering a certificate'));
      assert.equal((await peerCertificate(server.port)).issuer.CN, 'localhost');
      fs.rmSync(lockFile);
      const issued = await server.waitForLog((l) => l.msg === ISSUED, 30_000);
      assert.match(String(issued.issuer), /Pebble Intermediate CA/);
      // Released right after the order's last log line.
      await waitUntil(() => !fs.existsSync(lockFile), 5000);
    } finally {
      await server.stop();
      await pebble.stop();
    }
  });

  test('real HTTP-01 validation (RFC 8555 §8.3): pebble fetches the token from --redirect-http', async () => {
    const redirectPort = await freePort();
    const pebble = await startPebble(path.join(work, 'p4'), { alwaysValid: false, httpPort: redirectPort });
    const server = await startAludel(acmeArgs(fx, pebble, path.join(work, 'store4'), '--redirect-http', `127.0.0.1:${redirectPort}`));
    try {
      await server.waitForLog((l) => l.msg === 'acme: HTTP-01 challenge answered', 30_000);
      await server.waitForLog((l) => l.msg === ISSUED, 30_000);
      const c = await peerCertificate(server.port);
      assert.match(String(c.issuer.CN), /Pebble Intermediate CA/);
      // The challenge is no longer answered; the listener redirects again.
      const res = await fetch(`http://127.0.0.1:${redirectPort}/.well-known/acme-challenge/anything`, { redirect: 'manual' });
      assert.equal(res.status, 308);
    } finally {
      await server.stop();
      await pebble.stop();
    }
  });
});

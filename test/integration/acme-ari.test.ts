/**
 * ACME Renewal Information (RFC 9773) against a fake CA that issues and
 * offers renewalInfo (test/support/fake-acme.ts; Debian's pebble has no ARI):
 * a window in the past renews at once, and the new order names the
 * certificate it replaces (§5); a window in the future puts the next renewal
 * inside it (§4.2), in /status and `aludel doctor`; a CA that refuses
 * `replaces` gets the order again without it; an invalid window falls back to
 * two thirds of the lifetime.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { runCli, serveArgs, startAludel, type Running } from '../support/aludel-process.js';
import { doctorSchemaProblems } from '../support/doctor-schema.js';
import { startFakeAcme, type FakeAcme, type FakeIssuing } from '../support/fake-acme.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { adminAddress, status } from '../support/metrics.js';
import { delay } from '../support/wait.js';

const ISSUED = 'acme: certificate issued and in service';
const WINDOW = 'acme: renewal window from the CA (RFC 9773)';
const HOUR = 3600_000;
const DAY = 24 * HOUR;

type Entry = Record<string, unknown> & { ari?: { certId: string; windowStart: string; windowEnd: string; explanationURL: string | null } | null };

function peer(port: number): Promise<tls.PeerCertificate> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      const c = s.getPeerCertificate();
      s.end();
      resolve(c);
    });
    s.once('error', reject);
  });
}

/** The /status entry of `localhost` once `until` holds (it changes as the CA's answers arrive). */
async function entryWhen(server: Running, until: (e: Entry) => boolean, timeoutMs = 20_000): Promise<Entry> {
  const admin = await adminAddress(server);
  const end = Date.now() + timeoutMs;
  for (;;) {
    const e = ((await status(admin)) as unknown as { acme: Entry[] }).acme[0]!;
    if (until(e)) return e;
    if (Date.now() > end) throw new Error(`status never matched: ${JSON.stringify(e)}`);
    await delay(100);
  }
}

/** renewalInfo answers: the first certificate's window ended an hour ago; later ones open in two days. */
function pastThenFuture(now: number): FakeIssuing['renewalInfo'] {
  return (index) => index === 0
    ? { body: { suggestedWindow: { start: new Date(now - 2 * HOUR).toISOString(), end: new Date(now - HOUR).toISOString() } }, retryAfter: '21600' }
    : { body: { suggestedWindow: { start: new Date(now + 2 * DAY).toISOString(), end: new Date(now + 3 * DAY).toISOString() }, explanationURL: 'https://ca.example/ari-explained' }, retryAfter: '21600' };
}

describe('ACME Renewal Information (RFC 9773)', { concurrency: false }, () => {
  let fx: Fixtures<'one'>;
  let work: string;
  const cas: FakeAcme[] = [];
  before(async () => {
    fx = await makeFixtures({ one: 1 });
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-acme-ari-'));
  });
  after(async () => {
    for (const ca of cas) await ca.close();
    fx?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  async function fakeCa(name: string, issuing: FakeIssuing): Promise<FakeAcme> {
    fs.mkdirSync(path.join(work, name));
    const ca = await startFakeAcme(path.join(work, name), {}, issuing);
    cas.push(ca);
    return ca;
  }

  function args(ca: FakeAcme, storage: string): string[] {
    const a = serveArgs(fx, '--acme-domain', 'localhost', '--acme-directory', ca.directoryUrl, '--acme-ca', ca.caFile, '--acme-storage', storage, '--admin', '127.0.0.1:0');
    a.splice(a.indexOf('--cert'), 4);
    return a;
  }

  test('§4.2 a window in the past: renewed at once, the new order carries replaces = the old certID (§5); the next window, in the future, holds nextRenewal in /status and aludel doctor', async () => {
    const now = Date.now();
    const ca = await fakeCa('ca1', { names: ['localhost'], renewalInfo: pastThenFuture(now) });
    const storage = path.join(work, 's1');
    const server = await startAludel(args(ca, storage));
    try {
      await server.waitForLog((l) => l.msg === ISSUED, 20_000);
      await server.waitForLog((l) => l.msg === ISSUED, 20_000, server.logs.findIndex((l) => l.msg === ISSUED) + 1);
      assert.equal(ca.issued.length, 2);
      assert.deepEqual(ca.newOrders, [{ name: 'localhost', replaces: undefined }, { name: 'localhost', replaces: ca.issued[0]!.certId }]);
      const first = server.logs.find((l) => l.msg === WINDOW && l.certId === ca.issued[0]!.certId);
      assert.ok(first, 'the first certificate\'s window is logged');
      assert.ok(Date.parse(String(first.renewAt)) < now - HOUR + 1, `chosen inside the past window: ${String(first.renewAt)}`);
      assert.equal(first.nextCheckInMs, 21_600_000);
      // The renewed certificate is served, and its window (two to three days ahead) holds the next renewal.
      assert.equal(BigInt(`0x${(await peer(server.port)).serialNumber}`), BigInt(`0x${ca.issued[1]!.serial}`));
      const e = await entryWhen(server, (x) => x.ari?.certId === ca.issued[1]!.certId && x.nextRenewal !== null && Date.parse(String(x.nextRenewal)) > now + DAY);
      const next = Date.parse(String(e.nextRenewal));
      assert.ok(next >= now + 2 * DAY && next < now + 3 * DAY, `nextRenewal ${String(e.nextRenewal)} inside the window`);
      assert.deepEqual(e.ari, { certId: ca.issued[1]!.certId, windowStart: new Date(now + 2 * DAY).toISOString(), windowEnd: new Date(now + 3 * DAY).toISOString(), explanationURL: 'https://ca.example/ari-explained' });
      assert.ok(ca.renewalInfoRequests.includes(ca.issued[1]!.certId));
      const doctor = await runCli(['doctor', '--json', '--acme-storage', storage], {}, 60_000);
      const report = JSON.parse(doctor.stdout) as { acme: Entry[] };
      assert.deepEqual(doctorSchemaProblems(report), []);
      assert.equal(report.acme[0]!.nextRenewal, e.nextRenewal);
      assert.deepEqual(report.acme[0]!.ari, e.ari);
    } finally {
      await server.stop();
    }
  });

  test('§5: a CA that refuses the replacement (alreadyReplaced) gets the order once more without replaces', async () => {
    const ca = await fakeCa('ca2', { names: ['localhost'], renewalInfo: pastThenFuture(Date.now()), refuseReplacesOnce: true });
    const server = await startAludel(args(ca, path.join(work, 's2')));
    try {
      const refused = await server.waitForLog((l) => /refused the order as a replacement/.test(l.msg), 20_000);
      assert.match(String(refused.error), /HTTP 409: .*already replaced/);
      await server.waitForLog((l) => l.msg === ISSUED, 20_000, server.logs.indexOf(refused) + 1);
      const certId = ca.issued[0]!.certId;
      assert.deepEqual(ca.newOrders, [{ name: 'localhost', replaces: undefined }, { name: 'localhost', replaces: certId }, { name: 'localhost', replaces: undefined }]);
      assert.equal(ca.issued.length, 2);
      assert.ok(!server.logs.some((l) => l.msg === 'acme: certificate order failed; the current certificate keeps serving'));
    } finally {
      await server.stop();
    }
  });

  test('§4.2: an invalid window (end before start) is no answer: warned, and the renewal stays at two thirds of the lifetime', async () => {
    const now = Date.now();
    const ca = await fakeCa('ca3', { names: ['localhost'], renewalInfo: () => ({ body: { suggestedWindow: { start: new Date(now + DAY).toISOString(), end: new Date(now).toISOString() } } }) });
    const server = await startAludel(args(ca, path.join(work, 's3')));
    try {
      const warned = await server.waitForLog((l) => l.msg === 'acme: no usable renewal information (RFC 9773); renewing at two thirds of the lifetime', 20_000);
      assert.match(String(warned.error), /before it starts/);
      assert.equal(warned.level, 40);
      assert.ok(Number(warned.retryInMs) >= 45_000);
      const c = await peer(server.port);
      const twoThirds = Date.parse(c.valid_from) + Math.floor(((Date.parse(c.valid_to) - Date.parse(c.valid_from)) * 2) / 3);
      const e = await entryWhen(server, (x) => x.state === 'issued' && x.nextRenewal !== null);
      assert.ok(Math.abs(Date.parse(String(e.nextRenewal)) - twoThirds) < 2000, `nextRenewal ${String(e.nextRenewal)} vs two thirds ${new Date(twoThirds).toISOString()}`);
      assert.equal(e.ari, null);
      assert.equal(ca.issued.length, 1);
    } finally {
      await server.stop();
    }
  });
});

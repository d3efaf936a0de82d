/**
 * The pure and local parts of ACME (src/tls/acme/): when to renew, how to
 * back off, the HTTP-01 and TLS-ALPN-01 responders, which challenge, the
 * challenge registry the primary of --workers shares with its workers, the storage rules (modes, atomic
 * replacement, the per-name lock), and ACME Renewal Information (RFC 9773):
 * the certificate identifier, the window, the check interval.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chooseChallenge } from '../../src/cli/acme-setup.js';
import { acmeFindings } from '../../src/tls/acme/acme-report.js';
import { ChallengeRegistry, type ChallengeChange } from '../../src/tls/acme/challenges.js';
import { TlsAlpn01Responder } from '../../src/tls/acme/tls-alpn01.js';
import { Http01Responder } from '../../src/tls/acme/http01.js';
import { ARI_DEFAULT_CHECK_MS, ARI_MAX_CHECK_MS, ARI_MIN_CHECK_MS, FIRST_RETRY_MS, MAX_RETRY_MS, ariCheckDelay, needsRenewal, parseRetryAfter, renewalTime, retryDelay, timeInWindow } from '../../src/tls/acme/renew-policy.js';
import { ariCertId, parseRenewalInfo, refusedAsReplacement, serialDerBytes } from '../../src/tls/acme/ari.js';
import { acquireLock, ensureStorage, readStored, writeSecretFile } from '../../src/tls/acme/storage.js';
import { managedPaths } from '../../src/config/acme-paths.js';
import { createSelfSignedCert } from '../../src/tls/self-signed.js';

const DAY = 86_400_000;

describe('renewal time and backoff', () => {
  test('renews at two thirds of the lifetime: day 60 of a 90-day certificate', () => {
    assert.equal(renewalTime(0, 90 * DAY), 60 * DAY);
    assert.equal(needsRenewal(59 * DAY, { notBefore: 0, notAfter: 90 * DAY }), false);
    assert.equal(needsRenewal(60 * DAY, { notBefore: 0, notAfter: 90 * DAY }), true);
    assert.equal(needsRenewal(0, null), true);
  });

  test('backoff doubles from 1 min to at most 6 h, with ±25 % jitter', () => {
    assert.equal(retryDelay(1, 0.5, null), FIRST_RETRY_MS);
    assert.equal(retryDelay(2, 0.5, null), 2 * FIRST_RETRY_MS);
    assert.equal(retryDelay(1, 0, null), 0.75 * FIRST_RETRY_MS);
    assert.ok(retryDelay(1, 0.9999, null) < 1.25 * FIRST_RETRY_MS + 1);
    assert.equal(retryDelay(50, 0.5, null), MAX_RETRY_MS);
  });

  test('RFC 9110 §10.2.3 / RFC 8555 §6.6: never sooner than Retry-After, in seconds or as an HTTP date', () => {
    assert.equal(retryDelay(1, 0.5, 3_600_000), 3_600_000);
    assert.equal(parseRetryAfter('120', 0), 120_000);
    const now = Date.parse('2026-01-01T00:00:00Z');
    assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:10:00 GMT', now), 600_000);
    assert.equal(parseRetryAfter('soon', now), null);
    assert.equal(parseRetryAfter(undefined, now), null);
  });
});

describe('HTTP-01 responder (RFC 8555 §8.3)', () => {
  test('answers only a pending token, only under /.well-known/acme-challenge/, and not after removal', () => {
    const r = new Http01Responder();
    assert.equal(r.answer('/.well-known/acme-challenge/tok'), null);
    r.add('tok_-1', 'tok_-1.thumb');
    assert.equal(r.answer('/.well-known/acme-challenge/tok_-1'), 'tok_-1.thumb');
    assert.equal(r.answer('/.well-known/acme-challenge/other'), null);
    assert.equal(r.answer('/.well-known/acme-challenge/tok_-1/../x'), null);
    assert.equal(r.answer('/tok_-1'), null);
    r.remove('tok_-1');
    assert.equal(r.answer('/.well-known/acme-challenge/tok_-1'), null);
  });
});

describe('challenge registry (--workers: the primary orders, every worker answers)', () => {
  const url = (token: string): string => `/.well-known/acme-challenge/${token}`;

  test('what the order adds and removes is answered here and sent on, whole, to the watchers', async () => {
    const primary = new ChallengeRegistry();
    const sent: ChallengeChange[] = [];
    primary.watch((c) => sent.push(c));
    const order = primary.orderingHttp01();
    await order.add('tok1', 'tok1.thumb');
    assert.equal(order.answer(url('tok1')), 'tok1.thumb', 'the responder handed to the order answers');
    assert.equal(primary.http01.answer(url('tok1')), 'tok1.thumb', 'and so does the registry\'s (the --redirect-http listener)');
    order.remove('tok1');
    order.remove('never-added');
    assert.equal(primary.http01.answer(url('tok1')), null);
    const c = { kind: 'http-01', token: 'tok1', keyAuthorization: 'tok1.thumb' } as const;
    assert.deepEqual(sent, [{ op: 'add', challenge: c }, { op: 'remove', challenge: c }], 'a remove carries the challenge as added; an unknown one sends nothing');
  });

  test('a worker applying the changes, or started later from the snapshot, answers the same set', async () => {
    const primary = new ChallengeRegistry();
    const early = new ChallengeRegistry();
    primary.watch((c) => early.apply(c));
    const order = primary.orderingHttp01();
    await order.add('a', 'a.thumb');
    await order.add('b', 'b.thumb');
    order.remove('a');
    const late = new ChallengeRegistry();
    for (const challenge of primary.snapshot()) late.apply({ op: 'add', challenge });
    for (const w of [early, late]) {
      assert.equal(w.http01.answer(url('a')), null);
      assert.equal(w.http01.answer(url('b')), 'b.thumb');
      assert.deepEqual(w.snapshot(), primary.snapshot());
    }
  });
});

describe('challenge registry: TLS-ALPN-01', () => {
  test('the ordering side keeps the file and sends the name and file on; a worker installs the whole set on each change', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-alpn-registry-'));
    try {
      const primary = new ChallengeRegistry();
      const installed: string[][] = [];
      const worker = new ChallengeRegistry((set) => installed.push(set.map((c) => `${c.name} ${c.certFile}`)));
      primary.watch((c) => worker.apply(c));
      const order = primary.orderingTlsAlpn01();
      const fileA = path.join(dir, 'a.pem');
      const fileB = path.join(dir, 'b.pem');
      await order.add('A.example.com', fileA, 'CERT A\n', 'KEY A\n');
      await order.add('b.example.com', fileB, 'CERT B\n', 'KEY B\n');
      assert.equal(fs.readFileSync(fileA, 'utf8'), 'CERT A\nKEY A\n', 'the ordering process keeps the pair, as with one process');
      assert.deepEqual(worker.snapshot(), [{ kind: 'tls-alpn-01', name: 'a.example.com', file: fileA }, { kind: 'tls-alpn-01', name: 'b.example.com', file: fileB }]);
      order.remove('a.example.com');
      assert.equal(fs.existsSync(fileA), false);
      assert.deepEqual(installed, [[`a.example.com ${fileA}`], [`a.example.com ${fileA}`, `b.example.com ${fileB}`], [`b.example.com ${fileB}`]]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('storage', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-acme-unit-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('directories 0700 (narrowed if wider), secret files 0600 whatever the umask', () => {
    const store = path.join(dir, 'modes');
    fs.mkdirSync(store, { mode: 0o755 });
    fs.chmodSync(store, 0o755);
    ensureStorage(store, ['a.example.com']);
    assert.equal(fs.statSync(store).mode & 0o777, 0o700);
    const p = managedPaths(store, 'a.example.com');
    assert.equal(fs.statSync(path.dirname(p.certFile)).mode & 0o777, 0o700);
    const old = process.umask(0);
    try {
      writeSecretFile(p.certFile, 'secret');
    } finally {
      process.umask(old);
    }
    assert.equal(fs.statSync(p.certFile).mode & 0o777, 0o600);
  });

  test('a replacement that fails its check leaves the old file, and no temporary file behind', async () => {
    const store = path.join(dir, 'check');
    ensureStorage(store, ['a.example.com']);
    const p = managedPaths(store, 'a.example.com');
    const c = await createSelfSignedCert({ commonName: 'a.example.com', altNames: ['a.example.com'] });
    writeSecretFile(p.certFile, c.certPem + c.keyPem);
    assert.equal(readStored(p).state, 'valid');
    assert.throws(() => writeSecretFile(p.certFile, 'garbage', () => { throw new Error('bad pair'); }), /bad pair/);
    assert.equal(fs.readFileSync(p.certFile, 'utf8'), c.certPem + c.keyPem);
    assert.deepEqual(fs.readdirSync(path.dirname(p.certFile)), ['pair.pem']);
    fs.writeFileSync(p.certFile, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    const corrupt = readStored(p);
    assert.equal(corrupt.state, 'corrupt');
  });

  test('the lock: one holder at a time; a lock left by a dead process is stale and taken over', () => {
    const store = path.join(dir, 'lock');
    ensureStorage(store, ['a.example.com']);
    const { lockFile } = managedPaths(store, 'a.example.com');
    const first = acquireLock(lockFile);
    assert.ok('release' in first);
    assert.equal(fs.statSync(lockFile).mode & 0o777, 0o600);
    first.release();
    // Held by a live process (this test's parent): refused, naming it.
    fs.writeFileSync(lockFile, `${process.ppid}\n`);
    assert.deepEqual(acquireLock(lockFile), { heldBy: process.ppid });
    // Held by a process that has exited: stale.
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    fs.writeFileSync(lockFile, `${dead}\n`);
    const taken = acquireLock(lockFile);
    assert.ok('release' in taken);
    assert.equal(fs.readFileSync(lockFile, 'utf8'), `${process.pid}\n`);
    taken.release();
    // No pid at all (a crash between create and write): stale too.
    fs.writeFileSync(lockFile, '');
    assert.ok('release' in acquireLock(lockFile));
  });
});

describe('aludel doctor --acme-storage findings', () => {
  const now = Date.parse('2026-06-01T00:00:00Z');
  const entry = { name: 'a.example.com', serial: '01', issuer: 'CN=CA', nextRenewal: '2026-07-01T00:00:00.000Z', lastError: null, lastErrorAt: null, failures: 0 };
  test('valid: ok; failing renewals: warn with the last error; expired or never issued: error', () => {
    assert.equal(acmeFindings([{ ...entry, state: 'issued', notAfter: '2026-08-01T00:00:00.000Z' }], now)[0]!.level, 'ok');
    const failing = acmeFindings([{ ...entry, state: 'issued', notAfter: '2026-08-01T00:00:00.000Z', failures: 3, lastError: 'HTTP 429: slow down', lastErrorAt: '2026-05-31T00:00:00.000Z' }], now)[0]!;
    assert.equal(failing.level, 'warn');
    assert.match(failing.what, /3 attempt\(s\).*HTTP 429: slow down/);
    assert.equal(acmeFindings([{ ...entry, state: 'issued', notAfter: '2026-05-01T00:00:00.000Z' }], now)[0]!.level, 'error');
    assert.equal(acmeFindings([{ ...entry, state: 'stand-in', notAfter: '2026-06-07T00:00:00.000Z' }], now)[0]!.level, 'error');
  });
});

describe('which challenge orders use (cli/acme-setup.ts chooseChallenge)', () => {
  test('--acme-challenge wins; else HTTP-01 with --redirect-http, else TLS-ALPN-01 where the engine answers it', () => {
    assert.deepEqual(chooseChallenge(null, true, true), { type: 'http-01', warning: null });
    assert.deepEqual(chooseChallenge(null, false, true), { type: 'tls-alpn-01', warning: null });
    assert.deepEqual(chooseChallenge('tls-alpn-01', true, true), { type: 'tls-alpn-01', warning: null });
    assert.deepEqual(chooseChallenge('http-01', true, false), { type: 'http-01', warning: null });
  });

  test('a choice nothing here can answer is kept, with a warning saying what to change', () => {
    // node:tls (no system OpenSSL) cannot answer TLS-ALPN-01: the fallback is HTTP-01 on --redirect-http.
    const noEngine = chooseChallenge(null, false, false);
    assert.equal(noEngine.type, 'http-01');
    assert.match(noEngine.warning ?? '', /no --redirect-http/);
    const forced = chooseChallenge('tls-alpn-01', true, false);
    assert.equal(forced.type, 'tls-alpn-01');
    assert.match(forced.warning ?? '', /cannot answer TLS-ALPN-01.*--acme-challenge http-01/);
    assert.match(chooseChallenge('http-01', false, true).warning ?? '', /nothing here answers the HTTP-01 challenge/);
  });
});

describe('TLS-ALPN-01 responder', () => {
  test('keeps each pending pair 0600 while pending, hands the whole set over on every change, and removes the file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-alpn01-unit-'));
    try {
      const r = new TlsAlpn01Responder();
      const sets: string[][] = [];
      r.attach((c) => sets.push(c.map((x) => `${x.name} ${path.basename(x.certFile)}`)));
      const file = path.join(dir, 'tls-alpn-01.pem');
      r.add('Example.COM', file, 'CERT', 'KEY\n');
      assert.equal(fs.statSync(file).mode & 0o777, 0o600);
      assert.equal(fs.readFileSync(file, 'utf8'), 'CERT\nKEY\n');
      r.remove('example.com');
      assert.equal(fs.existsSync(file), false);
      assert.deepEqual(sets, [[], ['example.com tls-alpn-01.pem'], []]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** Runs openssl; throws with its stderr when it fails. */
function openssl(args: string[]): string {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

describe('ACME Renewal Information (RFC 9773)', () => {
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-ari-unit-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** A leaf issued by a CA made here with openssl, with the given serial and an AKI keyid. */
  function issue(serialHex: string): string {
    const ca = path.join(dir, 'ca');
    if (!fs.existsSync(`${ca}.pem`)) {
      openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=ARI test CA', '-days', '2', '-keyout', `${ca}.key`, '-out', `${ca}.pem`, '-addext', 'subjectKeyIdentifier=hash']);
    }
    const leaf = path.join(dir, `leaf-${serialHex}`);
    openssl(['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=a.example.com', '-keyout', `${leaf}.key`, '-out', `${leaf}.csr`]);
    fs.writeFileSync(`${leaf}.ext`, 'authorityKeyIdentifier=keyid:always\n');
    openssl(['x509', '-req', '-in', `${leaf}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-set_serial', `0x${serialHex}`, '-days', '1', '-extfile', `${leaf}.ext`, '-out', `${leaf}.pem`]);
    return fs.readFileSync(`${leaf}.pem`, 'utf8');
  }

  /**
   * The certID from openssl's own reading: the AKI as `x509 -text` prints it, and the serial's
   * content bytes cut from the DER where `asn1parse` places the INTEGER (the first one at depth 2).
   */
  function certIdFromOpenssl(pem: string): { certId: string; serialDer: Buffer } {
    const file = path.join(dir, 'read.pem');
    fs.writeFileSync(file, pem);
    const text = openssl(['x509', '-in', file, '-noout', '-text']);
    const aki = /Authority Key Identifier:\s*\n\s*(?:keyid:)?([0-9A-F:]+)/i.exec(text)![1]!;
    const at = /^\s*(\d+):d=2\s+hl=(\d+)\s+l=\s*(\d+)\s+prim:\s+INTEGER/m.exec(openssl(['asn1parse', '-in', file]))!;
    const [offset, header, length] = [Number(at[1]), Number(at[2]), Number(at[3])];
    const der = spawnSync('openssl', ['x509', '-in', file, '-outform', 'DER']).stdout;
    const serialDer = der.subarray(offset + header, offset + header + length);
    return { certId: `${Buffer.from(aki.replace(/:/g, ''), 'hex').toString('base64url')}.${serialDer.toString('base64url')}`, serialDer };
  }

  test('§4.1 certID: AKI keyIdentifier "." DER serial, base64url without padding; a 0x00 first where DER has one', async () => {
    // 16 bytes with the top bit set: DER adds 0x00 (17 content bytes).
    const high = issue('8a1b2c3d4e5f60718293a4b5c6d7e8f9');
    const h = certIdFromOpenssl(high);
    assert.equal(h.serialDer.toString('hex'), '008a1b2c3d4e5f60718293a4b5c6d7e8f9');
    assert.equal(await ariCertId(high), h.certId);
    assert.match(h.certId, /^[A-Za-z0-9_-]+\.AIob[A-Za-z0-9_-]+$/);
    // Top bit clear: no leading zero.
    const low = issue('3a1b2c3d4e5f60718293a4b5c6d7e8f9');
    const l = certIdFromOpenssl(low);
    assert.equal(l.serialDer.toString('hex'), '3a1b2c3d4e5f60718293a4b5c6d7e8f9');
    assert.equal(await ariCertId(low), l.certId);
    // The example of §4.1: keyIdentifier 69:88:5B:..., serial 0x87654321 (DER 00 87 65 43 21).
    assert.equal(serialDerBytes('87654321').toString('base64url'), 'AIdlQyE');
    assert.equal(Buffer.from('69885B6B87464041E1B37B847BA0AE2CDE01C8D4', 'hex').toString('base64url'), 'aYhba4dGQEHhs3uEe6CuLN4ByNQ');
    assert.equal(serialDerBytes('0087654321').toString('hex'), '0087654321');
    assert.equal(serialDerBytes('7f').toString('hex'), '7f');
  });

  test('§4.1: no certID for a certificate without an Authority Key Identifier (the self-signed stand-in)', async () => {
    const c = await createSelfSignedCert({ commonName: 'a.example.com', altNames: ['a.example.com'] });
    assert.equal(await ariCertId(c.certPem), null);
    assert.equal(await ariCertId('no certificate here'), null);
  });

  test('§4.2 suggestedWindow: RFC 3339 start and end, end after start; explanationURL kept when it is an http(s) URL', () => {
    const ok = parseRenewalInfo(JSON.stringify({ suggestedWindow: { start: '2026-01-02T00:00:00Z', end: '2026-01-03T12:00:00.5+02:00' }, explanationURL: 'https://ca.example/why' }));
    assert.deepEqual(ok, { window: { start: Date.parse('2026-01-02T00:00:00Z'), end: Date.parse('2026-01-03T10:00:00.5Z') }, explanationURL: 'https://ca.example/why' });
    assert.equal(parseRenewalInfo(JSON.stringify({ suggestedWindow: { start: '2026-01-02T00:00:00Z', end: '2026-01-03T00:00:00Z' }, explanationURL: 'javascript:alert(1)' })).explanationURL, null);
    assert.throws(() => parseRenewalInfo(JSON.stringify({ suggestedWindow: { start: '2026-01-03T00:00:00Z', end: '2026-01-02T00:00:00Z' } })), /ends .* before it starts/);
    assert.throws(() => parseRenewalInfo(JSON.stringify({ suggestedWindow: { start: '2026-01-02T00:00:00Z', end: '2026-01-02T00:00:00Z' } })), /before it starts/);
    assert.throws(() => parseRenewalInfo(JSON.stringify({ suggestedWindow: { start: 'Fri, 02 Jan 2026 00:00:00 GMT', end: '2026-01-03T00:00:00Z' } })), /start is not an RFC 3339/);
    assert.throws(() => parseRenewalInfo(JSON.stringify({ suggestedWindow: { start: '2026-01-02T00:00:00Z', end: 1767225600000 } })), /end is not an RFC 3339/);
    assert.throws(() => parseRenewalInfo(JSON.stringify({ window: {} })), /no suggestedWindow/);
    assert.throws(() => parseRenewalInfo('<html>'), /not JSON/);
  });

  test('§4.2: a time uniformly inside the window; the same window again keeps the time chosen', () => {
    const w = { start: 1000, end: 2000 };
    assert.equal(timeInWindow(w, 0), 1000);
    assert.equal(timeInWindow(w, 0.5), 1500);
    assert.ok(timeInWindow(w, 0.999999) < 2000);
    assert.equal(timeInWindow(w, 0.9, { window: { start: 1000, end: 2000 }, at: 1234 }), 1234);
    assert.equal(timeInWindow({ start: 5000, end: 6000 }, 0.5, { window: w, at: 1234 }), 5500);
  });

  test('§4.3: the next check after Retry-After, clamped to 1 min .. 24 h; 6 h without one', () => {
    assert.equal(ariCheckDelay(null), ARI_DEFAULT_CHECK_MS);
    assert.equal(ariCheckDelay(0), ARI_MIN_CHECK_MS);
    assert.equal(ariCheckDelay(10_000), 60_000);
    assert.equal(ariCheckDelay(3 * 3600_000), 3 * 3600_000);
    assert.equal(ariCheckDelay(2 * 86_400_000), ARI_MAX_CHECK_MS);
    assert.equal(ARI_MAX_CHECK_MS, 86_400_000);
    assert.equal(ariCheckDelay(parseRetryAfter('21600', 0)), 21_600_000);
  });

  test('§5: a refusal about "replaces" is retried without it; a rate limit or another refusal is not', () => {
    assert.equal(refusedAsReplacement(409, { type: 'urn:ietf:params:acme:error:alreadyReplaced', detail: 'certificate already replaced' }), true);
    assert.equal(refusedAsReplacement(400, { type: 'urn:ietf:params:acme:error:malformed', detail: 'invalid "replaces" field' }), true);
    assert.equal(refusedAsReplacement(429, { type: 'urn:ietf:params:acme:error:rateLimited', detail: 'too many replacements' }), false);
    assert.equal(refusedAsReplacement(400, { type: 'urn:ietf:params:acme:error:rejectedIdentifier', detail: 'name blocked' }), false);
    assert.equal(refusedAsReplacement(500, { type: 'urn:ietf:params:acme:error:serverInternal', detail: 'replaces failed' }), false);
  });
});

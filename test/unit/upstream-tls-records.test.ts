import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { describe, test } from 'node:test';
import { recordAction } from '../../src/tls/upstream-records.js';
import { fingerprint256, staticCopyReason } from '../../src/tls/upstream-client.js';
import type { UpstreamTls } from '../../src/config/proxy-settings.js';

const alert = (level: number, description: number): Buffer => Buffer.from([level, description]);
/** One handshake message: type, 24-bit length, body (RFC 8446 §4). */
const message = (type: number, body: Buffer): Buffer => Buffer.concat([Buffer.from([type, body.length >> 16, (body.length >> 8) & 0xff, body.length & 0xff]), body]);

describe('records a kTLS RX upstream hands over apart from data (recordAction)', () => {
  test('close_notify ends the stream in TLS 1.2 and 1.3', () => {
    assert.deepEqual(recordAction(21, alert(1, 0), true), { kind: 'eof' });
    assert.deepEqual(recordAction(21, alert(1, 0), false), { kind: 'eof' });
  });
  test('user_canceled waits for the close_notify that follows; TLS 1.2 warnings are ignored, TLS 1.3 ones are fatal', () => {
    assert.deepEqual(recordAction(21, alert(1, 90), true), { kind: 'again' });
    assert.deepEqual(recordAction(21, alert(1, 100), false), { kind: 'again' });
    assert.equal(recordAction(21, alert(1, 100), true).kind, 'fail');
  });
  test('a fatal alert or a truncated one fails, naming it', () => {
    const r = recordAction(21, alert(2, 40), false);
    assert.equal(r.kind, 'fail');
    assert.match((r as { why: string }).why, /alert 40 \(level 2\)/);
    assert.equal(recordAction(21, Buffer.from([2]), true).kind, 'fail');
  });
  test('TLS 1.3 NewSessionTickets are dropped, several in one record too', () => {
    const ticket = message(4, crypto.randomBytes(180));
    assert.deepEqual(recordAction(22, ticket, true), { kind: 'again' });
    assert.deepEqual(recordAction(22, Buffer.concat([ticket, ticket]), true), { kind: 'again' });
  });
  test('a TLS 1.3 KeyUpdate fails (kernel RX cannot be re-keyed before Linux 6.14)', () => {
    const r = recordAction(22, message(24, Buffer.from([0])), true);
    assert.equal(r.kind, 'fail');
    assert.match((r as { why: string }).why, /KeyUpdate/);
  });
  test('TLS 1.2 HelloRequest is ignored (RFC 5246 §7.4.1.1); other handshake messages fail', () => {
    assert.deepEqual(recordAction(22, message(0, Buffer.alloc(0)), false), { kind: 'again' });
    assert.equal(recordAction(22, message(1, Buffer.alloc(40)), false).kind, 'fail');
    assert.equal(recordAction(22, message(0, Buffer.alloc(0)), true).kind, 'fail');
  });
  test('a message cut short, and application data where a control record was expected, fail (never dropped silently)', () => {
    assert.equal(recordAction(22, message(4, Buffer.alloc(50)).subarray(0, 30), true).kind, 'fail');
    assert.equal(recordAction(22, Buffer.from([4, 0]), true).kind, 'fail');
    assert.equal(recordAction(23, Buffer.from('GET'), true).kind, 'fail');
  });
});

describe('TLS upstream settings that keep the copy path (staticCopyReason)', () => {
  const base: UpstreamTls = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3', ciphers: null, caFile: null, caPem: null, fingerprint256: null, verify: true, servername: null };
  test('TLS 1.2 and 1.3 with the default suites may use kTLS', () => {
    assert.equal(staticCopyReason(base), null);
    assert.equal(staticCopyReason({ ...base, minVersion: 'TLSv1.3' }), null);
  });
  test('versions below 1.2, or a cipher list of the user, keep node:tls with a reason', () => {
    assert.match(staticCopyReason({ ...base, minVersion: 'TLSv1' })!, /TLS 1.2 and 1.3 only/);
    assert.match(staticCopyReason({ ...base, minVersion: 'TLSv1', maxVersion: 'TLSv1.1' })!, /TLS 1.2 and 1.3 only/);
    assert.match(staticCopyReason({ ...base, ciphers: 'AES128-SHA' })!, /CBC/);
  });
});

test('fingerprint256 writes a digest as node does (upper-case hex pairs joined by colons)', () => {
  const cert = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const der = cert.publicKey.export({ type: 'spki', format: 'der' });
  const digest = crypto.createHash('sha256').update(der).digest();
  assert.equal(fingerprint256(digest), digest.toString('hex').toUpperCase().match(/../g)!.join(':'));
});

/**
 * TLS-ALPN-01 (RFC 8737) answered on the TLS listener itself (system OpenSSL
 * engine: a ClientHello callback marks handshakes offering "acme-tls/1", the
 * servername callback switches exactly those to the name's challenge
 * context). First the listener alone, with real node:tls clients; then a real
 * validation by Debian's pebble against `aludel serve`.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import acme from 'acme-client';
import pino from 'pino';
import { createKtlsServer } from '../../src/tls/create-server.js';
import { createSelfSignedCert } from '../../src/tls/self-signed.js';
import type { SecureConnection, SecureServer } from '../../src/tls/types.js';
import { serveArgs, startAludel } from '../support/aludel-process.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { freePort } from '../support/loopback-port.js';
import { pebbleSkip, startPebble } from '../support/pebble.js';

const KEY_AUTHORIZATION = 'tok3n-Of_The-CA.thumbprint-of-the-account-key';

interface Seen {
  /** DER of the leaf presented. */
  raw: Buffer;
  alpn: string | false | null;
  /** What the server sent before the connection ended. */
  data: string;
}

/** One handshake offering `alpn` with SNI `servername`; resolves when the server ends the connection. */
function handshake(port: number, servername: string, alpn: string[], maxVersion: tls.SecureVersion = 'TLSv1.3'): Promise<Seen> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, ALPNProtocols: alpn, rejectUnauthorized: false, maxVersion });
    let data = '';
    let seen: Omit<Seen, 'data'> | null = null;
    s.once('secureConnect', () => {
      seen = { raw: s.getPeerCertificate().raw, alpn: s.alpnProtocol };
    });
    s.on('data', (d: Buffer) => (data += d.toString()));
    s.once('close', () => (seen ? resolve({ ...seen, data }) : reject(new Error('closed before the handshake completed'))));
    s.once('error', (err) => (seen ? undefined : reject(err)));
    s.setTimeout(10_000, () => s.destroy(new Error('timed out')));
  });
}

function der(certFile: string): Buffer {
  return new X509Certificate(fs.readFileSync(certFile)).raw;
}

describe('TLS-ALPN-01 on the listener (RFC 8737 §3)', { timeout: 60_000 }, () => {
  let dir: string;
  let server: SecureServer;
  let port: number;
  let normal: { certFile: string; keyFile: string };
  let challenge: { name: string; certFile: string; keyFile: string };
  let answered = 0;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-alpn01-'));
    const n = await createSelfSignedCert({ commonName: 'localhost', altNames: ['localhost'] });
    normal = { certFile: path.join(dir, 'normal.pem'), keyFile: path.join(dir, 'normal.key') };
    fs.writeFileSync(normal.certFile, n.certPem);
    fs.writeFileSync(normal.keyFile, n.keyPem);
    const authz = { identifier: { type: 'dns', value: 'localhost' } } as unknown as Parameters<typeof acme.crypto.createAlpnCertificate>[0];
    const [key, cert] = await acme.crypto.createAlpnCertificate(authz, KEY_AUTHORIZATION);
    challenge = { name: 'localhost', certFile: path.join(dir, 'challenge.pem'), keyFile: path.join(dir, 'challenge.key') };
    fs.writeFileSync(challenge.certFile, cert);
    fs.writeFileSync(challenge.keyFile, key);
    server = createKtlsServer({ certificates: [normal], alpn: ['h2', 'http/1.1'], offload: 'auto', handshakeTimeoutMs: 5000, log: pino({ level: 'silent' }) });
    // Not a skip: CI has libssl3, and this engine is the one that must answer.
    assert.equal(server.offload.engine, 'system-openssl');
    assert.equal(server.answersTlsAlpn01, true);
    server.on('secureConnection', (conn: SecureConnection) => {
      answered++;
      conn.end('hello\n');
    });
    port = (await server.listen({ host: '127.0.0.1', port: 0 })).port;
  });
  after(async () => {
    await server?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('no challenge pending: an acme-tls/1 handshake gets the ordinary certificate and no ALPN', async () => {
    const seen = await handshake(port, 'localhost', ['acme-tls/1']);
    assert.deepEqual(seen.raw, der(normal.certFile));
    assert.equal(seen.alpn, false);
  });

  test('pending: acme-tls/1 with the name gets the challenge certificate, negotiates acme-tls/1, and the server closes with no data', async () => {
    server.setAcmeChallenges([challenge]);
    const before = answered;
    for (const v of ['TLSv1.3', 'TLSv1.2'] as const) {
      const seen = await handshake(port, 'LocalHost', ['acme-tls/1'], v);
      assert.deepEqual(seen.raw, der(challenge.certFile), v);
      assert.equal(seen.alpn, 'acme-tls/1', v);
      assert.equal(seen.data, '', `${v}: no application data after a validation handshake`);
      const pem = new X509Certificate(seen.raw).toString();
      assert.ok(acme.crypto.isAlpnCertificateAuthorizationValid(pem, KEY_AUTHORIZATION), 'acmeIdentifier = SHA-256 of the key authorization');
    }
    assert.equal(answered, before, 'validation handshakes never reach the application');
  });

  test('pending: ordinary clients and other names are not affected', async () => {
    server.setAcmeChallenges([challenge]);
    const h1 = await handshake(port, 'localhost', ['h2', 'http/1.1']);
    assert.deepEqual(h1.raw, der(normal.certFile));
    assert.equal(h1.alpn, 'h2');
    assert.equal(h1.data, 'hello\n');
    const noAlpn = await handshake(port, 'localhost', []);
    assert.deepEqual(noAlpn.raw, der(normal.certFile));
    const other = await handshake(port, 'other.test', ['acme-tls/1']);
    assert.deepEqual(other.raw, der(normal.certFile), 'a name with no pending challenge');
    assert.equal(other.alpn, false);
  });

  test('a reconfigure keeps the pending challenges; removing them ends the answers', async () => {
    server.setAcmeChallenges([challenge]);
    server.reconfigure({ certificates: [normal], alpn: ['http/1.1'] });
    assert.deepEqual((await handshake(port, 'localhost', ['acme-tls/1'])).raw, der(challenge.certFile));
    server.setAcmeChallenges([]);
    const after = await handshake(port, 'localhost', ['acme-tls/1']);
    assert.deepEqual(after.raw, der(normal.certFile));
    assert.equal(after.alpn, false);
  });
});

const skip = pebbleSkip();

describe('TLS-ALPN-01 validated by pebble', { skip, timeout: 120_000 }, () => {
  let fx: StandardFixtures;
  let work: string;
  before(async () => {
    fx = await makeFixtures();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-acme-alpn-'));
  });
  after(() => {
    fx?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  test('no --redirect-http: TLS-ALPN-01 is chosen, pebble validates it on the TLS listener, the certificate is issued and served', async () => {
    const tlsPort = await freePort();
    const pebble = await startPebble(path.join(work, 'p'), { alwaysValid: false, tlsPort });
    const storage = path.join(work, 'store');
    const args = serveArgs(fx, '--listen', `127.0.0.1:${tlsPort}`, '--acme-domain', 'localhost', '--acme-directory', pebble.directoryUrl, '--acme-ca', pebble.caFile, '--acme-storage', storage);
    args.splice(args.indexOf('--cert'), 4);
    const server = await startAludel(args);
    try {
      const ordering = await server.waitForLog((l) => l.msg === 'acme: ordering a certificate', 30_000);
      assert.equal(ordering.challenge, 'tls-alpn-01');
      const answeredLine = await server.waitForLog((l) => l.msg === 'acme: TLS-ALPN-01 challenge answered', 30_000);
      assert.equal(answeredLine.domain, 'localhost');
      await server.waitForLog((l) => l.msg === 'acme: certificate issued and in service', 30_000);
      const seen = await handshake(server.port, 'localhost', ['http/1.1']);
      assert.match(new X509Certificate(seen.raw).issuer, /Pebble Intermediate CA/);
      assert.equal(fs.existsSync(path.join(storage, 'certificates', 'localhost', 'tls-alpn-01.pem')), false, 'the challenge pair is removed after the order');
    } finally {
      await server.stop();
      await pebble.stop();
    }
  });
});

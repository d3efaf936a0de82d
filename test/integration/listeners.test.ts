/**
 * Several --listen addresses (IPv4 and IPv6) and --redirect-http, on the real
 * CLI with curl (issue 13).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { serveArgs, startAludel } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, sha256, type StandardFixtures } from '../support/fixtures.js';
import { rawTcp } from '../support/raw-http.js';

let fx: StandardFixtures;
before(async () => {
  fx = await makeFixtures();
});
after(() => fx?.cleanup());

test('two listen addresses, 127.0.0.1 and ::1, both serve; --redirect-http answers 308 to the TLS port', async () => {
  const p = await startAludel(serveArgs(fx, '--listen', '127.0.0.1:0', '--listen', '[::1]:0', '--redirect-http', '127.0.0.1:0'));
  try {
    const line = await p.waitForLog((l) => l.msg === 'serving files over HTTPS');
    const addresses = line.addresses as string[];
    assert.equal(addresses.length, 2);
    assert.match(addresses[0]!, /^127\.0\.0\.1:\d+$/);
    assert.match(addresses[1]!, /^\[::1\]:\d+$/);
    for (const a of addresses) {
      const port = a.slice(a.lastIndexOf(':') + 1);
      const host = a.startsWith('[') ? '[::1]' : '127.0.0.1';
      const r = await curl(['--cacert', fx.certFile, '--resolve', `localhost:${port}:${host.replace(/[[\]]/g, '')}`, `https://localhost:${port}/${fx.files.big.name}`]);
      assert.equal(r.code, 0, `${a}: ${r.stderr}`);
      assert.equal(sha256(r.stdout), fx.files.big.sha256, a);
    }
    const redirect = String((await p.waitForLog((l) => l.msg === 'plain HTTP redirected to HTTPS (308)')).redirect);
    const tlsPort = addresses[0]!.slice(addresses[0]!.lastIndexOf(':') + 1);
    const r = await curl(['-si', '-H', 'Host: www.example.test:80', `http://${redirect}/a/b?c=1`]);
    assert.match(r.stdout.toString(), /^HTTP\/1\.1 308 /);
    assert.match(r.stdout.toString(), new RegExp(`\\r\\nlocation: https://www\\.example\\.test:${tlsPort}/a/b\\?c=1\\r\\n`, 'i'));
    // Followed: curl lands on the file over HTTPS.
    const followed = await curl(['-L', '--cacert', fx.certFile, '--resolve', `localhost:${tlsPort}:127.0.0.1`, '-H', 'Host: localhost', `http://${redirect}/${fx.files.mid.name}`]);
    assert.equal(followed.code, 0, followed.stderr);
    assert.equal(sha256(followed.stdout), fx.files.mid.sha256);
    const bad = await curl(['-si', '-H', 'Host: a@b', `http://${redirect}/`]);
    assert.match(bad.stdout.toString(), /^HTTP\/1\.1 400 /, 'no redirect to a Host that is not a host');
    // RFC 9112 §3.2: a 400 for more than one Host field (node keeps the first in req.headers,
    // and the redirect went there), and for the asterisk-form target with any method but OPTIONS.
    const port = Number(redirect.slice(redirect.lastIndexOf(':') + 1));
    const twoHosts = (await rawTcp(port, 'GET /x HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n')).toString('latin1');
    assert.match(twoHosts, /^HTTP\/1\.1 400 /, twoHosts);
    assert.doesNotMatch(twoHosts, /location/i);
    const star = (await rawTcp(port, 'GET * HTTP/1.1\r\nHost: a.example\r\n\r\n')).toString('latin1');
    assert.match(star, /^HTTP\/1\.1 400 /, star);
    // What node's parser refuses is answered as nginx answers it, then closed (it was a close with no answer).
    const closing = (line: string): string => `HTTP/1.1 ${line}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`;
    assert.equal((await rawTcp(port, 'GET /x HTTP/1.1\r\nHost: a.example\r\nno colon here\r\n\r\n')).toString('latin1'), closing('400 Bad Request'));
    assert.equal((await rawTcp(port, `GET /${'a'.repeat(100_000)} HTTP/1.1\r\nHost: a.example\r\n\r\n`)).toString('latin1'), closing('414 URI Too Long'));
    assert.equal((await rawTcp(port, `GET /x HTTP/1.1\r\nHost: a.example\r\nX-Pad: ${'a'.repeat(100_000)}\r\n\r\n`)).toString('latin1'), closing('431 Request Header Fields Too Large'));
    assert.equal((await rawTcp(port, '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03')).toString('latin1'), closing('400 Bad Request'), 'a TLS ClientHello sent to the plain-HTTP port');
  } finally {
    await p.stop();
  }
});

test('a busy address: the error names it', async () => {
  const p = await startAludel(serveArgs(fx));
  try {
    const { runCli } = await import('../support/aludel-process.js');
    const r = await runCli(['serve', '--listen', `127.0.0.1:${p.port}`, '--cert', fx.certFile, '--key', fx.keyFile, '--root', fx.root]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`^aludel: --listen 127\\.0\\.0\\.1:${p.port}: bind: Address already in use`, 'm'));
  } finally {
    await p.stop();
  }
});

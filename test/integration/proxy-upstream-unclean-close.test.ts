/**
 * An https:// upstream that closes without close_notify (a FIN right behind
 * its last record), as IIS and Apache's ssl-unclean-shutdown do, with the
 * upstream on the system OpenSSL in user space (this host: no kernel TLS).
 * Every byte the upstream sent before its FIN reaches the client: a
 * Content-Length body that is whole is a whole response (RFC 9112 §9.8), and
 * a close-delimited body, which an incomplete close may have cut, is sent
 * entire and then cut off, so the client knows it may be truncated.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { startAludel, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';

let fx: Fixtures;
let origin: tls.Server;
let aludel: Running;
const body = crypto.randomBytes(100_000);

before(async () => {
  fx = await makeFixtures({});
  // GET /length: Content-Length; GET /close: close-delimited. Both in one write, then destroy():
  // a FIN with no close_notify (end() would send one).
  origin = tls.createServer({ cert: fs.readFileSync(fx.certFile), key: fs.readFileSync(fx.keyFile) }, (s) => {
    s.on('error', () => undefined);
    s.once('data', (d: Buffer) => {
      const framing = d.toString('latin1').startsWith('GET /length') ? `Content-Length: ${body.length}\r\n` : '';
      s.write(Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\n${framing}\r\n`), body]), () => s.destroy());
    });
  });
  await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
  const port = (origin.address() as { port: number }).port;
  aludel = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `https://127.0.0.1:${port}`, '--upstream-ca', fx.certFile, '--offload', 'userspace']);
});

after(async () => {
  await aludel?.stop();
  await new Promise((resolve) => origin?.close(resolve));
  fx?.cleanup();
});

/** Three fetches of `name` through Aludel: curl's exit status each time, and every byte of the upstream's body. */
async function fetchThrice(name: string, curlStatus: number): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const out = path.join(fx.dir, `${name}-${i}`);
    const r = await curl(['-k', '-o', out, `https://127.0.0.1:${aludel.port}/${name}`]);
    assert.equal(r.code, curlStatus, `curl: ${r.stderr}`);
    assert.ok(fs.readFileSync(out).equals(body), `attempt ${i}: ${fs.statSync(out).size} of ${body.length} bytes`);
  }
}

describe('an https upstream closing without close_notify', () => {
  test('a whole Content-Length body is a whole response: every byte, and curl sees no error', async () => {
    await fetchThrice('length', 0);
  });

  test('a close-delimited body: every byte the upstream sent, then the response is cut off (curl 18), never ended as if whole', async () => {
    await fetchThrice('close', 18);
  });
});

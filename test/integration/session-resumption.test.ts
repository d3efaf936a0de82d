/**
 * TLS session resumption (RFC 8446 §2.2 tickets for 1.3; RFC 5077 tickets for
 * 1.2): a second connection presenting the saved session is resumed, and the
 * connection log says so ("reused": true).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { serveArgs, startAludel, type Running } from '../support/aludel-process.js';
import { run } from '../support/run-process.js';

let fx: StandardFixtures;
let server: Running;

before(async () => {
  fx = await makeFixtures();
  server = await startAludel(serveArgs(fx, '--offload', 'userspace'));
});

after(async () => {
  await server?.stop();
  await fx?.cleanup();
});

for (const version of ['-tls1_2', '-tls1_3'] as const) {
  test(`${version}: the second connection resumes the first one's session`, { timeout: 30_000 }, async () => {
    const sess = path.join(fx.outDir, `session${version}.pem`);
    const common = ['s_client', '-connect', `127.0.0.1:${server.port}`, '-servername', 'localhost', '-CAfile', fx.certFile, version];
    const request = 'GET /one.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n';
    const from = server.mark();
    const first = await run('openssl', [...common, '-quiet', '-sess_out', sess], { input: request, timeoutMs: 20_000 });
    assert.equal(first.code, 0, first.stderr.toString());
    const second = await run('openssl', [...common, '-sess_in', sess], { input: request, timeoutMs: 20_000 });
    assert.match(second.stdout.toString(), /^Reused, TLSv1\.[23]/m, 'openssl reports a resumed session');
    await server.waitForLog((l) => l.msg === 'request', 10_000, from);
    const conns = server.logs.slice(from).filter((l) => l.msg === 'TLS established');
    await server.waitForLog((l) => l.msg === 'TLS established' && l.reused === true, 10_000, from);
    assert.equal(conns[0]?.reused, false, 'the first connection is a full handshake');
  });
}

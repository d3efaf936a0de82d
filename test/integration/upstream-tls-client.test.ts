/**
 * The TLS upstream client's decisions (src/tls/upstream-client.ts) on this
 * kernel, with real servers: what goes to kTLS, what stays with OpenSSL in
 * user space, what is given up for node:tls (only a refusal in TLS itself),
 * and what is an error of this connection. The bodies on kTLS are proven in test/ktls/tls-upstream-ktls.test.ts.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { probeCapabilities } from '../../src/offload/capabilities.js';
import { UpstreamTlsContexts } from '../../src/tls/upstream-client.js';
import { PlainSocket } from '../../src/transport/plain-socket.js';
import { createLogger } from '../../src/log/logger.js';
import type { Upstream } from '../../src/config/proxy-settings.js';
import { UpstreamCertificateError } from '../../src/errors.js';
import { SslUpstream } from '../../src/proxy/ssl-upstream.js';
import type { Native } from '../../src/native/binding.js';
import crypto from 'node:crypto';
import { spawn } from 'node:child_process';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';

let fx: Fixtures;
const servers: net.Server[] = [];

before(async () => {
  fx = await makeFixtures({});
});

after(async () => {
  for (const s of servers) await new Promise((r) => s.close(r));
  fx?.cleanup();
});

async function listen(server: net.Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

function upstream(port: number, caFile: string | null): Upstream {
  return { url: `https://127.0.0.1:${port}`, protocol: 'https', host: '127.0.0.1', port, tls: { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3', ciphers: null, caFile, caPem: caFile === null ? null : fs.readFileSync(caFile), fingerprint256: null, verify: true, servername: 'localhost' } };
}

async function attempt(port: number, caFile: string | null, kernel?: boolean): Promise<{ result?: Awaited<ReturnType<UpstreamTlsContexts['handshake']>>; error?: Error; ms: number }> {
  const caps = probeCapabilities();
  assert.ok(caps.native, `the system OpenSSL must load for these tests: ${caps.opensslProblem}`);
  const contexts = new UpstreamTlsContexts(caps.native, createLogger({ level: 'silent' }), kernel ?? caps.kernelProblem === null);
  const started = Date.now();
  const sock = await PlainSocket.connect(caps.native, { host: '127.0.0.1', port, timeoutMs: 10_000, onTimeout: () => new Error('connect timeout') });
  try {
    return { result: await contexts.handshake(sock, upstream(port, caFile)), ms: Date.now() - started };
  } catch (error) {
    return { error: error as Error, ms: Date.now() - started };
  } finally {
    sock.destroy();
  }
}

/** A connection kept in user space is the caller's to free. */
function release(r: Awaited<ReturnType<typeof attempt>>): void {
  const res = r.result;
  if (res?.ok === true && !res.kernel) probeCapabilities().native!.sslFree(res.ssl);
}

describe('TLS upstream client: kTLS, user space on OpenSSL, given up, or an error', () => {
  test('an upstream that closes during the handshake: an error of this connection at once (no spinning until the connect timeout), not a reason to give up', { timeout: 30_000 }, async () => {
    const port = await listen(net.createServer((s) => s.once('data', () => s.end())));
    const r = await attempt(port, fx.certFile);
    assert.equal(r.result, undefined, JSON.stringify(r.result));
    assert.equal((r.error as Error & { code?: string }).code, 'ECONNRESET', String(r.error));
    assert.ok(r.ms < 5_000, `${r.ms} ms`);
  });

  test('an upstream with CBC suites only: given up with the handshake failure as the reason', async () => {
    const port = await listen(tls.createServer({ cert: fs.readFileSync(fx.certFile), key: fs.readFileSync(fx.keyFile), maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA' }, (s) => s.on('error', () => {})));
    const r = await attempt(port, fx.certFile);
    assert.equal(r.error, undefined, String(r.error));
    assert.equal(r.result!.ok, false);
    assert.match((r.result as { why: string }).why, /handshake failed/);
  });

  test('an untrusted certificate: UpstreamCertificateError, never given up for node:tls', async () => {
    const port = await listen(tls.createServer({ cert: fs.readFileSync(fx.certFile), key: fs.readFileSync(fx.keyFile) }, (s) => s.on('error', () => {})));
    const r = await attempt(port, null);
    assert.ok(r.error instanceof UpstreamCertificateError, String(r.error));
  });

  test('a trusted TLS 1.3 upstream: on kTLS where the kernel has TLS, else kept with the system OpenSSL in user space', async () => {
    const port = await listen(tls.createServer({ cert: fs.readFileSync(fx.certFile), key: fs.readFileSync(fx.keyFile), minVersion: 'TLSv1.3' }, (s) => s.on('error', () => {})));
    const r = await attempt(port, fx.certFile);
    assert.equal(r.error, undefined, String(r.error));
    const res = r.result!;
    assert.equal(res.ok, true, JSON.stringify(res));
    if (probeCapabilities().kernelProblem === null) {
      assert.equal((res as { kernel: boolean; rx: string }).kernel, true);
      assert.equal((res as { rx: string }).rx, 'aludel');
    } else {
      assert.equal((res as { kernel: boolean }).kernel, false);
      assert.equal((res as { version: string }).version, 'TLSv1.3');
    }
    release(r);
  });

  test('contexts without kernel TLS (--offload userspace): the connection stays with OpenSSL, never on kTLS', async () => {
    const port = await listen(tls.createServer({ cert: fs.readFileSync(fx.certFile), key: fs.readFileSync(fx.keyFile) }, (s) => s.on('error', () => {})));
    const r = await attempt(port, fx.certFile, false);
    assert.equal(r.error, undefined, String(r.error));
    assert.equal(r.result!.ok, true, JSON.stringify(r.result));
    assert.equal((r.result as { kernel: boolean }).kernel, false);
    release(r);
  });

  test('records that arrive in pieces: a user-space upstream waits on the socket between them (no SSL_read spinning on a partial record), and reads ahead', { timeout: 30_000 }, async (t) => {
    const caps = probeCapabilities();
    assert.ok(caps.native, `the system OpenSSL must load for these tests: ${caps.opensslProblem}`);
    const body = crypto.randomBytes(64 * 1024);
    const origin = await listen(tls.createServer({ cert: fs.readFileSync(fx.certFile), key: fs.readFileSync(fx.keyFile), minVersion: 'TLSv1.3' }, (s) => {
      s.on('error', () => {});
      s.once('data', () => s.write(body));
    }));
    // The origin's bytes go on in 700-byte pieces, 5 ms apart: each 16 KiB record waits in part.
    // The relay is another process, so that a reader spinning here cannot hold it up.
    const relayCode = `
      const net = require('node:net');
      const s = net.createServer((c) => {
        c.on('error', () => {});
        const o = net.connect(${origin}, '127.0.0.1');
        o.on('error', () => c.destroy());
        c.pipe(o);
        let queue = Buffer.alloc(0);
        const tick = setInterval(() => {
          if (queue.length === 0) return;
          c.write(queue.subarray(0, 700));
          queue = queue.subarray(700);
        }, 5);
        o.on('data', (d) => { queue = Buffer.concat([queue, d]); });
        c.on('close', () => { clearInterval(tick); o.destroy(); });
      }).listen(0, '127.0.0.1', () => console.log(s.address().port));`;
    const child = spawn(process.execPath, ['-e', relayCode], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => child.kill());
    const relay = Number(await new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(d.toString()))));
    let reads = 0;
    let readAhead = 0;
    const native = Object.create(caps.native) as Native;
    Object.defineProperty(native, 'read', { value: (...a: Parameters<Native['read']>) => (reads++, caps.native!.read(...a)) });
    Object.defineProperty(native, 'readAhead', { value: (ssl: Parameters<Native['sslFree']>[0]) => (readAhead++, caps.native!.readAhead!(ssl)) });
    const contexts = new UpstreamTlsContexts(caps.native, createLogger({ level: 'silent' }), false);
    const sock = await PlainSocket.connect(caps.native, { host: '127.0.0.1', port: relay, timeoutMs: 10_000, onTimeout: () => new Error('connect timeout') });
    const hs = await contexts.handshake(sock, upstream(relay, fx.certFile));
    assert.ok(hs.ok && !hs.kernel, JSON.stringify(hs));
    const up = new SslUpstream(native, sock, (hs as { ssl: Parameters<Native['sslFree']>[0] }).ssl);
    try {
      assert.equal(readAhead, 1, 'read-ahead is set once the connection is kept in user space');
      await up.write(Buffer.from('go'));
      const got: Buffer[] = [];
      let n = 0;
      while (n < body.length) {
        const b = await up.read();
        assert.ok(b !== null, `ended after ${n} bytes`);
        got.push(b);
        n += b.length;
      }
      assert.ok(Buffer.concat(got).equals(body), 'the bytes, in order');
      const pieces = Math.ceil(body.length / 700);
      assert.ok(reads <= 3 * pieces, `${reads} SSL_read calls for at least ${pieces} pieces: waiting on the socket, not spinning`);
    } finally {
      up.destroy();
    }
  });
});


describe('a user-space upstream that closes without close_notify', () => {
  test('records decrypted before the FIN in the same pull reach the caller; the truncation is reported on the next pull', { timeout: 30_000 }, async () => {
    const caps = probeCapabilities();
    assert.ok(caps.native, `the system OpenSSL must load for these tests: ${caps.opensslProblem}`);
    // Three records, then a FIN with no close_notify (destroy(), not end()), as legacy servers
    // (IIS, Apache's ssl-unclean-shutdown) close after a Content-Length body.
    const body = crypto.randomBytes(40 * 1024);
    let closed!: Promise<void>;
    const origin = await listen(tls.createServer({ cert: fs.readFileSync(fx.certFile), key: fs.readFileSync(fx.keyFile) }, (s) => {
      s.on('error', () => {});
      closed = new Promise((resolve) => s.once('close', () => resolve()));
      s.once('data', () => s.write(body, () => s.destroy()));
    }));
    const contexts = new UpstreamTlsContexts(caps.native, createLogger({ level: 'silent' }), false);
    const sock = await PlainSocket.connect(caps.native, { host: '127.0.0.1', port: origin, timeoutMs: 10_000, onTimeout: () => new Error('connect timeout') });
    const hs = await contexts.handshake(sock, upstream(origin, fx.certFile));
    assert.ok(hs.ok && !hs.kernel, JSON.stringify(hs));
    const up = new SslUpstream(caps.native, sock, (hs as { ssl: Parameters<Native['sslFree']>[0] }).ssl);
    try {
      await up.write(Buffer.from('go'));
      // Once the origin's socket is closed, the records and the FIN are all in our receive
      // queue (loopback): one pull() meets the data and the EOF together.
      await closed;
      const got: Buffer[] = [];
      let error: Error | null = null;
      while (error === null) {
        try {
          const b = up.pull();
          if (b === null) {
            await up.readable();
            continue;
          }
          got.push(Buffer.from(b));
          up.release();
        } catch (err) {
          error = err as Error;
        }
      }
      assert.equal(Buffer.concat(got).length, body.length, 'every byte decrypted before the FIN');
      assert.ok(Buffer.concat(got).equals(body), 'the bytes, in order');
      assert.match(error.message, /without close_notify/);
    } finally {
      up.destroy();
    }
  });
});

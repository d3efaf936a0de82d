/**
 * TLS upstreams on kTLS: the proxy's upstream socket is kTLS in both
 * directions (TLS 1.2 RX set by OpenSSL, TLS 1.3 RX by Aludel from the
 * traffic secret), so response bodies go upstream socket -> pipe -> client
 * socket by splice and the kernel decrypts and re-encrypts them. Proven by
 * /proc/net/tls_stat (TlsRxSw grows with the upstream connections: the client
 * side is TLS 1.3, whose RX OpenSSL 3.0 keeps in user space) and by the
 * access log's body path; every body compared by sha256.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { startAludel, type Running } from '../support/aludel-process.js';
import { curl, curlTlsArgs } from '../support/clients.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { makeRsaCert, patternBytes, patternSha256, startNginxOrigin, type NginxOrigin } from '../support/origins.js';
import { delta, hasKernelTls, readTlsStat } from '../support/tls-stat.js';

const MiB = 1024 * 1024;
const FILES = { 'empty.bin': 0, 'one.bin': 1, 'record.bin': 16 * 1024 + 1, 'big.bin': 64 * MiB };
const SLOW = 300_000;

let fx: Fixtures<keyof typeof FILES>;
const running: Running[] = [];

async function aludel(args: string[]): Promise<Running> {
  const p = await startAludel([...args, '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--offload', 'kernel', '--handshake-timeout', '60s', '--upstream-headers-timeout', '120s'], { startTimeoutMs: 120_000 });
  running.push(p);
  return p;
}

async function get(p: Running, path: string): Promise<{ code: number; body: Buffer; stderr: string }> {
  const r = await curl(['--fail', '--cacert', fx.certFile, ...curlTlsArgs('1.3', 'TLS_AES_128_GCM_SHA256'), `https://localhost:${p.port}${path}`], SLOW);
  return { code: r.code, body: r.stdout, stderr: r.stderr };
}

/**
 * A TLS origin of node's (TLS 1.3: it sends two NewSessionTickets after the
 * handshake, which reach the proxy as handshake records): a close-delimited
 * body ended by close_notify, irregular chunks, and a body cut mid-way by a
 * TCP RST or by a FIN without close_notify. The TLS socket runs over a
 * net.Socket of our own so the test can reset the TCP connection under it.
 */
async function startTlsOrigin(): Promise<{ port: number; close: () => Promise<void> }> {
  const secureContext = tls.createSecureContext({ cert: fs.readFileSync(fx.certFile), key: fs.readFileSync(fx.keyFile), minVersion: 'TLSv1.3' });
  const server = net.createServer((raw) => {
    const sock = new tls.TLSSocket(raw, { isServer: true, secureContext });
    let head = '';
    sock.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      const url = new URL(head.split(' ')[1]!, 'http://x');
      head = '';
      answer(url, sock, raw);
    });
    sock.on('error', () => {});
    raw.on('error', () => {});
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as { port: number }).port, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

function answer(url: URL, sock: tls.TLSSocket, raw: net.Socket): void {
  const size = Number(url.searchParams.get('size'));
  const body = patternBytes(size);
  if (url.pathname === '/close-delimited') {
    sock.write('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n');
    sock.end(body); // close_notify, then FIN
  } else if (url.pathname === '/chunked') {
    sock.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n');
    for (let off = 0, n = 1; off < size; off += n, n = (n * 7 + 13) % 40_000 + 1) {
      const piece = body.subarray(off, Math.min(size, off + n));
      sock.write(`${piece.length.toString(16)}\r\n`);
      sock.write(piece);
      sock.write('\r\n');
    }
    sock.write('0\r\n\r\n');
  } else {
    // Four times the body announced, the body sent, then the TCP connection cut under TLS.
    sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${size * 4}\r\n\r\n`);
    sock.write(body, () => setTimeout(() => (url.pathname === '/reset' ? raw.resetAndDestroy() : raw.end()), 200));
  }
}

before(async () => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  fx = await makeFixtures(FILES);
});

after(async () => {
  for (const p of running) await p.stop();
  fx?.cleanup();
});

describe('aludel proxy to a TLS upstream on kTLS', () => {
  for (const version of ['1.2', '1.3'] as const) {
    test(`nginx upstream, TLS ${version}: bodies 0 B to 64 MiB (Content-Length and chunked) spliced from the upstream's kTLS socket, identical bytes`, { timeout: 900_000 }, async (t) => {
      const origin: NginxOrigin = await startNginxOrigin({ root: fx.root, tls: { certFile: fx.certFile, keyFile: fx.keyFile, protocols: `TLSv${version}`, ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' } });
      try {
        const p = await aludel(['proxy', '--to', `https://127.0.0.1:${origin.port}`, '--upstream-ca', fx.certFile, '--upstream-servername', 'localhost']);
        const before = readTlsStat();
        let n = 0;
        for (const [name, file] of Object.entries(fx.files)) {
          for (const prefix of ['/', '/chunked/']) {
            // 64 MiB twice per version is 4 minutes of emulated crypto: TLS 1.2 sends the big file once.
            if (version === '1.2' && prefix === '/chunked/' && name === 'big.bin') continue;
            const r = await get(p, `${prefix}${name}`);
            n++;
            assert.equal(r.code, 0, `${prefix}${name}: ${r.stderr}`);
            assert.equal(sha256(r.body), file.sha256, `${prefix}${name} sha256`);
          }
        }
        const d = delta(before, readTlsStat());
        const lines = p.logs.filter((l) => l.msg === 'request');
        t.diagnostic(`${n} requests; TlsTxSw +${d.TlsTxSw} TlsRxSw +${d.TlsRxSw} TlsDecryptError +${d.TlsDecryptError ?? 0}`);
        // Client side: TLS 1.3, TX in the kernel, RX in OpenSSL. Upstream side: both, on every connection.
        const upstreamConns = (d.TlsTxSw ?? 0) - n;
        assert.ok(upstreamConns >= 1, `upstream connections on kTLS TX: ${JSON.stringify(d)}`);
        assert.equal(d.TlsRxSw, upstreamConns, `every upstream connection has kernel RX: ${JSON.stringify(d)}`);
        assert.equal(d.TlsDecryptError ?? 0, 0);
        const on = await p.waitForLog((l) => l.msg === 'upstream TLS on kTLS: bodies spliced', 10_000);
        assert.equal(on.version, `TLSv${version}`);
        assert.match(String(on.rx), version === '1.2' ? /OpenSSL/ : /Aludel/);
        for (const l of lines) if (Number(l.bytes) > 0) assert.equal(l.body, 'splice', JSON.stringify(l));
        assert.equal(p.logs.filter((l) => String(l.msg).startsWith('upstream TLS stays in user space')).length, 0);
      } finally {
        await origin.stop();
      }
    });
  }

  test('node TLS 1.3 upstream: session tickets taken as records, close_notify ends a close-delimited body, irregular chunks; all spliced', { timeout: 600_000 }, async () => {
    const origin = await startTlsOrigin();
    try {
      const p = await aludel(['proxy', '--to', `https://127.0.0.1:${origin.port}`, '--upstream-ca', fx.certFile, '--upstream-servername', 'localhost']);
      const size = 3 * MiB + 7;
      for (const route of ['close-delimited', 'chunked', 'close-delimited']) {
        const r = await get(p, `/${route}?size=${size}`);
        assert.equal(r.code, 0, `${route}: ${r.stderr}`);
        assert.equal(sha256(r.body), patternSha256(size), route);
      }
      const lines = p.logs.filter((l) => l.msg === 'request');
      assert.equal(lines.length, 3);
      for (const l of lines) {
        assert.equal(l.body, 'splice', JSON.stringify(l));
        assert.equal(l.bytes, size);
      }
    } finally {
      await origin.close();
    }
  });

  for (const cut of ['reset', 'fin'] as const) {
    test(`an upstream cut mid-body by ${cut === 'reset' ? 'a TCP RST' : 'a FIN without close_notify'}: that response is aborted, never ended cleanly; the next is served`, { timeout: 600_000 }, async () => {
      const origin = await startTlsOrigin();
      try {
        const p = await aludel(['proxy', '--to', `https://127.0.0.1:${origin.port}`, '--upstream-ca', fx.certFile, '--upstream-servername', 'localhost', '--max-fails', '0']);
        const size = MiB;
        const r = await curl(['--cacert', fx.certFile, `https://localhost:${p.port}/${cut}?size=${size}`], SLOW);
        assert.notEqual(r.code, 0, 'never a clean end');
        assert.ok(r.stdout.length <= size, `${r.stdout.length} bytes`);
        assert.equal(sha256(r.stdout), sha256(patternBytes(size).subarray(0, r.stdout.length)), 'what arrived is the right prefix');
        const line = await p.waitForLog((l) => l.msg === 'request' && String(l.url).startsWith(`/${cut}`), 60_000);
        assert.equal(line.body, 'splice', JSON.stringify(line));
        assert.ok(line.error, JSON.stringify(line));
        const ok = await get(p, '/close-delimited?size=1000');
        assert.equal(ok.code, 0, ok.stderr);
        assert.equal(sha256(ok.body), patternSha256(1000));
      } finally {
        await origin.close();
      }
    });
  }

  test('an upstream whose only suites are CBC: said once, then node:tls copies its bodies (the first request too)', { timeout: 600_000 }, async () => {
    const rsa = await makeRsaCert(fx.dir);
    const origin = await startNginxOrigin({ root: fx.root, tls: { ...rsa, protocols: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-SHA' } });
    try {
      const p = await aludel(['proxy', '--to', `https://127.0.0.1:${origin.port}`, '--upstream-ca', rsa.certFile, '--upstream-servername', 'localhost']);
      for (let i = 0; i < 2; i++) {
        const r = await get(p, '/record.bin');
        assert.equal(r.code, 0, r.stderr);
        assert.equal(sha256(r.body), fx.files['record.bin'].sha256);
      }
      const warned = p.logs.filter((l) => l.msg === 'upstream TLS stays in user space (node:tls, bodies copied)');
      assert.equal(warned.length, 1, 'said once');
      assert.match(String(warned[0]!.reason), /handshake failed/);
      const entries = await origin.accessLog(2);
      assert.ok(entries.every((e) => e.tlsCipher === 'ECDHE-RSA-AES128-SHA'), JSON.stringify(entries));
      assert.ok(p.logs.filter((l) => l.msg === 'request').every((l) => l.body === 'write'));
    } finally {
      await origin.stop();
    }
  });

  test('an untrusted or wrongly pinned upstream certificate: 502, ERR_UPSTREAM_CERTIFICATE, no fallback to node:tls', { timeout: 600_000 }, async () => {
    const rsa = await makeRsaCert(fx.dir);
    const origin = await startNginxOrigin({ root: fx.root, tls: { ...rsa, protocols: 'TLSv1.2 TLSv1.3', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' } });
    try {
      for (const extra of [['--upstream-ca', fx.certFile], ['--upstream-fingerprint', '00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF']]) {
        const p = await aludel(['proxy', '--to', `https://127.0.0.1:${origin.port}`, '--upstream-servername', 'localhost', ...extra]);
        const r = await curl(['-s', '-o', '/dev/null', '-w', '%{http_code}', '--cacert', fx.certFile, `https://localhost:${p.port}/one.bin`], SLOW);
        assert.equal(r.stdout.toString(), '502', extra.join(' '));
        const line = await p.waitForLog((l) => l.msg === 'request' && l.url === '/one.bin', 30_000);
        assert.equal(line.error, 'ERR_UPSTREAM_CERTIFICATE', JSON.stringify(line));
        assert.equal(p.logs.filter((l) => String(l.msg).startsWith('upstream TLS stays in user space')).length, 0);
      }
      assert.equal((await origin.accessLog()).length, 0, 'no request reached the origin');
    } finally {
      await origin.stop();
    }
  });
});

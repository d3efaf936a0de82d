/**
 * kTLS, proven by the kernel. Runs where /proc/net/tls_stat exists (natively,
 * or inside ../shared/ktls-vm/run-in-vm via scripts/run-tests.sh). Each claim is
 * checked against the kernel's counters, not against our own logs alone.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { curl, curlTlsArgs, sClientGet, sClientInteractive, type TlsVersion } from '../support/clients.js';
import { run } from '../support/run-process.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { serveArgs, startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { delta, hasKernelTls, readTlsStat } from '../support/tls-stat.js';
import { pipelinedBodies } from '../support/raw-http.js';

const MiB = 1024 * 1024;
const FILES = { 'empty.bin': 0, 'one.bin': 1, 'record.bin': 16 * 1024 + 1, 'big.bin': 64 * MiB };
/** The kernel's names (sock_diag TLS_INFO_CIPHER) for each suite's AEAD. */
const KERNEL_CIPHER: Record<string, string> = { 'AES-128-GCM': 'aes-gcm-128', 'AES-256-GCM': 'aes-gcm-256', 'ChaCha20-Poly1305': 'chacha20-poly1305' };
const SUITES: Record<TlsVersion, Array<{ name: string; curl: string; openssl: string; cipher: string }>> = {
  '1.2': [
    { name: 'AES-128-GCM', curl: 'ECDHE-ECDSA-AES128-GCM-SHA256', openssl: 'ECDHE-ECDSA-AES128-GCM-SHA256', cipher: 'ECDHE-ECDSA-AES128-GCM-SHA256' },
    { name: 'AES-256-GCM', curl: 'ECDHE-ECDSA-AES256-GCM-SHA384', openssl: 'ECDHE-ECDSA-AES256-GCM-SHA384', cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384' },
    { name: 'ChaCha20-Poly1305', curl: 'ECDHE-ECDSA-CHACHA20-POLY1305', openssl: 'ECDHE-ECDSA-CHACHA20-POLY1305', cipher: 'ECDHE-ECDSA-CHACHA20-POLY1305' },
  ],
  '1.3': [
    { name: 'AES-128-GCM', curl: 'TLS_AES_128_GCM_SHA256', openssl: 'TLS_AES_128_GCM_SHA256', cipher: 'TLS_AES_128_GCM_SHA256' },
    { name: 'AES-256-GCM', curl: 'TLS_AES_256_GCM_SHA384', openssl: 'TLS_AES_256_GCM_SHA384', cipher: 'TLS_AES_256_GCM_SHA384' },
    { name: 'ChaCha20-Poly1305', curl: 'TLS_CHACHA20_POLY1305_SHA256', openssl: 'TLS_CHACHA20_POLY1305_SHA256', cipher: 'TLS_CHACHA20_POLY1305_SHA256' },
  ],
};

let fx: Fixtures;
let kernel: Running;
let userspace: Running;

/** Start-up in the VM (emulated CPU) can take far longer than on the host. */
function start(offload: string): Promise<Running> {
  return startAludel(serveArgs(fx, '--offload', offload, '--handshake-timeout', '3s'), { startTimeoutMs: 120_000 });
}

function connLines(server: Running, from: number): LogLine[] {
  return server.logs.slice(from).filter((l) => l.msg === 'TLS established');
}

function requestLines(server: Running, from: number): LogLine[] {
  return server.logs.slice(from).filter((l) => l.msg === 'request');
}

/** Waits until the server has logged n request lines after `from` (logs arrive asynchronously). */
async function settle(server: Running, from: number, n: number): Promise<void> {
  for (let i = 0; i < 200 && requestLines(server, from).length < n; i++) await new Promise((r) => setTimeout(r, 50));
}

before(async () => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  fx = await makeFixtures(FILES);
  [kernel, userspace] = await Promise.all([start('kernel'), start('userspace')]);
});

after(async () => {
  await Promise.all([kernel?.stop(), userspace?.stop()]);
  await fx?.cleanup();
});

for (const mode of ['kernel', 'userspace'] as const) {
  describe(`--offload ${mode}`, () => {
    for (const version of ['1.2', '1.3'] as const) {
      for (const suite of SUITES[version]) {
        test(`TLS ${version} ${suite.name}: curl and s_client get identical bytes; kernel counters agree`, { timeout: 600_000 }, async (t) => {
          const server = mode === 'kernel' ? kernel : userspace;
          const logFrom = server.logs.length;
          const before = readTlsStat();
          let connections = 0;
          for (const [name, file] of Object.entries(fx.files)) {
            const r = await curl(['--fail', '--cacert', fx.certFile, ...curlTlsArgs(version, suite.curl), `https://localhost:${server.port}/${name}`], 300_000);
            connections++;
            assert.equal(r.code, 0, `curl ${name}: ${r.stderr}`);
            assert.equal(r.stdout.length, file.size, `curl ${name} size`);
            assert.equal(sha256(r.stdout), file.sha256, `curl ${name} sha256`);
          }
          for (const name of Object.keys(fx.files)) {
            const s = await sClientGet(server.port, `/${name}`, version, suite.openssl);
            connections++;
            assert.match(s.status, /^HTTP\/1\.1 200/, `s_client ${name}: ${s.run.stderr.slice(-500)}`);
            assert.equal(sha256(s.body), fx.files[name]!.sha256, `s_client ${name} sha256`);
          }
          await settle(server, logFrom, connections);
          const d = delta(before, readTlsStat());
          const conns = connLines(server, logFrom);
          assert.equal(conns.length, connections, 'one "TLS established" line per connection');
          for (const c of conns) {
            assert.equal(c.tls, `TLSv${version}`);
            assert.equal(c.cipher, suite.cipher);
          }
          const reqs = requestLines(server, logFrom);
          assert.equal(reqs.length, connections);
          const paths = reqs.map((r) => `${String(r.url)}:${String(r.body)}`).join(' ');
          t.diagnostic(`${connections} connections; TlsTxSw +${d.TlsTxSw} TlsRxSw +${d.TlsRxSw} TlsDecryptError +${d.TlsDecryptError}; tx=${String(conns[0]?.tx)} rx=${String(conns[0]?.rx)}; ${paths}`);
          if (mode === 'kernel') {
            // Every connection got a kernel TX context; TLS 1.2 also RX (OpenSSL 3.0 does no TLS 1.3 RX).
            assert.equal(d.TlsTxSw, connections, `TlsTxSw delta ${JSON.stringify(d)}`);
            assert.equal(d.TlsRxSw, version === '1.2' ? connections : 0, `TlsRxSw delta ${JSON.stringify(d)}`);
            for (const c of conns) {
              assert.equal(c.tx, 'kernel');
              assert.equal(c.rx, version === '1.2' ? 'kernel' : 'user');
              // And the kernel's own answer (sock_diag), not only OpenSSL's.
              assert.deepEqual([c.kernelTx, c.kernelRx, c.kernelCipher], ['sw', version === '1.2' ? 'sw' : 'none', KERNEL_CIPHER[suite.name]]);
            }
            for (const r of reqs) {
              assert.equal(r.body, r.bytes === 0 ? 'none' : 'sendfile', `body path of ${String(r.url)}`);
              // The access log line itself carries the kernel's word too (tx=sw rx=sw on 1.2, sw/none on 1.3).
              assert.deepEqual([r.kernelTx, r.kernelRx], ['sw', version === '1.2' ? 'sw' : 'none']);
            }
          } else {
            assert.equal(d.TlsTxSw, 0, 'userspace mode must not create kernel TLS contexts');
            assert.equal(d.TlsRxSw, 0);
            for (const c of conns) assert.deepEqual([c.tx, c.rx, c.kernelTx], ['user', 'user', null]);
            for (const r of reqs) assert.equal(r.body, r.bytes === 0 ? 'none' : 'write');
          }
          assert.equal(d.TlsDecryptError, 0, 'TlsDecryptError must stay 0');
        });
      }
    }
  });
}

test('session resumption still engages kTLS (TLS 1.2 and 1.3)', { timeout: 120_000 }, async (t) => {
  for (const version of ['-tls1_2', '-tls1_3']) {
    const sess = `${fx.outDir}/session${version}.pem`;
    const common = ['s_client', '-connect', `127.0.0.1:${kernel.port}`, '-servername', 'localhost', '-CAfile', fx.certFile, version];
    const request = 'GET /one.bin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n';
    const before = readTlsStat();
    const from = kernel.mark();
    const first = await run('openssl', [...common, '-quiet', '-sess_out', sess], { input: request, timeoutMs: 60_000 });
    assert.equal(first.code, 0, first.stderr.toString());
    const second = await run('openssl', [...common, '-sess_in', sess], { input: request, timeoutMs: 60_000 });
    assert.match(second.stdout.toString(), /^Reused, TLSv1\.[23]/m, 'openssl reports a resumed session');
    const resumed = await kernel.waitForLog((l) => l.msg === 'TLS established' && l.reused === true, 20_000, from);
    assert.equal(resumed.tx, 'kernel', 'a resumed session gets kTLS TX too');
    const d = delta(before, readTlsStat());
    t.diagnostic(`${version}: resumed; TlsTxSw +${d.TlsTxSw} TlsRxSw +${d.TlsRxSw}`);
    assert.equal(d.TlsTxSw, 2);
  }
});

test('the log states per connection what `ss -tie` shows for the same socket', { timeout: 120_000 }, async (t) => {
  // AES-GCM suites: iproute2's ss names only AES-GCM ciphers and prints no "cipher:" for ChaCha20
  // (the matrix above checks kernelCipher "chacha20-poly1305" from the kernel's TLS_INFO_CIPHER).
  for (const [flag, suite] of [['-tls1_2', 'ECDHE-ECDSA-AES256-GCM-SHA384'], ['-tls1_3', 'TLS_AES_128_GCM_SHA256']] as const) {
    const from = kernel.mark();
    const client = sClientInteractive(kernel.port, [flag, flag === '-tls1_2' ? '-cipher' : '-ciphersuites', suite, '-CAfile', fx.certFile]);
    try {
      const line = await kernel.waitForLog((l) => l.msg === 'TLS established', 60_000, from);
      // The server side of this connection: local port = the server's port.
      const ss = await run('ss', ['-tieH', 'state', 'established', `( sport = :${kernel.port} )`], { timeoutMs: 20_000 });
      const m = /tcp-ulp-tls version: (\S+)(?: cipher: (\S+))? rxconf: (\S+) txconf: (\S+)/.exec(ss.stdout.toString());
      assert.ok(m, `ss -tie shows the TLS ULP: ${ss.stdout.toString()}`);
      t.diagnostic(`${flag}: ss "${m[0]}"; log kernelTx=${String(line.kernelTx)} kernelRx=${String(line.kernelRx)} kernelCipher=${String(line.kernelCipher)}`);
      assert.equal(`TLSv${m[1]!}`, line.tls);
      assert.deepEqual([line.kernelCipher, line.kernelRx, line.kernelTx], [m[2], m[3], m[4]]);
    } finally {
      client.child.kill();
      await client.exited;
    }
  }
});

test('a client that half-closes right behind its requests (close_notify and FIN) gets every answer whole and in order from kernel TLS, then our FIN (TLS 1.2 and 1.3)', { timeout: 600_000 }, async (t) => {
  const { connect } = await import('node:tls');
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    const before = readTlsStat();
    const files = ['big.bin', 'one.bin', 'record.bin'];
    const sock = connect({ host: '127.0.0.1', port: kernel.port, servername: 'localhost', ca: fx.certPem, minVersion: version, maxVersion: version });
    sock.on('error', () => undefined);
    await new Promise<void>((resolve) => sock.once('secureConnect', () => resolve()));
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
    sock.end(files.map((f) => `GET /${f} HTTP/1.1\r\nHost: localhost\r\n\r\n`).join(''));
    await Promise.race([closed, new Promise((r) => setTimeout(r, 300_000))]);
    assert.ok(sock.readableEnded, `${version}: our FIN came after the answers`);
    const got = Buffer.concat(chunks);
    const bodies = pipelinedBodies(got).map((b) => sha256(b));
    assert.deepEqual(bodies, files.map((f) => fx.files[f]!.sha256), version);
    const d = delta(before, readTlsStat());
    t.diagnostic(`${version}: TlsTxSw +${d.TlsTxSw} TlsRxSw +${d.TlsRxSw} TlsDecryptError +${d.TlsDecryptError}`);
    assert.equal(d.TlsTxSw, 1, `${version}: the answers went through kernel TLS`);
    assert.equal(d.TlsDecryptError, 0);
  }
});

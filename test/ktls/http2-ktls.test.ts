/**
 * HTTP/2 frames over kTLS, proven by the kernel: nghttp2's frames are written
 * into the kTLS socket, so the kernel encrypts them (TlsTxSw grows by one per
 * connection) and the log lines say tx "kernel", for serve and for the proxy
 * (an upstream body on an h2 stream is copied, never spliced: DATA frames are
 * built in user space).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { serveArgs, startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curl, curlTlsArgs } from '../support/clients.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { startNginxOrigin, type NginxOrigin } from '../support/origins.js';
import { delta, hasKernelTls, readTlsStat } from '../support/tls-stat.js';

const FILES = { 'record.bin': 16 * 1024 + 1, 'mid.bin': 1024 * 1024 };
const SUITE = { '1.2': 'ECDHE-ECDSA-AES128-GCM-SHA256', '1.3': 'TLS_AES_128_GCM_SHA256' } as const;

let fx: Fixtures<keyof typeof FILES>;
let nginx: NginxOrigin;
let serve: Running;
let proxy: Running;

async function settle(p: Running, from: number, n: number): Promise<LogLine[]> {
  const lines = (): LogLine[] => p.logs.slice(from).filter((l) => l.msg === 'request');
  for (let i = 0; i < 400 && lines().length < n; i++) await new Promise((r) => setTimeout(r, 50));
  return lines();
}

before(async () => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  fx = await makeFixtures(FILES);
  nginx = await startNginxOrigin({ root: fx.root });
  [serve, proxy] = await Promise.all([
    startAludel(serveArgs(fx, '--offload', 'kernel', '--handshake-timeout', '60s'), { startTimeoutMs: 120_000 }),
    startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${nginx.port}`, '--offload', 'kernel', '--handshake-timeout', '60s'], { startTimeoutMs: 120_000 }),
  ]);
});

after(async () => {
  await Promise.all([serve?.stop(), proxy?.stop()]);
  await nginx?.stop();
  fx?.cleanup();
});

describe('HTTP/2 over kTLS', () => {
  for (const version of ['1.2', '1.3'] as const) {
    for (const front of ['serve', 'proxy'] as const) {
      test(`${front}, TLS ${version}: h2 downloads on one connection, encrypted by the kernel`, { timeout: 600_000 }, async (t) => {
        const p = front === 'serve' ? serve : proxy;
        const from = p.mark();
        const before = readTlsStat();
        const urls = Object.keys(FILES).map((name) => `https://localhost:${p.port}/${name}`);
        const args = ['--http2', '--fail', '--cacert', fx.certFile, ...curlTlsArgs(version, SUITE[version])];
        // One curl, one connection, two streams: -Z runs them in parallel over the same session.
        const r = await curl([...args, '-Z', ...urls.flatMap((u, i) => ['-o', `${fx.outDir}/h2-${front}-${version}-${i}`, u])], 300_000);
        assert.equal(r.code, 0, r.stderr);
        const d = delta(before, readTlsStat());
        const lines = await settle(p, from, urls.length);
        t.diagnostic(`TlsTxSw +${d.TlsTxSw} TlsRxSw +${d.TlsRxSw}; ${lines.map((l) => `${String(l.proto)} ${String(l.url)} tx=${String(l.tx)} body=${String(l.body)} ${String(l.bytes)}`).join('; ')}`);
        assert.ok((d.TlsTxSw ?? 0) >= 1 && (d.TlsTxSw ?? 0) <= urls.length, `kTLS TX sockets: ${JSON.stringify(d)}`);
        assert.equal(d.TlsDecryptError ?? 0, 0);
        assert.equal(lines.length, urls.length);
        for (const l of lines) {
          assert.equal(l.proto, 'HTTP/2.0');
          assert.equal(l.tx, 'kernel');
          assert.equal(l.body, 'write', 'DATA frames are built in user space, then encrypted by the kernel');
        }
        for (const [i, name] of Object.keys(FILES).entries()) {
          const { readFileSync } = await import('node:fs');
          assert.equal(sha256(readFileSync(`${fx.outDir}/h2-${front}-${version}-${i}`)), fx.files[name as keyof typeof FILES].sha256, name);
        }
      });
    }
  }
});

/**
 * `aludel proxy` and `aludel tcp` with kernel TLS, proven by the kernel's
 * counters: Debian's nginx as the plain-HTTP origin (static and chunked
 * bodies) and as a legacy HTTPS origin (TLS 1.0, CBC), a node sink for
 * uploads and a dying backend, redis-server behind `aludel tcp`, wrk for load.
 * With kTLS TX, response bodies of known length move upstream -> pipe -> kTLS
 * socket by splice(2): the request log says body "splice" and the bytes.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curl, curlTlsArgs, type TlsVersion } from '../support/clients.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { makeRsaCert, patternSha256, startNginxOrigin, startRedis, type NginxOrigin } from '../support/origins.js';
import { run } from '../support/run-process.js';
import { delta, hasKernelTls, readTlsStat } from '../support/tls-stat.js';
import { waitUntil } from '../support/wait.js';

const MiB = 1024 * 1024;
const FILES = { 'empty.bin': 0, 'one.bin': 1, 'record.bin': 16 * 1024 + 1, 'big.bin': 64 * MiB };
const SUITE: Record<TlsVersion, string> = { '1.2': 'ECDHE-ECDSA-AES128-GCM-SHA256', '1.3': 'TLS_AES_128_GCM_SHA256' };
const SLOW = 300_000;

let fx: Fixtures<keyof typeof FILES>;
let nginx: NginxOrigin;
const running: Running[] = [];

/** Start-up in the VM (emulated CPU) is slow: generous start and handshake timeouts. */
async function aludel(args: string[]): Promise<Running> {
  const p = await startAludel([...args, '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--offload', 'kernel', '--handshake-timeout', '60s'], { startTimeoutMs: 120_000 });
  running.push(p);
  return p;
}

function requests(p: Running, from: number): LogLine[] {
  return p.logs.slice(from).filter((l) => l.msg === 'request');
}

async function settle(p: Running, from: number, n: number): Promise<LogLine[]> {
  for (let i = 0; i < 400 && requests(p, from).length < n; i++) await new Promise((r) => setTimeout(r, 50));
  return requests(p, from);
}

before(async () => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  fx = await makeFixtures(FILES);
  nginx = await startNginxOrigin({ root: fx.root });
});

after(async () => {
  for (const p of running) await p.stop();
  await nginx?.stop();
  fx?.cleanup();
});

describe('aludel proxy with kTLS', () => {
  for (const version of ['1.2', '1.3'] as const) {
    test(`TLS ${version}: nginx bodies 0 B to 64 MiB, Content-Length and chunked bodies by splice, identical bytes`, { timeout: 900_000 }, async (t) => {
      const p = await aludel(['proxy', '--to', `http://127.0.0.1:${nginx.port}`]);
      const from = p.mark();
      const before = readTlsStat();
      let n = 0;
      for (const [name, file] of Object.entries(fx.files)) {
        for (const prefix of ['/', '/chunked/']) {
          const r = await curl(['--fail', '--cacert', fx.certFile, ...curlTlsArgs(version, SUITE[version]), `https://localhost:${p.port}${prefix}${name}`], SLOW);
          n++;
          assert.equal(r.code, 0, `${prefix}${name}: ${r.stderr}`);
          assert.equal(sha256(r.stdout), file.sha256, `${prefix}${name} sha256`);
        }
      }
      const head = await curl(['-I', '--cacert', fx.certFile, ...curlTlsArgs(version, SUITE[version]), `https://localhost:${p.port}/big.bin`], SLOW);
      n++;
      assert.match(head.stdout.toString(), new RegExp(`content-length: ${64 * MiB}`, 'i'));
      const d = delta(before, readTlsStat());
      const lines = await settle(p, from, n);
      assert.equal(d.TlsTxSw, n, `one kTLS TX socket per connection: ${JSON.stringify(d)}`);
      assert.equal(d.TlsRxSw, version === '1.2' ? n : 0, 'OpenSSL 3.0: kTLS RX for TLS 1.2 only');
      assert.equal(d.TlsDecryptError ?? 0, 0);
      t.diagnostic(`${n} connections; TlsTxSw +${d.TlsTxSw} TlsRxSw +${d.TlsRxSw} TlsDecryptError +${d.TlsDecryptError ?? 0}; ${lines.map((l) => `${String(l.method)} ${String(l.url)}:${String(l.body)}:${String(l.bytes)}`).join(' ')}`);
      for (const l of lines) assert.equal(l.tx, 'kernel', JSON.stringify(l));
      const byUrl = new Map(lines.map((l) => [String(l.url) + (l.method === 'HEAD' ? ' HEAD' : ''), l]));
      for (const [name, file] of Object.entries(fx.files)) {
        const plain = byUrl.get(`/${name}`)!;
        assert.equal(plain.bytes, file.size);
        // A body of known length goes by splice; nginx sends an empty file as Content-Length: 0.
        assert.equal(plain.body, file.size > 0 ? 'splice' : 'none', `/${name}: ${JSON.stringify(plain)}`);
        const chunked = byUrl.get(`/chunked/${name}`)!;
        assert.equal(chunked.bytes, file.size);
        // Chunked framing is read by peeking; the chunk data is spliced too.
        assert.equal(chunked.body, file.size > 0 ? 'splice' : 'none', `/chunked/${name}: ${JSON.stringify(chunked)}`);
      }
    });
  }

  test('irregular chunks and a close-delimited body from the node origin: spliced, identical bytes', { timeout: 600_000 }, async () => {
    const p = await aludel(['proxy', '--to', `http://127.0.0.1:${nginx.sink.port}`]);
    const size = 3 * MiB + 7;
    for (const route of ['chunked-stream', 'close-delimited']) {
      const r = await curl(['--fail', '--cacert', fx.certFile, `https://localhost:${p.port}/${route}?size=${size}`], SLOW);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha256(r.stdout), patternSha256(size), route);
      const line = await p.waitForLog((l) => l.msg === 'request' && String(l.url).startsWith(`/${route}`), 60_000);
      assert.equal(line.body, 'splice', JSON.stringify(line));
      assert.equal(line.bytes, size);
    }
  });

  test('a 32 MiB POST upload reaches the origin intact (TLS 1.2: kTLS RX decrypts it)', { timeout: 900_000 }, async () => {
    const p = await aludel(['proxy', '--to', `http://127.0.0.1:${nginx.port}`]);
    const file = path.join(fx.outDir, 'upload.bin');
    const size = 32 * MiB;
    await fs.promises.copyFile(path.join(fx.root, 'big.bin'), file);
    await fs.promises.truncate(file, size);
    const want = sha256(await fs.promises.readFile(file));
    const before = readTlsStat();
    const r = await curl(['--cacert', fx.certFile, ...curlTlsArgs('1.2', SUITE['1.2']), '--data-binary', `@${file}`, `https://localhost:${p.port}/upload`], SLOW);
    assert.equal(r.code, 0, r.stderr);
    const answer = JSON.parse(r.stdout.toString()) as { bytes: number; sha256: string };
    assert.equal(answer.bytes, size);
    assert.equal(answer.sha256, want);
    const d = delta(before, readTlsStat());
    assert.equal(d.TlsRxSw, 1);
    assert.equal(d.TlsDecryptError ?? 0, 0);
  });

  test('legacy HTTPS origin (TLS 1.0, AES128-SHA): modern kTLS client side, identical bytes', { timeout: 900_000 }, async () => {
    const rsa = await makeRsaCert(fx.dir);
    const legacy = await startNginxOrigin({ root: fx.root, tls: { ...rsa, protocols: 'TLSv1 TLSv1.1 TLSv1.2', ciphers: 'AES128-SHA:@SECLEVEL=0' } });
    try {
      const p = await aludel(['proxy', '--to', `https://127.0.0.1:${legacy.port}`, '--upstream-tls-min', '1.0', '--upstream-tls-max', '1.0', '--upstream-ciphers', 'AES128-SHA', '--upstream-ca', rsa.certFile, '--upstream-servername', 'localhost']);
      const before = readTlsStat();
      for (const name of ['record.bin', 'big.bin'] as const) {
        const r = await curl(['--fail', '--cacert', fx.certFile, ...curlTlsArgs('1.3', SUITE['1.3']), `https://localhost:${p.port}/${name}`], SLOW);
        assert.equal(r.code, 0, r.stderr);
        assert.equal(sha256(r.stdout), fx.files[name].sha256);
      }
      assert.equal(delta(before, readTlsStat()).TlsTxSw, 2);
      const entries = await legacy.accessLog(2);
      assert.ok(entries.every((e) => e.tlsProtocol === 'TLSv1' && e.tlsCipher === 'AES128-SHA'), JSON.stringify(entries));
      const lines = await settle(p, 0, 2);
      // A TLS upstream cannot be spliced (its bytes need decrypting in user space).
      assert.ok(lines.every((l) => l.body === 'write' && l.tx === 'kernel'), JSON.stringify(lines));
    } finally {
      await legacy.stop();
    }
  });

  test('a backend dying mid-body: that client sees an aborted response; the next is served', { timeout: 600_000 }, async () => {
    const p = await aludel(['proxy', '--to', `http://127.0.0.1:${nginx.sink.port}`, '--max-fails', '0']);
    const total = 8 * MiB;
    const dying = await curl(['--cacert', fx.certFile, `https://localhost:${p.port}/die-after?bytes=1000000&total=${total}`], SLOW);
    assert.notEqual(dying.code, 0, 'never a clean end');
    assert.ok(dying.stdout.length < total);
    const line = await p.waitForLog((l) => l.msg === 'request' && String(l.url).startsWith('/die-after'), 60_000);
    assert.equal(line.body, 'splice');
    assert.equal(line.error, 'ERR_UPSTREAM_TRUNCATED');
    const ok = await curl(['--fail', '--cacert', fx.certFile, `https://localhost:${p.port}/echo-headers`], SLOW);
    assert.equal(ok.code, 0, ok.stderr);
  });

  test('wrk at 1, 8 and 16 connections through the proxy: zero errors', { timeout: 600_000 }, async () => {
    const p = await aludel(['proxy', '--to', `http://127.0.0.1:${nginx.port}`, '--idle-timeout', '120s']);
    const before = readTlsStat();
    for (const c of [1, 8, 16]) {
      const r = await run('wrk', ['-t', '1', '-c', String(c), '-d', '4s', '--timeout', '30s', `https://127.0.0.1:${p.port}/record.bin`], { timeoutMs: 120_000 });
      const out = r.stdout.toString();
      assert.equal(r.code, 0, out + r.stderr);
      assert.match(out, /(\d+) requests in/);
      assert.doesNotMatch(out, /Socket errors|Non-2xx/, out);
    }
    assert.ok((delta(before, readTlsStat()).TlsTxSw ?? 0) >= 25, 'every wrk connection on kTLS');
  });

  test('a WebSocket client that stops reading while the upstream streams: on the splice path too, the tunnel is cut after --idle-timeout (ERR_CLIENT_STALLED)', { timeout: 600_000 }, async () => {
    // An upstream that answers 101 and then writes as fast as it may: the bytes go upstream -> pipe ->
    // kTLS socket by splice, past the client stream's own buffer, which never fills.
    const closed: number[] = [];
    const sockets = new Set<net.Socket>();
    const origin = net.createServer((sock) => {
      sockets.add(sock);
      sock.on('error', () => undefined);
      sock.on('close', () => closed.push(sock.remotePort ?? 0));
      sock.once('data', () => {
        sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
        const chunk = Buffer.alloc(64 * 1024, 0x61);
        const pump = (): void => { while (!sock.destroyed && sock.write(chunk)); };
        sock.on('drain', pump);
        pump();
      });
    });
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    const port = (origin.address() as net.AddressInfo).port;
    const p = await aludel(['proxy', '--to', `http://127.0.0.1:${port}`, '--idle-timeout', '2s', '--upstream-idle-timeout', '600s']);
    const from = p.mark();
    const before = readTlsStat();
    const raw = net.connect({ host: '127.0.0.1', port: p.port });
    raw.on('error', () => undefined);
    try {
      const c = tls.connect({ socket: raw, servername: 'localhost', ca: fs.readFileSync(fx.certFile) });
      c.on('error', () => undefined);
      await new Promise<void>((resolve) => c.once('secureConnect', () => resolve()));
      c.write('GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
      const head = await new Promise<string>((resolve) => c.once('data', (d: Buffer) => resolve(d.toString('latin1'))));
      assert.ok(head.startsWith('HTTP/1.1 101 '), head.slice(0, 100));
      // Reads nothing more: records pile up in our socket, then in the proxy's, then in its pipe.
      c.pause();
      raw.pause();
      const line = await p.waitForLog((l) => l.msg === 'upgrade failed' || l.msg === 'request', 120_000, from).catch(() => null);
      assert.ok(line !== null, 'the tunnel to a client that reads nothing was still open after 120 s');
      const failed = p.logs.slice(from).find((l) => l.msg === 'upgrade failed');
      assert.equal(failed?.error, 'ERR_CLIENT_STALLED', JSON.stringify(p.logs.slice(from)));
      assert.equal(failed?.body, 'splice', 'the bytes went by splice');
      await waitUntil(() => closed.length > 0, 10_000).catch(() => undefined);
      assert.equal(closed.length, 1, 'the upstream connection was closed');
      const d = delta(before, readTlsStat());
      assert.ok((d.TlsTxSw ?? 0) >= 1, `kTLS TX on the client connection: ${JSON.stringify(d)}`);
    } finally {
      raw.destroy();
      for (const sock of sockets) sock.destroy();
      await new Promise((resolve) => origin.close(resolve));
    }
  });
});

describe('aludel tcp with kTLS', () => {
  test('redis-cli --tls to redis-server: 1 MiB SET/GET and 10,000 pipelined commands', { timeout: 600_000 }, async () => {
    const redis = await startRedis();
    try {
      const p = await aludel(['tcp', '--to', `127.0.0.1:${redis.port}`]);
      const cli = ['--tls', '--cacert', fx.certFile, '--sni', 'localhost', '-h', '127.0.0.1', '-p', String(p.port)];
      const before = readTlsStat();
      const value = 'v'.repeat(MiB);
      const set = await run('redis-cli', [...cli, '-x', 'SET', 'big'], { input: value, timeoutMs: SLOW });
      assert.equal(set.stdout.toString().trim(), 'OK', set.stderr);
      const back = await run('redis-cli', [...cli, 'GET', 'big'], { timeoutMs: SLOW });
      assert.equal(back.stdout.toString().trim(), value);
      const commands = Array.from({ length: 10_000 }, (_, i) => `SET k${i} ${i}\r\n`).join('');
      const piped = await run('redis-cli', [...cli, '--pipe'], { input: commands, timeoutMs: SLOW });
      assert.match(piped.stdout.toString(), /errors: 0, replies: 10000/, piped.stdout.toString() + piped.stderr);
      const d = delta(before, readTlsStat());
      assert.equal(d.TlsTxSw, 3, JSON.stringify(d));
      assert.equal(d.TlsDecryptError ?? 0, 0);
      const closed = p.logs.filter((l) => l.msg === 'tunnel closed');
      for (let i = 0; i < 40 && closed.length < 3; i++) {
        await new Promise((r) => setTimeout(r, 100));
        closed.splice(0, closed.length, ...p.logs.filter((l) => l.msg === 'tunnel closed'));
      }
      assert.equal(closed.length, 3);
      assert.ok(closed.every((l) => l.body === 'splice' && l.tx === 'kernel'), JSON.stringify(closed));
      const get = closed[1]!;
      assert.ok(Number(get.down) > MiB, 'the 1 MiB reply went upstream -> client by splice');
    } finally {
      await redis.stop();
    }
  });

  test('redis closing on a protocol error while the client still sends: its error line reaches the client, read late', { timeout: 600_000 }, async () => {
    // redis answers "-ERR Protocol error" and closes with the client's bytes unread, so it resets;
    // our writes to it fail, and its line must still reach a client that reads only later.
    const redis = await startRedis();
    try {
      const p = await aludel(['tcp', '--to', `127.0.0.1:${redis.port}`]);
      const before = readTlsStat();
      const c = await new Promise<tls.TLSSocket>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port: p.port, servername: 'localhost', ca: fx.certPem }, () => resolve(s));
        s.once('error', reject);
      });
      let got = '';
      c.on('error', () => undefined);
      c.pause();
      c.on('data', (d: Buffer) => (got += d.toString()));
      const late = setTimeout(() => c.resume(), 3000);
      const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
      // A bulk length past proto-max-bulk-len (512 MB): "invalid bulk length".
      c.write('*1\r\n$99999999999\r\n');
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const pump = (): void => {
        while (c.writable && c.write(chunk));
        if (c.writable) c.once('drain', pump);
      };
      pump();
      await closed;
      clearTimeout(late);
      assert.match(got, /^-ERR Protocol error/, `the client got ${JSON.stringify(got.slice(0, 80))}`);
      const failed = p.logs.filter((l) => l.msg === 'tunnel failed');
      assert.equal(failed.length, 1, JSON.stringify(p.logs.slice(-3)));
      const d = delta(before, readTlsStat());
      assert.equal(d.TlsTxSw, 1, JSON.stringify(d));
    } finally {
      await redis.stop();
    }
  });
});

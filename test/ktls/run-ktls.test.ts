/**
 * `aludel run` and `aludel scan` against the kernel's own counters (in the
 * kTLS VM): Debian's nginx and `openssl s_server -WWW`, configured without
 * kTLS, get it under `aludel run` (TlsTxSw grows, bytes intact) and not
 * without it; node's own https (memory BIOs) is untouched; `aludel scan`
 * says "no" for the plain nginx and "yes" for the one under `aludel run`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { ScanReport } from '../../src/scan/scan.js';
import { runCli } from '../support/aludel-process.js';
import { curl, curlTlsArgs } from '../support/clients.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { startNginxOrigin, type NginxOrigin } from '../support/nginx-origin.js';
import { aludelRun, preloadLog, startNodeHttps, startSServer } from '../support/run-origins.js';
import { reapOnExit } from '../support/run-process.js';
import { delta, hasKernelTls, readTlsStat, type TlsStat } from '../support/tls-stat.js';
import { delay } from '../support/wait.js';

const MiB = 1024 * 1024;
const FILES = { 'big.bin': 64 * MiB, 'small.bin': 100 * 1024 };
const TIMEOUT = 900_000;

let fx: Fixtures<'big.bin' | 'small.bin'>;

before(async () => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  fx = await makeFixtures(FILES);
});

after(() => fx?.cleanup());

/** curl to a file (64 MiB stays out of this process's memory); sha256 of what arrived, and the kernel's counter deltas. */
async function download(port: number, name: keyof typeof FILES, tls: string[] = []): Promise<{ sha: string; size: number; stat: TlsStat }> {
  const out = `${fx.outDir}/${name}.${port}`;
  const before = readTlsStat();
  const r = await curl(['--fail', '--cacert', fx.certFile, ...tls, '-o', out, `https://localhost:${port}/${name}`], 600_000);
  const stat = delta(before, readTlsStat());
  assert.equal(r.code, 0, r.stderr);
  const data = fs.readFileSync(out);
  fs.rmSync(out);
  return { sha: sha256(data), size: data.length, stat };
}

/** The scan's row for `pid`, taken while a slow download keeps one TLS connection open to `port`. */
async function scanDuringDownload(pid: number, port: number): Promise<ScanReport['processes'][number]> {
  const slow = reapOnExit(spawn('curl', ['-s', '--cacert', fx.certFile, '-o', '/dev/null', `https://localhost:${port}/slow/big.bin`], { stdio: 'ignore' }));
  try {
    await delay(3000); // handshake on the emulated CPU; the body then trickles for minutes (limit_rate)
    const r = await runCli(['scan', '--json'], undefined, 120_000);
    assert.equal(r.code, 0, r.stderr);
    const p = (JSON.parse(r.stdout) as ScanReport).processes.find((x) => x.pid === pid);
    assert.ok(p, `pid ${pid} in the scan`);
    const table = await runCli(['scan'], undefined, 120_000);
    const row = table.stdout.split('\n').find((l) => l.startsWith(`${pid} `));
    assert.ok(row, table.stdout);
    assert.match(row, new RegExp(`127\\.0\\.0\\.1:${port}\\s+${p.ktls === 'yes' ? 'yes \\(\\d+/\\d+\\)' : p.ktls}\\s`), row);
    return p;
  } finally {
    slow.kill('SIGKILL');
  }
}

const NGINX_TLS = (f: Fixtures) => ({ certFile: f.certFile, keyFile: f.keyFile, protocols: 'TLSv1.2 TLSv1.3', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' });

describe('nginx (TLS config without ssl_conf_command Options KTLS)', { timeout: TIMEOUT }, () => {
  let plain: NginxOrigin;
  let underRun: NginxOrigin;
  const log = { lines: (): string[] => [] };

  before(async () => {
    const l = preloadLog(fx.dir, 'nginx');
    log.lines = l.lines;
    plain = await startNginxOrigin({ root: fx.root, tls: NGINX_TLS(fx), readyTimeoutMs: 60_000 });
    underRun = await startNginxOrigin({ root: fx.root, tls: NGINX_TLS(fx), wrapper: aludelRun('--offload', 'kernel'), env: { ALUDEL_PRELOAD_LOG: l.file }, readyTimeoutMs: 120_000 });
  });

  after(async () => {
    await Promise.all([plain?.stop(), underRun?.stop()]);
  });

  for (const version of ['1.3', '1.2'] as const) {
    const tls = version === '1.3' ? curlTlsArgs('1.3', 'TLS_AES_128_GCM_SHA256') : curlTlsArgs('1.2', 'ECDHE-ECDSA-AES128-GCM-SHA256');
    test(`TLS ${version}: 64 MiB intact from both; TlsTxSw grows only under aludel run`, async () => {
      const a = await download(plain.port, 'big.bin', tls);
      assert.equal(a.size, FILES['big.bin']);
      assert.equal(a.sha, fx.files['big.bin'].sha256);
      assert.equal(a.stat.TlsTxSw, 0, `plain nginx: no kernel TLS (${JSON.stringify(a.stat)})`);
      const b = await download(underRun.port, 'big.bin', tls);
      assert.equal(b.size, FILES['big.bin']);
      assert.equal(b.sha, fx.files['big.bin'].sha256);
      assert.equal(b.stat.TlsTxSw, 1, `nginx under aludel run: kernel TX (${JSON.stringify(b.stat)})`);
      if (version === '1.2') assert.equal(b.stat.TlsRxSw, 1, 'TLS 1.2: OpenSSL 3.0 gives the kernel RX too');
      assert.equal(b.stat.TlsDecryptError ?? 0, 0);
    });
  }

  test('the preload said once what it did', () => {
    const lines = log.lines();
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0]!, new RegExp(`^aludel-preload: pid ${underRun.pid}: strategy option \\(OpenSSL 3\\.x programs kTLS itself\\): SSL_OP_ENABLE_KTLS set on every SSL_CTX and SSL \\(OpenSSL 3\\.`));
  });

  test('aludel scan: kTLS no for plain nginx, yes under aludel run', async () => {
    const a = await scanDuringDownload(plain.pid, plain.port);
    assert.equal(a.ktls, 'no');
    assert.equal(a.recommendation.action, 'run');
    const b = await scanDuringDownload(underRun.pid, underRun.port);
    assert.equal(b.ktls, 'yes');
    assert.equal(b.underRun, true);
    assert.equal(b.ktlsSockets[0]?.txConf, 'sw');
    assert.equal(b.recommendation.action, 'none');
  });
});

describe('openssl s_server -WWW', { timeout: TIMEOUT }, () => {
  const tls12 = ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'];

  test('under aludel run: 64 MiB intact, TlsTxSw and TlsRxSw grow (TLS 1.2 AES-GCM); without it: no growth', async () => {
    const log = preloadLog(fx.dir, 's_server');
    const runSrv = await startSServer({ root: fx.root, certFile: fx.certFile, keyFile: fx.keyFile, wrapper: aludelRun('--offload', 'kernel'), env: { ALUDEL_PRELOAD_LOG: log.file }, args: tls12 });
    const plainSrv = await startSServer({ root: fx.root, certFile: fx.certFile, keyFile: fx.keyFile, args: tls12 });
    try {
      const b = await download(runSrv.port, 'big.bin');
      assert.equal(b.sha, fx.files['big.bin'].sha256);
      assert.equal(b.stat.TlsTxSw, 1, JSON.stringify(b.stat));
      assert.equal(b.stat.TlsRxSw, 1, JSON.stringify(b.stat));
      assert.equal(log.lines().length, 1, log.lines().join('\n'));
      const a = await download(plainSrv.port, 'big.bin');
      assert.equal(a.sha, fx.files['big.bin'].sha256);
      assert.equal(a.stat.TlsTxSw, 0, JSON.stringify(a.stat));
      assert.equal(a.stat.TlsRxSw, 0, JSON.stringify(a.stat));
    } finally {
      await Promise.all([runSrv.stop(), plainSrv.stop()]);
    }
  });
});

describe('node:https (memory BIOs, its own OpenSSL)', { timeout: TIMEOUT }, () => {
  test('under aludel run: bytes intact, the preload mapped, no kernel TLS', async () => {
    const srv = await startNodeHttps({ file: fx.files['small.bin'].path, certFile: fx.certFile, keyFile: fx.keyFile, wrapper: aludelRun() });
    try {
      const before = readTlsStat();
      const r = await curl(['--fail', '-D', '-', '--cacert', fx.certFile, `https://localhost:${srv.port}/`], 300_000);
      const d = delta(before, readTlsStat());
      assert.equal(r.code, 0, r.stderr);
      const body = r.stdout.subarray(r.stdout.indexOf('\r\n\r\n') + 4);
      assert.match(r.stdout.toString('latin1'), /x-preloaded: true/i);
      assert.equal(sha256(body), fx.files['small.bin'].sha256);
      assert.equal(d.TlsTxSw, 0);
      assert.equal(d.TlsRxSw, 0);
    } finally {
      await srv.stop();
    }
  });
});

describe('aludel run --strategy keys: openssl s_server -WWW (keys through the OpenSSL API, kTLS programmed by the preload)', { timeout: TIMEOUT }, () => {
  for (const suite of ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384']) {
    test(`TLS 1.2 ${suite}: 64 MiB and a small file intact; TlsTxSw and TlsRxSw grow per connection`, async () => {
      const log = preloadLog(fx.dir, `keys-${suite}`);
      const srv = await startSServer({
        root: fx.root,
        certFile: fx.certFile,
        keyFile: fx.keyFile,
        wrapper: aludelRun('--offload', 'kernel', '--strategy', 'keys'),
        env: { ALUDEL_PRELOAD_LOG: log.file },
        args: ['-tls1_2', '-cipher', suite],
      });
      try {
        for (const name of ['big.bin', 'small.bin'] as const) {
          const r = await download(srv.port, name);
          assert.equal(r.size, FILES[name], name);
          assert.equal(r.sha, fx.files[name].sha256, name);
          assert.equal(r.stat.TlsTxSw, 1, `${name}: ${JSON.stringify(r.stat)}`);
          assert.equal(r.stat.TlsRxSw, 1, `${name}: ${JSON.stringify(r.stat)}`);
          assert.equal(r.stat.TlsDecryptError ?? 0, 0);
        }
        const lines = log.lines();
        assert.equal(lines.length, 1, lines.join('\n'));
        assert.match(lines[0]!, /strategy keys \(--strategy keys\): TLS 1\.2 \(AES-GCM, ChaCha20-Poly1305\) and TLS 1\.3 connections handed to kernel TLS after the handshake, both directions \(OpenSSL 3\./);
      } finally {
        await srv.stop();
      }
    });
  }

  test('TLS 1.3 on OpenSSL 3.0: both directions in the kernel (3.0\'s own kTLS does TX only), the NewSessionTickets counted', async () => {
    const srv = await startSServer({ root: fx.root, certFile: fx.certFile, keyFile: fx.keyFile, wrapper: aludelRun('--strategy', 'keys') });
    try {
      for (const name of ['big.bin', 'small.bin'] as const) {
        const r = await download(srv.port, name, curlTlsArgs('1.3', 'TLS_AES_128_GCM_SHA256'));
        assert.equal(r.sha, fx.files[name].sha256, name);
        assert.equal(r.stat.TlsTxSw, 1, `${name}: ${JSON.stringify(r.stat)}`);
        assert.equal(r.stat.TlsRxSw, 1, `${name}: ${JSON.stringify(r.stat)}`);
        assert.equal(r.stat.TlsDecryptError ?? 0, 0);
      }
    } finally {
      await srv.stop();
    }
  });
});

describe('aludel run --strategy keys: nginx (SSL_do_handshake, SSL_read, SSL_write, SSL_shutdown)', { timeout: TIMEOUT }, () => {
  test('TLS 1.2 AES-128-GCM: 64 MiB intact over a keep-alive pair of requests; TlsTxSw and TlsRxSw grow', async () => {
    const nginx = await startNginxOrigin({
      root: fx.root,
      tls: { ...NGINX_TLS(fx), protocols: 'TLSv1.2' },
      wrapper: aludelRun('--offload', 'kernel', '--strategy', 'keys'),
      readyTimeoutMs: 120_000,
    });
    try {
      const out = `${fx.outDir}/keys-nginx`;
      const before = readTlsStat();
      // Two requests on one connection: the second proves reads after a full response still decrypt.
      const r = await curl(['--fail', '--cacert', fx.certFile, '-o', `${out}.1`, `https://localhost:${nginx.port}/big.bin`, '-o', `${out}.2`, `https://localhost:${nginx.port}/small.bin`], 600_000);
      const d = delta(before, readTlsStat());
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha256(fs.readFileSync(`${out}.1`)), fx.files['big.bin'].sha256);
      assert.equal(sha256(fs.readFileSync(`${out}.2`)), fx.files['small.bin'].sha256);
      assert.equal(d.TlsTxSw, 1, JSON.stringify(d));
      assert.equal(d.TlsRxSw, 1, JSON.stringify(d));
      assert.equal(d.TlsDecryptError ?? 0, 0);
      const log = await nginx.accessLog(2);
      assert.deepEqual(log.map((e) => [e.status, e.connectionRequests]), [[200, 1], [200, 2]], 'one keep-alive connection');
    } finally {
      await nginx.stop();
    }
  });
});

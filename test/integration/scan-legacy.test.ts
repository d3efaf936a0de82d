/**
 * `aludel scan` on real programs of each OpenSSL line, on this kernel (no kTLS
 * needed): the version it reads from the mapped library, the strategy `aludel
 * run` would take, whether the listening port speaks TLS (the loopback probe of
 * src/scan/tls-probe.ts), and the recommendation:
 * - Debian's nginx (OpenSSL 3) serving plain HTTP only: option, plain, not run;
 * - nginx 1.11.1 (OpenSSL 1.0.2f) and Debian 11's nginx 1.18 (OpenSSL 1.1.1w)
 *   with TLS: keys, TLS, run (test/support/legacy.ts; built by ../shared/legacy);
 * plus what the probe itself does to a server: one connection, one ClientHello,
 * closed after the first record header.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { runCli } from '../support/aludel-process.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { startLegacyNginx, type LegacyNginxName } from '../support/legacy.js';
import { freePort } from '../support/loopback-port.js';
import { startNginxOrigin } from '../support/nginx-origin.js';
import { delay, waitUntil } from '../support/wait.js';
import type { ScannedProcess, ScanReport } from '../../src/scan/scan.js';
import { clientHello, probeTls } from '../../src/scan/tls-probe.js';

let fx: StandardFixtures;

before(async () => {
  fx = await makeFixtures();
});

after(() => fx?.cleanup());

/** The JSON row and the table row of `pid`, from two runs of `aludel scan`. */
async function scanOf(pid: number): Promise<{ p: ScannedProcess; row: string }> {
  const json = await runCli(['scan', '--json'], undefined, 60_000);
  assert.equal(json.code, 0, json.stderr);
  const report = JSON.parse(json.stdout) as ScanReport;
  const p = report.processes.find((x) => x.pid === pid);
  assert.ok(p, `pid ${pid} listed: ${report.processes.map((x) => `${x.pid} ${x.command}`).join(', ')}`);
  const table = await runCli(['scan'], undefined, 60_000);
  assert.equal(table.code, 0, table.stderr);
  const row = table.stdout.split('\n').find((l) => l.startsWith(`${pid} `));
  assert.ok(row, table.stdout);
  return { p, row };
}

/** Counts a server's connections and the bytes each one sent. */
function countConnections(server: net.Server): { received: number[] } {
  const seen = { received: [] as number[] };
  server.on('connection', (sock: net.Socket) => {
    const i = seen.received.push(0) - 1;
    sock.on('data', (d: Buffer) => (seen.received[i]! += d.length));
  });
  return seen;
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port));
  });
}

const HELLO_BYTES = clientHello(Buffer.alloc(32)).length;

describe('the TLS probe: one connection, one ClientHello, the first record header', { timeout: 30_000 }, () => {
  test('a TLS server answers with a handshake record; a TLS 1.3-only one with an alert: both are TLS', async () => {
    for (const [minVersion, note] of [['TLSv1.2', 'probe: TLS handshake record'], ['TLSv1.3', 'probe: TLS alert']] as const) {
      const server = tls.createServer({ cert: fs.readFileSync(fx.certFile), key: fs.readFileSync(fx.keyFile), minVersion });
      server.on('tlsClientError', () => {}); // the aborted handshake
      const tlsPort = await listen(server);
      // A TLS socket reads its raw socket itself, so the bytes are counted on a relay in front of it.
      const relay = net.createServer((sock) => {
        const up = net.connect(tlsPort, '127.0.0.1');
        sock.pipe(up).pipe(sock);
        const end = (): void => void (sock.destroy(), up.destroy());
        sock.on('error', end).on('close', end);
        up.on('error', end).on('close', end);
      });
      const seen = countConnections(relay);
      const port = await listen(relay);
      try {
        assert.deepEqual(await probeTls('127.0.0.1', port), { tls: 'yes', note }, minVersion);
        await waitUntil(() => seen.received[0] === HELLO_BYTES, 2000).catch(() => {});
        await delay(100);
        assert.deepEqual(seen.received, [HELLO_BYTES], `${minVersion}: one connection, one ClientHello`);
      } finally {
        relay.close();
        server.close();
      }
    }
  });

  test('a plain HTTP server answers 400: not TLS, and the note says what came back', async () => {
    const server = http.createServer((_req, res) => res.end('never a complete request\n'));
    const seen = countConnections(server);
    const port = await listen(server);
    try {
      assert.deepEqual(await probeTls('127.0.0.1', port), { tls: 'no', note: 'probe: answered "HTTP/1.1 400 Bad"' });
      await waitUntil(() => seen.received[0] === HELLO_BYTES, 2000).catch(() => {});
      assert.deepEqual(seen.received, [HELLO_BYTES]);
    } finally {
      server.close();
    }
  });

  test('a server that says nothing: unknown once the timeout passes, and no second try', async () => {
    const server = net.createServer(() => {});
    const seen = countConnections(server);
    const port = await listen(server);
    try {
      const t0 = Date.now();
      assert.deepEqual(await probeTls('127.0.0.1', port, 300), { tls: 'unknown', note: 'probe: no answer within 300 ms' });
      const ms = Date.now() - t0;
      assert.ok(ms >= 290 && ms < 1500, `bounded by the timeout (${ms} ms)`);
      await delay(100);
      assert.deepEqual(seen.received, [HELLO_BYTES]);
    } finally {
      server.close();
    }
  });

  test('a closed port: unknown', async () => {
    const r = await probeTls('127.0.0.1', await freePort());
    assert.equal(r.tls, 'unknown');
    assert.match(r.note, /^probe: could not connect \(ECONNREFUSED\)$/);
  });
});

describe('aludel scan: OpenSSL version, strategy, TLS on the ports, recommendation', { timeout: 120_000 }, () => {
  test('Debian nginx (OpenSSL 3) serving plain HTTP only: strategy option, port plain, run not recommended', async () => {
    const nginx = await startNginxOrigin({ root: fx.root });
    try {
      const { p, row } = await scanOf(nginx.pid);
      assert.equal(p.openssl?.library, 'OpenSSL');
      assert.match(p.openssl?.version ?? '', /^3\.\d+\.\d+$/);
      assert.match(p.openssl?.versionText ?? '', /^OpenSSL 3\.\d+\.\d+ +\d{1,2} [A-Z][a-z]{2} \d{4}$/);
      assert.match(p.openssl?.libssl ?? '', /\/libssl\.so\.3$/);
      assert.equal(p.strategy, 'option');
      assert.deepEqual(p.listening, [{ address: '127.0.0.1', port: nginx.port, tls: 'no', tlsNote: 'probe: answered "HTTP/1.1 400 Bad"' }]);
      assert.equal(p.recommendation.action, 'none');
      assert.match(p.recommendation.reason, new RegExp(`^no TLS on its ports \\(${nginx.port}: probe: answered "HTTP/1\\.1 400 Bad"\\): nothing for kernel TLS to take over$`));
      assert.match(row, new RegExp(`^${nginx.pid}\\s+nginx\\s+3\\.\\d+\\.\\d+\\s+option\\s+no\\s+127\\.0\\.0\\.1:${nginx.port}\\s+idle\\s+none\\s+no TLS on its ports`), row);
      // What an admin finds afterwards: per scan, one malformed request answered 400 (no method, no URI), nothing else.
      const entries = await nginx.accessLog(2);
      assert.ok(entries.length >= 2, `one entry per scan (two scans): ${JSON.stringify(entries)}`);
      for (const e of entries) assert.deepEqual([e.status, e.method, e.uri], [400, '', ''], JSON.stringify(e));
    } finally {
      await nginx.stop();
    }
  });

  const LEGACY: Array<{ nginx: LegacyNginxName; protocols: string; version: string; text: string; libssl: RegExp; libcrypto: RegExp; why: RegExp }> = [
    {
      nginx: 'nginx-1.11.1',
      protocols: 'TLSv1.2',
      version: '1.0.2f',
      text: 'OpenSSL 1.0.2f  28 Jan 2016',
      libssl: /\/openssl-1\.0\.2f\/lib\/libssl\.so\.1\.0\.0$/,
      libcrypto: /\/openssl-1\.0\.2f\/lib\/libcrypto\.so\.1\.0\.0$/,
      why: /^OpenSSL 1\.0\.2 has no kTLS: .*TLS 1\.2 AES-GCM/,
    },
    {
      nginx: 'nginx-1.18',
      protocols: 'TLSv1.2 TLSv1.3',
      version: '1.1.1w',
      text: 'OpenSSL 1.1.1w  11 Sep 2023',
      libssl: /\/debian11\/root\/usr\/lib\/x86_64-linux-gnu\/libssl\.so\.1\.1$/,
      libcrypto: /\/debian11\/root\/usr\/lib\/x86_64-linux-gnu\/libcrypto\.so\.1\.1$/,
      why: /^OpenSSL 1\.1\.1 has no kTLS: .*TLS 1\.2 and 1\.3/,
    },
  ];

  for (const want of LEGACY) {
    test(`${want.nginx} (OpenSSL ${want.version}) with TLS: strategy keys, port TLS, run; the probe leaves an info line, no request`, async () => {
      const nginx = await startLegacyNginx({ nginx: want.nginx, root: fx.root, certFile: fx.certFile, keyFile: fx.keyFile, protocols: want.protocols, ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' });
      try {
        const from = nginx.errorLog().length;
        const { p, row } = await scanOf(nginx.pid);
        assert.equal(p.command, 'nginx');
        assert.deepEqual(
          { library: p.openssl?.library, version: p.openssl?.version, versionText: p.openssl?.versionText },
          { library: 'OpenSSL', version: want.version, versionText: want.text },
        );
        assert.match(p.openssl?.libssl ?? '', want.libssl);
        assert.match(p.openssl?.libcrypto ?? '', want.libcrypto);
        assert.equal(p.strategy, 'keys');
        assert.match(p.strategyReason, want.why);
        assert.equal(p.underRun, false);
        assert.deepEqual(p.listening, [{ address: '127.0.0.1', port: nginx.port, tls: 'yes', tlsNote: 'probe: TLS handshake record' }]);
        assert.equal(p.recommendation.action, 'run');
        assert.match(p.recommendation.reason, new RegExp(`^TLS on port ${nginx.port}: restart it under aludel run \\(keys: ${want.why.source.slice(1)}`));
        const v = want.version.replace(/\./g, '\\.');
        assert.match(row, new RegExp(`^${nginx.pid}\\s+nginx\\s+${v}\\s+keys\\s+yes\\s+127\\.0\\.0\\.1:${nginx.port}\\s+idle\\s+run\\s+TLS on port ${nginx.port}:`), row);
        // The handshake was never completed: no request logged, and the error log has the aborted handshake at level info only
        // (below nginx's default error_log level, error).
        assert.deepEqual(await nginx.accessLog(), []);
        const lines = (): string[] => nginx.errorLog().slice(from).split('\n').filter((l) => l.length > 0);
        await waitUntil(() => lines().some((l) => /\[info\].*SSL handshak/.test(l)), 2000).catch(() => {});
        assert.ok(lines().some((l) => /\[info\].*SSL handshak/.test(l)), lines().join('\n'));
        assert.deepEqual(lines().filter((l) => /\[(warn|error|crit|alert|emerg)\]/.test(l)), []);
      } finally {
        await nginx.stop();
      }
    });
  }
});

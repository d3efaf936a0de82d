/**
 * /metrics with kernel TLS, checked against curl and the kernel: the bytes
 * that left by sendfile on kTLS sockets are exactly those curl received, and
 * the /proc/net/tls_stat series grow by one TX session (and one RX session
 * for TLS 1.2) per connection, as the file itself does.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { serveArgs, startAludel, type Running } from '../support/aludel-process.js';
import { curlTlsArgs, curlTransfers, type TlsVersion, type Transfer } from '../support/clients.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { adminAddress, assertPromtoolPasses, scrape, select, status, total, type Sample } from '../support/metrics.js';
import { delta, hasKernelTls, readTlsStat } from '../support/tls-stat.js';
import { waitUntil } from '../support/wait.js';

const SUITE: Record<TlsVersion, string> = { '1.2': 'ECDHE-ECDSA-AES128-GCM-SHA256', '1.3': 'TLS_AES_128_GCM_SHA256' };

let fx: Fixtures<'one.bin' | 'record.bin' | 'file.bin'>;
let server: Running;
let admin: string;

before(async () => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  fx = await makeFixtures({ 'one.bin': 1, 'record.bin': 16 * 1024 + 1, 'file.bin': 1024 * 1024 });
  // Start-up and handshakes on the VM's emulated CPU take far longer than natively.
  server = await startAludel(serveArgs(fx, '--offload', 'kernel', '--handshake-timeout', '60s', '--admin', '127.0.0.1:0'), { startTimeoutMs: 120_000 });
  admin = await adminAddress(server);
});

after(async () => {
  await server?.stop();
  fx?.cleanup();
});

/** Growth of the series selected by `match` between two scrapes. */
function grew(a: Sample[], b: Sample[], name: string, match: Record<string, string> = {}): number {
  return total(b, name, match) - total(a, name, match);
}

describe('aludel serve --offload kernel --admin', () => {
  for (const version of ['1.2', '1.3'] as const) {
    test(`TLS ${version}: sendfile bytes on kTLS = curl's bytes; tls_stat series = the kernel's file; promtool passes`, { timeout: 600_000 }, async (t) => {
      const rx = version === '1.2' ? 'kernel' : 'user';
      const requestsBefore = server.logs.filter((l) => l.msg === 'request').length;
      const scraped0 = await scrape(admin);
      const stat0 = readTlsStat();
      const common = ['--cacert', fx.certFile, ...curlTlsArgs(version, SUITE[version])];
      const url = (name: string): string => `https://localhost:${server.port}/${name}`;
      const transfers: Transfer[] = [];
      for (const name of Object.keys(fx.files)) transfers.push(...(await curlTransfers(common, [[url(name)]], 300_000)));
      // Two more on one keep-alive connection.
      transfers.push(...(await curlTransfers(common, [[url('file.bin')], [url('record.bin')]], 300_000)));
      assert.ok(transfers.every((x) => x.status === 200), JSON.stringify(transfers));
      const connections = transfers.reduce((a, x) => a + x.connects, 0);
      assert.equal(connections, 4);
      await waitUntil(() => server.logs.filter((l) => l.msg === 'request').length >= requestsBefore + transfers.length, 30_000);

      const scraped = await scrape(admin);
      const stat = readTlsStat();
      const d = delta(stat0, stat);
      const received = transfers.reduce((a, x) => a + x.bytes, 0);
      const s0 = scraped0.samples;
      const s1 = scraped.samples;
      t.diagnostic(`${connections} connections, ${received} bytes; TlsTxSw +${d.TlsTxSw} TlsRxSw +${d.TlsRxSw}`);

      assert.equal(grew(s0, s1, 'aludel_body_bytes_total', { path: 'sendfile', tx: 'kernel', rx }), received, 'sendfile bytes on kTLS = what curl received');
      assert.equal(grew(s0, s1, 'aludel_body_bytes_total'), received, 'and no byte by another path');
      assert.equal(grew(s0, s1, 'aludel_connections_total', { tx: 'kernel', rx }), connections);
      // The kernel's own word per connection (sock_diag; the VM runs tests as root, so CAP_NET_ADMIN).
      assert.equal(grew(s0, s1, 'aludel_connections_kernel_tls_total', { tx_conf: 'sw', rx_conf: version === '1.2' ? 'sw' : 'none' }), connections);
      assert.equal(grew(s0, s1, 'aludel_handshakes_total', { version: `TLSv${version}`, cipher: SUITE[version], result: 'ok' }), connections);
      assert.equal(grew(s0, s1, 'aludel_handshake_duration_seconds_count', { version: `TLSv${version}` }), connections);

      // The kernel's counters, as exposed, move as the kernel's file does: one TX session per connection, RX too on TLS 1.2.
      assert.equal(d.TlsTxSw, connections);
      assert.equal(grew(s0, s1, 'aludel_kernel_tls_tx_sw_total'), connections);
      assert.equal(grew(s0, s1, 'aludel_kernel_tls_rx_sw_total'), version === '1.2' ? connections : 0);
      assert.equal(total(s1, 'aludel_kernel_tls_tx_sw_total'), stat.TlsTxSw);
      assert.equal(total(s1, 'aludel_kernel_tls_decrypt_error_total'), stat.TlsDecryptError);
      for (const name of Object.keys(stat)) {
        const metric = `aludel_kernel_tls_${name.slice(3).replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase()}${name.startsWith('TlsCurr') ? '' : '_total'}`;
        assert.equal(select(s1, metric).length, 1, `${name} is exposed as ${metric}`);
      }
      assert.match(scraped.text, /# TYPE aludel_kernel_tls_curr_tx_sw gauge/);
      await assertPromtoolPasses(scraped.text);

      const st = await status(admin);
      assert.equal(st.offload.ktls, true);
      assert.ok(st.kernelTls.available);
      assert.ok(st.kernelTls.available && st.kernelTls.counters.TlsTxSw === stat.TlsTxSw);
      assert.ok(st.bodies.sendfile.bytes >= received);
      assert.ok(st.connections.kernelTx >= connections);
    });
  }
});

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { kernelTlsRegistry, readKernelTlsStat } from '../../src/metrics/kernel-tls-stat.js';
import { assertPromtoolPasses, parseExposition } from '../support/metrics.js';

let dir: string;

before(async () => {
  dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-tls-stat-'));
});

after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** As the kernel prints it (net/tls/tls_proc.c: snmp_seq_show_item, "%-32s\t%lu"). */
function statFile(name: string, counters: Array<[string, number]>): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, counters.map(([k, v]) => `${k.padEnd(32)}\t${v}\n`).join(''));
  return file;
}

/** Linux 6.1's twelve counters, plus one of 6.14's rekey counters. */
const COUNTERS: Array<[string, number]> = [
  ['TlsCurrTxSw', 3],
  ['TlsCurrRxSw', 1],
  ['TlsCurrTxDevice', 0],
  ['TlsCurrRxDevice', 0],
  ['TlsTxSw', 41],
  ['TlsRxSw', 17],
  ['TlsTxDevice', 0],
  ['TlsRxDevice', 0],
  ['TlsDecryptError', 2],
  ['TlsRxDeviceResync', 0],
  ['TlsDecryptRetry', 5],
  ['TlsRxNoPadViolation', 4],
  ['TlsRxRekeyReceived', 7],
];

describe('/proc/net/tls_stat as Prometheus metrics', () => {
  test('every line becomes a metric named after it: TlsCurr* gauges, the rest counters; promtool passes', async () => {
    const stat = await readKernelTlsStat(statFile('tls_stat', COUNTERS));
    assert.ok(stat.available);
    assert.deepEqual(stat.counters, Object.fromEntries(COUNTERS));
    const text = await kernelTlsRegistry(stat.counters).metrics();
    await assertPromtoolPasses(text);
    const samples = Object.fromEntries(parseExposition(text).map((s) => [s.name, s.value]));
    assert.deepEqual(samples, {
      aludel_kernel_tls_curr_tx_sw: 3,
      aludel_kernel_tls_curr_rx_sw: 1,
      aludel_kernel_tls_curr_tx_device: 0,
      aludel_kernel_tls_curr_rx_device: 0,
      aludel_kernel_tls_tx_sw_total: 41,
      aludel_kernel_tls_rx_sw_total: 17,
      aludel_kernel_tls_tx_device_total: 0,
      aludel_kernel_tls_rx_device_total: 0,
      aludel_kernel_tls_decrypt_error_total: 2,
      aludel_kernel_tls_rx_device_resync_total: 0,
      aludel_kernel_tls_decrypt_retry_total: 5,
      aludel_kernel_tls_rx_no_pad_violation_total: 4,
      aludel_kernel_tls_rx_rekey_received_total: 7,
    });
    assert.match(text, /# TYPE aludel_kernel_tls_curr_tx_sw gauge/);
    assert.match(text, /# TYPE aludel_kernel_tls_tx_sw_total counter/);
    assert.match(text, /# HELP aludel_kernel_tls_tx_sw_total .*TlsTxSw.*TX sessions opened with host cryptography/);
  });

  test('no file: unavailable, with what to do', async () => {
    const stat = await readKernelTlsStat(path.join(dir, 'absent'));
    assert.equal(stat.available, false);
    assert.ok(!stat.available && /modprobe tls/.test(stat.reason), JSON.stringify(stat));
  });
});

/**
 * The kernel's own kTLS counters (/proc/net/tls_stat, host-wide, as
 * `nstat` shows them), read when scraped. Each line becomes one metric named
 * after it: TlsCurr* count sessions installed now (gauges, e.g. TlsCurrTxSw ->
 * aludel_kernel_tls_curr_tx_sw), the rest only grow (counters, e.g. TlsTxSw ->
 * aludel_kernel_tls_tx_sw_total). Names are derived rather than listed, so a
 * kernel with more counters (the rekey ones of Linux 6.14) shows them all and
 * one with fewer shows no made-up zeros; no file (no tls module) means no
 * kernel metric at all.
 */
import fs from 'node:fs';
import { Counter, Gauge, Registry } from 'prom-client';

export const TLS_STAT_FILE = '/proc/net/tls_stat';

/** Linux Documentation/networking/tls.rst, "Statistics". */
const MEANING: Record<string, string> = {
  TlsCurrTxSw: 'TX sessions currently installed with host cryptography',
  TlsCurrRxSw: 'RX sessions currently installed with host cryptography',
  TlsCurrTxDevice: 'TX sessions currently installed with NIC cryptography',
  TlsCurrRxDevice: 'RX sessions currently installed with NIC cryptography',
  TlsTxSw: 'TX sessions opened with host cryptography',
  TlsRxSw: 'RX sessions opened with host cryptography',
  TlsTxDevice: 'TX sessions opened with NIC cryptography',
  TlsRxDevice: 'RX sessions opened with NIC cryptography',
  TlsDecryptError: 'records whose decryption failed (e.g. a bad authentication tag)',
  TlsRxDeviceResync: 'RX resyncs sent to NICs handling cryptography',
  TlsDecryptRetry: 'RX records re-decrypted after a TLS_RX_EXPECT_NO_PAD misprediction (non-data records included)',
  TlsRxNoPadViolation: 'data RX records re-decrypted after a TLS_RX_EXPECT_NO_PAD misprediction',
  TlsTxRekeyOk: 'successful TX rekeys of existing sessions',
  TlsRxRekeyOk: 'successful RX rekeys of existing sessions',
  TlsTxRekeyError: 'failed TX rekeys of existing sessions',
  TlsRxRekeyError: 'failed RX rekeys of existing sessions',
  TlsRxRekeyReceived: 'KeyUpdate messages received that need a new RX key from user space',
};

export type KernelTlsStat = { available: true; counters: Record<string, number> } | { available: false; reason: string };

/** The file's name/value lines; `available: false` with what to do when it cannot be read. */
export async function readKernelTlsStat(file = TLS_STAT_FILE): Promise<KernelTlsStat> {
  let text: string;
  try {
    text = await fs.promises.readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT'
        ? `no ${file}: the kernel's tls module is not loaded (modprobe tls) or the kernel lacks CONFIG_TLS`
        : `cannot read ${file}: ${(err as Error).message}`;
    return { available: false, reason };
  }
  const counters: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(Tls[A-Za-z0-9]+)\s+(\d+)\s*$/.exec(line);
    if (m) counters[m[1]!] = Number(m[2]);
  }
  return { available: true, counters };
}

/** TlsRxNoPadViolation -> rx_no_pad_violation */
function snake(name: string): string {
  return name
    .slice(3)
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase();
}

/** A registry of this scrape's kernel counters, to merge with the process's (Registry.merge). */
export function kernelTlsRegistry(counters: Record<string, number>): Registry {
  const registry = new Registry();
  const registers = [registry];
  for (const [name, value] of Object.entries(counters)) {
    const help = `Linux kTLS, host-wide: ${name} in ${TLS_STAT_FILE}${MEANING[name] ? `, ${MEANING[name]}` : ''}`;
    if (name.startsWith('TlsCurr')) new Gauge({ name: `aludel_kernel_tls_${snake(name)}`, help, registers }).set(value);
    else new Counter({ name: `aludel_kernel_tls_${snake(name)}_total`, help, registers }).inc(value);
  }
  return registry;
}

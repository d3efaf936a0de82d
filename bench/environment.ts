/** What each result records about where it was measured. */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';

export interface Environment {
  commit: string;
  kernel: string;
  openssl: string;
  nginx: string;
  cpuModel: string;
  cpus: number;
  /** True when the CPU is emulated (QEMU TCG in the kTLS VM): only same-run ratios mean anything. */
  emulated: boolean;
  emulatedReason: string;
  loadAverageBefore: number[];
  loadAverageAfter?: number[];
  rapl: string;
  network: string;
  pinned: boolean;
  date: string;
}

function cmd(file: string, args: string[]): string {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    return (e.stderr ?? '').trim() || `unknown (${e.message.split('\n')[0]})`;
  }
}

/** `launchedEmulated`: the caller started us inside the kTLS VM, whose CPU is emulated. */
export function describeEnvironment(launchedEmulated: boolean, network: string, rapl: string, pinned: boolean): Environment {
  const cpuModel = os.cpus()[0]?.model ?? 'unknown';
  const qemuModel = /QEMU|TCG/i.test(cpuModel);
  return {
    commit: process.env.ALUDEL_BENCH_COMMIT ?? cmd('git', ['rev-parse', 'HEAD']),
    kernel: `${os.release()} ${fs.existsSync('/proc/net/tls_stat') ? '(kTLS: /proc/net/tls_stat present)' : '(no kTLS)'}`,
    openssl: cmd('openssl', ['version']),
    // nginx -v writes to stderr.
    nginx: cmd('sh', ['-c', '/usr/sbin/nginx -v 2>&1']),
    cpuModel,
    cpus: os.cpus().length,
    emulated: launchedEmulated || qemuModel,
    emulatedReason: launchedEmulated ? 'run inside the kTLS VM (QEMU without KVM)' : qemuModel ? `CPU model "${cpuModel}"` : 'native CPU',
    loadAverageBefore: os.loadavg(),
    rapl,
    network,
    pinned,
    date: new Date().toISOString(),
  };
}

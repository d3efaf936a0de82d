/** /proc/net/tls_stat: the kernel's own count of kTLS sockets (software and device). */
import fs from 'node:fs';

export type TlsStat = Record<string, number>;

export function readTlsStat(): TlsStat {
  const out: TlsStat = {};
  for (const line of fs.readFileSync('/proc/net/tls_stat', 'utf8').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined) out[k] = Number(v);
  }
  return out;
}

export function delta(before: TlsStat, after: TlsStat): TlsStat {
  const d: TlsStat = {};
  for (const k of Object.keys(after)) d[k] = (after[k] ?? 0) - (before[k] ?? 0);
  return d;
}

export function hasKernelTls(): boolean {
  return fs.existsSync('/proc/net/tls_stat');
}

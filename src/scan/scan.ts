/**
 * `aludel scan`: every process on this host that maps OpenSSL or listens on
 * TCP, with its OpenSSL version, listening ports, whether its established
 * connections run on the kernel's TLS ULP (sock_diag INET_DIAG_ULP_INFO), and
 * what to do about it (recommend.ts).
 */
import fs from 'node:fs';
import { loadAddon, type UlpInfo } from '../native/binding.js';
import { parseTlsLibraries, readVersionText, sonameVersion } from './proc-maps.js';
import { readProcTcp, socketInodes, TCP_ESTABLISHED, TCP_LISTEN } from './proc-net.js';
import { recommend, type KtlsUse, type Recommendation } from './recommend.js';
import { textTable } from '../text/text-table.js';

export interface ScannedProcess {
  pid: number;
  /** /proc/<pid>/comm */
  command: string;
  /** /proc/<pid>/exe; null when not ours to read. */
  exe: string | null;
  /** Mapped OpenSSL files; null: none mapped ("TLS library not visible"). */
  openssl: { libssl: string | null; libcrypto: string | null; version: string | null } | null;
  /** aludel-preload.so is mapped (started by aludel run). */
  underRun: boolean;
  listening: Array<{ address: string; port: number }>;
  established: number;
  /** Established sockets with the TLS ULP, and what the kernel runs for them. */
  ktlsSockets: UlpInfo[];
  ktls: KtlsUse;
  /** Why ktls is 'unknown'. */
  ktlsNote: string | null;
  recommendation: Recommendation;
}

export interface ScanReport {
  /** False: the kernel hides ULP info (no CAP_NET_ADMIN), so kTLS use shows as unknown. */
  netAdmin: boolean;
  processes: ScannedProcess[];
}

const CAP_NET_ADMIN = 12;

function hasNetAdmin(): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m !== null && (BigInt(`0x${m[1]}`) & (1n << BigInt(CAP_NET_ADMIN))) !== 0n;
}

function readOr(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

function linkOr(file: string): string | null {
  try {
    return fs.readlinkSync(file);
  } catch {
    return null;
  }
}

/** ULP info of every TCP socket in our network namespace, by inode. */
function ulpByInode(): Map<number, UlpInfo | null> | Error {
  const addon = loadAddon();
  if (addon instanceof Error) return addon;
  const map = new Map<number, UlpInfo | null>();
  try {
    for (const family of [2 /* AF_INET */, 10 /* AF_INET6 */]) for (const s of addon.tcpUlpDump(family)) map.set(s.inode, s.tls);
  } catch (err) {
    return err as Error;
  }
  return map;
}

/** The major.minor.patch of the mapped OpenSSL: from its own version text, else the soname. */
function opensslVersion(pid: number, libssl: string | null, libcrypto: string | null): string | null {
  for (const file of [libcrypto, libssl]) {
    if (file === null) continue;
    const text = readVersionText(pid, file);
    const m = text ? /OpenSSL (\S+)/.exec(text) : null;
    if (m) return m[1]!;
  }
  const file = libssl ?? libcrypto;
  return file ? sonameVersion(file) : null;
}

export function scanHost(): ScanReport {
  const netAdmin = hasNetAdmin();
  const ulp = ulpByInode();
  const ourNetns = linkOr('/proc/self/ns/net');
  const processes: ScannedProcess[] = [];
  const pids = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).sort((a, b) => a - b);
  for (const pid of pids) {
    if (pid === process.pid) continue;
    const maps = readOr(`/proc/${pid}/maps`);
    if (maps === null) continue; // exited, or not ours to read
    const libs = parseTlsLibraries(maps);
    const inodes = socketInodes(pid);
    const tcp = inodes.size > 0 ? readProcTcp(pid).filter((r) => inodes.has(r.inode)) : [];
    const listening = dedupe(tcp.filter((r) => r.state === TCP_LISTEN).map((r) => ({ address: r.address, port: r.port })));
    if (libs.libssl === null && libs.libcrypto === null && listening.length === 0) continue;
    const established = tcp.filter((r) => r.state === TCP_ESTABLISHED);
    const ktlsSockets: UlpInfo[] = [];
    let ktls: KtlsUse;
    let ktlsNote: string | null = null;
    if (established.length === 0) ktls = 'idle';
    else if (ulp instanceof Error) [ktls, ktlsNote] = ['unknown', `sock_diag failed: ${ulp.message.split('\n')[0]}`];
    else if (!netAdmin) [ktls, ktlsNote] = ['unknown', 'the kernel shows TLS ULP state only to CAP_NET_ADMIN: run as root'];
    else if (linkOr(`/proc/${pid}/ns/net`) !== ourNetns) [ktls, ktlsNote] = ['unknown', 'in another network namespace'];
    else {
      for (const s of established) {
        const info = ulp.get(s.inode);
        if (info && (info.txConf !== 'none' || info.rxConf !== 'none')) ktlsSockets.push(info);
      }
      ktls = ktlsSockets.length > 0 ? 'yes' : 'no';
    }
    const version = libs.libssl || libs.libcrypto ? opensslVersion(pid, libs.libssl, libs.libcrypto) : null;
    processes.push({
      pid,
      command: (readOr(`/proc/${pid}/comm`) ?? '').trim(),
      exe: linkOr(`/proc/${pid}/exe`),
      openssl: libs.libssl || libs.libcrypto ? { libssl: libs.libssl, libcrypto: libs.libcrypto, version } : null,
      underRun: libs.preload,
      listening,
      established: established.length,
      ktlsSockets,
      ktls,
      ktlsNote,
      recommendation: recommend({
        libsslVersion: libs.libssl ? version : null,
        libcryptoMapped: libs.libcrypto !== null,
        listeningPorts: listening.map((l) => l.port),
        ktls,
        underRun: libs.preload,
        aludel: libs.aludel,
      }),
    });
  }
  return { netAdmin, processes };
}

function dedupe(list: Array<{ address: string; port: number }>): Array<{ address: string; port: number }> {
  const seen = new Set<string>();
  return list.filter((l) => {
    const k = `${l.address} ${l.port}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function hostPort(l: { address: string; port: number }): string {
  return l.address.includes(':') ? `[${l.address}]:${l.port}` : `${l.address}:${l.port}`;
}

export function formatScanTable(r: ScanReport): string {
  const rows = [['pid', 'command', 'openssl', 'listening', 'kTLS', 'recommend', 'why']];
  for (const p of r.processes) {
    rows.push([
      String(p.pid),
      p.underRun ? `${p.command} (aludel run)` : p.command,
      p.openssl ? (p.openssl.libssl ? `${p.openssl.version ?? '?'}` : `${p.openssl.version ?? '?'} (libcrypto only)`) : 'TLS library not visible',
      p.listening.map(hostPort).join(' ') || '-',
      p.ktls === 'yes' ? `yes (${p.ktlsSockets.length}/${p.established})` : p.ktls,
      p.recommendation.action,
      p.recommendation.reason,
    ]);
  }
  const notes = r.netAdmin ? '' : '\nkTLS unknown: the kernel shows TLS ULP state only to CAP_NET_ADMIN; run aludel scan as root.\n';
  return `${textTable(rows, '')}\n${notes}`;
}

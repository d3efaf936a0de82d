/**
 * `aludel scan`: every process on this host that maps OpenSSL or listens on
 * TCP, with its OpenSSL version, the strategy `aludel run` would take with it
 * (strategy.ts), its listening ports and whether they speak TLS (a probe over
 * loopback, tls-probe.ts, or the port's convention), whether its established
 * connections run on the kernel's TLS ULP (sock_diag INET_DIAG_ULP_INFO), and
 * what to do about it (recommend.ts).
 */
import fs from 'node:fs';
import { loadAddon, type UlpInfo } from '../native/binding.js';
import { parseTlsLibraries, readVersionText, type TlsLibraries } from './proc-maps.js';
import { readProcTcp, socketInodes, TCP_ESTABLISHED, TCP_LISTEN } from './proc-net.js';
import { planProbes, probeNeeded, probePlan, recommend, tlsByPort, type KtlsUse, type PortInfo, type PortTls, type Recommendation } from './recommend.js';
import { chooseStrategy, identifyLibrary, type RunChoice, type RunStrategy, type TlsLibrary } from './strategy.js';
import { probeTls, type ProbeResult } from './tls-probe.js';
import { textTable } from '../text/text-table.js';

export interface ListeningPort {
  address: string;
  port: number;
  /** Whether the port speaks TLS: yes, no (plain), or unknown. */
  tls: PortTls;
  /** How that was found: 'probe: TLS handshake record', 'probe: answered "HTTP/1.1 400 Bad"', 'port 443 (https); not probed: ...'. */
  tlsNote: string;
}

export interface ScannedProcess {
  pid: number;
  /** /proc/<pid>/comm */
  command: string;
  /** /proc/<pid>/exe; null when not ours to read. */
  exe: string | null;
  /**
   * Mapped OpenSSL files; null: none mapped ("TLS library not visible").
   * library: 'OpenSSL', 'LibreSSL', 'BoringSSL'..., null when the files hold no version text;
   * version: '3.0.19', '1.1.1w', '1.0.2f' (the soname's version when there is no text);
   * versionText: as found in the library, e.g. 'OpenSSL 1.0.2f  28 Jan 2016'.
   */
  openssl: { libssl: string | null; libcrypto: string | null; library: string | null; version: string | null; versionText: string | null } | null;
  /** The strategy `aludel run` (no --strategy) would take: option (OpenSSL 3), keys (1.1.1, 1.0.2), or null (the program would run unchanged). */
  strategy: RunStrategy | null;
  strategyReason: string;
  /** Another shared TLS library it maps, e.g. 'GnuTLS (libgnutls.so.30)'. */
  otherTls: string | null;
  /** aludel-preload.so is mapped (started by aludel run). */
  underRun: boolean;
  listening: ListeningPort[];
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
  /**
   * Processes whose /proc/PID/maps this user may not read (EACCES/EPERM: the
   * kernel's ptrace access check, proc(5)), so neither their libraries nor
   * their sockets are known: other users' processes, for a non-root scan.
   */
  notInspected: number;
}

export interface ScanOptions {
  /** Probe listening ports for TLS over loopback (tls-probe.ts); default true. Off: the port number alone decides. */
  probe?: boolean;
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

/** One process as /proc shows it, before its ports' TLS is known. */
interface Seen {
  pid: number;
  libs: TlsLibraries;
  lib: TlsLibrary | null;
  run: RunChoice | null;
  listening: Array<{ address: string; port: number; inode: number }>;
  established: number;
  ktlsSockets: UlpInfo[];
  ktls: KtlsUse;
  ktlsNote: string | null;
  sameNetns: boolean;
}

interface Context {
  netAdmin: boolean;
  ulp: Map<number, UlpInfo | null> | Error;
  ourNetns: string | null;
}

/** The library of the mapped OpenSSL: from its own version text (libcrypto's, else libssl's), else the soname. */
function tlsLibrary(pid: number, libs: TlsLibraries): TlsLibrary {
  let text: string | null = null;
  for (const file of [libs.libcrypto, libs.libssl]) if (file !== null) text ??= readVersionText(pid, file, libs.ranges[file]);
  return identifyLibrary(text, libs.libssl ?? libs.libcrypto);
}

/** /proc/PID/maps, or 'denied' (another user's process), or null (exited meanwhile). */
function readMaps(pid: number): string | 'denied' | null {
  try {
    return fs.readFileSync(`/proc/${pid}/maps`, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'EACCES' || code === 'EPERM' ? 'denied' : null;
  }
}

function inspect(pid: number, ctx: Context): Seen | 'denied' | null {
  const maps = readMaps(pid);
  if (maps === null || maps === 'denied') return maps;
  const libs = parseTlsLibraries(maps);
  const inodes = socketInodes(pid);
  const tcp = inodes.size > 0 ? readProcTcp(pid).filter((r) => inodes.has(r.inode)) : [];
  const listening = dedupe(tcp.filter((r) => r.state === TCP_LISTEN).map((r) => ({ address: r.address, port: r.port, inode: r.inode })));
  if (libs.libssl === null && libs.libcrypto === null && listening.length === 0) return null;
  const established = tcp.filter((r) => r.state === TCP_ESTABLISHED);
  const sameNetns = ctx.ourNetns !== null && linkOr(`/proc/${pid}/ns/net`) === ctx.ourNetns;
  const ktlsSockets: UlpInfo[] = [];
  let ktls: KtlsUse;
  let ktlsNote: string | null = null;
  if (established.length === 0) ktls = 'idle';
  else if (ctx.ulp instanceof Error) [ktls, ktlsNote] = ['unknown', `sock_diag failed: ${ctx.ulp.message.split('\n')[0]}`];
  else if (!ctx.netAdmin) [ktls, ktlsNote] = ['unknown', 'the kernel shows TLS ULP state only to CAP_NET_ADMIN: run as root'];
  else if (!sameNetns) [ktls, ktlsNote] = ['unknown', 'in another network namespace'];
  else {
    for (const s of established) {
      const info = ctx.ulp.get(s.inode);
      if (info && (info.txConf !== 'none' || info.rxConf !== 'none')) ktlsSockets.push(info);
    }
    ktls = ktlsSockets.length > 0 ? 'yes' : 'no';
  }
  const lib = libs.libssl || libs.libcrypto ? tlsLibrary(pid, libs) : null;
  const run = libs.libssl !== null && lib !== null ? chooseStrategy(lib, libs.libssl) : null;
  return { pid, libs, lib, run, listening, established: established.length, ktlsSockets, ktls, ktlsNote, sameNetns };
}

/** Why a process's listeners are not probed, or null to probe them. */
function probeSkip(s: Seen, probe: boolean): string | null {
  if (!probe) return 'probing off';
  return probeNeeded({ run: s.run, ktls: s.ktls, aludel: s.libs.aludel }) ?? (s.sameNetns ? null : 'in another network namespace');
}

/** Probes the listeners of every process whose recommendation depends on them (planProbes: one connection per port and program). */
async function runProbes(seen: Seen[], probe: boolean): Promise<Map<string, ProbeResult>> {
  const candidates = seen.filter((s) => probeSkip(s, probe) === null).flatMap((s) => s.listening.map((l) => ({ pid: s.pid, ...l })));
  const plan = planProbes(candidates);
  const results = await Promise.all(plan.targets.map((t) => probeTls(t.host, t.port)));
  return new Map([...plan.targetOf].map(([k, i]) => [k, results[i]!]));
}

function listeningPorts(s: Seen, probes: Map<string, ProbeResult>, probe: boolean): ListeningPort[] {
  const skip = probeSkip(s, probe);
  return s.listening.map((l) => {
    const found = skip === null ? probes.get(`${s.pid} ${l.port}`) : undefined;
    const plan = probePlan(l.address, l.port);
    const info: PortInfo = found ? { port: l.port, tls: found.tls, note: found.note } : tlsByPort(l.port, skip ?? ('skip' in plan ? plan.skip : 'no result'));
    return { address: l.address, port: l.port, tls: info.tls, tlsNote: info.note };
  });
}

export async function scanHost(opts: ScanOptions = {}): Promise<ScanReport> {
  const probe = opts.probe ?? true;
  const ctx: Context = { netAdmin: hasNetAdmin(), ulp: ulpByInode(), ourNetns: linkOr('/proc/self/ns/net') };
  const pids = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).sort((a, b) => a - b);
  const inspected = pids.filter((pid) => pid !== process.pid).map((pid) => inspect(pid, ctx));
  const seen = inspected.filter((s): s is Seen => s !== null && s !== 'denied');
  const notInspected = inspected.filter((s) => s === 'denied').length;
  const probes = await runProbes(seen, probe);
  const processes = seen.map((s): ScannedProcess => {
    const listening = listeningPorts(s, probes, probe);
    const { libs, lib, run } = s;
    return {
      pid: s.pid,
      command: (readOr(`/proc/${s.pid}/comm`) ?? '').trim(),
      exe: linkOr(`/proc/${s.pid}/exe`),
      openssl: lib ? { libssl: libs.libssl, libcrypto: libs.libcrypto, library: lib.name, version: lib.version, versionText: lib.text } : null,
      strategy: run?.strategy ?? null,
      strategyReason: run ? run.why : lib ? 'libcrypto without libssl: no OpenSSL TLS' : 'no shared OpenSSL mapped: aludel run does not apply',
      otherTls: libs.otherTls,
      underRun: libs.preload,
      listening,
      established: s.established,
      ktlsSockets: s.ktlsSockets,
      ktls: s.ktls,
      ktlsNote: s.ktlsNote,
      recommendation: recommend({
        run,
        libcryptoMapped: libs.libcrypto !== null,
        otherTls: libs.otherTls,
        listening: listening.map((l) => ({ port: l.port, tls: l.tls, note: l.tlsNote })),
        ktls: s.ktls,
        underRun: libs.preload,
        aludel: libs.aludel,
      }),
    };
  });
  return { netAdmin: ctx.netAdmin, processes, notInspected };
}

function dedupe<T extends { address: string; port: number }>(list: T[]): T[] {
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

/** The openssl column: OpenSSL's bare version, another library's name and version, or the soname's version. */
function libraryCell(p: ScannedProcess): string {
  if (p.openssl === null) return p.otherTls ?? 'TLS library not visible';
  const { library, version, libssl } = p.openssl;
  const name = library === null ? `${version ?? '?'} (soname)` : library === 'OpenSSL' ? (version ?? '?') : `${library}${version ? ` ${version}` : ''}`;
  return libssl ? name : `${name} (libcrypto only)`;
}

/** The TLS column: yes when a port speaks TLS, no when all are plain, ? when that is not known, - without ports. */
function tlsCell(p: ScannedProcess): string {
  if (p.listening.length === 0) return '-';
  if (p.listening.some((l) => l.tls === 'yes')) return 'yes';
  return p.listening.every((l) => l.tls === 'no') ? 'no' : '?';
}

export function formatScanTable(r: ScanReport): string {
  const rows = [['pid', 'command', 'openssl', 'strategy', 'TLS', 'listening', 'kTLS', 'recommend', 'why']];
  for (const p of r.processes) {
    rows.push([
      String(p.pid),
      p.underRun ? `${p.command} (aludel run)` : p.command,
      libraryCell(p),
      p.strategy ?? '-',
      tlsCell(p),
      p.listening.map(hostPort).join(' ') || '-',
      p.ktls === 'yes' ? `yes (${p.ktlsSockets.length}/${p.established})` : p.ktls,
      p.recommendation.action,
      p.recommendation.reason,
    ]);
  }
  const legend =
    '\nstrategy: what aludel run would take (option: OpenSSL 3; keys: 1.1.1, 1.0.2; -: none). TLS: whether its ports speak TLS, from one probe per port over loopback or the port\'s convention (--json says which, per port).\n';
  let notes = r.netAdmin ? '' : 'kTLS unknown: the kernel shows TLS ULP state only to CAP_NET_ADMIN; run aludel scan as root.\n';
  if (r.notInspected > 0) {
    const n = r.notInspected === 1 ? '1 process' : `${r.notInspected} processes`;
    // Without CAP_NET_ADMIN this is a non-root scan, and the others' processes are what it misses;
    // with it, what remains is a process the ptrace access check refuses even to root (another
    // user namespace's, or a Yama/LSM policy).
    notes += r.netAdmin
      ? `${n} not inspected: the kernel refused their /proc/PID/maps (ptrace access check: another user namespace, or a Yama/LSM policy).\n`
      : `${n} not inspected (owned by other users): run aludel scan as root to see their libraries and ports.\n`;
  }
  return `${textTable(rows, '')}\n${legend}${notes}`;
}

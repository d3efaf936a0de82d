/**
 * What the running kernel can do for TLS: its version, whether the TLS ULP
 * (CONFIG_TLS) is built in, loaded, loadable or absent, which kTLS features
 * its version has, and the /proc/net/tls_stat counters. Every file is read
 * under `root` (default '/') so tests can point it at a fixture tree.
 */
import fs from 'node:fs';
import path from 'node:path';

export type TlsModuleStatus = 'builtin' | 'loaded' | 'loadable' | 'absent';

export interface KernelVersion {
  release: string;
  major: number | null;
  minor: number | null;
}

export interface UlpProbeResult {
  errno: number;
  code: string | null;
  syscall: string | null;
}

export interface TlsModuleReport {
  status: TlsModuleStatus;
  /** Files that decided the status, relative to root (for the admin to check). */
  evidence: string[];
  /** The live setsockopt(TCP_ULP, "tls") on a loopback socket; null when it was not run. */
  probe: (UlpProbeResult & { ok: boolean }) | null;
}

export interface KernelFeature {
  feature: string;
  /** First mainline Linux version with it, "major.minor". */
  since: string;
  /** null when the release string could not be parsed. */
  available: boolean | null;
}

export interface TlsStatReport {
  present: boolean;
  counters: Record<string, number>;
}

/** Mainline history of kTLS (net/tls). Distribution kernels may have backports. */
export const KERNEL_FEATURES: ReadonlyArray<{ feature: string; since: [number, number] }> = [
  { feature: 'kTLS TX (TLS 1.2, AES-128-GCM)', since: [4, 13] },
  { feature: 'kTLS RX', since: [4, 17] },
  { feature: 'TLS 1.3', since: [5, 1] },
  { feature: 'AES-256-GCM', since: [5, 1] },
  { feature: 'ChaCha20-Poly1305', since: [5, 11] },
  { feature: 'TLS_RX_EXPECT_NO_PAD (TLS 1.3 RX zero-copy)', since: [6, 0] },
  { feature: 'TX/RX rekey (TLS 1.3 KeyUpdate)', since: [6, 14] },
];

export const TLS_MODULE_FILES = ['tls.ko', 'tls.ko.xz', 'tls.ko.zst', 'tls.ko.gz'];

function under(root: string, p: string): string {
  return path.join(root, p);
}

function readText(root: string, p: string): string | null {
  try {
    return fs.readFileSync(under(root, p), 'utf8');
  } catch {
    return null;
  }
}

/** "6.1.0-18-amd64" -> 6.1; anything unparsable -> nulls. */
export function parseKernelRelease(release: string): KernelVersion {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return { release, major: m ? Number(m[1]) : null, minor: m ? Number(m[2]) : null };
}

export function kernelFeatures(version: KernelVersion): KernelFeature[] {
  return KERNEL_FEATURES.map(({ feature, since }) => ({
    feature,
    since: `${since[0]}.${since[1]}`,
    available: version.major === null || version.minor === null ? null : version.major > since[0] || (version.major === since[0] && version.minor >= since[1]),
  }));
}

/**
 * loaded: /proc/modules has a "tls " line. builtin: not in /proc/modules, but
 * the kernel has it (/sys/module/tls, modules.builtin, or /proc/net/tls_stat,
 * which exists only while the TLS ULP is registered). loadable: a tls.ko under
 * /lib/modules/<release>/kernel/net/tls/. absent: none of these.
 */
export function tlsModuleStatus(root: string, release: string): { status: TlsModuleStatus; evidence: string[] } {
  const modules = readText(root, '/proc/modules');
  if (modules !== null && modules.split('\n').some((l) => l.startsWith('tls '))) {
    return { status: 'loaded', evidence: ['/proc/modules'] };
  }
  const builtinEvidence: string[] = [];
  if (fs.existsSync(under(root, '/sys/module/tls'))) builtinEvidence.push('/sys/module/tls');
  const builtinList = readText(root, `/lib/modules/${release}/modules.builtin`);
  if (builtinList !== null && builtinList.split('\n').some((l) => l.trim() === 'kernel/net/tls/tls.ko')) {
    builtinEvidence.push(`/lib/modules/${release}/modules.builtin`);
  }
  if (fs.existsSync(under(root, '/proc/net/tls_stat'))) builtinEvidence.push('/proc/net/tls_stat');
  if (builtinEvidence.length > 0) return { status: 'builtin', evidence: builtinEvidence };
  const dir = `/lib/modules/${release}/kernel/net/tls`;
  const file = TLS_MODULE_FILES.find((f) => fs.existsSync(under(root, `${dir}/${f}`)));
  if (file) return { status: 'loadable', evidence: [`${dir}/${file}`] };
  return { status: 'absent', evidence: [] };
}

/** /proc/net/tls_stat: "TlsCurrTxSw  0" lines. */
export function parseTlsStat(text: string): Record<string, number> {
  const counters: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+)\s+(\d+)\s*$/.exec(line.trim());
    if (m) counters[m[1]!] = Number(m[2]);
  }
  return counters;
}

export function readTlsStat(root: string): TlsStatReport {
  const text = readText(root, '/proc/net/tls_stat');
  return text === null ? { present: false, counters: {} } : { present: true, counters: parseTlsStat(text) };
}

/** The step the probe makes on the kernel's TLS ULP itself (native/socket.c probe_tcp_ulp); the steps before it only connect over loopback. */
const ULP_STEP = 'setsockopt(TCP_ULP)';

/**
 * The probe failed before it could ask for the ULP: its loopback connection
 * failed (loopback down in this network namespace, as `unshare -n` or a
 * container with no network leaves it: ENETUNREACH), so nothing is known
 * about the kernel's TLS from it.
 */
export function probeNotRun(r: Pick<UlpProbeResult, 'errno' | 'syscall'>): boolean {
  return r.errno !== 0 && r.syscall !== ULP_STEP;
}

/** What to tell when probeNotRun(r). */
export function probeNotRunText(r: Pick<UlpProbeResult, 'errno' | 'code' | 'syscall'>): string {
  return `the TLS ULP could not be tested: its loopback connection failed (${r.syscall}: ${r.code ?? r.errno}); is the loopback interface up in this network namespace? (ip link set lo up)`;
}

export function tlsModuleReport(root: string, release: string, probeUlp: (() => UlpProbeResult) | null): TlsModuleReport {
  const { status, evidence } = tlsModuleStatus(root, release);
  let probe: TlsModuleReport['probe'] = null;
  if (probeUlp) {
    const r = probeUlp();
    probe = { errno: r.errno, code: r.code, syscall: r.syscall, ok: r.errno === 0 };
  }
  return { status, evidence, probe };
}

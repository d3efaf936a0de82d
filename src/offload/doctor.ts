/**
 * `aludel doctor`: where TLS crypto can run on this host (kernel TLS, the
 * system OpenSSL, kernel crypto drivers, NIC offload features, RAPL for
 * energy), each finding with what to do about it.
 */
import os from 'node:os';
import { loadAddon } from '../native/binding.js';
import { probeCapabilities, type Capabilities } from './capabilities.js';
import { readCryptoDrivers, type CryptoDriversReport } from './crypto-drivers.js';
import {
  kernelFeatures,
  parseKernelRelease,
  probeNotRun,
  probeNotRunText,
  readTlsStat,
  tlsModuleReport,
  type KernelFeature,
  type KernelVersion,
  type TlsModuleReport,
  type TlsStatReport,
  type UlpProbeResult,
} from './kernel-tls.js';
import { nicFindings } from './nic-findings.js';
import { NIC_FEATURES, formatFeature, readNicFeatures, type NicReport } from './nic-features.js';
import { opensslReport, type OpensslReport } from './openssl-matrix.js';
import { readRapl, type RaplReport } from './rapl.js';
import { textTable as table } from '../text/text-table.js';

export type FindingLevel = 'ok' | 'warn' | 'error';

export interface Finding {
  level: FindingLevel;
  /** kernel, openssl, crypto, nic, energy */
  area: string;
  what: string;
  advice: string;
}

export interface DoctorReport {
  kernel: KernelVersion;
  tlsModule: TlsModuleReport;
  kernelFeatures: KernelFeature[];
  tlsStat: TlsStatReport;
  openssl: OpensslReport;
  cryptoDrivers: CryptoDriversReport;
  rapl: RaplReport;
  nics: NicReport;
  findings: Finding[];
}

export interface DoctorOptions {
  /** Prefix for every /proc, /sys and /lib/modules read (tests use fixture trees). */
  root?: string;
  /** Kernel release; default os.release(). */
  release?: string;
  /** OpenSSL probe; default probeCapabilities() (loads the system libssl). */
  capabilities?: Pick<Capabilities, 'openssl' | 'opensslProblem'>;
  /** Live TCP_ULP probe; default the addon's probeTcpUlp when root is '/' and the addon loads, else none. */
  probeUlp?: (() => UlpProbeResult) | null;
  /** NIC features; default read from this host's interfaces when root is '/', else reported unavailable. */
  nics?: NicReport;
}

function defaultProbe(root: string): (() => UlpProbeResult) | null {
  if (root !== '/') return null;
  const addon = loadAddon();
  return addon instanceof Error ? null : () => addon.probeTcpUlp();
}

export function runDoctor(options: DoctorOptions = {}): DoctorReport {
  const root = options.root ?? '/';
  const kernel = parseKernelRelease(options.release ?? os.release());
  const probeUlp = options.probeUlp === undefined ? defaultProbe(root) : options.probeUlp;
  const report: Omit<DoctorReport, 'findings'> = {
    kernel,
    tlsModule: tlsModuleReport(root, kernel.release, probeUlp),
    kernelFeatures: kernelFeatures(kernel),
    tlsStat: readTlsStat(root),
    openssl: opensslReport(options.capabilities ?? probeCapabilities()),
    cryptoDrivers: readCryptoDrivers(root),
    rapl: readRapl(root),
    nics: options.nics ?? (root === '/' ? readNicFeatures() : { status: 'unavailable', problem: 'not read with a fixture root', interfaces: [] }),
  };
  return { ...report, findings: findingsFor(report) };
}

/** The kernel can take TLS keys now (probe when it ran, else the module files). */
function kernelTlsUsable(r: Omit<DoctorReport, 'findings'>): boolean {
  if (r.tlsModule.probe) return r.tlsModule.probe.ok;
  return r.tlsModule.status === 'loaded' || r.tlsModule.status === 'builtin';
}

export function findingsFor(r: Omit<DoctorReport, 'findings'>): Finding[] {
  const out: Finding[] = [];
  const rel = r.kernel.release;
  const m = r.tlsModule;
  // A probe that could not connect over loopback says nothing about the kernel: the module's files decide.
  const probe = m.probe !== null && probeNotRun(m.probe) ? null : m.probe;
  if (m.probe !== null && probe === null) out.push({ level: 'warn', area: 'kernel', what: probeNotRunText(m.probe), advice: 'bring loopback up (ip link set lo up) and run aludel doctor again' });
  const probeText = probe ? (probe.ok ? '; setsockopt(TCP_ULP, "tls") accepted' : `; setsockopt(TCP_ULP, "tls") failed: ${probe.code ?? probe.errno}`) : '';

  // Kernel TLS ULP.
  if (probe && !probe.ok && probe.code !== 'ENOENT') {
    out.push({ level: 'error', area: 'kernel', what: `kernel ${rel} refused the TLS ULP${probeText} (module ${m.status})`, advice: 'check seccomp/LSM policy or container restrictions on setsockopt(TCP_ULP); kTLS needs it' });
  } else if (kernelTlsUsable(r)) {
    out.push({ level: 'ok', area: 'kernel', what: `kernel TLS available (tls ${m.status})${probeText}`, advice: m.status === 'loaded' ? 'persist it across reboots: echo tls > /etc/modules-load.d/tls.conf' : 'nothing to do' });
  } else if (m.status === 'loadable' || ((m.status === 'loaded' || m.status === 'builtin') && probe)) {
    out.push({ level: 'warn', area: 'kernel', what: `kernel TLS not active (tls ${m.status})${probeText}`, advice: 'run: modprobe tls (and echo tls > /etc/modules-load.d/tls.conf to keep it after reboot)' });
  } else {
    out.push({
      level: 'error',
      area: 'kernel',
      what: `kernel ${rel} has no TLS support (no tls module, /proc/net/tls_stat absent)${probeText}`,
      advice: 'boot a kernel built with CONFIG_TLS=m or CONFIG_TLS=y (Debian linux-image-amd64 has it as a module), then modprobe tls; until then crypto runs in userspace',
    });
  }
  if (m.probe === null) {
    out.push({ level: 'warn', area: 'kernel', what: 'live TCP_ULP probe not run (native addon not loaded or fixture root)', advice: 'build the addon (npm run build:native) so doctor can ask the kernel directly' });
  }

  // Kernel version features.
  const missing = r.kernelFeatures.filter((f) => f.available === false);
  if (r.kernelFeatures.some((f) => f.available === null)) {
    out.push({ level: 'warn', area: 'kernel', what: `cannot parse kernel release "${rel}"; kTLS feature set unknown`, advice: 'compare the kernel version with the feature table by hand' });
  } else if (missing.length === r.kernelFeatures.length || r.kernelFeatures[0]?.available === false) {
    out.push({ level: 'error', area: 'kernel', what: `kernel ${rel} predates kTLS (Linux 4.13)`, advice: 'upgrade the kernel (Linux >= 6.14 for every kTLS feature)' });
  } else if (missing.length > 0) {
    out.push({
      level: 'warn',
      area: 'kernel',
      what: `kernel ${r.kernel.major}.${r.kernel.minor} lacks: ${missing.map((f) => `${f.feature} (${f.since})`).join(', ')}`,
      advice: 'connections that need these use userspace crypto (a peer KeyUpdate closes kTLS connections before 6.14); Linux >= 6.14 has all; distribution kernels may have backports',
    });
  } else {
    out.push({
      level: 'ok',
      area: 'kernel',
      what: `kernel ${r.kernel.major}.${r.kernel.minor} is new enough for every kTLS feature in the table${kernelTlsUsable(r) ? '' : ' (once its TLS ULP is available)'}`,
      advice: 'nothing to do for the version',
    });
  }

  // /proc/net/tls_stat.
  if (r.tlsStat.present) {
    const c = r.tlsStat.counters;
    const device = (c.TlsTxDevice ?? 0) + (c.TlsRxDevice ?? 0);
    const errors = c.TlsDecryptError ?? 0;
    out.push({
      level: errors > 0 ? 'warn' : 'ok',
      area: 'kernel',
      what: `tls_stat: TlsTxSw ${c.TlsTxSw ?? 0}, TlsRxSw ${c.TlsRxSw ?? 0}, TlsTxDevice ${c.TlsTxDevice ?? 0}, TlsRxDevice ${c.TlsRxDevice ?? 0}, TlsDecryptError ${c.TlsDecryptError ?? 0}`,
      advice: errors > 0 ? 'TlsDecryptError > 0: peers sent records that failed authentication; check for corruption or attacks' : device > 0 ? 'some connections were offloaded to a NIC' : 'counters since boot; Sw = kernel CPU crypto, Device = NIC offload',
    });
  }

  // OpenSSL.
  const o = r.openssl;
  if (!o.available) {
    const addon = /native addon/.test(o.problem ?? '');
    out.push({
      level: 'error',
      area: 'openssl',
      what: `system OpenSSL unusable: ${o.problem}`,
      advice: addon ? 'run npm run build:native (needs a C compiler and libssl-dev)' : 'install OpenSSL >= 3.0 built with kTLS (Debian: apt-get install libssl3); until then node:tls (userspace only) is used',
    });
  } else {
    const dirs = o.ktls.map((d) => `TLS ${d.tls} ${[d.tx ? 'TX' : '', d.rx ? 'RX' : ''].filter(Boolean).join('+') || 'none'}`).join(', ');
    const tls13 = o.ktls.find((d) => d.tls === '1.3');
    out.push({ level: 'ok', area: 'openssl', what: `${o.version} (${o.libssl ?? 'path unknown'}): kTLS ${dirs}`, advice: 'nothing to do' });
    if (tls13 && !tls13.rx) {
      out.push({ level: 'warn', area: 'openssl', what: `OpenSSL ${o.major}.${o.minor}: TLS 1.3 records are decrypted in userspace (kTLS TX only)`, advice: 'OpenSSL >= 3.2 adds kTLS RX for TLS 1.3; uploads are slower until then' });
    }
  }

  // Kernel crypto drivers.
  if (!r.cryptoDrivers.present) {
    out.push({ level: 'warn', area: 'crypto', what: '/proc/crypto not readable; kernel crypto drivers unknown', advice: 'run doctor on the host (not in a restricted container)' });
  } else {
    for (const alg of r.cryptoDrivers.algorithms) {
      if (alg.name === 'rfc4106(gcm(aes))') continue; // IPsec form; shown in the table only
      const top = alg.drivers[0];
      if (!top) {
        out.push({ level: 'ok', area: 'crypto', what: `${alg.name}: no driver instantiated yet`, advice: 'the kernel builds it from templates on first use; run doctor again after a kTLS connection to see which driver it picked' });
      } else if (top.kind === 'accelerator') {
        out.push({ level: 'ok', area: 'crypto', what: `${alg.name}: kTLS would use ${top.driver} (priority ${top.priority}), ${top.label}`, advice: 'asynchronous coprocessor: good for throughput, adds per-record latency; compare with the CPU driver under load' });
      } else if (top.kind === 'cpu' && /generic/.test(top.driver) && !/aesni|avx|vaes|clmul/.test(top.driver)) {
        out.push({ level: 'warn', area: 'crypto', what: `${alg.name}: only generic C code (${top.driver})`, advice: 'load the CPU-accelerated driver (x86: modprobe aesni_intel; arm64: aes-ce), or check that the CPU exposes AES instructions (VMs may hide them)' });
      } else {
        out.push({ level: 'ok', area: 'crypto', what: `${alg.name}: kTLS would use ${top.driver} (priority ${top.priority}), ${top.label}`, advice: 'nothing to do' });
      }
    }
  }

  out.push(...nicFindings(r.nics, kernelTlsUsable(r)));

  // RAPL.
  if (!r.rapl.present) {
    out.push({ level: 'warn', area: 'energy', what: 'no RAPL energy counters (/sys/class/powercap/intel-rapl:*)', advice: 'energy per request cannot be measured here (VM, or modprobe intel_rapl_msr on bare metal)' });
  } else {
    const zones = r.rapl.zones.filter((z) => z.energyCounter);
    const unreadable = zones.filter((z) => !z.readable);
    out.push({
      level: unreadable.length > 0 ? 'warn' : 'ok',
      area: 'energy',
      what: `RAPL zones: ${zones.map((z) => `${z.id} (${z.name ?? '?'})`).join(', ')}`,
      advice: unreadable.length > 0 ? 'energy_uj is root-only: run benchmarks as root or grant read access' : 'nothing to do',
    });
  }
  return out;
}

/** Aligns rows into columns separated by two spaces. */
function yesNo(v: boolean | null): string {
  return v === null ? '?' : v ? 'yes' : 'no';
}

function nicsLine(n: NicReport): string {
  if (n.status === 'unavailable') return `not read: ${n.problem}`;
  const tls = n.interfaces.filter((i) => i.features['tls-hw-tx-offload']?.active || i.features['tls-hw-rx-offload']?.active).map((i) => i.name);
  return `${n.interfaces.length} interfaces; TLS offload on: ${tls.length > 0 ? tls.join(', ') : 'none'}`;
}

export function formatDoctorTable(r: DoctorReport): string {
  const probe = r.tlsModule.probe;
  const parts: string[] = [];
  parts.push('aludel doctor: where TLS crypto can run on this host', '');
  parts.push(
    table(
      [
        ['kernel', `${r.kernel.release}`],
        ['tls module', `${r.tlsModule.status}${r.tlsModule.evidence.length ? ` (${r.tlsModule.evidence.join(', ')})` : ''}`],
        ['live probe', probe ? (probe.ok ? 'TCP_ULP "tls" accepted' : `TCP_ULP "tls" failed: ${probe.code ?? probe.errno}`) : 'not run'],
        ['openssl', r.openssl.available ? `${r.openssl.version} (${r.openssl.libssl ?? '?'})` : `unusable: ${r.openssl.problem}`],
        ['nics', nicsLine(r.nics)],
        ['rapl', r.rapl.present ? r.rapl.zones.map((z) => z.name ?? z.id).join(', ') : 'absent'],
      ],
      '',
    ),
  );
  // "here" is what this host can use now: a kernel version with the feature is no use without the tls module.
  const usable = kernelTlsUsable(r);
  const here = (f: KernelFeature): string => (f.available === true && !usable ? 'no: tls module absent' : yesNo(f.available));
  parts.push('', 'kernel kTLS features', table([['feature', 'since', 'here'], ...r.kernelFeatures.map((f) => [f.feature, f.since, here(f)])]));
  if (r.openssl.available) {
    parts.push('', 'OpenSSL kTLS directions', table([['tls', 'tx', 'rx'], ...r.openssl.ktls.map((d) => [d.tls, yesNo(d.tx), yesNo(d.rx)])]));
  }
  const driverRows = r.cryptoDrivers.algorithms.flatMap((a) => (a.drivers.length ? a.drivers.map((d) => [a.name, d.driver, String(d.priority), d.label]) : [[a.name, '-', '-', 'not instantiated']]));
  parts.push('', `kernel crypto drivers${r.cryptoDrivers.present ? '' : ' (/proc/crypto unreadable)'}`, table([['algorithm', 'driver', 'priority', 'kind'], ...driverRows]));
  if (r.nics.interfaces.length > 0) {
    const rows = r.nics.interfaces.map((i) => [i.name, ...NIC_FEATURES.map((f) => (i.error ? `error ${i.error.code}` : formatFeature(i.features[f])))]);
    parts.push('', 'NIC offload features (as ethtool -k shows them)', table([['interface', ...NIC_FEATURES], ...rows]));
  }
  if (r.tlsStat.present) {
    parts.push('', 'tls_stat', table(Object.entries(r.tlsStat.counters).map(([k, v]) => [k, String(v)])));
  }
  parts.push('', 'findings', table([['level', 'area', 'finding / what to do'], ...r.findings.flatMap((f) => [[f.level, f.area, f.what], ['', '', `-> ${f.advice}`]])]));
  return parts.join('\n') + '\n';
}

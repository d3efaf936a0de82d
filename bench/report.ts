/**
 * Turns the phases' points into results.json, results.csv, charts/*.svg,
 * the headline ratios and report.html.
 */
import fs from 'node:fs';
import path from 'node:path';
import { barChart, lineChart, renderSvg } from './charts.js';
import type { PhaseResult, Point } from './phase.js';
import { median, ratio } from './ratios.js';

export interface Results {
  command: string;
  mode: 'quick' | 'full';
  phases: PhaseResult[];
  ratios: Ratio[];
}

export interface Ratio {
  phase: 'native' | 'vm';
  emulated: boolean;
  name: string;
  /** What is divided by what, and on which measurement. */
  basis: string;
  /** The median of the per-round ratios (each round's two points were measured in the same turn). */
  value: number | null;
  /** The smallest and largest per-round ratio, and how many rounds gave one. */
  min: number | null;
  max: number | null;
  rounds: number;
}

const CSV_COLUMNS: Array<keyof Point> = [
  'phase', 'emulated', 'test', 'scenario', 'front', 'offload', 'connections', 'fileBytes', 'recordBytes', 'durationS', 'requests', 'bytes', 'bytesSource', 'clientBytes', 'errors',
  'requestsPerSec', 'bytesPerSec', 'cpuFrontS', 'cpuOriginS', 'cpuS', 'cpuPerGB', 'cpuPerRequestMs', 'cpuPerRecordUs', 'floorRatio', 'energyJ', 'ktls',
];

function csvCell(v: unknown): string {
  const s = v == null ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v);
  return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(points: Point[]): string {
  const head = [...CSV_COLUMNS, 'latencyP50Ms', 'latencyP99Ms', 'tlsStatDelta'];
  const rows = points.map((p) => [...CSV_COLUMNS.map((c) => p[c]), p.latencyMs?.p50, p.latencyMs?.p99, p.tlsStatDelta].map(csvCell).join(','));
  return [head.join(','), ...rows].join('\n') + '\n';
}

/**
 * One scenario's values of a field for a test, in round order: every round
 * measures each (test, scenario, connections) point once, in the same turn
 * order, so the n-th value of two scenarios come from the same round.
 */
function series(points: Point[], test: Point['test'], scenario: string, field: 'cpuPerGB' | 'cpuFrontPerGB' | 'bytesPerSec', where: (p: Point) => boolean = () => true): Array<number | null> {
  return points.filter((p) => p.test === test && p.scenario === scenario && where(p)).map((p) => p[field] ?? null);
}

/** Same-round ratios num[i] / den[i], as the median with its spread (never a ratio of medians). */
export function roundRatios(num: Array<number | null>, den: Array<number | null>): Pick<Ratio, 'value' | 'min' | 'max' | 'rounds'> {
  const rs = num.map((n, i) => ratio(n, den[i])).filter((r): r is number => r != null);
  return { value: median(rs), min: rs.length ? Math.min(...rs) : null, max: rs.length ? Math.max(...rs) : null, rounds: rs.length };
}

/** The questions of the issue, each answered from one phase's own points (same-run ratios). */
export function headlineRatios(phase: PhaseResult): Ratio[] {
  const pts = phase.points;
  const { emulated } = phase.environment;
  const ph = pts[0]?.phase ?? 'native';
  const out: Ratio[] = [];
  const add = (name: string, basis: string, num: Array<number | null>, den: Array<number | null>): void => void out.push({ phase: ph, emulated, name, basis, ...roundRatios(num, den) });
  const offloads = [...new Set(pts.map((p) => p.offload))];
  const conns = [...new Set(pts.filter((p) => p.test === 'load').map((p) => p.connections))].sort((a, b) => a - b);
  for (const off of offloads) {
    const nginxName = off === 'kernel' ? 'nginx+kTLS' : 'nginx (userspace TLS)';
    add(`Aludel cache vs ${nginxName} cache, CPU/GB (${off})`, 'download loop, aludel-cache / nginx-cache', series(pts, 'download', `aludel-cache/${off}`, 'cpuPerGB'), series(pts, 'download', `nginx-cache/${off}`, 'cpuPerGB'));
    add(`Aludel cache vs ${nginxName} cache, CPU/GB at 16 connections (${off})`, 'wrk 10 MiB c=16', series(pts, 'load', `aludel-cache/${off}`, 'cpuPerGB', (p) => p.connections === 16), series(pts, 'load', `nginx-cache/${off}`, 'cpuPerGB', (p) => p.connections === 16));
    for (const c of conns)
      add(`Aludel proxy vs ${nginxName} proxy, throughput at ${c} connections (${off})`, 'wrk 10 MiB, bytes/s', series(pts, 'load', `aludel-proxy/${off}`, 'bytesPerSec', (p) => p.connections === c), series(pts, 'load', `nginx-proxy/${off}`, 'bytesPerSec', (p) => p.connections === c));
    // The cost of the hop: the proxy against nginx serving the same file itself.
    for (const c of conns)
      add(`Aludel proxy vs ${nginxName} direct, throughput at ${c} connections (${off})`, 'wrk 10 MiB, bytes/s', series(pts, 'load', `aludel-proxy/${off}`, 'bytesPerSec', (p) => p.connections === c), series(pts, 'load', `nginx-direct/${off}`, 'bytesPerSec', (p) => p.connections === c));
    add(`Aludel proxy vs ${nginxName} proxy, CPU/GB (${off})`, 'download loop', series(pts, 'download', `aludel-proxy/${off}`, 'cpuPerGB'), series(pts, 'download', `nginx-proxy/${off}`, 'cpuPerGB'));
    // HTTP/2: DATA frames are built in user space on both sides (no sendfile alone), so these are kept apart.
    add(`Aludel cache vs ${nginxName} cache over HTTP/2, CPU/GB (${off})`, 'download loop, curl --http2', series(pts, 'download-h2', `aludel-cache/${off}`, 'cpuPerGB'), series(pts, 'download-h2', `nginx-cache/${off}`, 'cpuPerGB'));
    add(`Aludel proxy vs ${nginxName} proxy over HTTP/2, CPU/GB (${off})`, 'download loop, curl --http2', series(pts, 'download-h2', `aludel-proxy/${off}`, 'cpuPerGB'), series(pts, 'download-h2', `nginx-proxy/${off}`, 'cpuPerGB'));
    // TLS upstreams: the front's CPU only (the TLS origin's own encryption is not the proxy's cost).
    add(`Aludel proxy, TLS upstream vs plain upstream, front CPU/GB (${off})`, 'download loop, aludel-proxy-tls / aludel-proxy', series(pts, 'download', `aludel-proxy-tls/${off}`, 'cpuFrontPerGB'), series(pts, 'download', `aludel-proxy/${off}`, 'cpuFrontPerGB'));
    add(`Aludel proxy vs ${nginxName} proxy, TLS upstream, front CPU/GB (${off})`, 'download loop, aludel-proxy-tls / nginx-proxy-tls', series(pts, 'download', `aludel-proxy-tls/${off}`, 'cpuFrontPerGB'), series(pts, 'download', `nginx-proxy-tls/${off}`, 'cpuFrontPerGB'));
    for (const c of conns)
      add(`Aludel proxy vs ${nginxName} proxy, TLS upstream, throughput at ${c} connections (${off})`, 'wrk 10 MiB, bytes/s', series(pts, 'load', `aludel-proxy-tls/${off}`, 'bytesPerSec', (p) => p.connections === c), series(pts, 'load', `nginx-proxy-tls/${off}`, 'bytesPerSec', (p) => p.connections === c));
    for (const f of ['aludel-proxy', 'aludel-cache', 'nginx-proxy', 'nginx-cache'])
      add(`${f} vs legacy nginx-direct/userspace, CPU/GB (${off})`, 'download loop', series(pts, 'download', `${f}/${off}`, 'cpuPerGB'), series(pts, 'download', 'nginx-direct/userspace', 'cpuPerGB'));
  }
  if (offloads.includes('kernel') && offloads.includes('userspace')) {
    for (const f of ['nginx-direct', 'aludel-proxy', 'aludel-cache', 'nginx-proxy', 'nginx-cache']) {
      add(`${f}: kernel vs userspace, CPU/GB`, 'download loop', series(pts, 'download', `${f}/kernel`, 'cpuPerGB'), series(pts, 'download', `${f}/userspace`, 'cpuPerGB'));
      add(`${f}: kernel vs userspace, throughput at 16 connections`, 'wrk 10 MiB c=16', series(pts, 'load', `${f}/kernel`, 'bytesPerSec', (p) => p.connections === 16), series(pts, 'load', `${f}/userspace`, 'bytesPerSec', (p) => p.connections === 16));
    }
  }
  return out;
}

function phaseLabel(p: Point): string {
  return p.phase === 'vm' ? 'kTLS VM (emulated CPU: ratios only)' : 'native (userspace only)';
}

export async function writeCharts(dir: string, points: Point[]): Promise<string[]> {
  await fs.promises.mkdir(dir, { recursive: true });
  const rows = (test: Point['test']): Array<Record<string, unknown>> =>
    points.filter((p) => p.test === test).map((p) => ({ ...p, where: phaseLabel(p), mbps: p.bytesPerSec / 1e6, p99: p.latencyMs?.p99, p50: p.latencyMs?.p50, kib: (p.recordBytes ?? p.fileBytes) / 1024 }));
  const charts: Array<[string, Parameters<typeof lineChart>[0] | Parameters<typeof barChart>[0], 'line' | 'bar']> = [
    ['throughput', { title: 'Throughput, 10 MiB file (wrk)', rows: rows('load'), x: 'connections', xTitle: 'connections', xLog: true, y: 'mbps', yTitle: 'MB/s', color: 'front', facet: 'where' }, 'line'],
    ['latency-p99', { title: 'p99 latency, 10 MiB file (wrk)', rows: rows('load'), x: 'connections', xTitle: 'connections', xLog: true, y: 'p99', yTitle: 'ms', yLog: true, color: 'front', facet: 'where' }, 'line'],
    ['cpu-per-gb-load', { title: 'Server CPU-seconds per GB, 10 MiB file (wrk)', rows: rows('load'), x: 'connections', xTitle: 'connections', xLog: true, y: 'cpuPerGB', yTitle: 'CPU-s / GB', color: 'front', facet: 'where' }, 'line'],
    ['cpu-per-gb', { title: 'Server CPU-seconds per GB, large-file download loop (HTTP/1.1)', rows: rows('download'), x: 'cpuPerGB', xTitle: 'CPU-s / GB', y: 'scenario', color: 'offload', facet: 'where' }, 'bar'],
    ['floor-ratio', { title: 'CPU per GB as a multiple of the AES-128-GCM floor (openssl speed, same run)', rows: rows('download'), x: 'floorRatio', xTitle: 'x crypto floor', y: 'scenario', color: 'offload', facet: 'where' }, 'bar'],
    ['file-size-rps', { title: 'Requests/s by file size (wrk, 8 connections)', rows: rows('file-size'), x: 'kib', xTitle: 'file KiB', xLog: true, y: 'requestsPerSec', yTitle: 'requests/s', yLog: true, color: 'front', facet: 'where' }, 'line'],
    ['file-size-cpu', { title: 'Server CPU per request by file size (wrk, 8 connections)', rows: rows('file-size'), x: 'kib', xTitle: 'file KiB', xLog: true, y: 'cpuPerRequestMs', yTitle: 'CPU-ms / request', yLog: true, color: 'front', facet: 'where' }, 'line'],
    ['record-size', { title: 'Server CPU per TLS record by record size (TX: nginx SSL_write; RX: openssl s_server)', rows: [...rows('record-tx'), ...rows('record-rx')].map((r) => ({ ...r, dir: r.test === 'record-tx' ? 'TX' : 'RX', line: `${r.test === 'record-tx' ? 'TX' : 'RX'} ${String(r.offload)}` })), x: 'kib', xTitle: 'record KiB', xLog: true, y: 'cpuPerRecordUs', yTitle: 'CPU-µs / record', yLog: true, color: 'line', facet: 'where' }, 'line'],
  ];
  const written: string[] = [];
  for (const [name, spec, kind] of charts) {
    if ((spec.rows as unknown[]).length === 0) continue;
    const svg = await renderSvg(kind === 'line' ? lineChart(spec as Parameters<typeof lineChart>[0]) : barChart(spec as Parameters<typeof barChart>[0]));
    await fs.promises.writeFile(path.join(dir, `${name}.svg`), svg);
    written.push(`${name}.svg`);
  }
  return written;
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
export const fmt = (v: number | null | undefined, digits = 3): string => (v == null ? 'n/a' : Number(v.toPrecision(digits)).toString());

export function ratiosTable(ratios: Ratio[]): string {
  return ['| phase | ratio | basis | median of same-round ratios | min–max | rounds |', '|---|---|---|---|---|---|', ...ratios.map((r) => `| ${r.phase}${r.emulated ? ' (emulated)' : ''} | ${r.name} | ${r.basis} | ${fmt(r.value)} | ${r.rounds > 1 ? `${fmt(r.min)}–${fmt(r.max)}` : ''} | ${r.rounds} |`)].join('\n');
}

export function reportHtml(res: Results, charts: string[]): string {
  const envRows = res.phases
    .map((ph) => {
      const e = ph.environment;
      return `<tr><td>${ph.points[0]?.phase ?? ''}</td><td>${esc(e.commit)}</td><td>${esc(e.kernel)}</td><td>${esc(e.openssl)}</td><td>${esc(e.cpuModel)} x${e.cpus}</td><td>${e.emulated ? `<b>yes</b> (${esc(e.emulatedReason)})` : 'no'}</td><td>${e.loadAverageBefore.map((x) => x.toFixed(2)).join(' ')} / ${(e.loadAverageAfter ?? []).map((x) => x.toFixed(2)).join(' ')}</td><td>${esc(e.network)}</td><td>${esc(e.rapl)}</td><td>${fmt(ph.cryptoFloorCpuPerGB)} (${ph.cryptoFloorBytesPerSec.map((b) => (b / 1e9).toFixed(2)).join(', ')} GB/s)</td></tr>`;
    })
    .join('\n');
  const fell = res.phases.flatMap((p) => p.points).filter((p) => p.ktls === 'FELL BACK');
  const ratioRows = res.ratios.map((r) => `<tr><td>${r.phase}${r.emulated ? ' (emulated)' : ''}</td><td>${esc(r.name)}</td><td>${esc(r.basis)}</td><td>${fmt(r.value)}</td><td>${r.rounds > 1 ? `${fmt(r.min)}–${fmt(r.max)}` : ''}</td><td>${r.rounds}</td></tr>`).join('\n');
  const pointRows = res.phases
    .flatMap((p) => p.points)
    .map((p) => `<tr><td>${p.phase}</td><td>${p.test}</td><td>${p.scenario}</td><td>${p.connections}</td><td>${p.recordBytes ?? p.fileBytes}</td><td>${fmt(p.bytesPerSec / 1e6)}</td><td>${fmt(p.requestsPerSec)}</td><td>${fmt(p.latencyMs?.p50)}</td><td>${fmt(p.latencyMs?.p99)}</td><td>${fmt(p.cpuS)}</td><td>${fmt(p.cpuPerGB)}</td><td>${fmt(p.floorRatio)}</td><td>${fmt(p.energyJ)}</td><td>${p.errors}</td><td>${p.ktls}</td></tr>`)
    .join('\n');
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Aludel vs nginx benchmarks</title>
<style>body{font-family:sans-serif;max-width:1400px;margin:1em auto}table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%;border:1px solid #eee;margin:8px 0}.warn{color:#a00}</style></head><body>
<h1>Aludel vs nginx: benchmark report (${res.mode})</h1>
<p>Command: <code>${esc(res.command)}</code></p>
<p><b>Read this first.</b> Kernel (kTLS) modes ran inside a QEMU VM whose CPU is <b>emulated</b> (AES-GCM about 95x slower than native): only ratios within that phase mean anything there, never its absolute numbers. The native phase compares userspace TLS only (this kernel has no kTLS). Measurements on a shared, loaded 2-core machine are noisy (load averages below).</p>
${fell.length ? `<p class="warn">${fell.length} kernel-mode point(s) did not raise /proc/net/tls_stat: they ran in userspace (FELL BACK), see the table.</p>` : '<p>Every kernel-mode point raised /proc/net/tls_stat TlsTxSw (TX) or TlsRxSw (RX): kTLS really ran.</p>'}
<h2>Environment</h2>
<table><tr><th>phase</th><th>commit</th><th>kernel</th><th>OpenSSL</th><th>CPU</th><th>emulated</th><th>load avg before / after</th><th>network</th><th>power</th><th>crypto floor CPU-s/GB</th></tr>
${envRows}</table>
<h2>Headline ratios (same-run)</h2>
<table><tr><th>phase</th><th>ratio</th><th>basis</th><th>median of same-round ratios</th><th>min–max</th><th>rounds</th></tr>${ratioRows}</table>
<h2>Charts</h2>
${charts.map((c) => `<img src="charts/${c}" alt="${c}">`).join('\n')}
<h2>All points</h2>
<table><tr><th>phase</th><th>test</th><th>scenario</th><th>conns</th><th>file/record bytes</th><th>MB/s</th><th>req/s</th><th>p50 ms</th><th>p99 ms</th><th>CPU s</th><th>CPU-s/GB</th><th>x floor</th><th>energy J</th><th>errors</th><th>kTLS</th></tr>
${pointRows}</table>
</body></html>
`;
}

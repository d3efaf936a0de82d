/**
 * `npm run bench -- --legacy-run`: a real legacy program, nginx 1.11.1 linked
 * to OpenSSL 1.0.2f (../shared/legacy/build), under `aludel run` with no flag
 * against the same binary and config alone, in one run. A 1 MiB file is
 * downloaded over and over on one keep-alive TLS 1.2
 * ECDHE-ECDSA-AES128-GCM-SHA256 connection (curl, the client in its own
 * network namespace as in the main phases); the server's CPU-seconds per GB
 * (utime+stime of every server process) are compared point by point, alone
 * and run taking turns (A, B, A, B...), and the result is the median of the
 * same-run ratios run/alone with their spread.
 *
 * nginx 1.11 has no SSL_sendfile (1.21.4+): even with `sendfile on` its TLS
 * bodies are read into buffers and written with SSL_write, which under `aludel
 * run` (keys strategy for 1.0.2) the preload turns into send(2) on a kTLS
 * socket, so the kernel encrypts them. /proc/net/tls_stat proves it per point:
 * TlsTxSw and TlsRxSw rise by the connection count under run and stay put alone.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { readKernelTlsStat } from '../src/metrics/kernel-tls-stat.js';
import { describeEnvironment, type Environment } from './environment.js';
import { setUpClientNet, type ClientNet } from './netns.js';
import { makeCert } from './phase.js';
import { clockTicksPerSecond, cpuSeconds, parseProcStat } from './proc-cpu.js';
import { counterDelta, cpuPerGB, median, ratio } from './ratios.js';
import { fmt } from './report.js';
import { startNginx, TLS12_CIPHER, type Server } from './servers.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

/** Where ../shared/legacy/build puts its programs (the same default as the scripts). */
export const LEGACY_PREFIX = process.env.LEGACY_PREFIX ?? '/var/tmp/aludel-legacy';
export const LEGACY_NGINX = path.join(LEGACY_PREFIX, 'nginx-1.11.1', 'sbin', 'nginx');

export type LegacyMode = 'alone' | 'run';

export interface LegacyPoint {
  repeat: number;
  mode: LegacyMode;
  durationS: number;
  requests: number;
  /** New TCP connections curl opened for the point (one: all requests on one keep-alive connection). */
  connections: number;
  errors: number;
  /** Server-side veth tx bytes (TLS records + TCP/IP headers), or what curl counted on loopback. */
  bytes: number;
  bytesSource: 'veth' | 'client';
  clientBytes: number;
  /** utime+stime of every server process over the point, its user and system parts, and per process (comm[pid]: seconds). */
  cpuS: number;
  userS: number;
  systemS: number;
  cpuByProcess: Record<string, number>;
  cpuPerGB: number | null;
  tlsStatDelta: Record<string, number> | null;
  /**
   * run: 'proven' when TlsTxSw and TlsRxSw both rose by exactly the connection count, 'FELL BACK'
   * when neither rose, else 'PARTIAL'; alone: 'userspace' when neither moved, else 'UNEXPECTED'.
   */
  ktls: 'proven' | 'FELL BACK' | 'PARTIAL' | 'userspace' | 'UNEXPECTED' | 'no tls_stat';
}

export interface LegacyRunResult {
  command?: string;
  /** Load average of the machine that started the VM, before and after (the VM does not see the host's load). */
  hostLoadAverage?: { before: number[]; after: number[] };
  environment: Environment;
  /** `nginx -V`, version and OpenSSL lines. */
  legacyNginx: string;
  fileBytes: number;
  downloadsPerPoint: number;
  repeats: number;
  /** Per server: the process names counted, how long it took to go idle before the first point, the preload's log lines (run), sha256 match and negotiated protocol/cipher of a first download, error-log lines at [crit]/[alert]/[emerg]. */
  servers: Record<LegacyMode, { processes: string[]; settledS: number; preloadLog: string[]; sha256Equal: boolean; negotiated: string; errorLogProblems: string[] }>;
  points: LegacyPoint[];
  /** run/alone CPU-s/GB of each repeat (same-run pairs). */
  ratios: number[];
  ratioMedian: number | null;
  ratioMin: number | null;
  ratioMax: number | null;
  cpuPerGBMedian: Record<LegacyMode, number | null>;
  /** The user and system parts of it (medians of each point's). */
  userPerGBMedian: Record<LegacyMode, number | null>;
  systemPerGBMedian: Record<LegacyMode, number | null>;
}

export interface LegacyRunOptions {
  full: boolean;
  emulated: boolean;
  loopback: boolean;
  progress(done: number, total: number, label: string): void;
}

/** comm of a process (its name, at most 15 bytes), for the record of what was counted. */
function comm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '?';
  }
}

/** utime and stime of each process, in seconds. */
function cpuOf(pids: number[], hz: number): Array<{ user: number; system: number }> {
  return pids.map((pid) => {
    const t = parseProcStat(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    return { user: t.utime / hz, system: t.stime / hz };
  });
}

/**
 * Waits (at most `limitS`) until the processes use less than 20 ms of CPU in
 * 3 s: the Node wrapper of `aludel run` keeps compiling and collecting
 * garbage for a while after its start (seconds on the emulated CPU), which
 * is a start-up cost, not a per-GB one. Returns the seconds waited.
 */
async function settle(pids: number[], hz: number, limitS: number): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    const a = cpuSeconds(pids, hz);
    await new Promise((r) => setTimeout(r, 3000));
    const used = cpuSeconds(pids, hz) - a;
    if (used < 0.02) return (Date.now() - t0) / 1000;
    if (Date.now() - t0 > limitS * 1000) throw new Error(`the server processes (${pids.join(', ')}) did not go idle within ${limitS} s (last 3 s: ${used.toFixed(2)} CPU-s)`);
  }
}

async function sha256File(file: string): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export async function runLegacyRun(o: LegacyRunOptions): Promise<LegacyRunResult> {
  if (!fs.existsSync(LEGACY_NGINX)) throw new Error(`${LEGACY_NGINX} is missing: build it with ../shared/legacy/build (LEGACY_PREFIX=${LEGACY_PREFIX})`);
  if (!fs.existsSync('/proc/net/tls_stat')) throw new Error('no /proc/net/tls_stat: this kernel has no kTLS (the tls module), so nothing could show that the kernel did the crypto; run it in ../shared/ktls-vm/run-in-vm (npm run bench -- --legacy-run does that by itself)');
  // Everything is slower on the VM's emulated CPU (~20 MB/s on an idle host, a third of that on a busy one),
  // and the guest charges the host's stalls to whatever it was running: many short pairs, so that each
  // ratio compares two points a few seconds apart. 32 MiB per point there (2-7 s; the whole run 3-8
  // minutes), 1 GiB natively.
  const fileBytes = MiB;
  const downloads = o.emulated ? (o.full ? 64 : 32) : o.full ? 4096 : 1024;
  const repeats = o.full ? 41 : 21;
  const legacyNginx = (await run(LEGACY_NGINX, ['-V'])).stderr
    .split('\n')
    .filter((l) => /^(nginx version|built with)/.test(l))
    .join('; ');
  const work = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-bench-legacy-'));
  const stops: Array<() => Promise<void>> = [];
  const net = await setUpClientNet(!o.loopback);
  stops.push(() => net.close());
  const env = describeEnvironment(o.emulated, net.note, 'not measured (--legacy-run)', false);
  const hz = clockTicksPerSecond();
  try {
    const root = path.join(work, 'www');
    await fs.promises.mkdir(root);
    const file = path.join(root, 'file.bin');
    // Random bytes, so nothing compresses.
    await fs.promises.writeFile(file, crypto.randomBytes(fileBytes));
    const fileSha = await sha256File(file);
    const tls = await makeCert(work);
    const preloadLog = path.join(work, 'preload.log');
    const servers = {} as Record<LegacyMode, Server>;
    const dirs = {} as Record<LegacyMode, string>;
    for (const mode of ['alone', 'run'] as const) {
      dirs[mode] = path.join(work, `nginx-${mode}`);
      // Same binary, same config (one process, master_process off; sendfile on), only the start differs.
      servers[mode] = await startNginx(`legacy ${mode}`, {
        dir: dirs[mode],
        host: net.serverAddress,
        root,
        role: { kind: 'direct' },
        tls: { ...tls, offload: 'userspace' },
        sendfile: true,
        binary: LEGACY_NGINX,
        legacy: true,
        ...(mode === 'run' ? { aludelRun: { logFile: preloadLog } } : {}),
      });
      stops.push(() => servers[mode].stop());
    }
    const url = (mode: LegacyMode): string => `https://${net.serverAddress}:${servers[mode].port}/file.bin`;
    const exec = async (argv: string[], timeoutS: number): Promise<{ stdout: string; stderr: string }> => {
      const all = [...net.prefix, ...argv];
      return run(all[0]!, all.slice(1), { maxBuffer: 16 << 20, timeout: timeoutS * 1000 });
    };
    const curl = ['curl', '-sk', '--tlsv1.2', '--tls-max', '1.2', '--ciphers', TLS12_CIPHER];

    // The processes are counted once: nginx runs with master_process off, so the tree does not change while it serves.
    const pids = { alone: servers.alone.pids(), run: servers.run.pids() };
    const result: LegacyRunResult['servers'] = {} as LegacyRunResult['servers'];
    for (const mode of ['alone', 'run'] as const) {
      // One download first (not measured): the bytes must be intact and the suite the one asked for.
      const out = path.join(work, `check-${mode}.bin`);
      const { stderr } = await exec([...curl, '-v', '-o', out, url(mode)], 600);
      const negotiated = /SSL connection using (\S+ \/ \S+)/.exec(stderr)?.[1] ?? `unknown (curl -v said: ${stderr.split('\n').filter((l) => /SSL|TLS/.test(l)).slice(0, 5).join(' | ')})`;
      if (negotiated !== `TLSv1.2 / ${TLS12_CIPHER}`) throw new Error(`nginx ${mode} negotiated ${negotiated}, not TLSv1.2 / ${TLS12_CIPHER}`);
      result[mode] = { processes: pids[mode].map(comm), settledS: 0, preloadLog: [], sha256Equal: (await sha256File(out)) === fileSha, negotiated, errorLogProblems: [] };
      if (!result[mode].sha256Equal) throw new Error(`nginx ${mode}: the downloaded file's sha256 differs from the served one`);
    }

    for (const mode of ['alone', 'run'] as const) result[mode].settledS = await settle(pids[mode], hz, 300);

    const points: LegacyPoint[] = [];
    const total = repeats * 2;
    for (let repeat = 0; repeat < repeats; repeat++) {
      for (const mode of ['alone', 'run'] as const) {
        o.progress(points.length, total, `${mode} #${repeat + 1}`);
        points.push(await measurePoint({ net, hz, exec, curl, url: url(mode), downloads, fileBytes }, mode, repeat, pids[mode]));
      }
    }
    o.progress(total, total, 'done');
    // Nothing new may have appeared in either tree (a forked helper would have gone uncounted).
    for (const mode of ['alone', 'run'] as const) {
      const now = servers[mode].pids();
      if (now.join(',') !== pids[mode].join(',')) throw new Error(`nginx ${mode}: its processes changed during the run (${pids[mode].join(',')} -> ${now.join(',')}), so not all of its CPU was counted`);
    }
    env.loadAverageAfter = os.loadavg();
    for (const s of stops.splice(1).reverse()) await s();
    for (const mode of ['alone', 'run'] as const) {
      const log = await fs.promises.readFile(path.join(dirs[mode], 'error.log'), 'utf8').catch(() => '');
      result[mode].errorLogProblems = log.split('\n').filter((l) => /\[(crit|alert|emerg)\]/.test(l));
    }
    result.run.preloadLog = (await fs.promises.readFile(preloadLog, 'utf8').catch(() => '')).split('\n').filter((l) => l.length > 0);
    return { environment: env, legacyNginx, fileBytes, downloadsPerPoint: downloads, repeats, servers: result, points, ...summarise(points, repeats) };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await fs.promises.rm(work, { recursive: true, force: true });
  }
}

interface PointRig {
  net: ClientNet;
  hz: number;
  exec(argv: string[], timeoutS: number): Promise<{ stdout: string; stderr: string }>;
  curl: string[];
  url: string;
  downloads: number;
  fileBytes: number;
}

/** One point: `downloads` requests over one curl, with the CPU of `pids`, the wire bytes and the kTLS counters around it. */
async function measurePoint(r: PointRig, mode: LegacyMode, repeat: number, pids: number[]): Promise<LegacyPoint> {
  const argv = [...r.curl, '-w', '%{size_download} %{http_code} %{num_connects}\\n'];
  for (let i = 0; i < r.downloads; i++) argv.push('-o', '/dev/null', r.url);
  const w0 = r.net.wireBytes();
  const t0 = await tlsStat();
  const c0 = cpuOf(pids, r.hz);
  const t = process.hrtime.bigint();
  const { stdout } = await r.exec(argv, 1800);
  const durationS = Number(process.hrtime.bigint() - t) / 1e9;
  const c1 = cpuOf(pids, r.hz);
  const t1 = await tlsStat();
  const w1 = r.net.wireBytes();
  const lines = stdout.trim().split('\n').map((l) => l.split(' '));
  const clientBytes = lines.reduce((a, [b]) => a + Number(b), 0);
  const connections = lines.reduce((a, [, , n]) => a + Number(n), 0);
  if (lines.length !== r.downloads || clientBytes !== r.downloads * r.fileBytes || lines.some(([, c]) => c !== '200')) throw new Error(`nginx ${mode}, repeat ${repeat + 1}: curl got ${lines.length} responses, ${clientBytes} bytes, statuses ${[...new Set(lines.map(([, c]) => c))].join(',')}; expected ${r.downloads} x 200, ${r.downloads * r.fileBytes} bytes`);
  const wire = w0 && w1 ? w1.tx - w0.tx : null;
  const bytes = wire ?? clientBytes;
  const cpuByProcess: Record<string, number> = {};
  const used = pids.map((_, i) => ({ user: c1[i]!.user - c0[i]!.user, system: c1[i]!.system - c0[i]!.system }));
  pids.forEach((p, i) => (cpuByProcess[`${comm(p)}[${p}]`] = used[i]!.user + used[i]!.system));
  const userS = used.reduce((a, x) => a + x.user, 0);
  const systemS = used.reduce((a, x) => a + x.system, 0);
  const cpuS = userS + systemS;
  const delta = t0 && t1 ? counterDelta(t0, t1) : null;
  return { repeat, mode, durationS, requests: lines.length, connections, errors: lines.filter(([, c]) => c !== '200').length, bytes, bytesSource: wire === null ? 'client' : 'veth', clientBytes, cpuS, userS, systemS, cpuByProcess, cpuPerGB: cpuPerGB(cpuS, bytes), tlsStatDelta: delta, ktls: legacyKtlsVerdict(mode, delta, connections) };
}

async function tlsStat(): Promise<Record<string, number> | null> {
  const t = await readKernelTlsStat();
  return t.available ? t.counters : null;
}

/** The counters are host-wide, and nothing else uses TLS in the VM while a point runs: under `run` every connection must show one TX and one RX switch. */
function legacyKtlsVerdict(mode: LegacyMode, delta: Record<string, number> | null, connections: number): LegacyPoint['ktls'] {
  if (!delta) return 'no tls_stat';
  const tx = delta.TlsTxSw ?? 0;
  const rx = delta.TlsRxSw ?? 0;
  if (mode === 'alone') return tx === 0 && rx === 0 ? 'userspace' : 'UNEXPECTED';
  if (tx === connections && rx === connections && connections > 0) return 'proven';
  return tx === 0 && rx === 0 ? 'FELL BACK' : 'PARTIAL';
}

/** The same-repeat ratios (run / alone CPU per GB), their median and spread, and the per-mode medians. */
function summarise(points: LegacyPoint[], repeats: number): Pick<LegacyRunResult, 'ratios' | 'ratioMedian' | 'ratioMin' | 'ratioMax' | 'cpuPerGBMedian' | 'userPerGBMedian' | 'systemPerGBMedian'> {
  const ratios: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const v = ratio(points.find((p) => p.repeat === r && p.mode === 'run')?.cpuPerGB, points.find((p) => p.repeat === r && p.mode === 'alone')?.cpuPerGB);
    if (v !== null) ratios.push(v);
  }
  const perGB = (mode: LegacyMode, part: (p: LegacyPoint) => number = (p) => p.cpuS): number | null => median(points.filter((p) => p.mode === mode && p.bytes > 0).map((p) => cpuPerGB(part(p), p.bytes)!));
  return {
    ratios,
    ratioMedian: median(ratios),
    ratioMin: ratios.length ? Math.min(...ratios) : null,
    ratioMax: ratios.length ? Math.max(...ratios) : null,
    cpuPerGBMedian: { alone: perGB('alone'), run: perGB('run') },
    userPerGBMedian: { alone: perGB('alone', (p) => p.userS), run: perGB('run', (p) => p.userS) },
    systemPerGBMedian: { alone: perGB('alone', (p) => p.systemS), run: perGB('run', (p) => p.systemS) },
  };
}

/** Sum of a tls_stat counter's deltas over one mode's points. */
function counterSum(r: LegacyRunResult, mode: LegacyMode, name: string): number {
  return r.points.filter((p) => p.mode === mode).reduce((a, p) => a + (p.tlsStatDelta?.[name] ?? 0), 0);
}

/** The result as markdown: the summary table, then (with `points`) every point. */
export function legacyRunTable(r: LegacyRunResult, points = true): string {
  const e = r.environment;
  const of = (mode: LegacyMode): LegacyPoint[] => r.points.filter((p) => p.mode === mode);
  const states = (mode: LegacyMode): string =>
    Object.entries(of(mode).reduce<Record<string, number>>((a, p) => ({ ...a, [p.ktls]: (a[p.ktls] ?? 0) + 1 }), {}))
      .map(([k, n]) => `${n}/${of(mode).length} ${k}`)
      .join(', ');
  const proof = (mode: LegacyMode): string =>
    `TlsTxSw +${counterSum(r, mode, 'TlsTxSw')}, TlsRxSw +${counterSum(r, mode, 'TlsRxSw')}, TlsDecryptError +${counterSum(r, mode, 'TlsDecryptError')} over ${of(mode).reduce((a, p) => a + p.connections, 0)} connections (${states(mode)})`;
  const check = (mode: LegacyMode): string => `${r.servers[mode].negotiated}, sha256 ${r.servers[mode].sha256Equal ? 'equal' : 'DIFFERENT'}`;
  const preload = r.servers.run.preloadLog.map((l) => `\`${l.replace(/^aludel-preload: pid \d+: /, 'aludel-preload: pid N: ').split(LEGACY_PREFIX).join('$LEGACY_PREFIX')}\``);
  const lines = [
    `${e.emulated ? 'kTLS VM (emulated CPU: only the ratio means anything)' : 'native'}, kernel ${e.kernel}, ${r.legacyNginx}, load average ${e.loadAverageBefore.map((x) => x.toFixed(2)).join(' ')} before / ${(e.loadAverageAfter ?? []).map((x) => x.toFixed(2)).join(' ')} after${r.hostLoadAverage ? ` (host: ${r.hostLoadAverage.before.map((x) => x.toFixed(2)).join(' ')} / ${r.hostLoadAverage.after.map((x) => x.toFixed(2)).join(' ')})` : ''}, ${e.network}, ${e.date}.`,
    `${r.repeats} repeats, each one point alone then one under run, ${r.downloadsPerPoint} downloads of a ${r.fileBytes / MiB} MiB file per point on one keep-alive TLS 1.2 ${TLS12_CIPHER} connection (curl).`,
    '',
    '| | alone | under `aludel run` |',
    '|---|---|---|',
    `| server CPU-s/GB (median of ${r.repeats}) | ${fmt(r.cpuPerGBMedian.alone)} | ${fmt(r.cpuPerGBMedian.run)} |`,
    `| of which user / system | ${fmt(r.userPerGBMedian.alone)} / ${fmt(r.systemPerGBMedian.alone)} | ${fmt(r.userPerGBMedian.run)} / ${fmt(r.systemPerGBMedian.run)} |`,
    `| processes counted | ${r.servers.alone.processes.join(' + ')} | ${r.servers.run.processes.join(' + ')} |`,
    `| /proc/net/tls_stat | ${proof('alone')} | ${proof('run')} |`,
    `| first download | ${check('alone')} | ${check('run')} |`,
    `| error log [crit]/[alert]/[emerg] | ${r.servers.alone.errorLogProblems.length} | ${r.servers.run.errorLogProblems.length} |`,
    '',
    `**run / alone, CPU-s/GB: median ${fmt(r.ratioMedian)}, spread ${fmt(r.ratioMin)}-${fmt(r.ratioMax)}** (same-run pairs: ${r.ratios.map((x) => fmt(x)).join(', ')}).`,
    '',
    `Preload: ${preload.length ? preload.join('; ') : 'no log line'}`,
  ];
  if (!points) return [...lines, '', 'Every point: `legacy-run.md` beside `results.json` in `bench/results/<timestamp>-legacy-run/`.'].join('\n');
  return [
    ...lines,
    '',
    '| repeat | mode | MB (wire) | s | CPU-s (user + system) | CPU-s/GB | TlsTxSw | TlsRxSw | kTLS |',
    '|---|---|---|---|---|---|---|---|---|',
    ...r.points.map((p) => `| ${p.repeat + 1} | ${p.mode} | ${fmt(p.bytes / 1e6)} | ${fmt(p.durationS)} | ${fmt(p.cpuS)} (${fmt(p.userS)} + ${fmt(p.systemS)}) | ${fmt(p.cpuPerGB)} | ${p.tlsStatDelta?.TlsTxSw ?? 'n/a'} | ${p.tlsStatDelta?.TlsRxSw ?? 'n/a'} | ${p.ktls} |`),
  ].join('\n');
}

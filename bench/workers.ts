/**
 * `npm run bench -- --workers`: what worker processes buy (issue 17), on this
 * host's CPU (userspace TLS where the kernel has no kTLS), loopback only.
 * `aludel serve`, `aludel proxy` and `aludel proxy --cache` with `--workers 1`
 * and `--workers 2`, next to nginx serving the same files, nginx proxy_pass to
 * the same origin and nginx proxy_cache, with worker_processes 1 and 2:
 *
 * - rps: requests/s for a 1 KiB file, 64 keep-alive connections (wrk);
 * - throughput: a 10 MiB file over 8 keep-alive connections (wrk), MB/s and
 *   CPU-s per GB: the bulk case, where the record crypto is the work;
 * - handshakes: every request on a new connection with a full handshake:
 *   `h2load --h1 -n 64 -c 64` over and over (64 clients, one request each,
 *   each with its own SSL object, so none resumes a session). Not wrk with
 *   `Connection: close`: wrk SSL_clear()s and reuses its SSL object, which
 *   keeps the session, so about half its reconnections resume (measured with
 *   Aludel's `reused` log field), and a resumption skips the signature;
 * - idle: VmRSS growth per idle TLS connection (handshake only), summed over
 *   the server's process tree (primary + workers, master + workers), on a
 *   server started fresh for the point (RSS does not shrink after frees).
 *
 * With `--reuse-port`, every front also runs with 2 workers that each have a
 * listening socket of their own (Aludel's --reuse-port, nginx's `listen ...
 * reuseport`), beside the shared socket: the column "reuseport / shared"
 * compares them in the same round.
 *
 * CPU is utime + stime summed over the front's process tree, plus the origin's
 * for the proxies (as bench/phase.ts), per 1,000 requests and per GB of
 * response bytes wrk read. Points run in turns (every scenario once per test,
 * round after round), and the report gives medians of same-round ratios
 * (aludel/nginx at the same worker count; 2 workers / 1 worker per server)
 * with their min–max spread.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describeEnvironment, type Environment } from './environment.js';
import { openIdle } from './idle-clients.js';
import { makeCert } from './phase.js';
import { clockTicksPerSecond, cpuSeconds } from './proc-cpu.js';
import { readTreeMemory, settleRss } from './proc-memory.js';
import { cpuPerGB, median } from './ratios.js';
import { fmt } from './report.js';
import { startAludel, startAludelServe, startNginx, type BenchSetup, type Offload, type Server } from './servers.js';
import { parseWrkOutput, WRK_SCRIPT } from './wrk-output.js';

const run = promisify(execFile);
const HOST = '127.0.0.1';
const FILE = 'one-kib.bin';
const CONNECTIONS = 64;
/** The throughput test's file and connections: as bench/phase.ts's load test. */
const BULK_FILE = 'load.bin';
const BULK_BYTES = 10 * 1024 * 1024;
const BULK_CONNECTIONS = 8;

export type WorkersFront = 'aludel-serve' | 'nginx-direct' | 'aludel-proxy' | 'nginx-proxy' | 'aludel-cache' | 'nginx-cache';
export type WorkersTest = 'rps' | 'throughput' | 'handshakes' | 'idle';
const FRONTS: WorkersFront[] = ['aludel-serve', 'nginx-direct', 'aludel-proxy', 'nginx-proxy', 'aludel-cache', 'nginx-cache'];
/** Which nginx each Aludel front is compared with. */
const PEER: Record<'aludel-serve' | 'aludel-proxy' | 'aludel-cache', WorkersFront> = { 'aludel-serve': 'nginx-direct', 'aludel-proxy': 'nginx-proxy', 'aludel-cache': 'nginx-cache' };
/** Fronts with an idle point: a cache front holds an idle connection as its proxy does. */
const IDLE_FRONTS: ReadonlySet<WorkersFront> = new Set(['aludel-serve', 'nginx-direct', 'aludel-proxy', 'nginx-proxy']);
/** Fronts whose CPU includes the origin's: the proxies, and the caches (whose hits leave the origin idle). */
const hasOrigin = (front: WorkersFront): boolean => front.endsWith('-proxy') || front.endsWith('-cache');

export interface WorkersPoint {
  round: number;
  test: WorkersTest;
  front: WorkersFront;
  workers: number;
  /** 2 workers, each with its own SO_REUSEPORT socket (otherwise they share one). */
  reusePort?: boolean;
  requests: number;
  errors: number;
  requestsPerSec: number | null;
  cpuS: number;
  cpuMsPer1kRequests: number | null;
  cpuPerGB: number | null;
  /** Response bytes per second wrk read (heads included). */
  bytesPerSec?: number;
  /** Each worker's share of the front's CPU (worker processes only, largest first): how evenly the kernel spread the load. */
  workerCpuShares: number[];
  idle?: { connections: number; failed: number; rssBeforeKiB: number; rssAfterKiB: number; kibPerConnection: number };
}

export interface WorkersResult {
  command?: string;
  mode: 'quick' | 'full';
  environment: Environment;
  offload: Offload;
  seconds: number;
  idleConnections: number;
  points: WorkersPoint[];
}

interface Plan {
  seconds: number;
  rounds: number;
  idleConnections: number;
}

/** Rounds: every point once per round, in turns; ≥ 3 so that each ratio has a median and a spread. */
function plan(full: boolean, rounds: number): Plan {
  return full ? { seconds: 10, rounds, idleConnections: 5000 } : { seconds: 3, rounds, idleConnections: 1000 };
}

interface Bench extends BenchSetup {
  hz: number;
  script: string;
}

async function startFront(b: Bench, front: WorkersFront, workers: number, name: string, reusePort = false): Promise<Server> {
  const dir = path.join(b.dir, name);
  await fs.promises.mkdir(dir, { recursive: true });
  // Idle connections must outlive the point: no request comes, so the header timeout would close them.
  const extraArgs = ['--headers-timeout', '10m', '--idle-timeout', '10m', ...(reusePort ? ['--reuse-port'] : [])];
  switch (front) {
    case 'aludel-serve':
      return startAludelServe(name, { host: HOST, tls: b.tls, offload: b.offload, root: b.root, workers, extraArgs });
    case 'aludel-proxy':
      return startAludel(name, { host: HOST, tls: b.tls, offload: b.offload, originPort: b.origin.port, workers, extraArgs });
    case 'nginx-direct':
      return startNginx(name, { dir, host: HOST, root: b.root, role: { kind: 'direct' }, tls: { ...b.tls, offload: b.offload }, workers, reusePort });
    case 'nginx-proxy':
      return startNginx(name, { dir, host: HOST, root: b.root, role: { kind: 'proxy', originPort: b.origin.port }, tls: { ...b.tls, offload: b.offload }, workers, reusePort });
    case 'aludel-cache':
      return startAludel(name, { host: HOST, tls: b.tls, offload: b.offload, originPort: b.origin.port, cacheDir: path.join(dir, 'cache'), workers, extraArgs });
    case 'nginx-cache':
      return startNginx(name, { dir, host: HOST, root: b.root, role: { kind: 'cache', originPort: b.origin.port }, tls: { ...b.tls, offload: b.offload }, workers, reusePort });
  }
}

/** Per-process CPU seconds now, for the tree of `s`. */
function cpuByPid(s: Server, hz: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of s.pids()) {
    try {
      out.set(pid, cpuSeconds([pid], hz));
    } catch {
      // A process that ended during the scan.
    }
  }
  return out;
}

/** Each worker's share of the CPU the workers used (the root is the primary or master when there are several processes). */
export function workerShares(s: { pid: number }, before: Map<number, number>, after: Map<number, number>): number[] {
  const deltas = [...after].filter(([pid]) => after.size === 1 || pid !== s.pid).map(([pid, t]) => t - (before.get(pid) ?? 0));
  const sum = deltas.reduce((a, x) => a + x, 0);
  return sum > 0 ? deltas.map((d) => d / sum).sort((x, y) => y - x) : [];
}

/**
 * "requests: 64 total, 64 started, 64 done, 64 succeeded, 0 failed, 0 errored, 0 timeout"
 * of h2load's summary (nghttp2 1.52): succeeded are 2xx/3xx answers.
 */
export function parseH2loadRequests(stdout: string): { done: number; succeeded: number } {
  const m = /^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded/m.exec(stdout);
  if (!m) throw new Error(`h2load printed no "requests:" line:\n${stdout.slice(0, 2000)}`);
  return { done: Number(m[3]), succeeded: Number(m[4]) };
}

/** h2load rounds of CONNECTIONS new connections, one request each, until `seconds` have passed. */
async function handshakes(url: string, seconds: number): Promise<{ durationS: number; requests: number; bytes: number; errors: number }> {
  const start = process.hrtime.bigint();
  const elapsed = (): number => Number(process.hrtime.bigint() - start) / 1e9;
  let requests = 0;
  let errors = 0;
  while (elapsed() < seconds) {
    const { stdout } = await run('h2load', ['--h1', '-n', String(CONNECTIONS), '-c', String(CONNECTIONS), url], { maxBuffer: 1 << 20, timeout: 60_000 });
    const r = parseH2loadRequests(stdout);
    requests += r.succeeded;
    errors += CONNECTIONS - r.succeeded;
  }
  // Response bytes are not counted: the CPU of a handshake point is per connection, not per byte.
  return { durationS: elapsed(), requests, bytes: 0, errors };
}

function wrk(b: Bench, url: string, connections: number, seconds: number): Promise<{ durationS: number; requests: number; bytes: number; errors: number }> {
  return run('wrk', ['-t', '2', '-c', String(connections), '-d', `${seconds}s`, '--timeout', '10s', '-s', b.script, url], { maxBuffer: 1 << 20, timeout: (seconds + 60) * 1000 }).then((r) => parseWrkOutput(r.stdout));
}

async function wrkPoint(b: Bench, s: Server, front: WorkersFront, workers: number, test: 'rps' | 'throughput' | 'handshakes', round: number, seconds: number): Promise<WorkersPoint> {
  const base = `https://${HOST}:${s.port}/`;
  const origin = hasOrigin(front) ? b.origin.pid : null;
  const c0 = cpuByPid(s, b.hz);
  const o0 = origin ? cpuSeconds([origin], b.hz) : 0;
  const w =
    test === 'handshakes'
      ? await handshakes(base + FILE, seconds)
      : test === 'throughput'
        ? await wrk(b, base + BULK_FILE, BULK_CONNECTIONS, seconds)
        : await wrk(b, base + FILE, CONNECTIONS, seconds);
  const c1 = cpuByPid(s, b.hz);
  const o1 = origin ? cpuSeconds([origin], b.hz) : 0;
  let front0 = 0;
  for (const [pid, t] of c1) front0 += t - (c0.get(pid) ?? 0);
  const cpuS = front0 + (o1 - o0);
  return {
    round, test, front, workers, requests: w.requests, errors: w.errors, requestsPerSec: w.requests / w.durationS, bytesPerSec: w.bytes / w.durationS, cpuS,
    cpuMsPer1kRequests: w.requests > 0 ? (cpuS / w.requests) * 1e6 : null,
    cpuPerGB: cpuPerGB(cpuS, w.bytes),
    workerCpuShares: workerShares(s, c0, c1),
  };
}

async function idlePoint(b: Bench, front: WorkersFront, workers: number, round: number, connections: number): Promise<WorkersPoint> {
  const s = await startFront(b, front, workers, `idle-${front}-${workers}-${round}`);
  try {
    const rss = (): number => readTreeMemory(s.pid).rssKiB;
    // Warm-up, as bench/stalled.ts: first allocations are start-up costs; it also waits for every worker to be ready.
    const warm = await openIdle({ host: HOST, port: s.port, connections: 100 });
    await warm.close();
    await settleRss(rss);
    const before = rss();
    const clients = await openIdle({ host: HOST, port: s.port, connections });
    try {
      await settleRss(rss);
      const after = rss();
      const open = Math.max(clients.open(), 1);
      return {
        round, test: 'idle', front, workers, requests: 0, errors: connections - clients.open(), requestsPerSec: null,
        cpuS: 0, cpuMsPer1kRequests: null, cpuPerGB: null, workerCpuShares: [],
        idle: { connections: clients.open(), failed: clients.failed, rssBeforeKiB: before, rssAfterKiB: after, kibPerConnection: (after - before) / open },
      };
    } finally {
      await clients.close();
    }
  } finally {
    await s.stop();
  }
}

type Scenario = { front: WorkersFront; workers: number; reusePort: boolean; server: Server };
const named = (sc: Scenario): string => `${sc.front} x${sc.workers}${sc.reusePort ? ' reuseport' : ''}`;

/** Every point of the run, in turns: each scenario once per test per round. */
function workersSteps(b: Bench, p: Plan, scenarios: Scenario[]): Array<[string, () => Promise<WorkersPoint | null>]> {
  const steps: Array<[string, () => Promise<WorkersPoint | null>]> = [];
  // Warm-up: JIT, pools, every worker ready (the primary's socket accepts before its workers are), and both caches filled with both files.
  for (const sc of scenarios) {
    steps.push([
      `warm-up ${named(sc)}`,
      async () => {
        await wrkPoint(b, sc.server, sc.front, sc.workers, 'rps', -1, 1);
        await wrkPoint(b, sc.server, sc.front, sc.workers, 'throughput', -1, 1);
        return null;
      },
    ]);
  }
  for (let round = 0; round < p.rounds; round++) {
    for (const test of ['rps', 'throughput', 'handshakes'] as const) {
      for (const sc of scenarios) steps.push([`${test} ${named(sc)} #${round + 1}`, () => wrkPoint(b, sc.server, sc.front, sc.workers, test, round, p.seconds).then((pt) => ({ ...pt, reusePort: sc.reusePort }))]);
    }
    // Idle memory does not depend on how connections are accepted: the shared-socket fronts only.
    for (const sc of scenarios.filter((x) => IDLE_FRONTS.has(x.front) && !x.reusePort)) steps.push([`idle ${sc.front} x${sc.workers} #${round + 1}`, () => idlePoint(b, sc.front, sc.workers, round, p.idleConnections)]);
  }
  return steps;
}

export interface WorkersRunOptions {
  full: boolean;
  /** Rounds (every point once per round, in turns). */
  rounds: number;
  /** Also 2 workers with a SO_REUSEPORT socket each, for every front. */
  reusePort?: boolean;
  progress(done: number, total: number, label: string): void;
}

export async function runWorkers(o: WorkersRunOptions): Promise<WorkersResult> {
  const p = plan(o.full, o.rounds);
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-workers-'));
  const offload: Offload = fs.existsSync('/proc/net/tls_stat') ? 'kernel' : 'userspace';
  const environment = describeEnvironment(false, 'loopback', 'not measured', false);
  const stops: Array<() => Promise<void>> = [];
  try {
    const root = path.join(dir, 'root');
    await fs.promises.mkdir(root);
    await fs.promises.writeFile(path.join(root, FILE), crypto.randomBytes(1024));
    await fs.promises.writeFile(path.join(root, BULK_FILE), crypto.randomBytes(BULK_BYTES));
    const tls = await makeCert(dir);
    const script = path.join(dir, 'report.lua');
    await fs.promises.writeFile(script, WRK_SCRIPT);
    await fs.promises.mkdir(path.join(dir, 'origin'));
    const origin = await startNginx('origin', { dir: path.join(dir, 'origin'), host: HOST, root, role: { kind: 'origin' } });
    stops.push(() => origin.stop());
    const b: Bench = { dir, root, tls, origin, offload, hz: clockTicksPerSecond(), script };
    const scenarios: Scenario[] = [];
    for (const front of FRONTS) {
      for (const [workers, reusePort] of [[1, false], [2, false], ...(o.reusePort ? [[2, true]] : [])] as Array<[number, boolean]>) {
        const server = await startFront(b, front, workers, `${front}-${workers}${reusePort ? '-reuseport' : ''}`, reusePort);
        stops.push(() => server.stop());
        scenarios.push({ front, workers, reusePort, server });
      }
    }
    const steps = workersSteps(b, p, scenarios);
    const points: WorkersPoint[] = [];
    for (let i = 0; i < steps.length; i++) {
      o.progress(i, steps.length, steps[i]![0]);
      const point = await steps[i]![1]();
      if (point) points.push(point);
    }
    o.progress(steps.length, steps.length, 'done');
    environment.loadAverageAfter = os.loadavg();
    return { mode: o.full ? 'full' : 'quick', environment, offload, seconds: p.seconds, idleConnections: p.idleConnections, points };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}

/** The value a row reports for a test: req/s (rps, handshakes), MB/s (throughput) or KiB per idle connection. */
function value(p: WorkersPoint): number | null {
  if (p.test === 'idle') return p.idle?.kibPerConnection ?? null;
  if (p.test === 'throughput') return p.bytesPerSec != null ? p.bytesPerSec / 1e6 : null;
  return p.requestsPerSec;
}

/** Same-round ratios a/b of `value`, with their median and min–max. */
export function sameRoundRatios(a: WorkersPoint[], b: WorkersPoint[]): { median: number | null; min: number | null; max: number | null; n: number } {
  const r: number[] = [];
  for (const x of a) {
    const y = b.find((q) => q.round === x.round);
    const vx = value(x);
    const vy = y ? value(y) : null;
    if (vx != null && vy != null && vy > 0) r.push(vx / vy);
  }
  return { median: median(r), min: r.length ? Math.min(...r) : null, max: r.length ? Math.max(...r) : null, n: r.length };
}

const spread = (r: ReturnType<typeof sameRoundRatios>): string => (r.n > 1 ? `${fmt(r.median)} (${fmt(r.min)}–${fmt(r.max)})` : fmt(r.median));

/** How a row's points were accepted: 1 worker, 2 sharing a socket, or 2 with a SO_REUSEPORT socket each. */
type Layout = { workers: number; reusePort: boolean };
const LAYOUTS: Layout[] = [{ workers: 1, reusePort: false }, { workers: 2, reusePort: false }, { workers: 2, reusePort: true }];

/** The largest worker's share of the CPU, median over the rounds (max): 50 % is an even split of 2; 100 %, one worker did everything. */
function largestShare(points: WorkersPoint[]): string {
  const largest = points.map((p) => p.workerCpuShares[0]).filter((x): x is number => x !== undefined && points[0]!.workerCpuShares.length > 1);
  if (largest.length === 0) return '';
  return `${Math.round(median(largest)! * 100)} % (${Math.round(Math.max(...largest) * 100)} %)`;
}

/** One row per test, front and layout: medians, how evenly the workers shared the CPU, and the same-round ratios. */
export function workersTable(res: WorkersResult): string {
  const withReusePort = res.points.some((p) => p.reusePort === true);
  const head = [
    `| test | front | workers | req/s, MB/s or KiB/conn (median) | CPU ms / 1k req | CPU-s/GB | largest worker's CPU share, median (max) | vs nginx (same workers) | 2 workers / 1 |${withReusePort ? ' reuseport / shared |' : ''}`,
    `|---|---|---|---|---|---|---|---|---|${withReusePort ? '---|' : ''}`,
  ];
  const body: string[] = [];
  for (const test of ['rps', 'throughput', 'handshakes', 'idle'] as const) {
    for (const front of FRONTS) {
      for (const { workers, reusePort } of LAYOUTS) {
        const of = (f: WorkersFront, w: number, rp = false): WorkersPoint[] => res.points.filter((p) => p.test === test && p.front === f && p.workers === w && (p.reusePort ?? false) === rp);
        const mine = of(front, workers, reusePort);
        if (mine.length === 0) continue;
        const med = (f: (p: WorkersPoint) => number | null | undefined): number | null => median(mine.map(f).filter((x): x is number => x != null));
        const peer = front in PEER ? spread(sameRoundRatios(mine, of(PEER[front as keyof typeof PEER], workers, reusePort))) : '';
        const scale = workers === 2 ? spread(sameRoundRatios(mine, of(front, 1))) : '';
        const layout = reusePort ? `${workers}, reuseport` : String(workers);
        const vsShared = withReusePort ? ` ${reusePort ? spread(sameRoundRatios(mine, of(front, workers))) : ''} |` : '';
        body.push(`| ${test} | ${front} | ${layout} | ${fmt(med(value))} | ${fmt(med((p) => p.cpuMsPer1kRequests))} | ${fmt(med((p) => p.cpuPerGB))} | ${largestShare(mine)} | ${peer} | ${scale} |${vsShared}`);
      }
    }
  }
  const errors = res.points.reduce((n, p) => n + p.errors, 0);
  const e = res.environment;
  const note = `${res.mode} mode: ${res.seconds} s points, ${FILE} of 1,024 bytes (rps: wrk -t2 -c${CONNECTIONS}; throughput: ${BULK_FILE} of ${BULK_BYTES / 1024 / 1024} MiB, wrk -t2 -c${BULK_CONNECTIONS}, MB/s; handshakes: h2load --h1 -n ${CONNECTIONS} -c ${CONNECTIONS} repeated, no resumption), ${res.idleConnections} idle connections per idle point, ${Math.max(...res.points.map((p) => p.round)) + 1} round(s), ${res.offload} TLS, loopback, client and servers on the same ${e.cpus} CPUs; ${errors} error(s). Proxies and caches: the origin's CPU included (idle on cache hits). Largest worker's CPU share: of the workers' CPU in each point (the primary or master left out).${withReusePort ? ' reuseport: 2 workers with a listening socket each (Aludel --reuse-port, nginx listen ... reuseport); "reuseport / shared" compares them with the 2 workers sharing one socket, same round.' : ''}`;
  return [...head, ...body, '', note].join('\n');
}

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
 * - handshakes-rsa: the same with an RSA-4096 server certificate (RSA-2048
 *   in the kTLS VM, where a 4096-bit sign takes ~0.4 s). With ECDSA P-256
 *   the server's sign is cheap (openssl speed: ~53k sign/s, ~19k verify/s),
 *   so on a 2-CPU host h2load takes most of a CPU and a second worker cannot
 *   show. The client's cost is not its verify alone, though: OpenSSL 3.0's
 *   client spends ~0.8-1.2 ms of CPU per full handshake here whatever the
 *   key (certificate decoding, key exchange, connect/close), so the server's
 *   sign must dwarf that: RSA-2048 (~0.26 ms a sign) left h2load ~60 % of
 *   the CPU against nginx, RSA-3072 (~1.7 ms) ~36 %, RSA-4096 ~23 %. h2load's
 *   own CPU (its rusage, through the shell that reaped it) is recorded
 *   beside the server's to show the split;
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
 *
 * With kernel TLS (natively, or in the kTLS VM with `--phase vm`), every
 * point must raise /proc/net/tls_stat's TX counters: a point that did not is
 * an error, not a result. In the VM (emulated CPU, ~95x slower crypto) the
 * points are smaller and longer (see plan); only same-run ratios mean
 * anything there.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { readKernelTlsStat } from '../src/metrics/kernel-tls-stat.js';
import { describeEnvironment, type Environment } from './environment.js';
import { openIdle } from './idle-clients.js';
import { makeCert } from './phase.js';
import { clockTicksPerSecond, cpuSeconds, parseChildTicks } from './proc-cpu.js';
import { readTreeMemory, settleRss } from './proc-memory.js';
import { counterDelta, cpuPerGB, ktlsProven, median } from './ratios.js';
import { fmt } from './report.js';
import { startAludel, startAludelServe, startNginx, type BenchSetup, type Offload, type Server } from './servers.js';
import { parseWrkOutput, WRK_SCRIPT } from './wrk-output.js';

const run = promisify(execFile);
const HOST = '127.0.0.1';
const FILE = 'one-kib.bin';
/** The throughput test's file and connections: as bench/phase.ts's load test (its size is the plan's). */
const BULK_FILE = 'load.bin';
const BULK_CONNECTIONS = 8;

export type WorkersFront = 'aludel-serve' | 'nginx-direct' | 'aludel-proxy' | 'nginx-proxy' | 'aludel-cache' | 'nginx-cache';
export type WorkersTest = 'rps' | 'throughput' | 'handshakes' | 'handshakes-rsa' | 'idle';
export const WORKERS_TESTS: readonly WorkersTest[] = ['rps', 'throughput', 'handshakes', 'handshakes-rsa', 'idle'];
/** The tests measured with h2load, a new connection per request. */
const HANDSHAKE_TESTS: ReadonlySet<WorkersTest> = new Set(['handshakes', 'handshakes-rsa']);
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
  /** h2load's own CPU (utime + stime) over the point: the client's side of the handshakes. */
  clientCpuS?: number;
  /** /proc/net/tls_stat counter deltas over the point, where the kernel has the file. */
  tlsStatDelta?: Record<string, number>;
  idle?: { connections: number; failed: number; rssBeforeKiB: number; rssAfterKiB: number; kibPerConnection: number };
}

export interface WorkersResult {
  command?: string;
  mode: 'quick' | 'full';
  environment: Environment;
  offload: Offload;
  seconds: number;
  idleConnections: number;
  /** The plan's sizes (absent in results older than handshakes-rsa: 64, 64, 10 MiB). */
  connections?: number;
  handshakeClients?: number;
  bulkBytes?: number;
  rsaKey?: string;
  points: WorkersPoint[];
}

interface Plan {
  seconds: number;
  rounds: number;
  idleConnections: number;
  /** wrk connections of the rps test. */
  connections: number;
  /** h2load clients per run (-n and -c) of the handshake tests. */
  handshakeClients: number;
  bulkBytes: number;
  /** The handshakes-rsa certificate's key, as openssl req -newkey takes it. */
  rsaKey: string;
}

/**
 * Rounds: every point once per round, in turns; ≥ 3 so that each ratio has a
 * median and a spread. Emulated (the kTLS VM, crypto ~95x slower): 5 s
 * points and 8 rps connections, because wrk's connections each start with a
 * handshake and a server there completes only 5-20 a second (64 would not
 * all be up within a 3 s point, and the point would measure handshakes, not
 * requests), a 1 MiB bulk file, 16 handshake clients per h2load run (a run of 64 RSA handshakes
 * would take seconds there and overshoot the point), an RSA-2048 key for
 * handshakes-rsa (RSA-4096 natively: see the header) and 200 idle connections.
 */
export function plan(full: boolean, rounds: number, emulated = false): Plan {
  const MiB = 1024 * 1024;
  if (emulated) return { seconds: full ? 10 : 5, rounds, idleConnections: full ? 1000 : 200, connections: 8, handshakeClients: 16, bulkBytes: MiB, rsaKey: 'rsa:2048' };
  return { seconds: full ? 10 : 3, rounds, idleConnections: full ? 5000 : 1000, connections: 64, handshakeClients: 64, bulkBytes: 10 * MiB, rsaKey: 'rsa:4096' };
}

interface Bench extends BenchSetup {
  hz: number;
  script: string;
  p: Plan;
}

/**
 * The kTLS VM's tests unless --tests names others: under emulation every
 * server start costs tens of seconds (Node loading its modules), and idle
 * (a fresh server per point) and handshakes-rsa (a second set of servers)
 * would take the quick mode past its 25-minute bound.
 */
export const VM_TESTS: readonly WorkersTest[] = ['rps', 'throughput', 'handshakes'];

/** --tests a,b of the workers bench: checked against WORKERS_TESTS; without the option, all of them (VM_TESTS when emulated). */
export function parseWorkersTests(list: string | undefined, emulated = false): WorkersTest[] {
  if (list === undefined) return [...(emulated ? VM_TESTS : WORKERS_TESTS)];
  const names = list.split(',').map((t) => t.trim()).filter((t) => t !== '');
  const unknown = names.filter((t) => !(WORKERS_TESTS as readonly string[]).includes(t));
  if (unknown.length > 0) throw new Error(`--tests: unknown ${unknown.join(', ')} (known with --workers: ${WORKERS_TESTS.join(', ')})`);
  if (names.length === 0) throw new Error(`--tests: no test named (known with --workers: ${WORKERS_TESTS.join(', ')})`);
  return WORKERS_TESTS.filter((t) => names.includes(t));
}

async function startFront(b: Bench, front: WorkersFront, workers: number, name: string, reusePort = false, tls = b.tls): Promise<Server> {
  b = { ...b, tls };
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

/**
 * One h2load run through a shell that prints its own /proc/<pid>/stat after
 * h2load exits: the shell has reaped h2load by then, so its cutime + cstime
 * are h2load's CPU (proc(5); `cat` itself is not reaped yet when it reads).
 */
async function h2loadRun(url: string, clients: number): Promise<{ succeeded: number; clientTicks: number }> {
  const script = 'h2load "$@"; s=$?; cat /proc/$$/stat >&2; exit $s';
  const { stdout, stderr } = await run('sh', ['-c', script, 'sh', '--h1', '-n', String(clients), '-c', String(clients), url], { maxBuffer: 1 << 20, timeout: 120_000 });
  return { succeeded: parseH2loadRequests(stdout).succeeded, clientTicks: parseChildTicks(stderr) };
}

/** h2load runs of `clients` new connections, one request each, until `seconds` have passed. */
async function handshakes(b: Bench, url: string, seconds: number): Promise<{ durationS: number; requests: number; bytes: number; errors: number; clientCpuS: number }> {
  const clients = b.p.handshakeClients;
  const start = process.hrtime.bigint();
  const elapsed = (): number => Number(process.hrtime.bigint() - start) / 1e9;
  let requests = 0;
  let errors = 0;
  let ticks = 0;
  while (elapsed() < seconds) {
    const r = await h2loadRun(url, clients);
    requests += r.succeeded;
    errors += clients - r.succeeded;
    ticks += r.clientTicks;
  }
  // Response bytes are not counted: the CPU of a handshake point is per connection, not per byte.
  return { durationS: elapsed(), requests, bytes: 0, errors, clientCpuS: ticks / b.hz };
}

function wrk(b: Bench, url: string, connections: number, seconds: number): Promise<{ durationS: number; requests: number; bytes: number; errors: number }> {
  return run('wrk', ['-t', '2', '-c', String(connections), '-d', `${seconds}s`, '--timeout', '10s', '-s', b.script, url], { maxBuffer: 1 << 20, timeout: (seconds + 60) * 1000 }).then((r) => parseWrkOutput(r.stdout));
}

/** The tls_stat counters now, or null where the kernel has no kTLS (no file). */
async function tlsCounters(): Promise<Record<string, number> | null> {
  const t = await readKernelTlsStat();
  return t.available ? t.counters : null;
}

/**
 * Runs `measure` between two reads of /proc/net/tls_stat. With kernel TLS a
 * point whose TX counters did not rise did not run on kTLS (Aludel and nginx
 * would have fallen back to userspace): an error, not a result.
 */
export async function withTlsStat<T extends WorkersPoint>(offload: Offload, label: string, measure: () => Promise<T>, read = tlsCounters): Promise<T> {
  const before = await read();
  const point = await measure();
  const after = await read();
  if (offload === 'kernel') {
    if (!before || !after) throw new Error(`${label}: no /proc/net/tls_stat, so nothing shows the kernel did the crypto`);
    const delta = counterDelta(before, after);
    if (!ktlsProven(delta)) throw new Error(`${label}: /proc/net/tls_stat TlsTxSw/TlsTxDevice did not rise (${JSON.stringify(delta)}): the point did not run on kernel TLS`);
    return { ...point, tlsStatDelta: delta };
  }
  return before && after ? { ...point, tlsStatDelta: counterDelta(before, after) } : point;
}

async function wrkPoint(b: Bench, s: Server, front: WorkersFront, workers: number, test: Exclude<WorkersTest, 'idle'>, round: number, seconds: number): Promise<WorkersPoint> {
  const base = `https://${HOST}:${s.port}/`;
  const origin = hasOrigin(front) ? b.origin.pid : null;
  const c0 = cpuByPid(s, b.hz);
  const o0 = origin ? cpuSeconds([origin], b.hz) : 0;
  const w: { durationS: number; requests: number; bytes: number; errors: number; clientCpuS?: number } = HANDSHAKE_TESTS.has(test)
    ? await handshakes(b, base + FILE, seconds)
    : test === 'throughput'
      ? await wrk(b, base + BULK_FILE, BULK_CONNECTIONS, seconds)
      : await wrk(b, base + FILE, b.p.connections, seconds);
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
    ...(w.clientCpuS !== undefined ? { clientCpuS: w.clientCpuS } : {}),
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

/** `rsa`: the same front with the RSA certificate, for handshakes-rsa. */
type Scenario = { front: WorkersFront; workers: number; reusePort: boolean; server: Server; rsa: boolean };
const named = (sc: Scenario): string => `${sc.front} x${sc.workers}${sc.reusePort ? ' reuseport' : ''}${sc.rsa ? ' rsa' : ''}`;
type Step = [string, () => Promise<WorkersPoint | null>];

/** Warm-up: JIT, pools, every worker ready (the primary's socket accepts before its workers are), and both caches filled with both files. */
function warmUp(b: Bench, sc: Scenario): Step {
  return [
    `warm-up ${named(sc)}`,
    async () => {
      if (sc.rsa) {
        await wrkPoint(b, sc.server, sc.front, sc.workers, 'handshakes-rsa', -1, 1);
        return null;
      }
      await wrkPoint(b, sc.server, sc.front, sc.workers, 'rps', -1, 1);
      await wrkPoint(b, sc.server, sc.front, sc.workers, 'throughput', -1, 1);
      return null;
    },
  ];
}

/** Every point of the run, in turns: each scenario once per test per round (handshakes-rsa on the RSA servers, the others on the ECDSA ones). */
function workersSteps(b: Bench, p: Plan, scenarios: Scenario[], tests: readonly WorkersTest[]): Step[] {
  const steps: Step[] = scenarios.map((sc) => warmUp(b, sc));
  for (let round = 0; round < p.rounds; round++) {
    for (const test of tests) {
      if (test === 'idle') {
        // Idle memory does not depend on how connections are accepted: the shared-socket fronts only.
        for (const sc of scenarios.filter((x) => IDLE_FRONTS.has(x.front) && !x.reusePort && !x.rsa)) {
          const label = `idle ${sc.front} x${sc.workers} #${round + 1}`;
          steps.push([label, () => withTlsStat(b.offload, label, () => idlePoint(b, sc.front, sc.workers, round, p.idleConnections))]);
        }
        continue;
      }
      for (const sc of scenarios.filter((x) => x.rsa === (test === 'handshakes-rsa'))) {
        const label = `${test} ${named(sc)} #${round + 1}`;
        steps.push([label, () => withTlsStat(b.offload, label, () => wrkPoint(b, sc.server, sc.front, sc.workers, test, round, p.seconds)).then((pt) => ({ ...pt, reusePort: sc.reusePort }))]);
      }
    }
  }
  return steps;
}

export interface WorkersRunOptions {
  full: boolean;
  /** Rounds (every point once per round, in turns). */
  rounds: number;
  /** Also 2 workers with a SO_REUSEPORT socket each, for every front. */
  reusePort?: boolean;
  /** The tests to run (default: all of WORKERS_TESTS). */
  tests?: readonly WorkersTest[];
  /** Inside the kTLS VM: kernel TLS required, smaller points (see plan). */
  emulated?: boolean;
  progress(done: number, total: number, label: string): void;
}

/** Every front at 1 and 2 workers (and 2 with reuseport), with the ECDSA certificate and/or the RSA one as the tests need. */
async function startScenarios(b: Bench, o: WorkersRunOptions, tests: readonly WorkersTest[], rsaTls: BenchSetup['tls'] | null, stops: Array<() => Promise<void>>): Promise<Scenario[]> {
  const certs: Array<[boolean, BenchSetup['tls']]> = [];
  if (tests.some((t) => t === 'rps' || t === 'throughput' || t === 'handshakes')) certs.push([false, b.tls]);
  if (rsaTls) certs.push([true, rsaTls]);
  const scenarios: Scenario[] = [];
  for (const [rsa, tls] of certs) {
    for (const front of FRONTS) {
      for (const [workers, reusePort] of [[1, false], [2, false], ...(o.reusePort ? [[2, true]] : [])] as Array<[number, boolean]>) {
        const name = `${front}-${workers}${reusePort ? '-reuseport' : ''}${rsa ? '-rsa' : ''}`;
        // Start-up is minutes in the VM: say which server is starting.
        o.progress(0, 1, `starting ${name}`);
        const server = await startFront(b, front, workers, name, reusePort, tls);
        stops.push(() => server.stop());
        scenarios.push({ front, workers, reusePort, server, rsa });
      }
    }
  }
  return scenarios;
}

export async function runWorkers(o: WorkersRunOptions): Promise<WorkersResult> {
  const emulated = o.emulated ?? false;
  const p = plan(o.full, o.rounds, emulated);
  const tests = o.tests ?? WORKERS_TESTS;
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-workers-'));
  const offload: Offload = fs.existsSync('/proc/net/tls_stat') ? 'kernel' : 'userspace';
  if (emulated && offload !== 'kernel') throw new Error('the kTLS phase of --workers found no /proc/net/tls_stat: this kernel has no kTLS (the tls module)');
  const environment = describeEnvironment(emulated, 'loopback', 'not measured', false);
  const stops: Array<() => Promise<void>> = [];
  try {
    const root = path.join(dir, 'root');
    await fs.promises.mkdir(root);
    await fs.promises.writeFile(path.join(root, FILE), crypto.randomBytes(1024));
    await fs.promises.writeFile(path.join(root, BULK_FILE), crypto.randomBytes(p.bulkBytes));
    const tls = await makeCert(dir);
    const rsaTls = tests.includes('handshakes-rsa') ? await makeCert(dir, p.rsaKey) : null;
    const script = path.join(dir, 'report.lua');
    await fs.promises.writeFile(script, WRK_SCRIPT);
    await fs.promises.mkdir(path.join(dir, 'origin'));
    const origin = await startNginx('origin', { dir: path.join(dir, 'origin'), host: HOST, root, role: { kind: 'origin' } });
    stops.push(() => origin.stop());
    const b: Bench = { dir, root, tls, origin, offload, hz: clockTicksPerSecond(), script, p };
    const scenarios = await startScenarios(b, o, tests, rsaTls, stops);
    const steps = workersSteps(b, p, scenarios, tests);
    const points: WorkersPoint[] = [];
    for (let i = 0; i < steps.length; i++) {
      o.progress(i, steps.length, steps[i]![0]);
      const point = await steps[i]![1]();
      if (point) points.push(point);
    }
    o.progress(steps.length, steps.length, 'done');
    environment.loadAverageAfter = os.loadavg();
    return { mode: o.full ? 'full' : 'quick', environment, offload, seconds: p.seconds, idleConnections: p.idleConnections, connections: p.connections, handshakeClients: p.handshakeClients, bulkBytes: p.bulkBytes, rsaKey: p.rsaKey, points };
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
  for (const test of WORKERS_TESTS) {
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
  const conns = res.connections ?? 64;
  const clients = res.handshakeClients ?? 64;
  const bulkMiB = (res.bulkBytes ?? 10 * 1024 * 1024) / 1024 / 1024;
  const ktls = res.offload === 'kernel' ? ' Every point raised /proc/net/tls_stat TlsTxSw (kTLS proven per point).' : '';
  const vm = res.environment.emulated ? ' Emulated CPU (kTLS VM, QEMU TCG, crypto ~95x slower): only same-run ratios mean anything.' : '';
  const note = `${res.mode} mode: ${res.seconds} s points, ${FILE} of 1,024 bytes (rps: wrk -t2 -c${conns}; throughput: ${BULK_FILE} of ${bulkMiB} MiB, wrk -t2 -c${BULK_CONNECTIONS}, MB/s; handshakes: h2load --h1 -n ${clients} -c ${clients} repeated, no resumption, ECDSA P-256 certificate; handshakes-rsa: the same with an ${(res.rsaKey ?? 'rsa:2048').replace(':', '-').toUpperCase()} certificate), ${res.idleConnections} idle connections per idle point, ${Math.max(...res.points.map((p) => p.round)) + 1} round(s), ${res.offload} TLS, loopback, client and servers on the same ${e.cpus} CPUs; ${errors} error(s). Proxies and caches: the origin's CPU included (idle on cache hits). Largest worker's CPU share: of the workers' CPU in each point (the primary or master left out).${withReusePort ? ' reuseport: 2 workers with a listening socket each (Aludel --reuse-port, nginx listen ... reuseport); "reuseport / shared" compares them with the 2 workers sharing one socket, same round.' : ''}${ktls}${vm}`;
  const split = clientCpuTable(res);
  return [...head, ...body, '', note, ...(split ? ['', split] : [])].join('\n');
}

/**
 * The handshake tests' CPU split between the client (h2load) and the server
 * (its process tree, plus the origin for the proxies): where h2load's share is
 * large, the client, not the server, limits the rate and "2 workers / 1"
 * cannot rise on a 2-CPU host.
 */
export function clientCpuTable(res: WorkersResult): string {
  const rows: string[] = [];
  for (const test of WORKERS_TESTS.filter((t) => HANDSHAKE_TESTS.has(t))) {
    for (const front of FRONTS) {
      for (const { workers, reusePort } of LAYOUTS) {
        const mine = res.points.filter((p) => p.test === test && p.front === front && p.workers === workers && (p.reusePort ?? false) === reusePort && p.clientCpuS != null);
        if (mine.length === 0) continue;
        const perK = median(mine.filter((p) => p.requests > 0).map((p) => (p.clientCpuS! / p.requests) * 1e6));
        const share = median(mine.filter((p) => p.clientCpuS! + p.cpuS > 0).map((p) => p.clientCpuS! / (p.clientCpuS! + p.cpuS)));
        const layout = reusePort ? `${workers}, reuseport` : String(workers);
        rows.push(`| ${test} | ${front} | ${layout} | ${fmt(perK)} | ${share == null ? '' : `${Math.round(share * 100)} %`} |`);
      }
    }
  }
  if (rows.length === 0) return '';
  return ['| test | front | workers | client (h2load) CPU ms / 1k handshakes | client share of client + server CPU (median) |', '|---|---|---|---|---|', ...rows].join('\n');
}

/**
 * Drives fuzz cases at one Aludel target and checks it: driveCases() is the
 * client side (one process, many lanes), runTarget() the whole run: fixtures,
 * origin, Aludel, client processes, liveness probes, descriptor and RSS
 * watch, crash watch, and the final report.
 *
 * Case K goes to client process K mod P and, within it, to lane (K div P)
 * mod L, so the same run always puts the same cases on the same connections.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { reapOnExit } from '../support/run-process.js';
import { startAludelChild, type AludelChild } from './aludel-child.js';
import { generateCase } from './cases.js';
import { judgeResponses, OriginJudge } from './checks.js';
import { Lane, probe, type Timing } from './client.js';
import { startEchoOrigin, type EchoOrigin } from './echo-origin.js';
import { escapeBytes } from './escape.js';
import { caseBytes, type Finding, type Target } from './model.js';
import { ProcSampler, fdKinds, fdsBeyondKept, type Sampled } from './proc-stats.js';
import { startRecordingOrigin, type RecordingOrigin } from './recording-origin.js';
import { writeServeRoot } from './serve-files.js';

export interface DriveOptions {
  target: Target;
  port: number;
  seed: number;
  /** Cases [from, from + count). */
  from: number;
  count: number;
  procIndex: number;
  procs: number;
  lanes: number;
  /** A liveness probe after every this many cases of this process. */
  probeEvery: number;
  timing: Timing;
  /** Run exactly these case indices (replay) instead of the range. */
  only?: number[];
}

export interface DriveResult {
  cases: number;
  bytesSent: number;
  probes: number;
  handshakes: number;
}

export interface DriveHooks {
  onFinding(f: Finding): void;
  onProgress?(cases: number): void;
  /** Polled between cases: stop early (the target crashed). */
  aborted?(): boolean;
}

/** The client side of a run, in this process. */
export async function driveCases(o: DriveOptions, hooks: DriveHooks): Promise<DriveResult> {
  const mine = o.only ?? [];
  if (!o.only) for (let k = o.from + o.procIndex; k < o.from + o.count; k += o.procs) mine.push(k);
  const lanes = Array.from({ length: Math.min(o.lanes, Math.max(1, mine.length)) }, () => new Lane(o.port, o.timing));
  const res: DriveResult = { cases: 0, bytesSent: 0, probes: 0, handshakes: 0 };
  const probes: Array<Promise<void>> = [];
  const runProbe = (): void => {
    const n = res.probes++;
    probes.push(
      probe(o.target, o.port, o.procIndex * 1e9 + n, Math.max(5000, o.timing.longMs)).then((err) => {
        if (err) hooks.onFinding({ kind: 'liveness', target: o.target, seed: o.seed, index: null, detail: `probe ${n} after ${res.cases} cases: ${err}` });
      }),
    );
  };
  await Promise.all(
    lanes.map(async (lane, l) => {
      for (let q = l; q < mine.length; q += lanes.length) {
        if (hooks.aborted?.()) break;
        const c = generateCase(o.target, o.seed, mine[q]!);
        try {
          if (o.target === 'tcp') {
            const r = await lane.runTcp(c);
            res.bytesSent += r.sent;
            if (r.error) hooks.onFinding({ kind: 'tcp-echo', target: c.target, seed: c.seed, index: c.index, detail: r.error, bytes: escapeBytes(caseBytes(c)) });
          } else {
            for (const f of judgeResponses(c, await lane.runHttp(c))) hooks.onFinding(f);
            res.bytesSent += caseBytes(c).length;
          }
        } catch (err) {
          lane.drop();
          if (!hooks.aborted?.()) hooks.onFinding({ kind: 'connect', target: c.target, seed: c.seed, index: c.index, detail: (err as Error).message });
        }
        res.cases++;
        hooks.onProgress?.(res.cases);
        if (o.probeEvery > 0 && res.cases % o.probeEvery === 0) runProbe();
      }
      lane.drop();
    }),
  );
  res.handshakes = lanes.reduce((a, l) => a + l.handshakes, 0);
  if (!hooks.aborted?.()) runProbe();
  await Promise.all(probes);
  return res;
}

export interface RunOptions {
  target: Target;
  seed: number;
  cases: number;
  from?: number;
  only?: number[];
  procs?: number;
  lanes?: number;
  probeEvery?: number;
  timing?: Partial<Timing>;
  /** Peak RSS may exceed the start by at most this (MiB). See DEFAULT_RSS_GROWTH_MIB. */
  rssGrowthMiB?: number;
  /** Descriptors allowed above the start once every client is gone. */
  fdMargin?: number;
  /** --offload for aludel (default auto). */
  offload?: 'auto' | 'kernel' | 'userspace';
  /** Progress lines (cases/s) go here when given. */
  log?: (line: string) => void;
  /** Stop after this many findings of one kind have been printed/stored (all are counted). */
  keepPerKind?: number;
}

/**
 * Aludel's RSS is ~60-80 MiB at rest. A run holds at most procs x lanes
 * connections (each with <= 16 KiB of header buffer, a 64 KiB chunk of body
 * and its TLS buffers: < 200 KiB), and V8 is allowed to let its heap grow by
 * tens of MiB before collecting. 160 MiB over the start is far above all that
 * together for the default 2 x 16 lanes, and far below what a per-request
 * leak does over 20,000 cases (1 KiB per case is 20 MiB; the body buffers
 * leaked per case would be much more).
 */
export const DEFAULT_RSS_GROWTH_MIB = 160;

export interface TargetReport {
  target: Target;
  seed: number;
  cases: number;
  seconds: number;
  casesPerSecond: number;
  handshakes: number;
  probes: number;
  crashes: number;
  fds: Sampled & { settled: number; leaked: number };
  rssKiB: Sampled;
  /** Findings kept (up to keepPerKind per kind), and counts of all by kind. */
  findings: Finding[];
  counts: Record<string, number>;
  origin?: Record<string, number>;
  logLevels: Record<string, number>;
  /** Aludel's last warn/error lines. */
  logTail: string;
}

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));

function targetArgs(target: Target, fx: Fixtures, upstreamPort: number, offload: string): string[] {
  // --workers 1: the liveness, descriptor and RSS checks watch one process.
  const common = ['--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--offload', offload, '--idle-timeout', '20s', '--workers', '1'];
  if (target === 'serve') return ['serve', ...common, '--root', fx.root, '--headers-timeout', '10s'];
  if (target === 'proxy')
    // --max-fails 0: the origin closing after a 400 must not take it out of rotation.
    return ['proxy', ...common, '--to', `http://127.0.0.1:${upstreamPort}`, '--max-fails', '0', '--upstream-keepalive-timeout', '2s', '--headers-timeout', '10s'];
  return ['tcp', ...common, '--to', `127.0.0.1:${upstreamPort}`, '--max-fails', '0'];
}

/** How long descriptors get to come back after the last client left: past targetArgs' --idle-timeout 20s. */
const SETTLE_MS = 25_000;

async function settleFds(pid: number, bound: number, timeoutMs: number): Promise<number> {
  const end = Date.now() + timeoutMs;
  let n = fdsBeyondKept(pid) ?? 0;
  while (n > bound && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 100));
    n = fdsBeyondKept(pid) ?? n;
  }
  return n;
}

/** One target, start to finish. */
export async function runTarget(o: RunOptions): Promise<TargetReport> {
  const procs = o.procs ?? 1;
  const timing: Timing = { quietMs: o.timing?.quietMs ?? 60, longMs: o.timing?.longMs ?? 3000 };
  const keepPerKind = o.keepPerKind ?? 20;
  const findings: Finding[] = [];
  const counts: Record<string, number> = {};
  const report = (f: Finding): void => {
    const key = f.kind;
    counts[key] = (counts[key] ?? 0) + 1;
    if (counts[key]! <= keepPerKind) {
      findings.push(f);
      o.log?.(formatFinding(f));
    }
  };
  const fx = await makeFixtures({});
  writeServeRoot(fx.root);
  let origin: RecordingOrigin | EchoOrigin | null = null;
  let aludel: AludelChild | null = null;
  let stopAll = (): void => undefined;
  try {
    if (o.target === 'proxy') {
      const judge = new OriginJudge('proxy', o.seed, report);
      origin = await startRecordingOrigin((r) => judge.onRequest(r));
    } else if (o.target === 'tcp') origin = await startEchoOrigin();
    aludel = await startAludelChild(targetArgs(o.target, fx, origin?.port ?? 0, o.offload ?? 'auto'));
    const a = aludel;
    let crashed = false;
    let stopping = false;
    stopAll = () => (stopping = true);
    void a.exited.then(({ code, signal }) => {
      if (stopping) return;
      crashed = true;
      report({ kind: 'crash', target: o.target, seed: o.seed, index: null, detail: `aludel exited (${code ?? signal}) mid-run; last lines:\n${a.tail()}` });
    });
    // Warm-up: the first connection initialises what stays for the process's life.
    const warm = await probe(o.target, a.port, 999_999_999, 10_000);
    if (warm) throw new Error(`warm-up probe failed: ${warm}`);
    await new Promise((r) => setTimeout(r, 200));
    const sampler = new ProcSampler(a.pid);
    const startKinds = fdKinds(a.pid);
    const started = Date.now();
    const drive: Omit<DriveOptions, 'procIndex'> = {
      target: o.target,
      port: a.port,
      seed: o.seed,
      from: o.from ?? 0,
      count: o.cases,
      procs,
      lanes: o.lanes ?? 16,
      probeEvery: o.probeEvery ?? 500,
      timing,
      only: o.only,
    };
    const done = new Array<number>(procs).fill(0);
    let lastLog = Date.now();
    const progress = (p: number, n: number): void => {
      done[p] = n;
      if (o.log && Date.now() - lastLog >= 5000) {
        lastLog = Date.now();
        const total = done.reduce((x, y) => x + y, 0);
        const s = (Date.now() - started) / 1000;
        o.log(`[${o.target}] ${total}/${o.only?.length ?? o.cases} cases, ${(total / s).toFixed(0)} cases/s, fds ${sampler.fds.end}, rss ${(sampler.rss.end / 1024).toFixed(1)} MiB`);
      }
    };
    // SIGUSR2 ends a long run early but cleanly: the cases under way finish, then the report as usual.
    let stopRequested = false;
    const stopWorkers: Array<() => void> = [];
    const onStop = (): void => {
      stopRequested = true;
      o.log?.(`[${o.target}] SIGUSR2: stopping after the cases under way`);
      for (const f of stopWorkers) f();
    };
    process.on('SIGUSR2', onStop);
    const results: DriveResult[] =
      procs === 1
        ? [await driveCases({ ...drive, procIndex: 0 }, { onFinding: report, onProgress: (n) => progress(0, n), aborted: () => crashed || stopRequested })]
        : await Promise.all(Array.from({ length: procs }, (_, p) => runWorker({ ...drive, procIndex: p }, report, (n) => progress(p, n), stopWorkers)));
    process.off('SIGUSR2', onStop);
    const seconds = (Date.now() - started) / 1000;
    const total = results.reduce((x, r) => x + r.cases, 0);
    // Clients are gone; pooled upstream connections are let go by closing them from the origin side.
    if (origin && 'dropConnections' in origin) origin.dropConnections();
    const fdMargin = o.fdMargin ?? 3;
    // A connection whose client vanished mid-request is closed at the latest by the headers (10 s)
    // or idle (20 s) timeout of targetArgs: a descriptor still open 25 s after the last client is leaked.
    // Back to the start exactly, given the whole time a vanished client's connection may take
    // (an earlier version stopped waiting as soon as the count was within the margin, and so
    // reported as "leaked" a connection its idle timeout was about to close). Past the margin
    // it is a finding; within it, the count says how many stayed.
    const settled = crashed ? 0 : await settleFds(a.pid, sampler.fds.start, SETTLE_MS);
    sampler.stop();
    if (!crashed && settled > sampler.fds.start + fdMargin)
      report({ kind: 'fd-leak', target: o.target, seed: o.seed, index: null, detail: `${settled} descriptors open ${SETTLE_MS / 1000} s after the last client left, ${sampler.fds.start} at the start (margin ${fdMargin}); now ${JSON.stringify(fdKinds(a.pid))}, at the start ${JSON.stringify(startKinds)}` });
    const growth = (sampler.rss.peak - sampler.rss.start) / 1024;
    const bound = o.rssGrowthMiB ?? DEFAULT_RSS_GROWTH_MIB;
    if (growth > bound) report({ kind: 'rss', target: o.target, seed: o.seed, index: null, detail: `RSS peaked ${growth.toFixed(1)} MiB above its start (${(sampler.rss.start / 1024).toFixed(1)} MiB), bound ${bound} MiB` });
    const sent = results.reduce((x, r) => x + r.bytesSent, 0);
    if (o.target === 'tcp' && origin && !counts['tcp-echo'] && !crashed) {
      const got = (origin as EchoOrigin).counts.bytes;
      // The warm-up probe's bytes arrive too; tcp probes are "probe N\r\n".
      const probeBytes = results.reduce((x, r) => x + r.probes, 0);
      if (got < sent || got > sent + 64 * (probeBytes + 1)) report({ kind: 'tcp-bytes', target: 'tcp', seed: o.seed, index: null, detail: `echo upstream received ${got} bytes, clients sent ${sent} (+ probes)` });
    }
    const levels = { ...a.levels };
    return {
      target: o.target,
      seed: o.seed,
      cases: total,
      seconds,
      casesPerSecond: total / seconds,
      handshakes: results.reduce((x, r) => x + r.handshakes, 0),
      probes: results.reduce((x, r) => x + r.probes, 0),
      crashes: counts.crash ?? 0,
      fds: { ...sampler.fds, settled, leaked: Math.max(0, settled - sampler.fds.start) },
      rssKiB: sampler.rss,
      findings,
      counts,
      origin: origin ? { ...origin.counts } : undefined,
      logLevels: levels,
      logTail: a.tail(),
    };
  } finally {
    stopAll();
    await aludel?.stop();
    await origin?.stop();
    fx.cleanup();
  }
}

/** One client process (worker.js) running driveCases; its findings and progress come back by IPC. */
function runWorker(o: DriveOptions, onFinding: (f: Finding) => void, onProgress: (n: number) => void, stops: Array<() => void>): Promise<DriveResult> {
  return new Promise((resolve, reject) => {
    const child = reapOnExit(fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    stops.push(() => child.connected && child.send({ type: 'stop' }));
    let result: DriveResult | null = null;
    child.on('message', (m: { type: string; finding?: Finding; cases?: number; result?: DriveResult }) => {
      if (m.type === 'finding') onFinding(m.finding!);
      else if (m.type === 'progress') onProgress(m.cases!);
      else if (m.type === 'done') result = m.result!;
    });
    child.once('exit', (code) => (result ? resolve(result) : reject(new Error(`fuzz client process ${o.procIndex} exited (${code}) without a result`))));
    child.send({ type: 'start', options: o });
  });
}

export function formatFinding(f: Finding): string {
  const where = f.index === null ? '' : ` case=${f.index}`;
  const lines = [`FINDING ${f.kind} target=${f.target} seed=${f.seed}${where}`, `  ${f.detail}`];
  if (f.bytes !== undefined) lines.push(`  case bytes: "${f.bytes}"`);
  if (f.index !== null) lines.push(`  replay: npm run fuzz -- --target ${f.target} --seed ${f.seed} --replay ${f.index}`);
  return lines.join('\n');
}

export function formatReport(r: TargetReport): string {
  const mib = (k: number): string => `${(k / 1024).toFixed(1)} MiB`;
  const kinds = Object.entries(r.counts)
    .map(([k, n]) => `${k}: ${n}`)
    .join(', ');
  return [
    `== ${r.target}: ${r.cases} cases in ${r.seconds.toFixed(1)} s = ${r.casesPerSecond.toFixed(0)} cases/s (seed ${r.seed}; ${r.handshakes} handshakes, ${r.probes} probes)`,
    `   crashes ${r.crashes}; fds start ${r.fds.start} peak ${r.fds.peak} end ${r.fds.settled} (leaked ${r.fds.leaked}); RSS start ${mib(r.rssKiB.start)} peak ${mib(r.rssKiB.peak)} end ${mib(r.rssKiB.end)}`,
    `   findings: ${kinds || 'none'}`,
    r.origin ? `   origin: ${JSON.stringify(r.origin)}` : '',
    `   aludel log lines: ${JSON.stringify(r.logLevels)}`,
  ]
    .filter(Boolean)
    .join('\n');
}

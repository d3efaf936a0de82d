/**
 * `npm run bench -- --copy-path`: the proxy's copy path (issue 15), the one
 * comparison the main run makes once per quick point, repeated: `aludel
 * proxy --offload userspace` next to nginx `proxy_pass` (userspace TLS, one
 * process each) in front of the same nginx origin, a 10 MiB file, wrk at 8
 * connections (and 1), TLS 1.3 TLS_AES_128_GCM_SHA256. The fronts take
 * turns within each round (order reversed every other round); each point
 * gives throughput and the front's CPU per GB (utime + stime from
 * /proc/<pid>/stat), and the answer is the median of the same-round ratios
 * aludel/nginx with their min-max.
 *
 * `--baseline DIR` adds a second Aludel, another checkout's build
 * (DIR's CLI, servers.ts cliIn, with its DIR/build addon), to the same turns:
 * before and after a change, in one run, each against the same nginx points.
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { describeEnvironment, type Environment } from './environment.js';
import { setUpClientNet } from './netns.js';
import { makeCert } from './phase.js';
import { clockTicksPerSecond, cpuSeconds } from './proc-cpu.js';
import { median } from './ratios.js';
import { fmt } from './report.js';
import { cliIn, startAludel, startNginx, type Server } from './servers.js';
import { parseWrkOutput, WRK_SCRIPT } from './wrk-output.js';

const run = promisify(execFile);
const FILE = 'ten-mib.bin';
const FILE_BYTES = 10 * 1024 * 1024;

export interface CopyPathOptions {
  rounds: number;
  seconds: number;
  connections: number[];
  loopback: boolean;
  /** Another checkout whose build runs as `aludel-baseline`. */
  baseline: string | null;
  progress(done: number, total: number, label: string): void;
}

export interface CopyPathPoint {
  round: number;
  front: string;
  connections: number;
  bytesPerSec: number;
  cpuS: number;
  cpuPerGB: number | null;
  errors: number;
}

export interface CopyPathRatio {
  front: string;
  connections: number;
  what: 'throughput' | 'CPU/GB';
  ratios: number[];
  median: number | null;
}

export interface CopyPathResult {
  command?: string;
  environment: Environment;
  seconds: number;
  points: CopyPathPoint[];
  ratios: CopyPathRatio[];
}

export async function runCopyPath(o: CopyPathOptions): Promise<CopyPathResult> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-copy-path-'));
  const net = await setUpClientNet(!o.loopback);
  const environment = describeEnvironment(false, net.note, 'not measured', false);
  const stops: Array<() => Promise<void>> = [];
  try {
    const root = path.join(dir, 'root');
    await fs.promises.mkdir(root);
    await fs.promises.writeFile(path.join(root, FILE), crypto.randomBytes(FILE_BYTES));
    const script = path.join(dir, 'wrk.lua');
    await fs.promises.writeFile(script, WRK_SCRIPT);
    const tls = await makeCert(dir);
    const host = net.serverAddress;
    const sub = async (name: string): Promise<string> => fs.promises.mkdir(path.join(dir, name)).then(() => path.join(dir, name));
    const origin = await startNginx('origin', { dir: await sub('origin'), host, root, role: { kind: 'origin' } });
    stops.push(() => origin.stop());
    const fronts: Array<[string, Server]> = [];
    const start = async (name: string, s: Promise<Server>): Promise<void> => {
      const server = await s;
      stops.push(() => server.stop());
      fronts.push([name, server]);
    };
    await start('nginx-proxy', startNginx('nginx-proxy', { dir: await sub('nginx-proxy'), host, root, role: { kind: 'proxy', originPort: origin.port }, tls: { ...tls, offload: 'userspace' } }));
    await start('aludel-proxy', startAludel('aludel-proxy', { host, tls, offload: 'userspace', originPort: origin.port }));
    if (o.baseline) await start('aludel-baseline', startAludel('aludel-baseline', { host, tls, offload: 'userspace', originPort: origin.port, cli: cliIn(path.resolve(o.baseline)) }));
    const hz = clockTicksPerSecond();
    const points: CopyPathPoint[] = [];
    const total = o.rounds * o.connections.length * fronts.length;
    for (let round = 0; round < o.rounds; round++) {
      for (const conns of o.connections) {
        const order = round % 2 === 0 ? fronts : [...fronts].reverse();
        for (const [name, s] of order) {
          o.progress(points.length, total, `${name} c${conns} #${round + 1}`);
          const w0 = net.wireBytes();
          const c0 = cpuSeconds([s.pid], hz);
          const { stdout } = await run(net.prefix[0] ?? 'wrk', [...net.prefix.slice(1), ...(net.prefix.length ? ['wrk'] : []), '-t', String(Math.min(conns, 2)), '-c', String(conns), '-d', `${o.seconds}s`, '--timeout', '60s', '-s', script, `https://${host}:${s.port}/${FILE}`], { maxBuffer: 1 << 24 });
          const cpuS = cpuSeconds([s.pid], hz) - c0;
          const w1 = net.wireBytes();
          const r = parseWrkOutput(stdout);
          const bytes = w0 && w1 ? w1.tx - w0.tx : r.bytes;
          points.push({ round, front: name, connections: conns, bytesPerSec: bytes / r.durationS, cpuS, cpuPerGB: bytes > 0 ? cpuS / (bytes / 1e9) : null, errors: r.errors });
        }
      }
    }
    o.progress(total, total, 'done');
    environment.loadAverageAfter = os.loadavg();
    return { environment, seconds: o.seconds, points, ratios: sameRoundRatios(points, fronts.map(([n]) => n).filter((n) => n !== 'nginx-proxy'), o.connections) };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    await net.close();
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}

/** Per Aludel front and connection count: throughput and CPU/GB over nginx-proxy's in the same round. */
export function sameRoundRatios(points: CopyPathPoint[], fronts: string[], connections: number[]): CopyPathRatio[] {
  const out: CopyPathRatio[] = [];
  for (const front of fronts) {
    for (const conns of connections) {
      const pairs = points
        .filter((p) => p.front === front && p.connections === conns)
        .map((a) => [a, points.find((n) => n.front === 'nginx-proxy' && n.connections === conns && n.round === a.round)] as const)
        .filter((pair): pair is readonly [CopyPathPoint, CopyPathPoint] => pair[1] !== undefined);
      const throughput = pairs.filter(([, n]) => n.bytesPerSec > 0).map(([a, n]) => a.bytesPerSec / n.bytesPerSec);
      const cpu = pairs.filter(([a, n]) => a.cpuPerGB !== null && n.cpuPerGB !== null && n.cpuPerGB > 0).map(([a, n]) => a.cpuPerGB! / n.cpuPerGB!);
      out.push({ front, connections: conns, what: 'throughput', ratios: throughput, median: median(throughput) });
      out.push({ front, connections: conns, what: 'CPU/GB', ratios: cpu, median: median(cpu) });
    }
  }
  return out;
}

/** The ratios (median, min-max, each round's), then every point's absolute figures. */
export function copyPathTable(res: CopyPathResult): string {
  const head = ['| front / nginx-proxy | conns | ratio | median | min-max | rounds |', '|---|---|---|---|---|---|'];
  const rows = res.ratios.map((r) => `| ${r.front} | ${r.connections} | ${r.what} | ${fmt(r.median)} | ${r.ratios.length ? `${fmt(Math.min(...r.ratios))}-${fmt(Math.max(...r.ratios))}` : 'n/a'} | ${r.ratios.map((x) => fmt(x)).join(', ')} |`);
  const pts = ['| round | front | conns | MB/s | CPU-s | CPU-s/GB | errors |', '|---|---|---|---|---|---|---|'];
  const prow = res.points.map((p) => `| ${p.round + 1} | ${p.front} | ${p.connections} | ${fmt(p.bytesPerSec / 1e6)} | ${fmt(p.cpuS)} | ${fmt(p.cpuPerGB)} | ${p.errors} |`);
  return [...head, ...rows, '', `${res.seconds} s points, 10 MiB file, wrk, userspace TLS 1.3 (TLS_AES_128_GCM_SHA256), ${res.environment.network}.`, '', ...pts, ...prow].join('\n');
}

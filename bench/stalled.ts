/**
 * `npm run bench -- --stalled`: what a client that stops reading costs.
 * 1,000 TLS downloads of a 64 MiB body each take their first bytes and stop
 * reading; the server's RSS growth divided by the connections is its memory
 * per stalled download. Aludel and nginx side by side, fronting the same
 * nginx origin (proxy) and the same file (serve), started fresh for every
 * point (RSS does not shrink back after frees, so points must not share a
 * process), taking turns within each repeat (A, B, then B, A), and reported
 * as the median of the same-repeat ratios aludel/nginx with their spread.
 *
 * Only the server process counts: the kernel's socket buffers (the client's
 * receive queue, the server's send queue) are not RSS. Loopback only, on this
 * host's CPU (userspace TLS where the kernel has no kTLS); bounded in count
 * (connections x repeats) and time (each connection must stall within 30 s,
 * RSS must settle within 15 s).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describeEnvironment, type Environment } from './environment.js';
import { makeCert } from './phase.js';
import { median } from './ratios.js';
import { fmt } from './report.js';
import { startAludel, startAludelServe, startNginx, type BenchSetup, type Offload, type Server } from './servers.js';
import { openStalled } from './stalled-clients.js';
import { readProcMemory, settleRss } from './proc-memory.js';

const MiB = 1024 * 1024;
const HOST = '127.0.0.1';
const FILE = 'big.bin';

export type StalledFront = 'proxy' | 'serve';
export type StalledServer = 'aludel' | 'nginx';

export interface StalledPoint {
  repeat: number;
  front: StalledFront;
  server: StalledServer;
  /** Connections that stalled (got their first bytes) / that failed to. */
  connections: number;
  failed: number;
  errors: string[];
  rssBeforeKiB: number;
  rssAfterKiB: number;
  /** RssAnon growth: heap and malloc memory, without file-backed pages. */
  anonDeltaKiB: number;
  kibPerConnection: number;
  settledS: number;
}

export interface StalledRow {
  front: StalledFront;
  aludelKiBMedian: number | null;
  nginxKiBMedian: number | null;
  /** aludel/nginx KiB per connection, one per repeat. */
  ratios: number[];
  ratioMedian: number | null;
  ratioMin: number | null;
  ratioMax: number | null;
}

export interface StalledResult {
  command?: string;
  environment: Environment;
  offload: Offload;
  fileBytes: number;
  connectionsPerPoint: number;
  repeats: number;
  points: StalledPoint[];
  rows: StalledRow[];
}

export interface StalledRunOptions {
  connections: number;
  repeats: number;
  progress(done: number, total: number, label: string): void;
}

type Bench = BenchSetup;

async function startServer(b: Bench, front: StalledFront, server: StalledServer, n: number): Promise<Server> {
  const name = `${server}-${front}-${n}`;
  const dir = path.join(b.dir, name);
  await fs.promises.mkdir(dir, { recursive: true });
  if (server === 'aludel') {
    return front === 'proxy'
      ? startAludel(name, { host: HOST, tls: b.tls, offload: b.offload, originPort: b.origin.port })
      : startAludelServe(name, { host: HOST, tls: b.tls, offload: b.offload, root: b.root });
  }
  const role = front === 'proxy' ? { kind: 'proxy' as const, originPort: b.origin.port } : { kind: 'direct' as const };
  return startNginx(name, { dir, host: HOST, root: b.root, role, tls: { ...b.tls, offload: b.offload }, noTempFile: true });
}

async function measure(b: Bench, o: StalledRunOptions, repeat: number, front: StalledFront, server: StalledServer): Promise<StalledPoint> {
  const s = await startServer(b, front, server, repeat);
  try {
    const target = { host: HOST, port: s.port, path: `/${FILE}` };
    // Warm-up: the code paths, pools and first allocations are start-up costs, not per connection.
    const warm = await openStalled({ ...target, connections: 16 });
    await warm.close();
    await settleRss(() => readProcMemory(s.pid).rssKiB);
    const before = readProcMemory(s.pid);
    const clients = await openStalled({ ...target, connections: o.connections });
    try {
      const settledS = await settleRss(() => readProcMemory(s.pid).rssKiB);
      const after = readProcMemory(s.pid);
      const n = Math.max(clients.stalled, 1);
      return {
        repeat, front, server, connections: clients.stalled, failed: clients.failed, errors: clients.errors,
        rssBeforeKiB: before.rssKiB, rssAfterKiB: after.rssKiB, anonDeltaKiB: after.anonKiB - before.anonKiB,
        kibPerConnection: (after.rssKiB - before.rssKiB) / n, settledS,
      };
    } finally {
      await clients.close();
    }
  } finally {
    await s.stop();
  }
}

function rows(points: StalledPoint[], repeats: number): StalledRow[] {
  return (['proxy', 'serve'] as const).map((front) => {
    const of = (server: StalledServer): StalledPoint[] => points.filter((p) => p.front === front && p.server === server);
    const ratios: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const a = of('aludel').find((p) => p.repeat === r);
      const n = of('nginx').find((p) => p.repeat === r);
      if (a && n && n.kibPerConnection > 0) ratios.push(a.kibPerConnection / n.kibPerConnection);
    }
    return {
      front,
      aludelKiBMedian: median(of('aludel').map((p) => p.kibPerConnection)),
      nginxKiBMedian: median(of('nginx').map((p) => p.kibPerConnection)),
      ratios,
      ratioMedian: median(ratios),
      ratioMin: ratios.length ? Math.min(...ratios) : null,
      ratioMax: ratios.length ? Math.max(...ratios) : null,
    };
  });
}

export async function runStalled(o: StalledRunOptions): Promise<StalledResult> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-stalled-'));
  const offload: Offload = fs.existsSync('/proc/net/tls_stat') ? 'kernel' : 'userspace';
  const environment = describeEnvironment(false, 'loopback', 'not measured', false);
  const fileBytes = 64 * MiB;
  try {
    const root = path.join(dir, 'root');
    await fs.promises.mkdir(root);
    const fh = await fs.promises.open(path.join(root, FILE), 'w');
    const block = crypto.randomBytes(MiB);
    for (let done = 0; done < fileBytes; done += MiB) await fh.write(block);
    await fh.close();
    const tls = await makeCert(dir);
    await fs.promises.mkdir(path.join(dir, 'origin'));
    const origin = await startNginx('origin', { dir: path.join(dir, 'origin'), host: HOST, root, role: { kind: 'origin' } });
    const b: Bench = { dir, root, tls, origin, offload };
    const points: StalledPoint[] = [];
    const total = o.repeats * 4;
    try {
      for (let r = 0; r < o.repeats; r++) {
        // Turns: A, B in even repeats, B, A in odd ones, so drift over the run hits both alike.
        const order: StalledServer[] = r % 2 === 0 ? ['aludel', 'nginx'] : ['nginx', 'aludel'];
        for (const front of ['proxy', 'serve'] as const) {
          for (const server of order) {
            o.progress(points.length, total, `${server} ${front} #${r + 1}`);
            points.push(await measure(b, o, r, front, server));
          }
        }
      }
      o.progress(total, total, 'done');
    } finally {
      await origin.stop();
    }
    environment.loadAverageAfter = os.loadavg();
    return { environment, offload, fileBytes, connectionsPerPoint: o.connections, repeats: o.repeats, points, rows: rows(points, o.repeats) };
  } finally {
    await fs.promises.rm(dir, { recursive: true, force: true });
  }
}

/** The summary: KiB per stalled download, medians, and the same-repeat ratios aludel/nginx. */
export function stalledTable(res: StalledResult): string {
  const head = ['| front | aludel KiB/conn (median) | nginx KiB/conn (median) | aludel/nginx (median of ratios) | spread (min–max) | repeats |', '|---|---|---|---|---|---|'];
  const body = res.rows.map((r) => `| ${r.front} | ${fmt(r.aludelKiBMedian)} | ${fmt(r.nginxKiBMedian)} | ${fmt(r.ratioMedian)} | ${fmt(r.ratioMin)}–${fmt(r.ratioMax)} | ${r.ratios.length} |`);
  const failed = res.points.reduce((n, p) => n + p.failed, 0);
  const note = `${res.connectionsPerPoint} stalled downloads of a ${res.fileBytes / MiB} MiB body per point, ${res.offload} TLS, loopback; ${failed} connection(s) failed to stall.`;
  return [...head, ...body, '', note].join('\n');
}

/** Every point, for results.json readers who want the raw numbers in the report. */
export function stalledPointsTable(res: StalledResult): string {
  const head = ['| repeat | front | server | stalled | failed | RSS before KiB | RSS after KiB | anon delta KiB | KiB/conn |', '|---|---|---|---|---|---|---|---|---|'];
  return [...head, ...res.points.map((p) => `| ${p.repeat + 1} | ${p.front} | ${p.server} | ${p.connections} | ${p.failed} | ${p.rssBeforeKiB} | ${p.rssAfterKiB} | ${p.anonDeltaKiB} | ${fmt(p.kibPerConnection)} |`)].join('\n');
}

/**
 * Where the CPU of a small request goes: `aludel serve`, nginx serving the
 * same 1 KiB file, and two floors on Aludel's own TLS listener
 * (bench/floor-responder.ts): `floor-http` (node's http.Server with a handler
 * that only answers) and `floor-raw` (no HTTP machinery at all). The gaps
 * between them are what node's HTTP/1.1 server costs and what serve's own
 * handler costs, per request, in one run.
 *
 * Points: keep-alive GETs of /one.bin (1 KiB) over 64 connections, the
 * fronts interleaved in each of ROUNDS rounds; CPU of each server's process
 * tree from /proc/<pid>/stat. Reported per round and as medians (min-max) of
 * same-round ratios to nginx. Userspace TLS 1.3 AES-128-GCM, one process each.
 *
 * The load is a fixed rate (h2load --rps: RATE requests/s in all, below what
 * each front can do), not wrk's closed loop. In a closed loop the slower
 * server is the bottleneck, the client sleeps between its answers, and each
 * response write pays the client's wakeup (on this host a paravirtual
 * irq-enable in sock_def_readable, a fifth of the samples): the slower server
 * is charged more per request for the same work. At a fixed rate every
 * front pays the same wakeups. LOOP=1 measures the closed loop instead
 * (`wrk -t2 -c64`), as the --workers bench does.
 *
 * FRONTS (aludel-serve,floor-http,floor-raw) picks the fronts beside nginx;
 * nginx-proxy and aludel-proxy add the proxies' per-request cost, each in
 * front of one plain nginx origin whose CPU neither figure counts;
 * nginx-cache (proxy_cache) and aludel-cache (`aludel proxy --cache`) the
 * caches' hits in front of it (the warm-up stores the file);
 * aludel-serve-base, aludel-proxy-base and aludel-cache-base run BASELINE=DIR's build (another
 * checkout, built) in the same rounds, for an A/B of a change.
 *
 * Environment: ROUNDS (3), SECS (5), RATE (6400), LOOP, OFFLOAD (userspace), FRONTS, BASELINE.
 *   npm run build:ts && node dist/bench/request-floor.js
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { clockTicksPerSecond, cpuSeconds } from './proc-cpu.js';
import { median } from './ratios.js';
import { cliIn, startAludel, startAludelServe, startFloor, startNginx, type Offload, type Server } from './servers.js';
import { parseH2loadRequests } from './workers.js';
import { parseWrkOutput, WRK_SCRIPT } from './wrk-output.js';

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SECS = Number(process.env.SECS ?? 5);
const offload = (process.env.OFFLOAD ?? 'userspace') as Offload;
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'request-floor-'));
const root = path.join(work, 'root');
fs.mkdirSync(root);
fs.writeFileSync(path.join(root, 'one.bin'), Buffer.alloc(1024, 0x61));
const script = path.join(work, 'wrk.lua');
fs.writeFileSync(script, WRK_SCRIPT);
const certFile = path.join(work, 'c.pem');
const keyFile = path.join(work, 'k.pem');
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=localhost', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
const tls = { certFile, keyFile };
const host = '127.0.0.1';

/** Every front this bench knows, started on demand: FRONTS picks some (nginx always runs, the ratios' base). */
const makers: Record<string, () => Promise<Server>> = {
  nginx: () => startNginx('nginx-direct', { dir: path.join(work, 'nginx'), host, root, role: { kind: 'direct' }, tls: { ...tls, offload } }),
  'aludel-serve': () => startAludelServe('serve', { host, tls, offload, root }),
  'floor-http': () => startFloor('http', { host, tls, offload }),
  'floor-raw': () => startFloor('raw', { host, tls, offload }),
  // The proxies' per-request cost, against one plain origin (nginx, its CPU counted in neither front's figure).
  'nginx-proxy': async () => startNginx('nginx-proxy', { dir: path.join(work, 'nginx-proxy'), host, root, role: { kind: 'proxy', originPort: (await origin()).port }, tls: { ...tls, offload } }),
  'aludel-proxy': async () => startAludel('proxy', { host, tls, offload, originPort: (await origin()).port }),
  // A/B: the same fronts from another built checkout (BASELINE=DIR), in the same rounds.
  'aludel-serve-base': () => startAludelServe('serve, baseline', { host, tls, offload, root, cli: baselineCli() }),
  'aludel-proxy-base': async () => startAludel('proxy, baseline', { host, tls, offload, originPort: (await origin()).port, cli: baselineCli() }),
  // The caches' hits: the origin answers each front's first request only (it marks everything cacheable).
  'nginx-cache': async () => startNginx('nginx-cache', { dir: path.join(work, 'nginx-cache'), host, root, role: { kind: 'cache', originPort: (await origin()).port }, tls: { ...tls, offload } }),
  'aludel-cache': async () => startAludel('proxy --cache', { host, tls, offload, originPort: (await origin()).port, cacheDir: path.join(work, 'aludel-cache') }),
  'aludel-cache-base': async () => startAludel('proxy --cache, baseline', { host, tls, offload, originPort: (await origin()).port, cacheDir: path.join(work, 'aludel-cache-base'), cli: baselineCli() }),
};
function baselineCli(): string {
  if (!process.env.BASELINE) throw new Error('the -base fronts need BASELINE=DIR, a built checkout');
  return cliIn(path.resolve(process.env.BASELINE));
}
let originServer: Promise<Server> | null = null;
function origin(): Promise<Server> {
  originServer ??= startNginx('nginx-origin', { dir: path.join(work, 'origin'), host, root, role: { kind: 'origin' } });
  return originServer;
}
const names = ['nginx', ...(process.env.FRONTS ?? 'aludel-serve,floor-http,floor-raw').split(',').filter((n) => n !== 'nginx')];
for (const n of names) if (!(n in makers)) throw new Error(`FRONTS: unknown front ${n} (known: ${Object.keys(makers).join(', ')})`);
const fronts: Array<[string, Server]> = [];
for (const n of names) fronts.push([n, await makers[n]!()]);

const RATE = Number(process.env.RATE ?? 6400);
const LOOP = process.env.LOOP === '1';

/** Requests answered in one point: wrk's closed loop, or h2load at RATE requests/s over 64 clients. */
function load(port: number): number {
  const url = `https://localhost:${port}/one.bin`;
  if (LOOP) {
    const r = parseWrkOutput(execFileSync('wrk', ['-t', '2', '-c', '64', '-d', `${SECS}s`, '--timeout', '10s', '-s', script, url], { encoding: 'utf8', maxBuffer: 1 << 20 }));
    if (r.errors > 0) throw new Error(`wrk on port ${port}: ${r.errors} errors`);
    return r.requests;
  }
  const r = parseH2loadRequests(execFileSync('h2load', ['--h1', '-c', '64', `--rps=${Math.max(1, Math.round(RATE / 64))}`, '-D', String(SECS), url], { encoding: 'utf8', maxBuffer: 1 << 20 }));
  if (r.succeeded !== r.done) throw new Error(`h2load on port ${port}: ${r.done - r.succeeded} of ${r.done} requests failed`);
  return r.succeeded;
}

function point(s: Server): { us: number; rps: number } {
  const hz = clockTicksPerSecond();
  const before = cpuSeconds(s.pids(), hz);
  const started = process.hrtime.bigint();
  const requests = load(s.port);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = cpuSeconds(s.pids(), hz) - before;
  if (requests === 0) throw new Error(`no request answered on port ${s.port}`);
  return { us: (cpu * 1e6) / requests, rps: requests / seconds };
}

// One short warm-up point each (JIT, caches), not counted.
for (const [, s] of fronts) execFileSync('wrk', ['-t', '1', '-c', '8', '-d', '1s', `https://localhost:${s.port}/one.bin`], { stdio: 'ignore' });
const rows: Record<string, Array<{ us: number; rps: number }>> = Object.fromEntries(fronts.map(([n]) => [n, []]));
for (let r = 0; r < ROUNDS; r++) {
  // Each round in another order, so that no front always follows the same one.
  const order = r % 2 === 0 ? fronts : [...fronts].reverse();
  for (const [name, s] of order) rows[name]!.push(point(s));
}
const fmt = (xs: number[]): string => `${median(xs)!.toFixed(3)} (${Math.min(...xs).toFixed(3)}-${Math.max(...xs).toFixed(3)})`;
console.log(`request-floor: 1 KiB keep-alive GETs, 64 connections, ${LOOP ? 'wrk -t2 closed loop' : `h2load at ${RATE} req/s`}, ${SECS} s points, ${offload} TLS 1.3, ${ROUNDS} interleaved rounds`);
console.log('front          CPU us/request per round        req/s per round          CPU/request vs nginx, median (min-max)');
for (const [name] of fronts) {
  const xs = rows[name]!;
  const ratios = xs.map((x, i) => x.us / rows.nginx![i]!.us);
  console.log(`${name.padEnd(14)} ${xs.map((x) => x.us.toFixed(1)).join(' ').padEnd(31)} ${xs.map((x) => x.rps.toFixed(0)).join(' ').padEnd(24)} ${fmt(ratios)}`);
}
// An A/B (BASELINE): this build's CPU per request over the baseline's, same round.
for (const [name] of fronts) {
  const base = rows[`${name}-base`];
  if (base === undefined) continue;
  console.log(`${name} / ${name}-base, CPU per request: ${fmt(rows[name]!.map((x, i) => x.us / base[i]!.us))}`);
}
// A proxy beside its nginx peer (same role), same round: proxy vs proxy, cache vs proxy_cache.
for (const [name, peer] of [['aludel-proxy', 'nginx-proxy'], ['aludel-proxy-base', 'nginx-proxy'], ['aludel-cache', 'nginx-cache'], ['aludel-cache-base', 'nginx-cache']] as const) {
  const mine = rows[name];
  const theirs = rows[peer];
  if (mine === undefined || theirs === undefined) continue;
  console.log(`${name} / ${peer}, CPU per request: ${fmt(mine.map((x, i) => x.us / theirs[i]!.us))}`);
}
for (const [, s] of fronts) await s.stop();
// (read through a cast: TypeScript cannot see origin() assign it)
const started = originServer as Promise<Server> | null;
if (started !== null) await (await started).stop();
fs.rmSync(work, { recursive: true, force: true });

/**
 * What one full TLS handshake (a new connection, one 1 KiB request) costs a
 * front, counted rather than timed, so that an A/B holds up on a shared host
 * whose speed drifts (docs/benchmarks.md): instructions under callgrind and
 * system calls under strace.
 *
 * - instructions: the front runs under `valgrind --tool=callgrind
 *   --separate-threads=yes`; after WARMUP handshakes, each of ROUNDS rounds
 *   zeroes the counters (callgrind_control -z), makes CONNECTIONS handshakes
 *   (h2load --h1 -n 20 -c 20, every client its own SSL object, nothing
 *   resumed) and dumps them. Reported per handshake: the main thread (the
 *   event loop: OpenSSL, node, our code), all threads (plus V8's compiler
 *   and GC helpers, which under valgrind keep recompiling, so noisier), and
 *   an idle dump of the same length subtracted from the main thread's figure.
 *   SSL_do_handshake's inclusive share is the floor both fronts share.
 * - system calls: the front runs natively; strace -c -f is attached for
 *   CONNECTIONS handshakes after the warm-up; calls and failures per
 *   connection by name.
 *
 * FRONTS: aludel-serve, aludel-proxy (in front of a plain nginx origin, its
 * cost not counted), nginx (serving, worker_processes 1, no master), nginx-proxy, and
 * aludel-serve-base / aludel-proxy-base from BASELINE=DIR (a built checkout).
 * Userspace TLS 1.3 AES-128-GCM, ECDSA P-256, one process each.
 *
 *   npm run build:ts && FRONTS=nginx,aludel-serve node dist/bench/handshake-cost.js
 *
 * Environment: FRONTS (nginx,aludel-serve), CONNECTIONS (200), ROUNDS (3), WARMUP (800), BASELINE.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { median } from './ratios.js';
import { startAludel, startAludelServe, startNginx, type Server } from './servers.js';

const CONNECTIONS = Number(process.env.CONNECTIONS ?? 200);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const WARMUP = Number(process.env.WARMUP ?? 800);
const BATCH = 20;
const host = '127.0.0.1';
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'handshake-cost-'));
const root = path.join(work, 'root');
fs.mkdirSync(root);
fs.writeFileSync(path.join(root, 'one.bin'), Buffer.alloc(1024, 0x61));
const certFile = path.join(work, 'c.pem');
const keyFile = path.join(work, 'k.pem');
execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=localhost', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
const tls = { certFile, keyFile };
const offload = 'userspace' as const;

let originServer: Promise<Server> | null = null;
function origin(): Promise<Server> {
  originServer ??= startNginx('nginx-origin', { dir: path.join(work, 'origin'), host, root, role: { kind: 'origin' } });
  return originServer;
}
function baselineCli(): string {
  if (!process.env.BASELINE) throw new Error('the -base fronts need BASELINE=DIR, a built checkout');
  return path.join(path.resolve(process.env.BASELINE), 'dist', 'src', 'cli', 'main.js');
}

type Maker = (wrap: readonly string[]) => Promise<Server>;
let dirs = 0;
const makers: Record<string, Maker> = {
  nginx: (wrap) => startNginx('nginx-direct', { dir: path.join(work, `nginx-${dirs++}`), host, root, role: { kind: 'direct' }, tls: { ...tls, offload }, wrap }),
  'nginx-proxy': async (wrap) => startNginx('nginx-proxy', { dir: path.join(work, `nginx-${dirs++}`), host, root, role: { kind: 'proxy', originPort: (await origin()).port }, tls: { ...tls, offload }, wrap }),
  'aludel-serve': (wrap) => startAludelServe('serve', { host, tls, offload, root, wrap }),
  'aludel-proxy': async (wrap) => startAludel('proxy', { host, tls, offload, originPort: (await origin()).port, wrap }),
  'aludel-serve-base': (wrap) => startAludelServe('serve, baseline', { host, tls, offload, root, cli: baselineCli(), wrap }),
  'aludel-proxy-base': async (wrap) => startAludel('proxy, baseline', { host, tls, offload, originPort: (await origin()).port, cli: baselineCli(), wrap }),
};

/** `count` full handshakes, one request each, BATCH at a time. */
function handshakes(port: number, count: number): void {
  for (let done = 0; done < count; done += BATCH) {
    const out = execFileSync('h2load', ['--h1', '-n', String(BATCH), '-c', String(BATCH), `https://localhost:${port}/one.bin`], { encoding: 'utf8' });
    if (!out.includes(`${BATCH} succeeded`)) throw new Error(`h2load on port ${port}:\n${out}`);
  }
}

/** Instructions in the callgrind dumps named `cg.<pid>.<n>-<thread>` made since `seen`: [main thread, all threads]. */
function dumped(dir: string, pid: number, seen: Set<string>): [number, number] {
  let main = 0;
  let all = 0;
  for (const f of fs.readdirSync(dir)) {
    if (!f.startsWith(`cg.${pid}.`) || seen.has(f)) continue;
    seen.add(f);
    const total = Number(/^totals: (\d+)/m.exec(fs.readFileSync(path.join(dir, f), 'utf8'))?.[1] ?? 0);
    all += total;
    if (f.endsWith('-01')) main += total;
  }
  return [main, all];
}

interface Instructions { main: number[]; all: number[]; idle: number; handshake: number | null }

/** Per-handshake instruction counts under callgrind, ROUNDS rounds after the warm-up. */
async function instructions(name: string): Promise<Instructions> {
  const dir = fs.mkdtempSync(path.join(work, 'cg-'));
  const s = await makers[name]!(['valgrind', '--tool=callgrind', '--separate-threads=yes', '--smc-check=all-non-file', `--callgrind-out-file=${dir}/cg.%p`]);
  const seen = new Set<string>();
  const ctl = (...args: string[]): void => void execFileSync('callgrind_control', [...args, String(s.pid)], { stdio: 'ignore' });
  try {
    handshakes(s.port, WARMUP);
    const main: number[] = [];
    const all: number[] = [];
    let ms = 0;
    for (let r = 0; r < ROUNDS; r++) {
      ctl('-z');
      const t = performance.now();
      handshakes(s.port, CONNECTIONS);
      ms += performance.now() - t;
      ctl('-d', `round${r}`);
      const [m, a] = dumped(dir, s.pid, seen);
      main.push(m / CONNECTIONS);
      all.push(a / CONNECTIONS);
    }
    // The same time with no connection: what the idle process spends (timers, GC), per handshake's share.
    ctl('-z');
    await new Promise((resolve) => setTimeout(resolve, ms / ROUNDS));
    ctl('-d', 'idle');
    const idle = dumped(dir, s.pid, seen)[0] / CONNECTIONS;
    return { main, all, idle, handshake: sslDoHandshake(dir, s.pid) };
  } finally {
    await s.stop();
  }
}

/** SSL_do_handshake's inclusive instructions per handshake in the last round's main-thread dump (callgrind's call records), or null if not found. */
function sslDoHandshake(dir: string, pid: number): number | null {
  const f = fs.readdirSync(dir).filter((n) => n.startsWith(`cg.${pid}.`) && n.endsWith('-01')).sort((a, b) => Number(a.split('.')[2]!.split('-')[0]) - Number(b.split('.')[2]!.split('-')[0]));
  const last = f.at(-2); // the last round (the idle dump is the last file)
  if (last === undefined) return null;
  const text = fs.readFileSync(path.join(dir, last), 'utf8');
  // With name compression a function is named once as "(id) name", then by "(id)" alone.
  const id = /^c?fn=\((\d+)\) SSL_do_handshake$/m.exec(text)?.[1];
  if (id === undefined) return null;
  let sum = 0;
  const re = new RegExp(`^cfn=\\(${id}\\)(?: SSL_do_handshake)?\\ncalls=[^\\n]*\\n\\S+ (\\d+)`, 'gm');
  for (let m = re.exec(text); m !== null; m = re.exec(text)) sum += Number(m[1]);
  return sum / CONNECTIONS;
}

/** System calls per connection natively (strace -c -f attached after the warm-up): name -> [calls, errors]. */
async function syscalls(name: string): Promise<Map<string, [number, number]>> {
  const s = await makers[name]!([]);
  const out = path.join(work, `strace-${name}`);
  try {
    handshakes(s.port, 200);
    const pids = s.pids();
    const tracer = spawn('strace', ['-c', '-f', '-o', out, ...pids.flatMap((p) => ['-p', String(p)])], { stdio: 'ignore' });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    handshakes(s.port, CONNECTIONS);
    const gone = new Promise((resolve) => tracer.once('exit', resolve));
    tracer.kill('SIGINT');
    await gone;
  } finally {
    await s.stop();
  }
  const calls = new Map<string, [number, number]>();
  for (const line of fs.readFileSync(out, 'utf8').split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*(\w+)$/.exec(line);
    if (m && m[3] !== 'total') calls.set(m[3]!, [Number(m[1]) / CONNECTIONS, Number(m[2] ?? 0) / CONNECTIONS]);
  }
  return calls;
}

const names = (process.env.FRONTS ?? 'nginx,aludel-serve').split(',');
for (const n of names) if (!(n in makers)) throw new Error(`FRONTS: unknown front ${n} (known: ${Object.keys(makers).join(', ')})`);
const k = (x: number): string => `${(x / 1000).toFixed(0)}k`;
console.log(`handshake-cost: ${CONNECTIONS} full TLS 1.3 handshakes per round (h2load --h1 -n ${BATCH} -c ${BATCH}, one 1 KiB GET each), ${ROUNDS} rounds after ${WARMUP}, userspace TLS, one process each`);
console.log('front               instructions/handshake: main thread per round (median, minus idle)   all threads (median)   SSL_do_handshake');
for (const n of names) {
  const r = await instructions(n);
  console.log(`${n.padEnd(19)} ${r.main.map(k).join(' ').padEnd(24)} (${k(median(r.main)! - r.idle)})   ${k(median(r.all)!).padEnd(8)} ${r.handshake === null ? '-' : k(r.handshake)}`);
}
console.log('front               system calls per connection: total (failed), then by name');
for (const n of names) {
  const calls = await syscalls(n);
  let total = 0;
  let failed = 0;
  for (const [c, e] of calls.values()) { total += c; failed += e; }
  const by = [...calls].filter(([, [c]]) => c >= 0.05).sort((a, b) => b[1][0] - a[1][0]).map(([name, [c, e]]) => `${name} ${c.toFixed(2)}${e > 0 ? ` (${e.toFixed(2)} failed)` : ''}`);
  console.log(`${n.padEnd(19)} ${total.toFixed(1)} (${failed.toFixed(2)})  ${by.join(', ')}`);
}
const started = originServer as Promise<Server> | null;
if (started !== null) await (await started).stop();
fs.rmSync(work, { recursive: true, force: true });

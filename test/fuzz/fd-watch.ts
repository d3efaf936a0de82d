/**
 * Triage helper: runs cases against a fresh Aludel child, then lists its open
 * descriptors (with socket states) over the following seconds, to tell a slow
 * close from a leak. `node dist/test/fuzz/fd-watch.js serve SEED K1,K2,... [lanes] [seconds]`
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { makeFixtures } from '../support/fixtures.js';
import { startAludelChild } from './aludel-child.js';
import { driveCases } from './harness.js';
import { startRecordingOrigin } from './recording-origin.js';
import { writeServeRoot } from './serve-files.js';
import type { Target } from './model.js';
import { trace } from './client.js';

const [target, seedS, list, lanesS, secondsS] = process.argv.slice(2) as [Target, string, string, string?, string?];
const only = list.includes('-') ? (() => { const [a, b] = list.split('-').map(Number); return Array.from({ length: b! - a! }, (_, i) => a! + i); })() : list.split(',').map(Number);
const fx = await makeFixtures({});
writeServeRoot(fx.root);
const origin = target === 'proxy' ? await startRecordingOrigin(() => undefined) : null;
// --workers 1: the descriptors watched are those of one process.
const common = ['--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--idle-timeout', '20s', '--headers-timeout', '10s', '--workers', '1'];
const args = target === 'serve' ? ['serve', ...common, '--root', fx.root] : ['proxy', ...common, '--to', `http://127.0.0.1:${origin!.port}`, '--max-fails', '0', '--upstream-keepalive-timeout', '2s'];
// LOG=file: run Aludel with its JSON log kept there (on --listen 127.0.0.1:28470) to match stuck connections to cases.
const a = process.env.LOG ? await startLogged(args.map((x) => (x === '127.0.0.1:0' ? '127.0.0.1:28470' : x)), process.env.LOG) : await startAludelChild(args);
async function startLogged(argv: string[], file: string): Promise<{ pid: number; port: number; stop(): Promise<void> }> {
  const { spawn } = await import('node:child_process');
  const { CLI } = await import('../support/aludel-process.js');
  const out = fs.openSync(file, 'w');
  const child = spawn(process.execPath, [CLI, ...argv], { stdio: ['ignore', out, out] });
  await new Promise((r) => setTimeout(r, 3000));
  return { pid: child.pid!, port: 28470, stop: async () => void child.kill() };
}
const fds = (): string[] => fs.readdirSync(`/proc/${a.pid}/fd`).map((f) => { try { return `${f}->${fs.readlinkSync(`/proc/${a.pid}/fd/${f}`)}`; } catch { return f; } });
const startFds = new Set(fds());
console.log('start', startFds.size);
const findings: string[] = [];
const byPort = new Map<number, number[]>();
trace.onCase = (k, port) => { if (port) byPort.set(port, [...(byPort.get(port) ?? []), k]); };
const procs = Number(process.env.PROCS ?? 1);
if (process.env.FAMILY) {
  const { generateCase } = await import('./cases.js');
  const all = list.includes('-') ? only : only;
  only.splice(0, only.length, ...all.filter((k) => process.env.FAMILY!.split(',').includes(generateCase(target, Number(seedS), k).family)));
  list.replace('-', ',');
}
const range = list.includes('-') && !process.env.FAMILY ? { from: only[0]!, count: only.length, only: undefined } : { from: 0, count: 0, only };
await Promise.all(Array.from({ length: procs }, (_, p) => driveCases({ target, port: a.port, seed: Number(seedS), ...range, procIndex: p, procs, lanes: Number(lanesS ?? 1), probeEvery: 0, timing: { quietMs: 60, longMs: 3000 } }, { onFinding: (f) => findings.push(`${f.kind} ${f.index} ${f.detail.slice(0, 200)}`) })));
console.log(findings.join('\n'));
for (let s = 0; s <= Number(secondsS ?? 12); s++) {
  const list = fds();
  console.log(`t+${s}s: ${list.length} fds`);
  if (s >= 6) console.log('new since start:', list.filter((f) => !startFds.has(f)).join(' '));
  if (s === 0 || s === 6 || s === 11 || s === Number(secondsS ?? 12)) {
    const lines = execFileSync('ss', ['-tanp', 'exclude', 'time-wait'], { encoding: 'utf8', maxBuffer: 1 << 28 }).split('\n').filter((l) => l.includes(`pid=${a.pid},`) && !l.startsWith('LISTEN'));
    for (const l of lines) console.log(l, 'cases on that client port:', byPort.get(Number(/127\.0\.0\.1:(\d+)\s+users/.exec(l)?.[1]))?.join(','));
  }
  await new Promise((r) => setTimeout(r, 1000));
}
await a.stop();
if (process.env.LOG) fs.writeFileSync(`${process.env.LOG}.ports.json`, JSON.stringify([...byPort]));
await origin?.stop();
fx.cleanup();

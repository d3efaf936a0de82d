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
import { execFileSync } from 'node:child_process';
import { median } from './ratios.js';
import { bench, inclusive, k, perUnit, straced, syscallLine, underCallgrind } from './counted.js';

const CONNECTIONS = Number(process.env.CONNECTIONS ?? 200);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const WARMUP = Number(process.env.WARMUP ?? 800);
const BATCH = 20;
const b = bench('handshake-cost');

/** `count` full handshakes, one request each, BATCH at a time. */
function handshakes(port: number, count: number): void {
  for (let done = 0; done < count; done += BATCH) {
    const out = execFileSync('h2load', ['--h1', '-n', String(BATCH), '-c', String(BATCH), `https://localhost:${port}/one.bin`], { encoding: 'utf8' });
    if (!out.includes(`${BATCH} succeeded`)) throw new Error(`h2load on port ${port}:\n${out}`);
  }
}

interface Instructions { main: number[]; all: number[]; idle: number; handshake: number | null }

/** Per-handshake instruction counts under callgrind, ROUNDS rounds after the warm-up. */
function instructions(name: string): Promise<Instructions> {
  return underCallgrind(b, name, async (cg) => {
    handshakes(cg.server.port, WARMUP);
    const main: number[] = [];
    const all: number[] = [];
    let ms = 0;
    let last: string[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      cg.zero();
      const t = performance.now();
      handshakes(cg.server.port, CONNECTIONS);
      ms += performance.now() - t;
      const d = cg.dump(`round${r}`);
      main.push(d.main / CONNECTIONS);
      all.push(d.all / CONNECTIONS);
      last = d.files;
    }
    // The same time with no connection: what the idle process spends (timers, GC), per handshake's share.
    cg.zero();
    await new Promise((resolve) => setTimeout(resolve, ms / ROUNDS));
    const idle = cg.dump('idle').main / CONNECTIONS;
    const ssl = last[0] === undefined ? null : inclusive(last[0], 'SSL_do_handshake');
    return { main, all, idle, handshake: ssl === null ? null : ssl / CONNECTIONS };
  });
}

const names = b.fronts('nginx,aludel-serve');
const k0 = (x: number): string => k(x, 0);
console.log(`handshake-cost: ${CONNECTIONS} full TLS 1.3 handshakes per round (h2load --h1 -n ${BATCH} -c ${BATCH}, one 1 KiB GET each), ${ROUNDS} rounds after ${WARMUP}, userspace TLS, one process each`);
console.log('front               instructions/handshake: main thread per round (median, minus idle)   all threads (median)   SSL_do_handshake');
for (const n of names) {
  const r = await instructions(n);
  console.log(`${n.padEnd(19)} ${r.main.map(k0).join(' ').padEnd(24)} (${k0(median(r.main)! - r.idle)})   ${k0(median(r.all)!).padEnd(8)} ${r.handshake === null ? '-' : k0(r.handshake)}`);
}
console.log('front               system calls per connection: total (failed), then by name');
for (const n of names) {
  const s = await b.makers[n]!([]);
  try {
    handshakes(s.port, 200);
    const calls = await straced(b, s, n, () => handshakes(s.port, CONNECTIONS));
    console.log(`${n.padEnd(19)} ${syscallLine(perUnit(calls, null, CONNECTIONS))}`);
  } finally {
    await s.stop();
  }
}
await b.finish();

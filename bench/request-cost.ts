/**
 * What one small keep-alive request (a 1 KiB GET on a connection already
 * open) costs a front, counted rather than timed (issue 17): instructions
 * under callgrind and system calls under strace, as bench/handshake-cost.ts
 * counts a handshake.
 *
 * Each round makes two batches with the same CLIENTS connections,
 * `h2load --h1 -c CLIENTS` with SHORT and then LONG requests per connection
 * (no pipelining: one request in flight per connection). Both batches make
 * the same handshakes and teardowns, so their difference divided by
 * CLIENTS * (LONG - SHORT) is what a keep-alive request costs alone.
 *
 * - instructions: the front runs under callgrind (counted.ts); after WARMUP
 *   requests (V8 has optimised the path by then), each of ROUNDS rounds
 *   zeroes and dumps around each batch. Under callgrind a batch is not
 *   h2load's but counted.ts's openConnections (h2load's request bytes): its
 *   CLIENTS connections are open, each with one request answered, before
 *   the zeroing, and closed after the dump, so no handshake is counted
 *   (h2load's, zeroed before it connected, left 0.5-8.5k per request of
 *   start-up in LONG minus SHORT in some rounds). Reported per request: the main
 *   thread (the event loop), the same without V8's garbage collections
 *   (their number per batch moves between runs: the steadier figure; the
 *   first round may still carry V8's tiering), all threads (plus V8's compiler and GC
 *   helpers, noisier under valgrind), and what the idle process spends in
 *   the time the LONG batch took beyond the SHORT one.
 * - system calls: the front runs natively, strace -c -f attached around
 *   each batch after the warm-up; per request by name, the difference again.
 *
 *   npm run build:ts && BASELINE=<a built checkout> \
 *     FRONTS=nginx,aludel-serve,aludel-serve-base node dist/bench/request-cost.js
 *
 * The caches (aludel-cache, its -base, nginx-cache: proxy_cache as the timed
 * benches configure it) answer the origin's 1 KiB file: the warm-up fills
 * them, and the origin's access log must not grow during the counted
 * batches, so every counted request is a hit.
 *
 * Environment: FRONTS (nginx,aludel-serve), CLIENTS (64), SHORT (5), LONG
 * (55), ROUNDS (3), WARMUP (20000 requests), BASELINE, KEEP=1 (keep the
 * dumps: the last LONG batch's main thread is printed for callgrind_annotate).
 */
import { execFileSync } from 'node:child_process';
import { bench, GC_FN, inclusive, k, openConnections, perUnit, rounds, straced, syscallLine, tookRealpath, underCallgrind, type Callgrind, type Dump, type Syscalls } from './counted.js';
import type { Server } from './servers.js';

const CLIENTS = Number(process.env.CLIENTS ?? 64);
const SHORT = Number(process.env.SHORT ?? 5);
const LONG = Number(process.env.LONG ?? 55);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const WARMUP = Number(process.env.WARMUP ?? 20000);
const REQUESTS = CLIENTS * (LONG - SHORT);
const b = bench('request-cost');

/** `count` keep-alive GETs of the 1 KiB file over CLIENTS connections; the milliseconds it took. */
function requests(port: number, count: number): number {
  const t = performance.now();
  const out = execFileSync('h2load', ['--h1', '-c', String(CLIENTS), '-n', String(count), `https://localhost:${port}/one.bin`], { encoding: 'utf8' });
  if (!out.includes(`${count} succeeded`)) throw new Error(`h2load on port ${port}:\n${out}`);
  return performance.now() - t;
}

interface Instructions { main: number[]; noGc: number[]; all: number[]; idle: number; file: string | undefined }

/** The main thread's instructions in a dump less its garbage collections. */
function withoutGc(d: Dump): number {
  return d.main - d.files.reduce((sum, f) => sum + (inclusive(f, GC_FN) ?? 0), 0);
}

/**
 * `batches` with, for a cache front, a check that every request in them was
 * a hit: the warm-up reached the origin (the cache filled from it) and the
 * batches did not (its access log grew by no line).
 */
async function allHits<T>(name: string, warmUp: () => void, batches: () => Promise<T>): Promise<T> {
  const before = b.originRequests();
  warmUp();
  const filled = b.originRequests();
  const out = await batches();
  if (name.includes('cache') && (filled === before || b.originRequests() !== filled)) {
    throw new Error(`${name}: not all counted requests were cache hits (origin requests: ${before} before the warm-up, ${filled} after it, ${b.originRequests()} after the batches)`);
  }
  return out;
}

/**
 * `perConnection` keep-alive requests on each of CLIENTS connections between
 * zeroing and dumping the counters, and the milliseconds they took. The
 * connections are opened and their first request answered before the
 * zeroing, and closed after the dump: under h2load the counters ran from
 * before its connections, whose handshakes fell
 * unevenly into the two batches and left up to 8.5k per request of start-up
 * in their difference.
 */
async function counted(cg: Callgrind, perConnection: number, label: string): Promise<[Dump, number]> {
  const c = await openConnections(cg.server.port, CLIENTS);
  try {
    cg.zero();
    const t = performance.now();
    await c.requests(perConnection);
    const ms = performance.now() - t;
    return [cg.dump(label), ms];
  } finally {
    c.close();
  }
}

/** Per-request instruction counts under callgrind, ROUNDS rounds after the warm-up. */
function instructions(name: string): Promise<Instructions> {
  return underCallgrind(b, name, (cg) => allHits(name, () => void requests(cg.server.port, WARMUP), async () => {
    const main: number[] = [];
    const noGc: number[] = [];
    const all: number[] = [];
    let ms = 0;
    let file: string | undefined;
    for (let r = 0; r < ROUNDS; r++) {
      const [short, shortMs] = await counted(cg, SHORT, `short${r}`);
      const [long, longMs] = await counted(cg, LONG, `long${r}`);
      main.push((long.main - short.main) / REQUESTS);
      noGc.push((withoutGc(long) - withoutGc(short)) / REQUESTS);
      all.push((long.all - short.all) / REQUESTS);
      ms += Math.max(0, longMs - shortMs);
      file = long.files[0];
    }
    // The idle process over the time the extra requests took: timers and GC, not the requests' own work.
    // The last batch's connections close after its dump: one more connection's handshake and answer
    // come after the front has read their ends (one event loop, in order), so their closing is not idle.
    const settle = await openConnections(cg.server.port, 1);
    cg.zero();
    await new Promise((resolve) => setTimeout(resolve, ms / ROUNDS));
    const idle = cg.dump('idle').main / REQUESTS;
    settle.close();
    return { main, noGc, all, idle, file };
  }));
}

/** System calls per request natively: the LONG batch's minus the SHORT batch's. */
async function syscalls(name: string): Promise<Syscalls> {
  const s: Server = await b.makers[name]!([]);
  try {
    return await allHits(name, () => void requests(s.port, WARMUP), async () => {
      const short = await straced(b, s, `${name}-short`, () => void requests(s.port, CLIENTS * SHORT));
      const long = await straced(b, s, `${name}-long`, () => void requests(s.port, CLIENTS * LONG));
      return perUnit(long, short, REQUESTS);
    });
  } finally {
    await s.stop();
  }
}

const names = b.fronts('nginx,aludel-serve');
console.log(`request-cost: keep-alive GETs of 1 KiB over ${CLIENTS} connections (h2load --h1's; counted: no handshake), ${LONG} minus ${SHORT} per connection = ${REQUESTS} requests per round, ${ROUNDS} rounds after ${WARMUP}, userspace TLS 1.3, one process each`);
console.log('front               instructions/request: main thread per round (median)   without GC (median)   idle share   all threads per round (median)');
for (const n of names) {
  const r = await instructions(n);
  const realpath = r.file !== undefined && tookRealpath(r.file) ? '  (realpath way: not the native path)' : '';
  console.log(`${n.padEnd(19)} ${rounds(r.main).padEnd(36)} ${rounds(r.noGc).padEnd(36)} ${k(r.idle).padEnd(8)} ${rounds(r.all)}${realpath}${r.file && process.env.KEEP === '1' ? `  dump: ${r.file}` : ''}`);
}
console.log('front               system calls per request: total (failed), then by name');
for (const n of names) console.log(`${n.padEnd(19)} ${syscallLine(await syscalls(n))}`);
await b.finish();

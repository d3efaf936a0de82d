/**
 * What the counted benches (bench/handshake-cost.ts, bench/request-cost.ts)
 * share: a scratch directory with a 1 KiB file and an ECDSA P-256
 * certificate, the fronts they compare, a front run under callgrind whose
 * counters are zeroed and dumped around a batch of work, a front run
 * natively with strace -c -f attached around a batch, and the report's
 * lines. Counting instead of timing, because on a shared host whose speed
 * drifts an A/B of a few per cent cannot be timed (docs/benchmarks.md).
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { median } from './ratios.js';
import { fileURLToPath } from 'node:url';
import { cliIn, startAludel, startAludelServe, startFloor, startNginx, type Server } from './servers.js';

export const host = '127.0.0.1';
/** Userspace TLS in every front: this host's kernel has no kTLS, and the VM's emulated CPU would count QEMU, not us. */
const offload = 'userspace' as const;

export interface Bench {
  /** The fronts by name: start one, optionally under a wrapping command (valgrind). */
  makers: Record<string, (wrap: readonly string[]) => Promise<Server>>;
  /** FRONTS from the environment (comma-separated), checked against `makers`. */
  fronts(fallback: string): string[];
  /** Stop the shared origin, if one was started, and remove the scratch directory (kept, with its callgrind dumps, under KEEP=1). */
  finish(): Promise<void>;
  work: string;
  /** Requests the shared origin has answered so far (its access log's lines; 0 before it starts): a cache front's counted batches must add none. */
  originRequests(): number;
}

/** A scratch directory holding `root/one.bin` (1 KiB) and a certificate, and the fronts serving it. */
export function bench(prefix: string): Bench {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
  const root = path.join(work, 'root');
  fs.mkdirSync(root);
  fs.writeFileSync(path.join(root, 'one.bin'), Buffer.alloc(1024, 0x61));
  const certFile = path.join(work, 'c.pem');
  const keyFile = path.join(work, 'k.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=localhost', '-keyout', keyFile, '-out', certFile], { stdio: 'ignore' });
  const tls = { certFile, keyFile };
  let originServer: Promise<Server> | null = null;
  // One plain nginx origin for every proxy front; its cost is not counted (it is another process).
  const originLog = path.join(work, 'origin-access.log');
  const origin = (): Promise<Server> => (originServer ??= startNginx('nginx-origin', { dir: path.join(work, 'origin'), host, root, role: { kind: 'origin' }, accessLog: originLog }));
  const baselineCli = (): string => {
    if (!process.env.BASELINE) throw new Error('the -base fronts need BASELINE=DIR, a built checkout');
    return cliIn(path.resolve(process.env.BASELINE));
  };
  let dirs = 0;
  const makers: Bench['makers'] = {
    nginx: (wrap) => startNginx('nginx-direct', { dir: path.join(work, `nginx-${dirs++}`), host, root, role: { kind: 'direct' }, tls: { ...tls, offload }, wrap }),
    'nginx-proxy': async (wrap) => startNginx('nginx-proxy', { dir: path.join(work, `nginx-${dirs++}`), host, root, role: { kind: 'proxy', originPort: (await origin()).port }, tls: { ...tls, offload }, wrap }),
    'aludel-serve': (wrap) => startAludelServe('serve', { host, tls, offload, root, wrap }),
    'aludel-proxy': async (wrap) => startAludel('proxy', { host, tls, offload, originPort: (await origin()).port, wrap }),
    'aludel-serve-base': (wrap) => startAludelServe('serve, baseline', { host, tls, offload, root, cli: baselineCli(), wrap }),
    'aludel-proxy-base': async (wrap) => startAludel('proxy, baseline', { host, tls, offload, originPort: (await origin()).port, cli: baselineCli(), wrap }),
    // The caches' hits in front of the same origin (it marks everything cacheable); each start gets an empty cache.
    'nginx-cache': async (wrap) => startNginx('nginx-cache', { dir: path.join(work, `nginx-${dirs++}`), host, root, role: { kind: 'cache', originPort: (await origin()).port }, tls: { ...tls, offload }, wrap }),
    'aludel-cache': async (wrap) => startAludel('proxy --cache', { host, tls, offload, originPort: (await origin()).port, cacheDir: path.join(work, `cache-${dirs++}`), wrap }),
    'aludel-cache-base': async (wrap) => startAludel('proxy --cache, baseline', { host, tls, offload, originPort: (await origin()).port, cacheDir: path.join(work, `cache-${dirs++}`), cli: baselineCli(), wrap }),
    // Floors under serve (bench/floor-responder.ts): Aludel's TLS connections answering with a canned response.
    'floor-raw': (wrap) => startFloor('raw', { host, tls, offload, wrap }),
    'floor-http': (wrap) => startFloor('http', { host, tls, offload, wrap }),
  };
  return {
    makers,
    work,
    originRequests: () => (fs.existsSync(originLog) ? fs.readFileSync(originLog, 'utf8').split('\n').length - 1 : 0),
    fronts(fallback) {
      const names = (process.env.FRONTS ?? fallback).split(',');
      for (const n of names) if (!(n in makers)) throw new Error(`FRONTS: unknown front ${n} (known: ${Object.keys(makers).join(', ')})`);
      return names;
    },
    async finish() {
      if (originServer !== null) await (await originServer).stop();
      if (process.env.KEEP === '1') console.log(`kept: ${work}`);
      else fs.rmSync(work, { recursive: true, force: true });
    },
  };
}

/** Instructions counted by callgrind since the last zeroing: the main thread (the event loop) and all threads. */
export interface Dump { main: number; all: number; files: string[] }

/**
 * A front under `valgrind --tool=callgrind --separate-threads=yes`: zero()
 * and dump() bracket a batch (callgrind_control -z / -d). The main thread's
 * dump is the file ending in -01; V8's compiler and GC helpers are the other
 * threads, which under valgrind keep recompiling, so their share is noisier.
 */
export interface Callgrind {
  server: Server;
  zero(): void;
  dump(label: string): Dump;
}

export async function underCallgrind<T>(b: Bench, name: string, body: (cg: Callgrind) => Promise<T>): Promise<T> {
  const dir = fs.mkdtempSync(path.join(b.work, 'cg-'));
  const server = await b.makers[name]!(['env', `LD_PRELOAD=${openat2Shim(b)}`, 'valgrind', '--tool=callgrind', '--separate-threads=yes', '--smc-check=all-non-file', `--callgrind-out-file=${dir}/cg.%p`]);
  const seen = new Set<string>();
  const ctl = (...args: string[]): void => void execFileSync('callgrind_control', [...args, String(server.pid)], { stdio: 'ignore' });
  try {
    return await body({
      server,
      zero: () => ctl('-z'),
      dump(label) {
        ctl('-d', label);
        const out: Dump = { main: 0, all: 0, files: [] };
        for (const f of fs.readdirSync(dir)) {
          if (!f.startsWith(`cg.${server.pid}.`) || seen.has(f)) continue;
          seen.add(f);
          const file = path.join(dir, f);
          const total = Number(/^totals: (\d+)/m.exec(fs.readFileSync(file, 'utf8'))?.[1] ?? 0);
          out.all += total;
          if (f.endsWith('-01')) {
            out.main += total;
            out.files.push(file);
          }
        }
        return out;
      },
    });
  } finally {
    await server.stop();
  }
}

/**
 * The length of the HTTP/1.1 response at the start of `buf` once all of it
 * is there (head and Content-Length body), 0 while it is not. Anything but a
 * 200 with a Content-Length throws: every counted request gets the 1 KiB file,
 * and a response framed otherwise would be misread as complete.
 */
export function responseLength(buf: Buffer): number {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return 0;
  const head = buf.toString('latin1', 0, end);
  if (!/^HTTP\/1\.1 200 /.test(head)) throw new Error(`not a 200: ${JSON.stringify(head.slice(0, 200))}`);
  const length = /\r\ncontent-length:[ \t]*(\d+)[ \t]*(?:\r\n|$)/i.exec(head)?.[1];
  if (length === undefined) throw new Error(`no Content-Length: ${JSON.stringify(head.slice(0, 200))}`);
  const total = end + 4 + Number(length);
  return buf.length >= total ? total : 0;
}

/** h2load's TLS 1.3 suites (its --tls13-ciphers default), so the front encrypts with the cipher it does under h2load. */
const H2LOAD_TLS13 = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_CCM_SHA256';

/** One client connection asking for one request at a time (no pipelining, as `h2load --h1`). */
class Kept {
  private got: Buffer = Buffer.alloc(0);
  private waiting: { resolve(): void; reject(e: Error): void } | null = null;

  constructor(readonly socket: tls.TLSSocket, private readonly request: Buffer) {
    socket.on('data', (d: Buffer) => this.read(d));
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => this.fail(new Error('the front closed a kept connection')));
  }

  ask(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.write(this.request);
    });
  }

  private read(d: Buffer): void {
    this.got = this.got.length === 0 ? d : Buffer.concat([this.got, d]);
    const w = this.waiting;
    if (w === null) return void this.fail(new Error('bytes with no request out'));
    let n: number;
    try {
      n = responseLength(this.got);
    } catch (e) {
      return void this.fail(e as Error);
    }
    if (n === 0) return;
    if (n !== this.got.length) return void this.fail(new Error('bytes past the response'));
    this.got = Buffer.alloc(0);
    this.waiting = null;
    w.resolve();
  }

  private fail(e: Error): void {
    const w = this.waiting;
    this.waiting = null;
    w?.reject(e);
  }
}

/** CLIENTS connections to a front, every handshake done and one request answered on each, for a counted batch of keep-alive requests. */
export interface Connections {
  /** `perConnection` requests on every connection, one in flight on each. */
  requests(perConnection: number): Promise<void>;
  close(): void;
}

/**
 * `count` TLS connections to the front on `port`, sending `h2load --h1`'s
 * GET of /one.bin (the same bytes: its Host and user-agent lines). A batch
 * counted between zeroing and dumping then holds keep-alive requests only: the
 * handshakes (which finish at different times relative to the other
 * connections' requests) and each connection's first request (its setup on
 * the front) land before the zeroing, the teardown after the dump.
 */
export async function openConnections(port: number, count: number): Promise<Connections> {
  const request = Buffer.from(`GET /one.bin HTTP/1.1\r\nHost: localhost:${port}\r\nuser-agent: h2load nghttp2/1.52.0\r\n\r\n`, 'latin1');
  const sockets: tls.TLSSocket[] = [];
  const close = (): void => { for (const s of sockets) s.destroy(); };
  try {
    const kept = await Promise.all(Array.from({ length: count }, () => new Promise<Kept>((resolve, reject) => {
      const s = tls.connect({ host, port, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], minVersion: 'TLSv1.3', ciphers: H2LOAD_TLS13 });
      sockets.push(s);
      s.once('error', reject);
      s.once('secureConnect', () => resolve(new Kept(s, request)));
    })));
    const requests = async (perConnection: number): Promise<void> => {
      await Promise.all(kept.map(async (c) => { for (let i = 0; i < perConnection; i++) await c.ask(); }));
    };
    await requests(1);
    return { requests, close };
  } catch (e) {
    close();
    throw e;
  }
}

/** bench/openat2-shim.c built into the scratch directory once (cc): openat2 for a front under valgrind 3.19, which has none. */
function openat2Shim(b: Bench): string {
  const so = path.join(b.work, 'openat2-shim.so');
  if (!fs.existsSync(so)) {
    // dist/bench/counted.js -> bench/openat2-shim.c
    const src = fileURLToPath(new URL('../../bench/openat2-shim.c', import.meta.url));
    execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', so, src, '-ldl']);
  }
  return so;
}

/**
 * Whether the dump shows serve's realpath way (node's fs.realpath): then
 * the requests did not take the openat2 way they take natively, and the
 * count is not of the production path.
 */
export function tookRealpath(file: string): boolean {
  return inclusive(file, 'node::fs::RealPath(v8::FunctionCallbackInfo<v8::Value> const&)') !== null;
}

/** `fn`'s inclusive instructions in a callgrind dump (the sum over its callers' call records), or null if it was not called. */
export function inclusive(file: string, fn: string): number | null {
  const text = fs.readFileSync(file, 'utf8');
  // With name compression a function is named once as "(id) name", then by "(id)" alone.
  const escaped = fn.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const id = new RegExp(`^c?fn=\\((\\d+)\\) ${escaped}$`, 'm').exec(text)?.[1];
  if (id === undefined) return null;
  let sum = 0;
  const re = new RegExp(`^cfn=\\(${id}\\)(?: ${escaped})?\\ncalls=[^\\n]*\\n\\S+ (\\d+)`, 'gm');
  for (let m = re.exec(text); m !== null; m = re.exec(text)) sum += Number(m[1]);
  return sum;
}

/**
 * V8's garbage collections on the main thread (scavenges, mostly), inclusive,
 * in a dump: their number per batch moves from run to run with the young
 * generation's sizing, so the count without them is the steadier one.
 */
export const GC_FN = 'v8::internal::Heap::CollectGarbage(v8::internal::AllocationSpace, v8::internal::GarbageCollectionReason, v8::GCCallbackFlags)';

/** System calls by name: [calls, failed]. */
export type Syscalls = Map<string, [number, number]>;

/** The calls the process tree of `server` makes during `work()`, natively, from `strace -c -f` attached for it. */
export async function straced(b: Bench, server: Server, tag: string, work: () => void): Promise<Syscalls> {
  const out = path.join(b.work, `strace-${tag}`);
  const tracer = spawn('strace', ['-c', '-f', '-o', out, ...server.pids().flatMap((p) => ['-p', String(p)])], { stdio: 'ignore' });
  // strace attaches asynchronously; a second is ample on this host.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  work();
  const gone = new Promise((resolve) => tracer.once('exit', resolve));
  tracer.kill('SIGINT');
  await gone;
  const calls: Syscalls = new Map();
  for (const line of fs.readFileSync(out, 'utf8').split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(\d+)?\s*(\w+)$/.exec(line);
    if (m && m[3] !== 'total') calls.set(m[3]!, [Number(m[1]), Number(m[2] ?? 0)]);
  }
  return calls;
}

/** `a - b` name by name (for a difference of two batches), each divided by `per`. */
export function perUnit(a: Syscalls, b: Syscalls | null, per: number): Syscalls {
  const out: Syscalls = new Map();
  for (const name of new Set([...a.keys(), ...(b?.keys() ?? [])])) {
    const [c1, e1] = a.get(name) ?? [0, 0];
    const [c0, e0] = b?.get(name) ?? [0, 0];
    out.set(name, [(c1 - c0) / per, (e1 - e0) / per]);
  }
  return out;
}

/** "total (failed)  name n, name n (m failed), ..." for the calls made at least 0.05 times per unit. */
export function syscallLine(calls: Syscalls): string {
  let total = 0;
  let failed = 0;
  for (const [c, e] of calls.values()) { total += c; failed += e; }
  const by = [...calls].filter(([, [c]]) => Math.abs(c) >= 0.05).sort((x, y) => y[1][0] - x[1][0]).map(([name, [c, e]]) => `${name} ${c.toFixed(2)}${Math.abs(e) >= 0.005 ? ` (${e.toFixed(2)} failed)` : ''}`);
  return `${total.toFixed(2)} (${Math.abs(failed).toFixed(2)})  ${by.join(', ')}`;
}

/** Thousands of instructions, for the report. */
export const k = (x: number, digits = 1): string => `${(x / 1000).toFixed(digits)}k`;

/** "r1 r2 r3 (median)" of per-round figures. */
export function rounds(values: readonly number[], fmt = (x: number) => k(x)): string {
  return `${values.map(fmt).join(' ')} (${fmt(median(values)!)})`;
}

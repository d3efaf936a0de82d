/**
 * One phase of the benchmark: every scenario started first, then measured
 * point by point in turns (A, B, C, A, B, C...) so the machine's drift
 * (ktls-notes.md: up to 2x within minutes) spreads over all of them alike.
 * A phase runs natively (userspace offload) or inside the kTLS VM (both).
 */
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { readKernelTlsStat } from '../src/metrics/kernel-tls-stat.js';
import { measureCryptoFloor } from './crypto-floor.js';
import { energyJoules, readEnergy } from './energy.js';
import { describeEnvironment, type Environment } from './environment.js';
import { setUpClientNet, type ClientNet } from './netns.js';
import { clockTicksPerSecond, cpuSeconds } from './proc-cpu.js';
import { counterDelta, cpuPerGB, floorCpuPerGB, ktlsProven, median, ratio } from './ratios.js';
import { startAludel, startNginx, startOpensslSink, TLS12_CIPHER, type Offload, type Server, type Tls } from './servers.js';
import { parseWrkOutput, WRK_SCRIPT, type WrkResult } from './wrk-output.js';

const run = promisify(execFile);

/** The front ends compared, all serving the same files. */
export const FRONTS = {
  'nginx-direct': 'nginx serving the files itself (the legacy baseline)',
  'aludel-proxy': 'aludel proxy -> nginx origin',
  'aludel-cache': 'aludel proxy --cache -> nginx origin',
  'nginx-proxy': 'nginx proxy_pass -> nginx origin',
  'nginx-cache': 'nginx proxy_cache -> nginx origin',
  'aludel-proxy-tls': 'aludel proxy -> nginx origin over TLS 1.3 (kTLS both ways on the upstream socket with --offload kernel)',
  'nginx-proxy-tls': 'nginx proxy_pass https -> nginx origin over TLS 1.3 (proxy_ssl_conf_command Options KTLS with kernel offload)',
} as const;
export type Front = keyof typeof FRONTS;

export type Test = 'load' | 'download' | 'download-h2' | 'file-size' | 'record-tx' | 'record-rx';

export interface Point {
  phase: 'native' | 'vm';
  emulated: boolean;
  test: Test;
  /** e.g. "aludel-cache/kernel" */
  scenario: string;
  front: Front | 'openssl-s_server';
  offload: Offload;
  connections: number;
  fileBytes: number;
  recordBytes: number | null;
  durationS: number;
  requests: number;
  /**
   * Bytes served in the point: the veth's count (wire bytes: TLS records and
   * TCP/IP headers, server to client, or client to server for record-rx)
   * when the client has its own namespace, else what the client counted.
   * wrk counts a response's bytes only once it is complete, so a short point
   * of 64 connections on a 10 MiB file can show no bytes at all there.
   */
  bytes: number;
  bytesSource: 'veth' | 'client';
  /** What the client itself counted (wrk: completed responses only). */
  clientBytes: number;
  errors: number;
  requestsPerSec: number;
  bytesPerSec: number;
  latencyMs: WrkResult['latencyMs'];
  /** utime+stime of the front end / of the origin (proxy and cache scenarios) during the point. */
  cpuFrontS: number;
  cpuOriginS: number;
  cpuS: number;
  cpuPerGB: number | null;
  /** The front end's CPU alone per GB (the origin left out: a TLS origin encrypts, a plain one does not). */
  cpuFrontPerGB: number | null;
  cpuPerRequestMs: number | null;
  cpuPerRecordUs: number | null;
  /** cpuPerGB / the phase's crypto floor. */
  floorRatio: number | null;
  energyJ: number | null;
  tlsStatDelta: Record<string, number> | null;
  /** 'proven' (TlsTxSw/RxSw rose), 'FELL BACK' (a kernel point that did not), 'userspace', or 'no tls_stat'. */
  ktls: 'proven' | 'FELL BACK' | 'userspace' | 'no tls_stat';
}

export interface PhaseResult {
  environment: Environment;
  /** openssl speed aes-128-gcm, 16 KiB, bytes/s: probes before and after. */
  cryptoFloorBytesPerSec: number[];
  cryptoFloorCpuPerGB: number;
  points: Point[];
}

export interface PhaseOptions {
  phase: 'native' | 'vm';
  full: boolean;
  offloads: Offload[];
  /** Only these fronts, and no record-size sweeps (--fronts); null: every front and the sweeps. */
  fronts: Front[] | null;
  /** Only these tests (--tests), e.g. load and download for the headline ratios alone; null: all. */
  tests?: Test[] | null;
  /** The wrk connection counts of the load test (--load-connections); null: the plan's. */
  loadConnections?: number[] | null;
  emulated: boolean;
  loopback: boolean;
  pin: boolean;
  progress(done: number, total: number, label: string): void;
}

const MiB = 1024 * 1024;

interface Plan {
  loadSeconds: number;
  connections: number[];
  downloadFileBytes: number;
  downloads: number;
  fileSizes: number[];
  fileSizeSeconds: number;
  recordSizes: number[];
  recordSeconds: number;
  rxBytes: number;
  rounds: number;
}

function plan(o: PhaseOptions): Plan {
  const p = basePlan(o);
  const want = (t: Test): boolean => !o.tests || o.tests.includes(t);
  return { ...p, connections: want('load') ? (o.loadConnections ?? p.connections) : [], fileSizes: want('file-size') ? p.fileSizes : [] };
}

function basePlan(o: PhaseOptions): Plan {
  // The VM's AES is ~95x slower (emulated): fewer bytes, same shape.
  const vm = o.emulated;
  if (o.full) {
    return {
      loadSeconds: 10,
      connections: [1, 8, 16, 64],
      downloadFileBytes: vm ? 64 * MiB : 512 * MiB,
      downloads: vm ? 2 : 4,
      fileSizes: [4096, 16384, 65536, 262144, MiB],
      fileSizeSeconds: 10,
      recordSizes: [1024, 2048, 4096, 8192, 16384],
      recordSeconds: 10,
      rxBytes: vm ? 64 * MiB : 1024 * MiB,
      rounds: 3,
    };
  }
  // Quick: the whole run (native, then the VM with twice the scenarios) under 10 minutes.
  return {
    loadSeconds: vm ? 2 : 3,
    connections: [1, 8, 16, 64],
    downloadFileBytes: vm ? 16 * MiB : 128 * MiB,
    downloads: 2,
    fileSizes: vm ? [4096, MiB] : [4096, 65536, MiB],
    fileSizeSeconds: vm ? 1 : 2,
    recordSizes: [1024, 4096, 16384],
    recordSeconds: 1,
    rxBytes: vm ? 8 * MiB : 256 * MiB,
    rounds: 1,
  };
}

async function makeFiles(root: string, p: Plan): Promise<void> {
  await fs.promises.mkdir(root, { recursive: true });
  // Random bytes: nothing on the path compresses, and all scenarios read the same files.
  const write = async (name: string, size: number): Promise<void> => {
    const fh = await fs.promises.open(path.join(root, name), 'w');
    const block = crypto.randomBytes(MiB);
    for (let done = 0; done < size; done += MiB) await fh.write(block, 0, Math.min(MiB, size - done));
    await fh.close();
  };
  await write('load.bin', 10 * MiB);
  await write('download.bin', p.downloadFileBytes);
  for (const s of p.fileSizes) await write(`size-${s}.bin`, s);
}

/** A self-signed certificate for localhost: ECDSA P-256 by default, or `key` as openssl req -newkey takes it (e.g. rsa:2048), in files named after it. */
export async function makeCert(dir: string, key = 'ec'): Promise<Tls> {
  const tag = key === 'ec' ? '' : `-${key.replace(/[^a-z0-9]/gi, '')}`;
  const certFile = path.join(dir, `cert${tag}.pem`);
  const keyFile = path.join(dir, `key${tag}.pem`);
  const newkey = key === 'ec' ? ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] : ['-newkey', key];
  await run('openssl', ['req', '-x509', ...newkey, '-nodes', '-days', '2', '-subj', '/CN=localhost', '-keyout', keyFile, '-out', certFile]);
  return { certFile, keyFile };
}

interface Scenario {
  name: string;
  front: Front;
  offload: Offload;
  server: Server;
  origin: Server | null;
}

/** What the steps of one phase share: where the servers listen, how the client runs, where points go. */
interface PhaseContext {
  o: PhaseOptions;
  p: Plan;
  net: ClientNet;
  work: string;
  root: string;
  tls: Tls;
  env: Environment;
  floors: number[];
  points: Point[];
  hz: number;
  /** Stops run in reverse order at the end, whatever happened. */
  stops: Array<() => Promise<void>>;
  /** Runs argv on the client side (its namespace, its CPU when pinned); returns stdout. */
  exec(argv: string[], timeoutS: number): Promise<string>;
  url(s: Server, file: string): string;
}

type ClientRun = () => Promise<{ durationS: number; requests: number; bytes: number; errors: number; latencyMs: Point['latencyMs'] }>;
type PointBase = Pick<Point, 'test' | 'scenario' | 'front' | 'offload' | 'connections' | 'fileBytes' | 'recordBytes'>;

export async function runPhase(o: PhaseOptions): Promise<PhaseResult> {
  const p = plan(o);
  const work = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-bench-'));
  const stops: Array<() => Promise<void>> = [];
  const net = await setUpClientNet(!o.loopback);
  stops.push(() => net.close());
  const raplProbe = readEnergy();
  const env = describeEnvironment(o.emulated, net.note, raplProbe ? `RAPL zones ${[...raplProbe.zones.keys()].join(', ')}` : 'unavailable (no readable /sys/class/powercap/intel-rapl:N/energy_uj)', o.pin);
  const points: Point[] = [];
  try {
    const root = path.join(work, 'www');
    await makeFiles(root, p);
    const floors = [await measureCryptoFloor(1)];
    const client = [...net.prefix, ...(o.pin ? ['taskset', '-c', os.cpus().length > 1 ? '1' : '0'] : [])];
    const c: PhaseContext = {
      o, p, net, work, root, tls: await makeCert(work), env, floors, points, hz: clockTicksPerSecond(), stops,
      exec: async (argv, timeoutS) => {
        const all = [...client, ...argv];
        return (await run(all[0]!, all.slice(1), { maxBuffer: 16 << 20, timeout: timeoutS * 1000 })).stdout;
      },
      url: (s, file) => `https://${net.serverAddress}:${s.port}/${file}`,
    };
    const steps = await prepareSteps(c);
    for (let i = 0; i < steps.length; i++) {
      const [label, step] = steps[i]!;
      o.progress(i, steps.length, label);
      await step();
    }
    o.progress(steps.length, steps.length, 'done');
    floors.push(await measureCryptoFloor(1));
    env.loadAverageAfter = os.loadavg();
    return { environment: env, cryptoFloorBytesPerSec: floors, cryptoFloorCpuPerGB: floorCpuPerGB(median(floors)!), points };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
    await fs.promises.rm(work, { recursive: true, force: true });
  }
}

/** Starts every server, fills the caches, and lists the measurements in their interleaved order. */
async function prepareSteps(c: PhaseContext): Promise<Array<[string, () => Promise<void>]>> {
  const origin = await startNginx('origin', { dir: path.join(c.work, 'origin'), host: '127.0.0.1', root: c.root, role: { kind: 'origin' } });
  c.stops.push(() => origin.stop());
  const fronts = c.o.fronts ?? (Object.keys(FRONTS) as Front[]);
  // The TLS origin (TLS 1.3, userspace: the origin is not what is measured) for the -tls fronts.
  const tlsOrigin = fronts.some((f) => f.endsWith('-tls'))
    ? await startNginx('origin-tls', { dir: path.join(c.work, 'origin-tls'), host: '127.0.0.1', root: c.root, role: { kind: 'origin' }, tls: { ...c.tls, offload: 'userspace' } })
    : null;
  if (tlsOrigin) c.stops.push(() => tlsOrigin.stop());
  const scenarios = await startFronts(c, fronts, origin, tlsOrigin);
  const { txServers, rxServers } = c.o.fronts === null ? await startRecordServers(c) : { txServers: [], rxServers: [] };
  if (c.o.pin) for (const pid of [origin.pid, ...scenarios.map((s) => s.server.pid), ...txServers.map((s) => s.server.pid), ...rxServers.map((s) => s.server.pid)]) await run('taskset', ['-a', '-p', '-c', '0', String(pid)]);
  const scriptFile = path.join(c.work, 'report.lua');
  await fs.promises.writeFile(scriptFile, WRK_SCRIPT);
  // Fill both caches (one request each per file) before anything is measured.
  for (const s of scenarios.filter((x) => x.front.endsWith('-cache'))) {
    for (const f of ['load.bin', 'download.bin', ...c.p.fileSizes.map((x) => `size-${x}.bin`)]) await c.exec(['curl', '-skf', '-o', '/dev/null', c.url(s.server, f)], 600);
  }
  const wrk = async (s: Server, file: string, conns: number, seconds: number): Promise<WrkResult> =>
    parseWrkOutput(await c.exec(['wrk', '-t', String(Math.min(conns, 2)), '-c', String(conns), '-d', `${seconds}s`, '--timeout', '60s', '-s', scriptFile, c.url(s, file)], seconds * 20 + 120));
  const steps: Array<[string, () => Promise<void>]> = [];
  for (let round = 0; round < c.p.rounds; round++) steps.push(...roundSteps(c, scenarios, txServers, rxServers, wrk));
  return steps;
}

/** The fronts compared (nginx and Aludel, each offload), started together: on the VM's emulated CPU each Node start-up takes tens of seconds. */
async function startFronts(c: PhaseContext, fronts: Front[], origin: Server, tlsOrigin: Server | null): Promise<Scenario[]> {
  const starting: Array<Promise<Scenario>> = [];
  for (const offload of c.o.offloads) {
    for (const front of fronts) {
      const name = `${front}/${offload}`;
      const behind = front.endsWith('-tls') ? tlsOrigin! : origin;
      const server = startFront(c, front, offload, name, behind);
      starting.push(server.then((srv) => ({ name, front, offload, server: srv, origin: front === 'nginx-direct' ? null : behind })));
    }
  }
  const settled = await Promise.allSettled(starting);
  for (const r of settled) if (r.status === 'fulfilled') c.stops.push(() => r.value.server.stop());
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<Scenario>).value);
}

/** One front of one offload, in front of `origin` (the TLS origin for the -tls fronts). */
function startFront(c: PhaseContext, front: Front, offload: Offload, name: string, origin: Server): Promise<Server> {
  const dir = path.join(c.work, name.replace('/', '-'));
  const host = c.net.serverAddress;
  const tls = { ...c.tls, offload };
  switch (front) {
    case 'nginx-direct':
      return startNginx(name, { dir, host, root: c.root, role: { kind: 'direct' }, tls });
    case 'nginx-proxy':
    case 'nginx-proxy-tls':
      return startNginx(name, { dir, host, root: c.root, role: { kind: 'proxy', originPort: origin.port, originTls: front === 'nginx-proxy-tls' }, tls });
    case 'nginx-cache':
      return startNginx(name, { dir, host, root: c.root, role: { kind: 'cache', originPort: origin.port }, tls });
    case 'aludel-proxy-tls':
      return startAludel(name, { host, tls: c.tls, offload, originPort: origin.port, originUrl: `https://127.0.0.1:${origin.port}` });
    default:
      return startAludel(name, { host, tls: c.tls, offload, originPort: origin.port, cacheDir: front === 'aludel-cache' ? path.join(dir, 'cache') : undefined });
  }
}

/**
 * Record-size sweep servers: nginx with sendfile off writes every body through SSL_write in ssl_buffer_size records (also with kTLS);
 * openssl s_server receives records of the client's -max_send_frag.
 */
async function startRecordServers(c: PhaseContext): Promise<{ txServers: Array<{ offload: Offload; record: number; server: Server }>; rxServers: Array<{ offload: Offload; server: Server }> }> {
  const txServers: Array<{ offload: Offload; record: number; server: Server }> = [];
  const rxServers: Array<{ offload: Offload; server: Server }> = [];
  for (const offload of c.o.offloads) {
    for (const record of c.p.recordSizes) {
      const server = await startNginx(`record-${record}/${offload}`, { dir: path.join(c.work, `record-${record}-${offload}`), host: c.net.serverAddress, root: c.root, role: { kind: 'direct' }, tls: { ...c.tls, offload }, recordSize: record, sendfile: false });
      c.stops.push(() => server.stop());
      txServers.push({ offload, record, server });
    }
    const sink = await startOpensslSink(path.join(c.work, `sink-${offload}`), c.net.serverAddress, c.tls, offload);
    c.stops.push(() => sink.stop());
    rxServers.push({ offload, server: sink });
  }
  return { txServers, rxServers };
}

/** One client run against `front` (and the origin behind it): CPU, wire bytes, energy and kTLS counters around it. */
async function measure(c: PhaseContext, base: PointBase, front: number, originPid: number | null, client: ClientRun): Promise<void> {
  const tlsStat = async (): Promise<Record<string, number> | null> => {
    const t = await readKernelTlsStat();
    return t.available ? t.counters : null;
  };
  const w0 = c.net.wireBytes();
  const t0 = await tlsStat();
  const e0 = readEnergy();
  const f0 = cpuSeconds([front], c.hz);
  const g0 = originPid ? cpuSeconds([originPid], c.hz) : 0;
  const r = await client();
  const f1 = cpuSeconds([front], c.hz);
  const g1 = originPid ? cpuSeconds([originPid], c.hz) : 0;
  const e1 = readEnergy();
  const t1 = await tlsStat();
  const w1 = c.net.wireBytes();
  const wire = w0 && w1 ? (base.test === 'record-rx' ? w1.rx - w0.rx : w1.tx - w0.tx) : null;
  const bytes = wire ?? r.bytes;
  const delta = t0 && t1 ? counterDelta(t0, t1) : null;
  const cpuS = f1 - f0 + (g1 - g0);
  const perGB = cpuPerGB(cpuS, bytes);
  c.points.push({
    phase: c.o.phase,
    emulated: c.env.emulated,
    ...base,
    ...r,
    bytes,
    bytesSource: wire === null ? 'client' : 'veth',
    clientBytes: r.bytes,
    requestsPerSec: r.requests / r.durationS,
    bytesPerSec: bytes / r.durationS,
    cpuFrontS: f1 - f0,
    cpuOriginS: g1 - g0,
    cpuS,
    cpuPerGB: perGB,
    cpuFrontPerGB: cpuPerGB(f1 - f0, bytes),
    cpuPerRequestMs: r.requests > 0 ? (cpuS / r.requests) * 1000 : null,
    // Records ~ bytes / record size (on the wire 21 bytes of TLS and ~3% TCP/IP per record ride along: all sizes alike).
    cpuPerRecordUs: base.recordBytes && bytes > 0 ? (cpuS / (bytes / base.recordBytes)) * 1e6 : null,
    floorRatio: ratio(perGB, floorCpuPerGB(median(c.floors)!)),
    energyJ: energyJoules(e0, e1),
    tlsStatDelta: delta,
    ktls: ktlsVerdict(base, delta),
  });
}

function ktlsVerdict(base: PointBase, delta: Record<string, number> | null): Point['ktls'] {
  if (!delta) return 'no tls_stat';
  if (base.offload === 'userspace') return 'userspace';
  return ktlsProven(delta) || (base.test === 'record-rx' && (delta.TlsRxSw ?? 0) > 0) ? 'proven' : 'FELL BACK';
}

/** One round: every scenario at every point, so the fronts take turns (interleaved repeats). */
function roundSteps(
  c: PhaseContext,
  scenarios: Scenario[],
  txServers: Array<{ offload: Offload; record: number; server: Server }>,
  rxServers: Array<{ offload: Offload; server: Server }>,
  wrk: (s: Server, file: string, conns: number, seconds: number) => Promise<WrkResult>,
): Array<[string, () => Promise<void>]> {
  const { p } = c;
  const steps: Array<[string, () => Promise<void>]> = [];
  const point = (s: Scenario, test: Test, connections: number, fileBytes: number): PointBase => ({ test, scenario: s.name, front: s.front, offload: s.offload, connections, fileBytes, recordBytes: null });
  for (const conns of p.connections) {
    for (const s of scenarios) steps.push([`load ${s.name} c=${conns}`, () => measure(c, point(s, 'load', conns, 10 * MiB), s.server.pid, s.origin?.pid ?? null, () => wrk(s.server, 'load.bin', conns, p.loadSeconds))]);
  }
  // HTTP/1.1 and HTTP/2 apart: curl offers h2 by ALPN, and over HTTP/2 neither server can send a file body by
  // sendfile alone. Pinning the protocol keeps each ratio to one protocol on both sides.
  for (const [test, proto] of [['download', '--http1.1'], ['download-h2', '--http2']] as const) {
    if (c.o.tests && !c.o.tests.includes(test)) continue;
    for (const s of scenarios) steps.push([`${test} ${s.name}`, () => measure(c, point(s, test, 1, p.downloadFileBytes), s.server.pid, s.origin?.pid ?? null, () => downloads(c, s, proto))]);
  }
  for (const size of p.fileSizes) {
    for (const s of scenarios) steps.push([`file ${size} ${s.name}`, () => measure(c, point(s, 'file-size', 8, size), s.server.pid, s.origin?.pid ?? null, () => wrk(s.server, `size-${size}.bin`, 8, p.fileSizeSeconds))]);
  }
  for (const t of txServers) {
    steps.push([`record TX ${t.record} ${t.offload}`, () => measure(c, { test: 'record-tx', scenario: `nginx-direct/${t.offload}`, front: 'nginx-direct', offload: t.offload, connections: 1, fileBytes: 10 * MiB, recordBytes: t.record }, t.server.pid, null, () => wrk(t.server, 'load.bin', 1, p.recordSeconds))]);
  }
  for (const record of p.recordSizes) {
    for (const r of rxServers) {
      steps.push([`record RX ${record} ${r.offload}`, () => measure(c, { test: 'record-rx', scenario: `openssl-s_server/${r.offload}`, front: 'openssl-s_server', offload: r.offload, connections: 1, fileBytes: p.rxBytes, recordBytes: record }, r.server.pid, null, () => receive(c, r.server, record))]);
    }
  }
  return steps;
}

/** One curl, one keep-alive connection, the same large file `downloads` times, over the one protocol asked. */
async function downloads(c: PhaseContext, s: Scenario, proto: '--http1.1' | '--http2'): ReturnType<ClientRun> {
  const argv = ['curl', proto, '-sk', '-w', '%{size_download} %{http_code} %{http_version}\\n'];
  for (let i = 0; i < c.p.downloads; i++) argv.push('-o', '/dev/null', c.url(s.server, 'download.bin'));
  const t = process.hrtime.bigint();
  const out = await c.exec(argv, 1800);
  const durationS = Number(process.hrtime.bigint() - t) / 1e9;
  const lines = out.trim().split('\n').map((l) => l.split(' '));
  const want = proto === '--http2' ? '2' : '1.1';
  const wrongProto = lines.find(([, , v]) => v !== want);
  if (wrongProto) throw new Error(`${s.name}: ${proto} negotiated HTTP/${wrongProto[2]}, not HTTP/${want}`);
  return { durationS, requests: lines.length, bytes: lines.reduce((a, [b]) => a + Number(b), 0), errors: lines.filter(([, code]) => code !== '200').length, latencyMs: null };
}

/** s_client sends stdin in records of -max_send_frag bytes and closes at its EOF. */
async function receive(c: PhaseContext, server: Server, record: number): ReturnType<ClientRun> {
  const t = process.hrtime.bigint();
  await c.exec(['sh', '-c', `head -c ${c.p.rxBytes} /dev/zero | openssl s_client -connect ${c.net.serverAddress}:${server.port} -tls1_2 -cipher ${TLS12_CIPHER} -max_send_frag ${record} >/dev/null 2>&1`], 1800);
  return { durationS: Number(process.hrtime.bigint() - t) / 1e9, requests: 1, bytes: c.p.rxBytes, errors: 0, latencyMs: null };
}

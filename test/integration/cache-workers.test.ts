/**
 * One cache for all workers (issue 17): `aludel proxy --workers 2 --cache DIR`
 * on the real CLI with curl, in front of the sink origin, which counts the
 * requests that reach it. Which worker served a request is read from the pid
 * of its log lines; connections are opened one at a time until both workers
 * hold some (the kernel picks the worker). Windows are held open by the
 * sink's `hold=` (released once the proxy logged that every request waits)
 * and by a slow body (X-Sink-Rate), never by sleeping.
 *
 * - 16 concurrent misses of one URL over both workers: one origin request,
 *   16 identical bodies.
 * - A response stored through one worker is a hit through the other.
 * - After a PURGE, and after a POST (RFC 9111 §4.4), through one worker, and
 *   after a purge on the (primary's) admin listener, no worker sends the old
 *   response.
 * - kill -9 of the worker filling a key: a request waiting in the other
 *   worker gets a fresh fill, nothing partial is ever sent, and the dead
 *   worker's temporary file is removed when it is restarted.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { patternSha256, startSinkOrigin, type SinkOrigin } from '../support/origins.js';
import type { RunResult } from '../support/run-process.js';
import { waitUntil } from '../support/wait.js';

let fx: Fixtures;
let sink: SinkOrigin;
const running: Running[] = [];
let serial = 0;

before(async () => {
  fx = await makeFixtures({});
  sink = await startSinkOrigin();
});

after(async () => {
  for (const p of running) await p.stop();
  await sink?.stop();
  fx?.cleanup();
});

interface Proxy extends Running {
  dir: string;
  pids: number[];
}

async function proxy(...extra: string[]): Promise<Proxy> {
  const dir = path.join(fx.dir, `cache-${++serial}`);
  const args = ['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${sink.port}`, '--cache', dir, '--workers', '2', '--log-level', 'debug', ...extra];
  const p = await startAludel(args, { startTimeoutMs: 30_000 });
  running.push(p);
  const ready = await p.waitForLog((l) => Array.isArray(l.workerPids));
  return Object.assign(p, { dir, pids: ready.workerPids as number[] });
}

function get(p: Running, url: string, ...extra: string[]): Promise<RunResult> {
  return curl(['--cacert', fx.certFile, '-s', ...extra, `https://localhost:${p.port}${url}`], 60_000);
}

const since = (p: Running, from: number, pred: (l: LogLine) => boolean): LogLine[] => p.logs.slice(from).filter(pred);
/** GETs only: the line of a PURGE or POST of the same URL can be written after the next request's mark. */
const requests = (p: Running, from: number, url: string): LogLine[] => since(p, from, (l) => l.msg === 'request' && l.url === url && l.method === 'GET');
const connections = (p: Running, from: number): LogLine[] => since(p, from, (l) => l.msg === 'TLS established');
const waiting = (p: Running, from: number): LogLine[] => since(p, from, (l) => l.msg.startsWith('cache: waiting'));
const sinkCount = (url: string): number => sink.requests.filter((r) => r.url === url).length;
const n = (r: RunResult): number => (JSON.parse(r.stdout.toString()) as { n: number }).n;

/**
 * Starts requests one at a time (each on a new connection, once the previous
 * one's TLS handshake is logged) until `count` are under way and both
 * workers hold at least one of them.
 */
async function spread(p: Proxy, count: number, start: () => Promise<RunResult>): Promise<Array<Promise<RunResult>>> {
  const from = p.mark();
  const started: Array<Promise<RunResult>> = [];
  while (started.length < count || new Set(connections(p, from).map((l) => l.pid)).size < 2) {
    assert.ok(started.length < 60, 'the kernel put 60 connections on one worker');
    started.push(start());
    await waitUntil(() => connections(p, from).length === started.length, 10_000);
  }
  return started;
}

/** GETs `url` on new connections until each worker has answered at least `each` of them; returns the answers with their log lines. */
async function fromBoth(p: Proxy, url: string, each = 1): Promise<Array<{ r: RunResult; line: LogLine }>> {
  const out: Array<{ r: RunResult; line: LogLine }> = [];
  const on = (pid: number): number => out.filter((x) => x.line.pid === pid).length;
  while (p.pids.some((pid) => on(pid) < each)) {
    assert.ok(out.length < 60, `60 requests and still not ${each} on each worker`);
    const from = p.mark();
    const r = await get(p, url);
    assert.equal(r.code, 0, r.stderr);
    await waitUntil(() => requests(p, from, url).length === 1, 10_000);
    out.push({ r, line: requests(p, from, url)[0]! });
  }
  return out;
}

/** The entry stored for `url` has reached the worker that did not store it. */
async function relayed(p: Proxy, url: string, storedBy: number, from: number): Promise<void> {
  await p.waitForLog((l) => l.msg === 'cache: stored by another worker' && l.pid !== storedBy && String(l.key).endsWith(url), 10_000, from);
}

describe('--workers 2 --cache: one cache for all workers', () => {
  test('16 concurrent misses of one URL over both workers reach the origin once; every body is the origin\'s', { timeout: 120_000 }, async () => {
    const p = await proxy();
    const size = 300_000;
    const url = `/cache?size=${size}&cc=max-age%3D600&hold=c16`;
    const from = p.mark();
    const started = await spread(p, 16, () => get(p, url));
    // One request went upstream (held there by the sink); every other one waits for its fill, in either worker.
    await waitUntil(() => sinkCount(url) === 1 && waiting(p, from).length === started.length - 1, 20_000);
    sink.release('c16');
    const results = await Promise.all(started);
    for (const r of results) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha256(r.stdout), patternSha256(size), 'byte-equal to the origin\'s body');
    }
    assert.equal(sinkCount(url), 1, 'one origin request for all of them');
    await waitUntil(() => requests(p, from, url).length === started.length, 10_000);
    const lines = requests(p, from, url);
    assert.deepEqual(new Set(lines.map((l) => l.pid)), new Set(p.pids), 'both workers answered');
    assert.equal(lines.filter((l) => l.cache === 'miss').length, 1);
    // The leader's worker streams the fill to its followers; the other worker answers from the committed entry.
    assert.ok(lines.every((l) => l.cache === 'miss' || l.cache === 'collapsed' || l.cache === 'hit'), JSON.stringify(lines.map((l) => l.cache)));
    const leader = lines.find((l) => l.cache === 'miss')!.pid;
    assert.ok(lines.filter((l) => l.pid !== leader).every((l) => l.cache === 'hit'));
  });

  test('a response stored through one worker is a hit through the other', { timeout: 120_000 }, async () => {
    const p = await proxy();
    const url = '/cache?cc=max-age%3D600&t=hit';
    const from = p.mark();
    const first = await get(p, url);
    await waitUntil(() => requests(p, from, url).length === 1, 10_000);
    const line = requests(p, from, url)[0]!;
    assert.equal(line.cache, 'miss');
    await relayed(p, url, line.pid as number, from);
    const later = await fromBoth(p, url);
    for (const { r, line: l } of later) {
      assert.equal(l.cache, 'hit', `worker ${l.pid}`);
      assert.equal(n(r), n(first), 'the stored response');
    }
    assert.equal(sinkCount(url), 1);
  });

  /** The request that invalidates `url`: a PURGE or a POST through the proxy (one worker), or the admin listener's POST /purge (the primary's). */
  async function invalidate(p: Proxy, how: 'PURGE' | 'POST' | 'admin', url: string): Promise<RunResult> {
    if (how === 'admin') {
      const admin = String((await p.waitForLog((l) => l.msg === 'admin listening')).admin);
      return curl(['-sS', '-X', 'POST', `http://${admin}/purge?url=${encodeURIComponent(`https://localhost:${p.port}${url}`)}`]);
    }
    return get(p, url, '-X', how, ...(how === 'POST' ? ['--data', 'x'] : []));
  }

  for (const how of ['PURGE', 'POST', 'admin'] as const) {
    test(`after a ${how === 'admin' ? 'POST /purge on the admin listener' : `${how} through one worker`}, no worker sends the old response (RFC 9111 §4.4)`, { timeout: 120_000 }, async () => {
      const p = await proxy(...(how === 'admin' ? ['--admin', '127.0.0.1:0'] : []));
      const url = `/cache?cc=max-age%3D600&t=${how}`;
      const from = p.mark();
      const old = await get(p, url);
      await waitUntil(() => requests(p, from, url).length === 1, 10_000);
      await relayed(p, url, requests(p, from, url)[0]!.pid as number, from);
      // Both workers hold it and send it.
      for (const { r, line } of await fromBoth(p, url)) {
        assert.equal(line.cache, 'hit');
        assert.equal(n(r), n(old));
      }
      const changed = await invalidate(p, how, url);
      assert.equal(changed.code, 0, changed.stderr);
      if (how !== 'POST') assert.equal((JSON.parse(changed.stdout.toString()) as { purged: number }).purged, 1);
      // At once, without waiting for the other worker to be told: its files are gone.
      const after = await fromBoth(p, url, 2);
      for (const { r, line } of after) assert.notEqual(n(r), n(old), `worker ${line.pid} (${String(line.cache)}) sent the response the ${how} invalidated`);
    });
  }

  test('kill -9 of the worker filling a key: a request waiting in the other gets a fresh fill; nothing partial is sent', { timeout: 120_000 }, async () => {
    const p = await proxy();
    const size = 2_000_000;
    const url = `/cache?size=${size}&cc=max-age%3D600&t=kill`;
    const from = p.mark();
    // 100 kB/s: the fill takes 20 s, the test kills its worker long before.
    const slow = get(p, url, '-H', 'X-Sink-Rate: 100000');
    const tmp = /^[0-9a-f]{32}\.(\d+)\.body\.tmp$/;
    const temps = (): string[] => fs.readdirSync(p.dir, { recursive: true }).map(String).filter((f) => tmp.test(path.basename(f)));
    await waitUntil(() => temps().some((f) => (fs.statSync(path.join(p.dir, f), { throwIfNoEntry: false })?.size ?? 0) > 0), 10_000);
    const victim = Number(tmp.exec(path.basename(temps()[0]!))![1]);
    assert.ok(p.pids.includes(victim), 'the temporary file names the filling worker');
    const survivor = p.pids.find((pid) => pid !== victim)!;
    // A request for the key in the other worker, waiting for the victim's fill.
    const mark = p.mark();
    const waiters: Array<Promise<RunResult>> = [];
    while (!waiting(p, mark).some((l) => l.pid === survivor)) {
      assert.ok(waiters.length < 30, 'no request reached the other worker');
      const before = connections(p, mark).length;
      waiters.push(get(p, url));
      await waitUntil(() => connections(p, mark).length > before, 10_000);
      const last = connections(p, mark).at(-1)!;
      if (last.pid === survivor) await p.waitForLog((l) => l.pid === survivor && l.msg.startsWith('cache: waiting'), 10_000, mark);
    }
    process.kill(victim, 'SIGKILL');
    const killed = await slow;
    assert.notEqual(sha256(killed.stdout), patternSha256(size), 'the killed fill\'s own client got a cut body');
    const results = await Promise.all(waiters);
    const complete = results.filter((r) => r.code === 0);
    assert.ok(complete.length >= 1, 'the waiting request in the other worker was answered');
    for (const r of complete) assert.equal(sha256(r.stdout), patternSha256(size), 'every complete answer is the whole body');
    const restarted = await p.waitForLog((l) => l.msg === 'worker ready' && l.workerPid !== survivor, 30_000, mark);
    // Logged once its fill is committed (and its 'stored' sent to the restarted worker).
    await p.waitForLog((l) => l.msg === 'request' && l.url === url && l.pid === survivor, 10_000, mark);
    // Later requests, on both workers (the survivor and the restarted one): whole bodies, from one fresh fill.
    const later = await fromBoth({ ...p, pids: [survivor, restarted.workerPid as number] }, url);
    for (const { r } of later) assert.equal(sha256(r.stdout), patternSha256(size));
    assert.equal(sinkCount(url), 2, 'the killed fill, then one fresh fill');
    assert.ok(!temps().some((f) => f.includes(`.${victim}.`)), 'the dead worker\'s temporary file was removed at the restart');
  });
});

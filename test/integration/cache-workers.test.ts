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
 * - A request waiting for another worker's slow fill stops waiting at
 *   --upstream-headers-timeout and fetches the key itself, whole, while
 *   that fill goes on.
 * - stale-while-revalidate (RFC 5861 §3): concurrent stale hits over both
 *   workers, the origin holding its answer (test/support/switch-origin.ts),
 *   make one background revalidation on the host; kill -9 of the worker
 *   revalidating frees the key for the next one.
 * - Two workers storing parts of one key at once (RFC 9111 §3.4, Debian's
 *   nginx as origin, the commit gate of test/support/cache-commit-gate.ts
 *   holding both commits): the stored entry holds both parts.
 * - --cache-size: a response kept in use through one worker is not the one
 *   the other worker's commits evict.
 * - Clients that half-close after their request (close_notify and FIN, RFC
 *   9293 §3.6; they still read) while another worker fills the key: each
 *   gets the stored answer whole, on the lane and on node's server, as a
 *   follower in the filling worker does; when that fill stores nothing and
 *   they would go upstream themselves, each is given up then (499), nothing
 *   sent upstream.
 * Where a request must reach a given worker, it goes over a keep-alive
 * connection pinned to it (test/support/pinned-connections.ts).
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { commitGate } from '../support/cache-commit-gate.js';
import { decodeChunked } from '../support/chunked.js';
import { curl } from '../support/clients.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { patternSha256, startNginxOrigin, startSinkOrigin, type NginxOrigin, type SinkOrigin } from '../support/origins.js';
import { pinToWorkers, type PinnedConnection } from '../support/pinned-connections.js';
import { rawTls, splitHttp } from '../support/raw-http.js';
import type { RunResult } from '../support/run-process.js';
import { startSwitchOrigin, type SwitchOrigin } from '../support/switch-origin.js';
import { waitUntil } from '../support/wait.js';

let fx: Fixtures;
let sink: SinkOrigin;
const running: Running[] = [];
const origins: Array<{ stop(): Promise<void> }> = [];
let serial = 0;

before(async () => {
  fx = await makeFixtures({});
  sink = await startSinkOrigin();
});

after(async () => {
  for (const p of running) await p.stop();
  for (const o of origins) await o.stop();
  await sink?.stop();
  fx?.cleanup();
});

interface Proxy extends Running {
  dir: string;
  pids: number[];
}

function proxy(...extra: string[]): Promise<Proxy> {
  return proxyTo(`http://127.0.0.1:${sink.port}`, {}, ...extra);
}

async function proxyTo(to: string, env: NodeJS.ProcessEnv, ...extra: string[]): Promise<Proxy> {
  const dir = path.join(fx.dir, `cache-${++serial}`);
  const args = ['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', to, '--cache', dir, '--workers', '2', '--log-level', 'debug', ...extra];
  const p = await startAludel(args, { startTimeoutMs: 30_000, env });
  running.push(p);
  const ready = await p.waitForLog((l) => Array.isArray(l.workerPids));
  return Object.assign(p, { dir, pids: ready.workerPids as number[] });
}

/** A keep-alive connection on each worker, in the order of p.pids. */
async function pinned(p: Proxy, probe: string): Promise<PinnedConnection[]> {
  const byPid = await pinToWorkers(p, fs.readFileSync(fx.certFile), p.pids, probe);
  return p.pids.map((pid) => byPid.get(pid)!);
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

/** The temporary body files of fills in progress in p's cache directory (named by their worker's pid). */
const TEMP_BODY = /^[0-9a-f]{32}\.(\d+)\.body\.tmp$/;
function temps(p: Proxy): string[] {
  return fs.readdirSync(p.dir, { recursive: true }).map(String).filter((f) => TEMP_BODY.test(path.basename(f)));
}

/** The pid of the worker filling the one key being filled, once its temporary body has bytes. */
async function fillingWorker(p: Proxy): Promise<number> {
  await waitUntil(() => temps(p).some((f) => (fs.statSync(path.join(p.dir, f), { throwIfNoEntry: false })?.size ?? 0) > 0), 10_000);
  const pid = Number(TEMP_BODY.exec(path.basename(temps(p)[0]!))![1]);
  assert.ok(p.pids.includes(pid), 'the temporary file names the filling worker');
  return pid;
}

/**
 * GETs of `url` on new connections, one at a time, until one is waiting in
 * worker `pid` for the other worker's fill (those on the filling worker
 * follow its fill); the last one returned is that one.
 */
async function waitingIn(p: Proxy, url: string, pid: number, mark: number): Promise<Array<Promise<RunResult>>> {
  const sent: Array<Promise<RunResult>> = [];
  while (!waiting(p, mark).some((l) => l.pid === pid)) {
    assert.ok(sent.length < 30, 'no request reached the other worker');
    const before = connections(p, mark).length;
    sent.push(get(p, url));
    await waitUntil(() => connections(p, mark).length > before, 10_000);
    if (connections(p, mark).at(-1)!.pid === pid) await p.waitForLog((l) => l.pid === pid && l.msg.startsWith('cache: waiting'), 10_000, mark);
  }
  return sent;
}

/** The metadata of the responses stored in a cache directory (one unlinked while it is read is left out). */
function storedMetas(dir: string): Array<{ key: string; ranges?: unknown }> {
  const out: Array<{ key: string; ranges?: unknown }> = [];
  for (const d of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (!d.isFile() || !d.name.endsWith('.meta.json')) continue;
    try {
      out.push(JSON.parse(fs.readFileSync(path.join(d.parentPath, d.name), 'utf8')) as { key: string; ranges?: unknown });
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') throw err;
    }
  }
  return out;
}

/** The ids of the responses stored in a cache directory (their metadata files are named by id). */
function storedIds(dir: string): string[] {
  const out: string[] = [];
  for (const d of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (d.isFile() && d.name.endsWith('.meta.json')) out.push(d.name.slice(0, -'.meta.json'.length));
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

  test('POST /purge on the admin listener while the first worker is stopped (SIGSTOP): another worker purges it, 200, and the old response is gone', { timeout: 120_000 }, async () => {
    const p = await proxy('--admin', '127.0.0.1:0');
    const url = '/cache?cc=max-age%3D600&t=stopped';
    const from = p.mark();
    const old = await get(p, url);
    await waitUntil(() => requests(p, from, url).length === 1, 10_000);
    await relayed(p, url, requests(p, from, url)[0]!.pid as number, from);
    // The primary asks its workers in order: the first (p.pids[0]) does not answer.
    process.kill(p.pids[0]!, 'SIGSTOP');
    let purged: RunResult;
    try {
      purged = await invalidate(p, 'admin', url);
    } finally {
      process.kill(p.pids[0]!, 'SIGCONT');
    }
    assert.equal(purged.code, 0, purged.stderr);
    assert.deepEqual(JSON.parse(purged.stdout.toString()), { url: `https://localhost:${p.port}${url}`, purged: 1 }, purged.stdout.toString());
    for (const { r, line } of await fromBoth(p, url)) assert.notEqual(n(r), n(old), `worker ${line.pid} (${String(line.cache)}) sent the purged response`);
  });

  test('kill -9 of the worker filling a key: a request waiting in the other gets a fresh fill; nothing partial is sent', { timeout: 120_000 }, async () => {
    const p = await proxy();
    const size = 2_000_000;
    const url = `/cache?size=${size}&cc=max-age%3D600&t=kill`;
    // 100 kB/s: the fill takes 20 s, the test kills its worker long before.
    const slow = get(p, url, '-H', 'X-Sink-Rate: 100000');
    const victim = await fillingWorker(p);
    const survivor = p.pids.find((pid) => pid !== victim)!;
    // A request for the key in the other worker, waiting for the victim's fill.
    const mark = p.mark();
    const waiters = await waitingIn(p, url, survivor, mark);
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
    assert.ok(!temps(p).some((f) => f.includes(`.${victim}.`)), 'the dead worker\'s temporary file was removed at the restart');
  });
  test('--upstream-headers-timeout bounds the wait for another worker\'s fill: the waiting request then fetches the key itself, whole, while that fill goes on', { timeout: 120_000 }, async () => {
    const p = await proxy('--upstream-headers-timeout', '1s');
    const size = 1_000_000;
    const url = `/cache?size=${size}&cc=max-age%3D600&t=peer-wait`;
    // 100 kB/s: the fill takes 10 s, ten times the wait. Its head comes at once (the timeout is not the fill's).
    let slowDone = false;
    const slow = get(p, url, '-H', 'X-Sink-Rate: 100000').finally(() => (slowDone = true));
    const filler = await fillingWorker(p);
    const other = p.pids.find((pid) => pid !== filler)!;
    // New connections until one request waits in the other worker (the others follow the fill in its own worker).
    const mark = p.mark();
    const sent = await waitingIn(p, url, other, mark);
    const stopped = await p.waitForLog((l) => l.pid === other && l.msg.startsWith('cache: stopped waiting for another worker\'s fill'), 10_000, mark);
    assert.equal(stopped.waitedMs, 1000);
    const waiter = await sent.at(-1)!;
    assert.equal(waiter.code, 0, waiter.stderr);
    assert.equal(sha256(waiter.stdout), patternSha256(size), 'its own fetch: the whole body');
    assert.equal(slowDone, false, 'answered while the first fill was still going: it did not wait for it');
    assert.equal(sinkCount(url), 2, 'the first fill, and the waiting request\'s own');
    const line = await p.waitForLog((l) => l.msg === 'request' && l.url === url && l.pid === other, 10_000, mark);
    assert.equal(line.status, 200);
    // The first fill and its own followers are unharmed.
    for (const r of [await slow, ...(await Promise.all(sent))]) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(sha256(r.stdout), patternSha256(size));
    }
    assert.equal(sinkCount(url), 2);
  });
  describe('stale-while-revalidate (RFC 5861 §3) across the workers', () => {
    const enc = encodeURIComponent;
    /** About 99 s stale as soon as it is stored (Age: 100, max-age=1), within its stale-while-revalidate window. */
    const url = (name: string): string => `/${name}?cc=${enc('max-age=1, stale-while-revalidate=600')}&age=100&etag=${name}`;
    const keyOf = (l: LogLine, u: string): boolean => typeof l.key === 'string' && l.key.endsWith(u);
    const started = (p: Proxy, from: number, u: string): LogLine[] => since(p, from, (l) => l.msg.startsWith('cache: background revalidation started') && keyOf(l, u));
    const leftToOther = (p: Proxy, from: number, u: string): LogLine[] => since(p, from, (l) => l.msg.startsWith('cache: background revalidation left to another worker') && keyOf(l, u));

    async function setup(name: string): Promise<{ p: Proxy; o: SwitchOrigin; u: string; first: RunResult; open: () => void }> {
      const o = await startSwitchOrigin();
      origins.push(o);
      const p = await proxyTo(`http://127.0.0.1:${o.port}`, {});
      const u = url(name);
      const from = p.mark();
      const first = await get(p, u);
      assert.equal(first.code, 0, first.stderr);
      await waitUntil(() => requests(p, from, u).length === 1, 10_000);
      assert.equal(requests(p, from, u)[0]!.cache, 'miss');
      await relayed(p, u, requests(p, from, u)[0]!.pid as number, from);
      // From now on the origin holds its answers: a revalidation that started is still running when the last request comes.
      let open!: () => void;
      o.gate = new Promise((resolve) => (open = resolve));
      return { p, o, u, first, open };
    }

    test('8 concurrent stale hits over both workers: all answered at once, one revalidation reaches the origin', { timeout: 120_000 }, async () => {
      const { p, o, u, first, open } = await setup('swr-one');
      const mark = p.mark();
      const results = await Promise.all(await spread(p, 8, () => get(p, u)));
      for (const r of results) {
        assert.equal(r.code, 0, r.stderr);
        assert.equal(n(r), n(first), 'the stored (stale) response, without waiting for the origin');
      }
      await waitUntil(() => requests(p, mark, u).length === results.length, 10_000);
      const lines = requests(p, mark, u);
      assert.deepEqual(new Set(lines.map((l) => l.pid)), new Set(p.pids), 'both workers answered');
      assert.ok(lines.every((l) => l.cache === 'stale-while-revalidate'), JSON.stringify(lines.map((l) => l.cache)));
      // Each worker has made up its mind (started one, or found the key held by the other) and what started reached the origin.
      const decided = (pid: number): boolean => [...started(p, mark, u), ...leftToOther(p, mark, u)].some((l) => l.pid === pid);
      await waitUntil(() => p.pids.every(decided) && o.count(u) >= 2, 10_000);
      assert.deepEqual(started(p, mark, u).length, 1, `one background revalidation on the host, not one per worker: ${JSON.stringify(started(p, mark, u).map((l) => l.pid))}`);
      const reviser = started(p, mark, u)[0]!.pid as number;
      const other = p.pids.find((pid) => pid !== reviser)!;
      assert.ok(leftToOther(p, mark, u).every((l) => l.pid === other));
      assert.equal(o.count(u), 2, 'the first fetch, then one revalidation');
      // Its 304 (now with max-age=600) freshens the response for both workers.
      const done = p.mark();
      o.fresh = 'max-age=600';
      open();
      await p.waitForLog((l) => l.msg.startsWith('cache: background revalidation done') && l.pid === reviser, 10_000, done);
      await p.waitForLog((l) => l.msg === 'cache: stored by another worker' && l.pid === other && keyOf(l, u), 10_000, done);
      for (const { r, line } of await fromBoth(p, u)) {
        assert.equal(line.cache, 'hit', `worker ${String(line.pid)}`);
        assert.equal(n(r), n(first), 'freshened by a 304: the same body');
      }
      assert.equal(o.count(u), 2);
    });

    test('kill -9 of the worker revalidating frees the key: the next stale hit starts a revalidation in a live worker', { timeout: 120_000 }, async () => {
      const { p, o, u, open } = await setup('swr-kill');
      try {
        const mark = p.mark();
        const r = await get(p, u);
        assert.equal(r.code, 0, r.stderr);
        const victim = (await p.waitForLog((l) => l.msg.startsWith('cache: background revalidation started') && keyOf(l, u), 10_000, mark)).pid as number;
        // The revalidation is at the origin, which holds it.
        await waitUntil(() => o.count(u) === 2, 10_000);
        const killed = p.mark();
        process.kill(victim, 'SIGKILL');
        await p.waitForLog((l) => l.msg.startsWith('cache: a worker died holding keys') && l.workerPid === victim, 10_000, killed);
        const again = await get(p, u);
        assert.equal(again.code, 0, again.stderr);
        const line = await p.waitForLog((l) => l.msg.startsWith('cache: background revalidation started') && keyOf(l, u), 10_000, killed);
        assert.notEqual(line.pid, victim);
        await waitUntil(() => o.count(u) === 3, 10_000);
      } finally {
        open();
      }
    });
  });

  test('two workers storing parts of one key at once: the stored entry holds both parts (RFC 9111 §3.4)', { timeout: 120_000 }, async () => {
    const nginx: NginxOrigin = await startNginxOrigin({ root: fx.root });
    origins.push(nginx);
    const gate = commitGate(path.join(fx.dir, `gate-${++serial}`));
    const p = await proxyTo(`http://127.0.0.1:${nginx.port}`, gate.env);
    const [a, b] = await pinned(p, '/probe');
    const name = `parts-${++serial}.bin`;
    const bytes = crypto.randomBytes(300_000);
    fs.writeFileSync(path.join(fx.root, name), bytes);
    const u = `/cc/${name}?cc=max-age=60`;
    const from = p.mark();
    // Each worker's part is held before its commit: neither has seen the other's when both are received.
    gate.hold();
    const [ra, rb] = await Promise.all([a!.get(u, { Range: 'bytes=0-9999' }), b!.get(u, { Range: 'bytes=100000-109999' })]);
    assert.equal(ra.status, 206);
    assert.ok(ra.body.equals(bytes.subarray(0, 10_000)));
    assert.equal(rb.status, 206);
    assert.ok(rb.body.equals(bytes.subarray(100_000, 110_000)));
    // Both are committing: both at the gate, or one there and the other waiting for the key.
    const waitsForKey = (): boolean => since(p, from, (l) => l.msg.startsWith('cache: waiting for another worker') && p.pids.includes(l.pid as number)).length > 0;
    await waitUntil(() => gate.held().length === 2 || (gate.held().length === 1 && waitsForKey()), 10_000);
    gate.release();
    await waitUntil(() => requests(p, from, u).length === 2, 10_000);
    assert.deepEqual(requests(p, from, u).map((l) => l.cacheDetail ?? null), [null, null], 'both parts stored');
    // The entries they replaced are unlinked in the background: then one is left.
    let metas: Array<{ ranges?: unknown }> = [];
    await waitUntil(() => (metas = storedMetas(p.dir)).length === 1, 10_000);
    assert.deepEqual(metas[0]!.ranges, [[0, 10_000], [100_000, 110_000]], 'each worker\'s part kept');
    // The entry left has reached the worker that did not store it: the files on disk settle
    // before that worker applies the later store's event, and until then it still looks in its
    // own entry (a miss there once failed this test).
    const finalId = storedIds(p.dir)[0]!;
    await waitUntil(() => since(p, from, (l) => l.msg === 'cache: stored by another worker' && l.id === finalId).length === 1, 10_000);
    // Each worker answers the other's part from the store.
    for (const [c, first, last] of [[a!, 100_000, 109_999], [b!, 0, 9_999]] as const) {
      const mark = p.mark();
      const r = await c.get(u, { Range: `bytes=${first}-${last}` });
      assert.equal(r.status, 206);
      assert.ok(r.body.equals(bytes.subarray(first, last + 1)));
      assert.equal((await p.waitForLog((l) => l.msg === 'request' && l.url === u, 10_000, mark)).cache, 'hit', `worker ${c.pid}`);
    }
    assert.equal((await nginx.accessLog()).filter((e) => e.uri === u).length, 2, 'the origin sent each part once');
  });

  test('--cache-size: a response kept in use through one worker survives the evictions of the other\'s commits (one LRU order)', { timeout: 120_000 }, async () => {
    const size = 100_000;
    // Three responses of 100 kB (and their metadata) fit, four do not.
    const p = await proxy('--cache-size', '350000');
    const [a, b] = await pinned(p, '/echo-headers');
    const u = (name: string): string => `/cache?size=${size}&cc=max-age%3D600&t=lru-${name}`;
    const line = async (c: PinnedConnection, url: string): Promise<LogLine> => {
      const from = p.mark();
      const r = await c.get(url);
      assert.equal(r.status, 200);
      assert.equal(sha256(r.body), patternSha256(size));
      const l = await p.waitForLog((x) => x.msg === 'request' && x.url === url, 10_000, from);
      assert.equal(l.pid, c.pid);
      return l;
    };
    const store = async (c: PinnedConnection, url: string): Promise<void> => {
      const from = p.mark();
      assert.equal((await line(c, url)).cache, 'miss');
      await relayed(p, url, c.pid, from);
    };
    // In both workers' LRU order: hot, e1, e2.
    await store(a!, u('hot'));
    await store(b!, u('e1'));
    await store(b!, u('e2'));
    // Used through a: b never served it, so in b's own order it is still the oldest.
    const used = p.mark();
    assert.equal((await line(a!, u('hot'))).cache, 'hit');
    await p.waitForLog((l) => l.pid === b!.pid && l.msg.startsWith('cache: recent uses from another worker') && (l.moved as number) >= 1, 10_000, used);
    // b's commit of a fourth response passes --cache-size: b evicts its least recently used.
    const evictions = p.mark();
    await store(b!, u('e3'));
    const evicted = since(p, evictions, (l) => l.msg === 'cache: evicted').map((l) => String(l.key));
    assert.deepEqual(evicted.map((k) => k.slice(k.indexOf('/cache'))), [u('e1')], 'the least recently used on the host went, not the one in use');
    for (const c of [b!, a!]) assert.equal((await line(c, u('hot'))).cache, 'hit', `worker ${c.pid}`);
    assert.equal(sinkCount(u('hot')), 1);
    assert.equal((await line(b!, u('e1'))).cache, 'miss', 'evicted');
  });
});

describe('--workers 2 --cache: clients that half-close while another worker fills the key', () => {
  /** Half-closing followers on the worker that does not fill: enough to see them all kept (before the fix each was cut). */
  const CROSS = 4;
  const size = 300_000;

  /** A GET on a new connection; `halfClose`: close_notify and FIN right behind it. Via node's server: a field given twice (the lane hands it over). */
  function send(p: Proxy, url: string, viaNode: boolean, halfClose: boolean): Promise<Buffer> {
    const text = `GET ${url} HTTP/1.1\r\nHost: localhost:${p.port}\r\n${viaNode ? 'X-Twice: 1\r\nX-Twice: 2\r\n' : ''}${halfClose ? '' : 'Connection: close\r\n'}\r\n`;
    return rawTls(p.port, fx.certPem, text, 60_000, { halfClose });
  }

  /** Whether `raw` is a 200 carrying the sink's `size` pattern bytes whole (Content-Length or chunked). */
  function whole(raw: Buffer): boolean {
    if (raw.indexOf('\r\n\r\n') < 0) return false;
    const r = splitHttp(raw);
    try {
      return r.status === 200 && sha256(r.headers['transfer-encoding'] === 'chunked' ? decodeChunked(r.body).data : r.body) === patternSha256(size);
    } catch {
      return false;
    }
  }

  /**
   * A fill of `url` held at the origin before its head (the sink's hold=), its worker the
   * leader's; then half-closing clients, one connection at a time, until CROSS of them are on
   * the other worker, each waiting for the fill (in its worker, or for the other worker's).
   */
  async function whileAnotherFills(p: Proxy, url: string, viaNode: boolean): Promise<{ leader: Promise<Buffer>; leaderPid: number; followers: Array<{ got: Promise<Buffer>; pid: number }> }> {
    const from = p.mark();
    const leader = send(p, url, viaNode, false);
    await waitUntil(() => sinkCount(url) === 1, 20_000);
    const leaderPid = connections(p, from)[0]!.pid as number;
    const followers: Array<{ got: Promise<Buffer>; pid: number }> = [];
    while (followers.filter((f) => f.pid !== leaderPid).length < CROSS) {
      assert.ok(followers.length < 60, `60 connections and still not ${CROSS} on the worker that does not fill`);
      const got = send(p, url, viaNode, true);
      await waitUntil(() => connections(p, from).length === followers.length + 2, 10_000);
      followers.push({ got, pid: connections(p, from)[followers.length + 1]!.pid as number });
    }
    // Every follower waits: in the leader's worker for the fill's head, in the other for its fill to end.
    await waitUntil(() => waiting(p, from).length === followers.length, 20_000);
    const cross = waiting(p, from).filter((l) => l.msg === 'cache: waiting for another worker\'s fill of this key');
    assert.equal(cross.length, CROSS, JSON.stringify(waiting(p, from)));
    assert.ok(cross.every((l) => l.pid !== leaderPid), 'the cross-worker waits are in the worker that does not fill');
    // Only gives the FINs, sent with the requests, time to be read while they wait: before the
    // fix they aborted the cross-worker followers then. The assertions do not depend on it.
    await new Promise((r) => setTimeout(r, 300));
    return { leader, leaderPid, followers };
  }

  for (const viaNode of [false, true]) {
    const path = viaNode ? "node's server" : 'the lane';
    test(`a request waiting for another worker's fill gets the stored answer whole (${path})`, { timeout: 120_000 }, async () => {
      const p = await proxy();
      const url = `/cache?size=${size}&cc=max-age%3D600&hold=hc-${viaNode ? 'node' : 'lane'}`;
      const from = p.mark();
      const { leader, leaderPid, followers } = await whileAnotherFills(p, url, viaNode);
      sink.release(`hc-${viaNode ? 'node' : 'lane'}`);
      assert.ok(whole(await leader), 'the fill\'s own client got it whole');
      const got = await Promise.all(followers.map((f) => f.got));
      const short = got.map((raw, i) => (whole(raw) ? null : `${followers[i]!.pid === leaderPid ? 'same' : 'other'} worker: ${raw.length} bytes`)).filter((s) => s !== null);
      assert.deepEqual(short, [], `${short.length} of ${followers.length} half-closing followers did not get the whole answer`);
      await waitUntil(() => requests(p, from, url).length === followers.length + 1, 10_000);
      const lines = requests(p, from, url);
      assert.ok(lines.every((l) => l.status === 200 && l.error === undefined), JSON.stringify(lines));
      // In the other worker, answered from the store once the fill was committed.
      const other = lines.filter((l) => l.pid !== leaderPid);
      assert.equal(other.length, CROSS);
      assert.ok(other.every((l) => l.cache === 'hit'), JSON.stringify(other));
      assert.equal(sinkCount(url), 1, 'one origin request for all of them');
    });

    // no-store: nothing stored, the request goes to the origin itself; no-cache with an ETag:
    // stored, but it must be validated (RFC 9111 §5.2.2.4), so the request revalidates upstream.
    for (const [what, cc] of [['stores nothing', 'no-store'], ['stores a response that must be validated', 'no-cache&etag=v1']] as const) {
      test(`when the other worker's fill ${what}, a request that would go upstream itself is given up at its FIN: 499, nothing sent upstream (${path})`, { timeout: 120_000 }, async () => {
        const p = await proxy();
        const hold = `hc-${cc.slice(0, 8)}-${viaNode ? 'node' : 'lane'}`;
        const url = `/cache?size=${size}&cc=${cc}&hold=${hold}`;
        const from = p.mark();
        const { leader, followers } = await whileAnotherFills(p, url, viaNode);
        sink.release(hold);
        assert.ok(whole(await leader), 'the fill\'s own client got it whole');
        const got = await Promise.all(followers.map((f) => f.got));
        assert.deepEqual(got.map((raw) => raw.length), followers.map(() => 0), 'no answer after the client left');
        await waitUntil(() => requests(p, from, url).length === followers.length + 1, 10_000);
        const gone = requests(p, from, url).filter((l) => l.status === 499);
        assert.equal(gone.length, followers.length, JSON.stringify(requests(p, from, url)));
        assert.ok(gone.every((l) => l.error === 'ERR_CLIENT_GONE'), JSON.stringify(gone));
        assert.equal(sinkCount(url), 1, 'only the fill went upstream');
      });
    }
  }
});

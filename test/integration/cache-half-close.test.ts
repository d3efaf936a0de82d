/**
 * `aludel proxy --cache`: a client that half-closes after its request
 * (close_notify and FIN behind it, TCP's shutdown(SHUT_WR); it still reads,
 * RFC 9293 §3.6, RFC 8446 §6.1) gets a cache hit whole: nothing waits on an
 * upstream (h1-lane.ts sendWholeAfterFin; nginx cuts most such hits, see
 * there). A request that waits on the upstream is still given up at the FIN
 * and logged 499, its upstream connection closed, as nginx's
 * (ngx_http_upstream_check_broken_connection, proxy_ignore_client_abort off).
 * Both on the lane (a plain GET) and on node's server (the same GET with a
 * field given twice, which the lane hands over). A follower of a fill still
 * waiting for the fill's head is sent whole too (nginx's proxy_cache_lock
 * waiters were, 10 of 10); one the fill's head cannot answer is aborted once
 * it would go upstream. Requests pipelined before the FIN are answered in
 * order (RFC 9112 §9.3.2): hits whole, and the first waiting on the upstream
 * given up once the hit ahead of it is out, logged 499; before, the lane
 * dropped them unread and unlogged, and node's server cut the hit ahead.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startAludel, type Running } from '../support/aludel-process.js';
import { makeFixtures, sha256, type StandardFixtures } from '../support/fixtures.js';
import { listenLocal, pipelinedBodies, rawTls, splitHttp } from '../support/raw-http.js';
import { decodeChunked } from '../support/chunked.js';

let fx: StandardFixtures;
let origin: net.Server;
let p: Running;
/** The origin's sockets holding a /slow request (never answered) until the proxy closes them. */
const slowOpen = new Set<net.Socket>();
/** The origin's sockets holding a /hold request, by target, until the test answers it (answer). */
const holding = new Map<string, net.Socket>();
/** Every /hold request the origin got, in order. */
const holdRequests: string[] = [];

const BIG = Buffer.alloc(4 * 1024 * 1024);
for (let i = 0; i < BIG.length; i++) BIG[i] = (i * 7 + (i >> 12)) & 0xff;
const BIG_SHA = sha256(BIG);
/** Half-closing clients per path: each got 0 bytes or a cut body about half the time before the fix. */
const CLIENTS = 10;

before(async () => {
  fx = await makeFixtures();
  origin = net.createServer((sock) => {
    let held = '';
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      held += d.toString('latin1');
      const end = held.indexOf('\r\n\r\n');
      if (end < 0) return;
      const target = held.slice(0, held.indexOf('\r\n')).split(' ')[1] ?? '/';
      held = held.slice(end + 4);
      if (target.startsWith('/hold')) {
        holdRequests.push(target);
        holding.set(target, sock);
        return;
      }
      if (target.startsWith('/slow')) {
        slowOpen.add(sock);
        sock.on('close', () => slowOpen.delete(sock));
        return;
      }
      answer(sock);
    });
  });
  const originPort = await listenLocal(origin);
  p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${originPort}`, '--max-fails', '0', '--cache', `${fx.dir}/cache`, '--log-level', 'debug']);
  const from = p.mark();
  const primed = splitHttp(await rawTls(p.port, fx.certPem, 'GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 30_000));
  assert.equal(sha256(primed.body), BIG_SHA);
  await p.waitForLog((l) => l.msg === 'request' && l.url === '/big' && l.cache === 'miss', 10_000, from);
});

/** The origin's answer: BIG, fresh for 10 minutes (`cacheControl`). */
function answer(sock: net.Socket, cacheControl = 'max-age=600'): void {
  sock.write(`HTTP/1.1 200 OK\r\nCache-Control: ${cacheControl}\r\nContent-Type: application/octet-stream\r\nContent-Length: ${BIG.length}\r\n\r\n`, 'latin1');
  sock.write(BIG);
}

after(async () => {
  await p?.stop();
  origin?.close();
  fx?.cleanup();
});

/** A plain GET (the lane's), or with a field given twice (node's server's). */
function getText(target: string, viaNode: boolean): string {
  return `GET ${target} HTTP/1.1\r\nHost: x\r\n${viaNode ? 'X-Twice: 1\r\nX-Twice: 2\r\n' : ''}\r\n`;
}

/** Whether `raw` begins with a 200 carrying BIG whole (Content-Length or chunked). */
function wholeBig(raw: Buffer): boolean {
  if (raw.indexOf('\r\n\r\n') < 0) return false;
  const r = splitHttp(raw);
  if (r.status !== 200) return false;
  try {
    return sha256(r.headers['transfer-encoding'] === 'chunked' ? decodeChunked(r.body).data : r.body.subarray(0, BIG.length)) === BIG_SHA;
  } catch {
    return false;
  }
}

async function waitUntil(cond: () => boolean, ms: number): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('aludel proxy --cache: a client that half-closes after its request', () => {
  for (const viaNode of [false, true]) {
    const path = viaNode ? "node's server" : 'the lane';
    test(`gets a 4 MiB hit whole (${path}, ${CLIENTS} clients)`, async () => {
      const from = p.mark();
      const got = await Promise.all(Array.from({ length: CLIENTS }, () => rawTls(p.port, fx.certPem, getText('/big', viaNode), 30_000, { halfClose: true })));
      const short = got.map((raw) => {
        const r = raw.indexOf('\r\n\r\n') < 0 ? null : splitHttp(raw);
        return r !== null && r.status === 200 && sha256(r.body) === BIG_SHA ? null : `${raw.length} bytes`;
      }).filter((s) => s !== null);
      assert.deepEqual(short, [], `${short.length} of ${CLIENTS} half-closing clients did not get the whole hit`);
      const lines = () => p.logs.slice(from).filter((l) => l.msg === 'request' && l.url === '/big');
      await waitUntil(() => lines().length === CLIENTS, 10_000);
      assert.ok(lines().every((l) => l.status === 200 && l.cache === 'hit'), JSON.stringify(lines()));
      const cut = p.logs.slice(from).filter((l) => l.msg === 'request' && l.url === '/big' && l.error !== undefined);
      assert.deepEqual(cut, [], 'no hit logged as cut');
    });

    test(`waiting on the upstream is still given up at the FIN, logged 499, its upstream closed (${path})`, async () => {
      const from = p.mark();
      const target = `/slow?${viaNode ? 'node' : 'lane'}`;
      const raw = await rawTls(p.port, fx.certPem, getText(target, viaNode), 10_000, { halfClose: true });
      assert.equal(raw.length, 0, 'no answer after the client left');
      const line = await p.waitForLog((l) => l.msg === 'request' && l.url === target, 10_000, from);
      assert.equal(line.status, 499);
      assert.equal(line.error, 'ERR_CLIENT_GONE');
      await waitUntil(() => slowOpen.size === 0, 5000);
    });

    /**
     * A fill of `target` held before its head, and CLIENTS half-closing followers each in
     * c.follow(), waiting for that head, their FINs on the way: the owner's and the followers' answers.
     */
    async function followersWaiting(target: string, from: number): Promise<{ owner: Promise<Buffer>; followers: Array<Promise<Buffer>> }> {
      const owner = rawTls(p.port, fx.certPem, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`, 30_000);
      await waitUntil(() => holding.has(target), 5000);
      const followers = Array.from({ length: CLIENTS }, () => rawTls(p.port, fx.certPem, getText(target, viaNode), 30_000, { halfClose: true }));
      const waiting = () => p.logs.slice(from).filter((l) => l.msg === 'cache: waiting for the response head of a fill in progress').length;
      await waitUntil(() => waiting() === CLIENTS, 10_000);
      // Only gives the FINs, sent with the requests, time to be read before the head comes:
      // before the fix they aborted the followers then. The assertions do not depend on it.
      await new Promise((r) => setTimeout(r, 300));
      return { owner, followers };
    }

    test(`a follower of a fill still waiting for its head gets it whole (${path}, ${CLIENTS} clients)`, async () => {
      const from = p.mark();
      const target = `/hold?${viaNode ? 'node' : 'lane'}`;
      const { owner, followers } = await followersWaiting(target, from);
      answer(holding.get(target)!);
      assert.ok(wholeBig(await owner), 'the fill\'s own client got it whole');
      const got = await Promise.all(followers);
      const short = got.map((raw) => (wholeBig(raw) ? null : `${raw.length} bytes`)).filter((s) => s !== null);
      assert.deepEqual(short, [], `${short.length} of ${CLIENTS} half-closing followers did not get the whole answer`);
      const lines = () => p.logs.slice(from).filter((l) => l.msg === 'request' && l.url === target);
      await waitUntil(() => lines().length === CLIENTS + 1, 10_000);
      const followed = lines().filter((l) => l.cache === 'collapsed');
      assert.equal(followed.length, CLIENTS, JSON.stringify(lines()));
      assert.ok(followed.every((l) => l.status === 200 && l.error === undefined), JSON.stringify(followed));
    });

    test(`pipelined hits before the FIN are all answered whole (${path}, ${CLIENTS} clients)`, async () => {
      const from = p.mark();
      const got = await Promise.all(Array.from({ length: CLIENTS }, () => rawTls(p.port, fx.certPem, getText('/big', viaNode) + getText('/big', false), 30_000, { halfClose: true })));
      const short = got.map((raw) => {
        const bodies = pipelinedBodies(raw);
        return bodies.length === 2 && bodies.every((b) => sha256(b) === BIG_SHA) ? null : `${bodies.length} answers, ${raw.length} bytes`;
      }).filter((s) => s !== null);
      assert.deepEqual(short, [], `${short.length} of ${CLIENTS} half-closing clients did not get both hits whole`);
      const lines = () => p.logs.slice(from).filter((l) => l.msg === 'request' && l.url === '/big');
      await waitUntil(() => lines().length === 2 * CLIENTS, 10_000);
      assert.ok(lines().every((l) => l.status === 200 && l.cache === 'hit' && l.error === undefined), JSON.stringify(lines()));
    });

    test(`a hit pipelined before a request waiting on the upstream is sent whole, that one logged 499 (${path}, ${CLIENTS} clients)`, async () => {
      const from = p.mark();
      const slow = (i: number) => `/slow?pipe-${viaNode ? 'node' : 'lane'}-${i}`;
      const got = await Promise.all(Array.from({ length: CLIENTS }, (_, i) => rawTls(p.port, fx.certPem, getText('/big', viaNode) + getText(slow(i), false), 30_000, { halfClose: true })));
      const short = got.map((raw) => {
        const bodies = pipelinedBodies(raw);
        return bodies.length === 1 && sha256(bodies[0]!) === BIG_SHA ? null : `${bodies.length} answers, ${raw.length} bytes`;
      }).filter((s) => s !== null);
      assert.deepEqual(short, [], `${short.length} of ${CLIENTS} half-closing clients did not get the hit whole (and nothing after it)`);
      const lines = () => p.logs.slice(from).filter((l) => l.msg === 'request' && (l.url === '/big' || String(l.url).startsWith('/slow?pipe')));
      await waitUntil(() => lines().length === 2 * CLIENTS, 10_000);
      const hits = lines().filter((l) => l.url === '/big');
      assert.ok(hits.length === CLIENTS && hits.every((l) => l.status === 200 && l.cache === 'hit' && l.error === undefined), JSON.stringify(hits));
      const gone = lines().filter((l) => l.url !== '/big');
      assert.deepEqual(gone.map((l) => l.url).sort(), Array.from({ length: CLIENTS }, (_, i) => slow(i)).sort());
      assert.ok(gone.every((l) => l.status === 499 && l.error === 'ERR_CLIENT_GONE'), JSON.stringify(gone));
      await waitUntil(() => slowOpen.size === 0, 5000);
    });

    test(`a follower the fill's head cannot answer is aborted at its FIN, read while it waited: 499, nothing sent upstream (${path})`, async () => {
      const from = p.mark();
      const target = `/hold-no-cache?${viaNode ? 'node' : 'lane'}`;
      const { owner, followers } = await followersWaiting(target, from);
      // no-cache: stored, but RFC 9111 §4 lets it answer no other request unvalidated (cache.ts follow).
      answer(holding.get(target)!, 'no-cache, max-age=600');
      assert.ok(wholeBig(await owner), 'the fill\'s own client got it whole');
      const got = await Promise.all(followers);
      assert.deepEqual(got.map((raw) => raw.length), Array.from({ length: CLIENTS }, () => 0), 'no answer after the client left');
      const lines = () => p.logs.slice(from).filter((l) => l.msg === 'request' && l.url === target);
      await waitUntil(() => lines().length === CLIENTS + 1, 10_000);
      const gone = lines().filter((l) => l.status === 499);
      assert.equal(gone.length, CLIENTS, JSON.stringify(lines()));
      assert.ok(gone.every((l) => l.error === 'ERR_CLIENT_GONE'), JSON.stringify(gone));
      assert.deepEqual(holdRequests.filter((t) => t === target), [target], 'only the fill went upstream');
    });
  }
});

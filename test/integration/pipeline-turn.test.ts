/**
 * On node's server (the lane hands a connection over at a field given
 * twice), a pipelined request is worked on in its turn, once the answers
 * ahead of it are out (front.ts queuedTurn), as nginx reads a pipelined
 * request only after the one before it (ngx_http_set_keepalive): `aludel
 * proxy` goes upstream then, and `aludel serve` opens the file then. Before,
 * node's server emitted every parsed request at once and each was worked on
 * at once: one client connection pipelining 3,000 requests behind a large
 * hit it did not read held 3,000 upstream connections (and the origin worked
 * on all of them), and 500 requests behind a large file 500 open files.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { serveArgs, startAludel, type Running } from '../support/aludel-process.js';
import { makeFixtures, sha256, type StandardFixtures } from '../support/fixtures.js';
import { listenLocal, pipelinedBodies, rawTls } from '../support/raw-http.js';
import { delay, waitUntil } from '../support/wait.js';

let fx: StandardFixtures;
let origin: http.Server;
let plain: Running;
let cached: Running;
let serve: Running;

/** Larger than loopback's socket buffers can hold, so a client that reads nothing stalls it. */
const BIG = Buffer.alloc(16 * 1024 * 1024);
for (let i = 0; i < BIG.length; i++) BIG[i] = (i * 7 + (i >> 12)) & 0xff;
const BIG_SHA = sha256(BIG);
const PIPELINED = 20;

/** /turn requests the origin got, and how many it held at once at most. */
const seen: string[] = [];
let open = 0;
let most = 0;

function resetOrigin(): void {
  seen.length = 0;
  open = 0;
  most = 0;
}

/** A field given twice: the lane hands the connection to node's server (h1-lane.ts simpleHead). */
const HANDOVER = 'X-Twice: 1\r\nX-Twice: 2\r\n';

/** `first`, then PIPELINED GETs of /turn/i (or `target(i)`), the last closing the connection. */
function pipelined(first: string, tag: string, target = (i: number): string => `/turn/${tag}-${i}`): string {
  let s = first;
  for (let i = 1; i <= PIPELINED; i++) s += `GET ${target(i)} HTTP/1.1\r\nHost: x\r\n${i === PIPELINED ? 'Connection: close\r\n' : ''}\r\n`;
  return s;
}

/** A TLS connection to `port` that has written `request` and reads nothing. */
async function unread(port: number, request: string): Promise<tls.TLSSocket> {
  const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: fx.certPem });
  sock.on('error', () => undefined);
  await new Promise<void>((resolve) => sock.once('secureConnect', () => resolve()));
  sock.pause();
  sock.write(request);
  return sock;
}

const turnTargets = (tag: string): string[] => Array.from({ length: PIPELINED }, (_, i) => `/turn/${tag}-${i + 1}`);

before(async () => {
  fx = await makeFixtures();
  origin = http.createServer((req, res) => {
    if (req.url === '/big') {
      res.writeHead(200, { 'cache-control': 'max-age=600', 'content-length': BIG.length });
      res.end(BIG);
      return;
    }
    seen.push(req.url ?? '');
    open++;
    most = Math.max(most, open);
    req.resume();
    // Held a little, so that requests sent at once are seen at once.
    setTimeout(() => {
      open--;
      res.writeHead(200, { 'cache-control': 'no-store', 'content-length': Buffer.byteLength(req.url ?? '') });
      res.end(req.url);
    }, 20);
  });
  const port = await listenLocal(origin);
  const common = ['--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${port}`, '--max-fails', '0'];
  fs.writeFileSync(path.join(fx.root, 'turn-big.bin'), BIG);
  for (let i = 1; i <= PIPELINED; i++) fs.writeFileSync(path.join(fx.root, `turn-${i}.txt`), `file ${i}\n`);
  serve = await startAludel(serveArgs(fx));
  plain = await startAludel(['proxy', ...common]);
  cached = await startAludel(['proxy', ...common, '--cache', `${fx.dir}/cache`]);
  const from = cached.mark();
  const primed = pipelinedBodies(await rawTls(cached.port, fx.certPem, 'GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 30_000));
  assert.equal(sha256(primed[0]!), BIG_SHA);
  await cached.waitForLog((l) => l.msg === 'request' && l.url === '/big' && l.cache === 'miss', 10_000, from);
});

after(async () => {
  await serve?.stop();
  await plain?.stop();
  await cached?.stop();
  origin?.close();
  fx?.cleanup();
});

describe('aludel proxy: a pipelined request goes upstream in its turn (node\'s server)', () => {
  test('without a cache: the origin gets the pipelined requests one at a time, answered in order', async () => {
    resetOrigin();
    const first = `POST /turn/post HTTP/1.1\r\nHost: x\r\n${HANDOVER}Content-Length: 1\r\n\r\nx`;
    const bodies = pipelinedBodies(await rawTls(plain.port, fx.certPem, pipelined(first, 'p'), 30_000)).map((b) => b.toString('latin1'));
    assert.deepEqual(bodies, ['/turn/post', ...turnTargets('p')]);
    assert.deepEqual(seen, ['/turn/post', ...turnTargets('p')]);
    // Before: all 20 GETs went upstream at once (most 20 or 21).
    assert.equal(most, 1, `the origin held ${most} of this client's requests at once`);
  });

  test('with --cache, behind a hit: one at a time too, the hit whole', async () => {
    resetOrigin();
    const bodies = pipelinedBodies(await rawTls(cached.port, fx.certPem, pipelined(`GET /big HTTP/1.1\r\nHost: x\r\n${HANDOVER}\r\n`, 'c'), 30_000));
    assert.equal(bodies.length, PIPELINED + 1);
    assert.equal(sha256(bodies[0]!), BIG_SHA);
    assert.deepEqual(bodies.slice(1).map((b) => b.toString('latin1')), turnTargets('c'));
    assert.deepEqual(seen, turnTargets('c'));
    assert.equal(most, 1, `the origin held ${most} of this client's requests at once`);
  });

  test('with --cache, behind a hit the client never reads: none reaches the origin, each logged 499 once the client leaves', async () => {
    resetOrigin();
    const from = cached.mark();
    const sock = await unread(cached.port, pipelined(`GET /big HTTP/1.1\r\nHost: x\r\n${HANDOVER}\r\n`, 'l'));
    // The hit stalls on the unread socket. Before, the 20 requests behind it were all at the
    // origin within milliseconds.
    await delay(500);
    assert.deepEqual(seen, [], 'requests behind an unread hit reached the origin');
    sock.destroy();
    const gaveUp = (): number => cached.logs.slice(from).filter((l) => l.msg === 'request' && String(l.url).startsWith('/turn/l-') && l.status === 499).length;
    await waitUntil(() => gaveUp() === PIPELINED, 10_000).catch(() => undefined);
    assert.equal(gaveUp(), PIPELINED, 'each request given up is logged 499');
    assert.deepEqual(seen, []);
  });

  test('serve, behind a large file: the files are opened in their turn, answered in order', async () => {
    const small = (i: number): string => `/turn-${i}.txt`;
    const bodies = pipelinedBodies(await rawTls(serve.port, fx.certPem, pipelined(`GET /turn-big.bin HTTP/1.1\r\nHost: x\r\n${HANDOVER}\r\n`, 's', small), 30_000));
    assert.equal(bodies.length, PIPELINED + 1);
    assert.equal(sha256(bodies[0]!), BIG_SHA);
    assert.deepEqual(bodies.slice(1).map((b) => b.toString('latin1')), Array.from({ length: PIPELINED }, (_, i) => `file ${i + 1}\n`));
  });

  test('serve, behind a large file the client never reads: no file opened for the requests behind it, each logged 499 once the client leaves', async () => {
    const fds = (): number => fs.readdirSync(`/proc/${serve.child.pid}/fd`).length;
    const start = fds();
    const from = serve.mark();
    const sock = await unread(serve.port, pipelined(`GET /turn-big.bin HTTP/1.1\r\nHost: x\r\n${HANDOVER}\r\n`, 'u', (i) => `/turn-${i}.txt`));
    await delay(500);
    // The connection and the large file's descriptor. Before: one more per request behind it.
    const held = fds() - start;
    sock.destroy();
    assert.ok(held <= 4, `${held} more descriptors with ${PIPELINED} requests waiting behind an unread file`);
    const gaveUp = (): number => serve.logs.slice(from).filter((l) => l.msg === 'request' && /^\/turn-\d+\.txt$/.test(String(l.url)) && l.status === 499).length;
    await waitUntil(() => gaveUp() === PIPELINED, 10_000).catch(() => undefined);
    assert.equal(gaveUp(), PIPELINED, 'each request given up is logged 499');
  });
});

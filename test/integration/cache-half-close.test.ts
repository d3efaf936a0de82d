/**
 * `aludel proxy --cache`: a client that half-closes after its request
 * (close_notify and FIN behind it, TCP's shutdown(SHUT_WR); it still reads,
 * RFC 9293 §3.6, RFC 8446 §6.1) gets a cache hit whole: nothing waits on an
 * upstream (h1-lane.ts sendWholeAfterFin; nginx cuts most such hits, see
 * there). A request that waits on the upstream is still given up at the FIN
 * and logged 499, its upstream connection closed, as nginx's
 * (ngx_http_upstream_check_broken_connection, proxy_ignore_client_abort off).
 * Both on the lane (a plain GET) and on node's server (the same GET with a
 * field given twice, which the lane hands over).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startAludel, type Running } from '../support/aludel-process.js';
import { makeFixtures, sha256, type StandardFixtures } from '../support/fixtures.js';
import { listenLocal, rawTls, splitHttp } from '../support/raw-http.js';

let fx: StandardFixtures;
let origin: net.Server;
let p: Running;
/** The origin's sockets holding a /slow request (never answered) until the proxy closes them. */
const slowOpen = new Set<net.Socket>();

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
      if (target.startsWith('/slow')) {
        slowOpen.add(sock);
        sock.on('close', () => slowOpen.delete(sock));
        return;
      }
      sock.write(`HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Type: application/octet-stream\r\nContent-Length: ${BIG.length}\r\n\r\n`, 'latin1');
      sock.write(BIG);
    });
  });
  const originPort = await listenLocal(origin);
  p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${originPort}`, '--max-fails', '0', '--cache', `${fx.dir}/cache`]);
  const from = p.mark();
  const primed = splitHttp(await rawTls(p.port, fx.certPem, 'GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 30_000));
  assert.equal(sha256(primed.body), BIG_SHA);
  await p.waitForLog((l) => l.msg === 'request' && l.url === '/big' && l.cache === 'miss', 10_000, from);
});

after(async () => {
  await p?.stop();
  origin?.close();
  fx?.cleanup();
});

/** A plain GET (the lane's), or with a field given twice (node's server's). */
function getText(target: string, viaNode: boolean): string {
  return `GET ${target} HTTP/1.1\r\nHost: x\r\n${viaNode ? 'X-Twice: 1\r\nX-Twice: 2\r\n' : ''}\r\n`;
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
  }
});

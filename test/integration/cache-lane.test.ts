/**
 * `aludel proxy --cache`'s plain keep-alive GETs and HEADs go through the
 * lane (src/http/h1-lane.ts) too: what the client gets from the cache must be
 * byte for byte what node's server wrote for the same stored response. As
 * proxy-lane.test.ts: each answer is fetched on two connections, once by a
 * request the lane takes, once by the same request with a field given twice
 * (which the lane hands to node's server), each followed by a pipelined
 * "Connection: close" request node's server answers. Only what the clock
 * makes (Date, Age, Cache-Status's ttl) may differ.
 *
 * The answers cover what the cache writes itself (send-stored.ts): a hit of
 * known length, HEAD, 304 to the client's If-None-Match, 206 and 416 to its
 * Range (RFC 9110 §13, §14), a body still being stored with no known length
 * (sent chunked, RFC 9112 §7.1, by sendfile with the framing around it), a
 * fill's own client (a miss, chunked), a stale response revalidated by a 304
 * (RFC 9111 §4.3), and a Vary hit.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { startAludel, type Running } from '../support/aludel-process.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { listenLocal, rawTls } from '../support/raw-http.js';

let fx: StandardFixtures;
let origin: net.Server;
let originPort = 0;
let p: Running;
/** Each /slow request's socket, by target: the test sends the rest of its body when it is time. */
const slow = new Map<string, net.Socket>();
const slowWaiters = new Map<string, (s: net.Socket) => void>();

const BODY = 'x'.repeat(1024);
const STORED = 'Cache-Control: max-age=600\r\nETag: "e1"\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: text/plain\r\n';

/** The origin's answer to a request head (target, and its If-None-Match). */
function answer(target: string, ifNoneMatch: string | undefined): string {
  const path = target.split('?')[0];
  if (path === '/chunked') return `HTTP/1.1 200 OK\r\n${STORED}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n`;
  if (path === '/stale') {
    // max-age=0: every request revalidates with the stored ETag (RFC 9111 §4.3.1), and gets a 304.
    if (ifNoneMatch === '"s1"') return 'HTTP/1.1 304 Not Modified\r\nETag: "s1"\r\nCache-Control: max-age=0\r\n\r\n';
    return 'HTTP/1.1 200 OK\r\nETag: "s1"\r\nCache-Control: max-age=0\r\nContent-Length: 5\r\n\r\nstale';
  }
  if (path === '/vary') return `HTTP/1.1 200 OK\r\n${STORED}Vary: Accept-Language\r\nContent-Length: 4\r\n\r\nvary`;
  return `HTTP/1.1 200 Fine\r\n${STORED}Content-Length: ${BODY.length}\r\n\r\n${BODY}`;
}

async function startOrigin(): Promise<void> {
  origin = net.createServer((sock) => {
    let held = '';
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      held += d.toString('latin1');
      for (let end = held.indexOf('\r\n\r\n'); end >= 0; end = held.indexOf('\r\n\r\n')) {
        const head = held.slice(0, end);
        held = held.slice(end + 4);
        const target = head.slice(0, head.indexOf('\r\n')).split(' ')[1] ?? '/';
        const inm = /\r\nIf-None-Match: ([^\r]*)/i.exec(head)?.[1];
        if (target.startsWith('/slow')) {
          // A chunked body held open after its first chunk: a request meanwhile follows the fill.
          sock.write(`HTTP/1.1 200 OK\r\n${STORED}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n`, 'latin1');
          slow.set(target, sock);
          slowWaiters.get(target)?.(sock);
        } else sock.write(answer(target, inm), 'latin1');
      }
    });
  });
  originPort = await listenLocal(origin);
}

function slowSocket(target: string): Promise<net.Socket> {
  const s = slow.get(target);
  return s !== undefined ? Promise.resolve(s) : new Promise((resolve) => slowWaiters.set(target, resolve));
}

before(async () => {
  fx = await makeFixtures();
  await startOrigin();
  p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${originPort}`, '--max-fails', '0', '--cache', `${fx.dir}/cache`]);
});

after(async () => {
  await p?.stop();
  origin?.close();
  fx?.cleanup();
});

/** What the clock writes: Date, Age and Cache-Status's ttl (seconds) differ between two fetches a moment apart. */
function timeless(raw: Buffer): string {
  return raw.toString('latin1').replace(/\r\nDate: [^\r]*/g, '\r\nDate: (now)').replace(/\r\nAge: \d+/g, '\r\nAge: (n)').replace(/ttl=-?\d+/g, 'ttl=(n)');
}

/** The request: lane-shaped, or with a repeated field for node's server; then a pipelined closing GET of a stored response. */
function requestText(method: string, target: string, viaNode: boolean, extra: string): string {
  const twice = viaNode ? 'X-Twice: 1\r\nX-Twice: 2\r\n' : '';
  return `${method} ${target} HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n${extra}${twice}\r\nGET /len HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`;
}

async function exchange(method: string, target: string, viaNode: boolean, extra = ''): Promise<string> {
  return timeless(await rawTls(p.port, fx.certPem, requestText(method, target, viaNode, extra)));
}

/** GET of `target` until its answer is logged (stored then, for a storable one). */
async function prime(target: string, extra = ''): Promise<void> {
  const from = p.mark();
  await rawTls(p.port, fx.certPem, `GET ${target} HTTP/1.1\r\nHost: x\r\n${extra}Connection: close\r\n\r\n`);
  await p.waitForLog((l) => l.msg === 'request' && l.url === target, 10_000, from);
}

/**
 * A request that follows a fill still being stored, of no known length yet: it is sent as
 * it lands, as chunks. The leader's request stays open until the follower has had the
 * first chunk; then the origin sends the rest.
 */
async function followingFill(target: string, viaNode: boolean): Promise<string> {
  const leader = rawTls(p.port, fx.certPem, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  const upstream = await slowSocket(target);
  const got: Buffer[] = [];
  const follower = await new Promise<Buffer>((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port: p.port, servername: 'localhost', ca: fx.certPem }, () => sock.write(requestText('GET', target, viaNode, '')));
    let released = false;
    sock.on('data', (c: Buffer) => {
      got.push(c);
      // Its first chunk came from the file while the fill is open: now the origin ends the body.
      if (!released && Buffer.concat(got).includes('\r\n\r\n3\r\nabc\r\n')) {
        released = true;
        upstream.write('2\r\nde\r\n0\r\n\r\n');
      }
    });
    sock.on('error', reject);
    sock.on('close', () => resolve(Buffer.concat(got)));
  });
  await leader;
  return timeless(follower);
}

describe('aludel proxy --cache: the lane answers from the cache as node\'s server', () => {
  before(async () => {
    await prime('/len');
    await prime('/chunked');
    await prime('/stale');
    await prime('/vary', 'Accept-Language: de\r\n');
  });

  const cases: Array<[string, string, string, RegExp]> = [
    ['GET', '/len', '', /^HTTP\/1\.1 200 Fine\r\n[^]*Cache-Status: aludel; hit; ttl=\(n\)\r\nContent-Length: 1024\r\n/],
    ['HEAD', '/len', '', /^HTTP\/1\.1 200 Fine\r\n[^]*Content-Length: 1024\r\n[^]*\r\n\r\nHTTP\/1\.1 200/],
    ['GET', '/len', 'If-None-Match: "e1"\r\n', /^HTTP\/1\.1 304 Not Modified\r\n/],
    ['GET', '/len', 'Range: bytes=2-5\r\n', /^HTTP\/1\.1 206 Partial Content\r\n[^]*Content-Range: bytes 2-5\/1024\r\nContent-Length: 4\r\n[^]*\r\n\r\nxxxxHTTP/],
    ['GET', '/len', 'Range: bytes=2000-\r\n', /^HTTP\/1\.1 416 Range Not Satisfiable\r\n[^]*Content-Range: bytes \*\/1024\r\n/],
    ['GET', '/chunked', '', /^HTTP\/1\.1 200 OK\r\n[^]*Content-Length: 5\r\n[^]*\r\n\r\nabcde/],
    ['GET', '/stale', '', /^HTTP\/1\.1 200 OK\r\n[^]*Cache-Status: aludel; fwd=stale; fwd-status=304; ttl=\(n\)\r\n[^]*\r\n\r\nstale/],
    ['GET', '/vary', 'Accept-Language: de\r\n', /^HTTP\/1\.1 200 OK\r\n[^]*Cache-Status: aludel; hit; ttl=\(n\)\r\n[^]*\r\n\r\nvary/],
  ];
  for (const [method, target, extra, shape] of cases) {
    test(`${method} ${target} ${extra.trim() || '(hit)'}: the same bytes as node's server wrote`, async () => {
      const lane = await exchange(method, target, false, extra);
      const node = await exchange(method, target, true, extra);
      assert.equal(lane, node);
      assert.match(lane, shape);
      // The closing request behind it was answered from the cache too.
      assert.match(lane, /HTTP\/1\.1 200 Fine\r\n[^]*Connection: close\r\n\r\nx{1024}$/);
    });
  }

  test('a miss stored as it is sent (a chunked upstream): its own client gets the same bytes', async () => {
    const lane = await exchange('GET', '/chunked?miss-lane', false);
    const node = await exchange('GET', '/chunked?miss-node', true);
    assert.equal(lane, node);
    assert.match(lane, /^HTTP\/1\.1 200 OK\r\n[^]*Cache-Status: aludel; fwd=uri-miss; stored\r\n[^]*Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n/);
  });

  test('a body still being stored, of unknown length, to a follower: chunks around what sendfile sends, the same bytes', async () => {
    const lane = await followingFill('/slow?lane', false);
    const node = await followingFill('/slow?node', true);
    assert.equal(lane, node);
    assert.match(lane, /^HTTP\/1\.1 200 OK\r\n[^]*Cache-Status: aludel; fwd=uri-miss; collapsed\r\n[^]*Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nHTTP\/1\.1 200 Fine/);
  });
});

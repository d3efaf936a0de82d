/**
 * Pooled upstream connections that the origin ends or talks on while they
 * sit idle. A request that gets a pooled connection the origin closed must
 * be answered all the same (a retry-safe GET on a fresh connection after the
 * failed attempt; a POST only on a connection checked by recv first), and
 * never with bytes the origin sent unasked. Also: a load of more concurrent
 * requests than --upstream-keepalive keeps its connections pooled for a
 * moment, then the pool is back to the limit.
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAludel, type Running } from '../support/aludel-process.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { waitUntil } from '../support/wait.js';

/** What the origin does with a connection once it has answered a request on it. */
type AfterAnswer = { kind: 'fin'; delayMs: number } | { kind: 'garbage'; delayMs: number } | { kind: 'keep' } | { kind: 'timeout-next' };

interface RawOrigin {
  port: number;
  /** Connections accepted so far. */
  accepted: number;
  /** Connections open now. */
  open: number;
  after: AfterAnswer;
  close(): Promise<void>;
}

/**
 * An HTTP/1.1 origin that answers each request with "<connection>:<request
 * on it>:<method>:<body bytes>" (keep-alive, never Connection: close) and
 * then does what `after` says: ends the connection (FIN) or writes an
 * unasked 408 and ends it, after delayMs (0: at once), or keeps it; or
 * (timeout-next) answers the next request on the connection with the 408 it
 * would have sent as idle, and ends it.
 */
async function startRawOrigin(): Promise<RawOrigin> {
  const origin: RawOrigin = { port: 0, accepted: 0, open: 0, after: { kind: 'keep' }, close: async () => undefined };
  const server = net.createServer((sock) => {
    const id = ++origin.accepted;
    origin.open++;
    sock.on('close', () => origin.open--);
    sock.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    let served = 0;
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        buf = buf.subarray(end + 4 + length);
        const a = origin.after;
        if (a.kind === 'timeout-next' && served > 0) {
          sock.end('HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
          return;
        }
        const text = `${id}:${++served}:${head.split(' ')[0]}:${length}`;
        sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${text.length}\r\n\r\n${text}`);
        // delayMs 0: the FIN right behind the answer, in the same turn (a timer would let a
        // quick next request in before it, which no proxy may then send again if it is a POST).
        if (a.kind === 'fin' && a.delayMs === 0) sock.end();
        else if (a.kind === 'fin') setTimeout(() => sock.end(), a.delayMs);
        else if (a.kind === 'garbage') setTimeout(() => sock.end('HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'), a.delayMs);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin.port = (server.address() as net.AddressInfo).port;
  origin.close = () => new Promise((resolve) => { server.close(() => resolve()); for (const s of sockets) s.destroy(); });
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  return origin;
}

let fx: Fixtures<'small'>;
let origin: RawOrigin;
let proxy: Running;
let agent: https.Agent;

function request(method: string, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: '127.0.0.1', port: proxy.port, path: '/x', method, agent, ca: fx.certPem, servername: 'localhost', headers: body === undefined ? {} : { 'Content-Length': Buffer.byteLength(body) } }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, text: Buffer.concat(parts).toString() }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

before(async () => {
  fx = await makeFixtures({ small: 16 });
  origin = await startRawOrigin();
  proxy = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${origin.port}`, '--offload', 'userspace', '--upstream-keepalive', '4']);
  agent = new https.Agent({ keepAlive: true, maxSockets: 64 });
});

after(async () => {
  agent?.destroy();
  await proxy?.stop();
  await origin?.close();
  fx?.cleanup();
});

describe('pooled upstream connections the origin ends or talks on', () => {
  test('origin FIN right after each answer: every GET and POST answered by the origin, none lost', async () => {
    // The FIN follows the answer at once: the next request may lease the connection before the
    // loop has polled it (a GET then retries on a fresh one; a POST is recv-checked first).
    origin.after = { kind: 'fin', delayMs: 0 };
    for (let i = 0; i < 40; i++) {
      const method = i % 2 === 0 ? 'GET' : 'POST';
      const r = await request(method, method === 'POST' ? 'hello' : undefined);
      if (r.status !== 200) await sleep(200);
      assert.equal(r.status, 200, `request ${i} (${method}): ${r.text} ${JSON.stringify(proxy.logs.filter((l) => l.status !== 200))}`);
      assert.match(r.text, new RegExp(`^\\d+:1:${method}:${method === 'POST' ? 5 : 0}$`), `request ${i}: a fresh connection's first answer`);
    }
  });

  test('origin FIN while the connection is idle: the next GET and POST still get answers', async () => {
    origin.after = { kind: 'fin', delayMs: 20 };
    for (let i = 0; i < 10; i++) {
      const method = i % 2 === 0 ? 'GET' : 'POST';
      const r = await request(method, method === 'POST' ? 'hello' : undefined);
      assert.equal(r.status, 200, `request ${i} (${method}): ${r.text}`);
      await sleep(60);
    }
  });

  test('an idle pooled connection the origin closes is closed at once on our side, not left in CLOSE-WAIT', async () => {
    // The origin's keepalive_timeout: its FIN 100 ms after the answer. nginx closes its side on
    // that FIN (ngx_http_upstream_keepalive_close_handler); the origin's socket closes only then.
    origin.after = { kind: 'fin', delayMs: 100 };
    for (let i = 0; i < 3; i++) {
      const r = await request('GET');
      assert.equal(r.status, 200, `request ${i}: ${r.text}`);
    }
    await waitUntil(() => origin.open === 0, 2000).catch(() => {
      assert.fail(`${origin.open} pooled connection(s) still open 2 s after the origin closed them`);
    });
  });

  test('bytes the origin sends unasked on an idle connection never reach a client', async () => {
    origin.after = { kind: 'garbage', delayMs: 20 };
    for (let i = 0; i < 10; i++) {
      const method = i % 2 === 0 ? 'GET' : 'POST';
      const r = await request(method, method === 'POST' ? 'hello' : undefined);
      assert.equal(r.status, 200, `request ${i} (${method}) got the unasked answer: ${r.text}`);
      assert.match(r.text, /^\d+:1:/);
      await sleep(60);
    }
  });

  test('a 408 read as the answer on a pooled connection (the origin\'s idle notice, crossing the request): a GET goes again on a new one', async () => {
    origin.after = { kind: 'timeout-next' };
    for (let i = 0; i < 6; i++) {
      const r = await request('GET');
      assert.equal(r.status, 200, `request ${i} got the origin's idle 408: ${r.text}`);
      assert.match(r.text, /^\d+:1:GET:0$/, `request ${i}: a fresh connection's first answer`);
    }
  });

  test('more concurrent requests than --upstream-keepalive: connections reused, then the pool trimmed to the limit', async () => {
    origin.after = { kind: 'keep' };
    await sleep(100);
    const before = origin.accepted;
    for (let round = 0; round < 5; round++) {
      const answers = await Promise.all(Array.from({ length: 16 }, () => request('GET')));
      assert.ok(answers.every((a) => a.status === 200));
    }
    // 80 requests, 16 at a time: the first round's connections carry the later rounds.
    const opened = origin.accepted - before;
    assert.ok(opened <= 32, `${opened} upstream connections for 80 requests, 16 at a time`);
    // Idle past the limit (4) for longer than the grace: closed, least recently used first.
    await waitUntil(() => origin.open <= 4, 5000);
    const r = await request('POST', 'still there');
    assert.equal(r.status, 200);
  });
});

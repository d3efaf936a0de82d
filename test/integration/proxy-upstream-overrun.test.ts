/**
 * An upstream that sends more than it framed: after each answer's body
 * (Content-Length, or chunked up to its last chunk) the origin writes a
 * whole second answer nobody asked for, "EVIL!", in the same write. The
 * proxy's body readers stop at the framing's end (RFC 9112 §6.3), so those
 * bytes wait in the upstream socket; the connection went back to the pool
 * with them, and the next request sent on it, another client's, got "EVIL!"
 * as its answer (358 of 1,920 answers, 32 clients at once, before the fix).
 * Each answer must be the body asked for, the connection must not be reused
 * (nginx: "upstream sent more data than specified"), and the log must say why.
 * Sizes: 1 KiB (read with the head), 100 KiB (the copy path: userspace TLS),
 * both with Content-Length and chunked; plain upstream and TLS upstream.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';

const BODY = crypto.randomBytes(100 * 1024);
const EVIL = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!';
const CLIENTS = 32;
const EACH = 30;

let fx: Fixtures<never>;
let origin: net.Server;
let tlsOrigin: net.Server;
let proxy: Running;
let tlsProxy: Running;
/** Requests each origin has seen, and the connections it has accepted. */
const seen = { requests: 0, connections: 0 };

/** GET /len/N or /chunked/N: the first N bytes of BODY, then EVIL in the same write. */
function answer(socket: net.Socket, target: string): void {
  const [kind, a] = target.split('/').slice(1);
  const body = BODY.subarray(0, Number(a));
  const framed = kind === 'chunked'
    ? [Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'), Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]
    : [Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n`), body];
  socket.write(Buffer.concat([...framed, Buffer.from(EVIL)]));
}

function serveRequests(socket: net.Socket): void {
  seen.connections++;
  let held = '';
  socket.on('error', () => undefined);
  socket.on('data', (d: Buffer) => {
    held += d.toString('latin1');
    for (let end = held.indexOf('\r\n\r\n'); end >= 0; end = held.indexOf('\r\n\r\n')) {
      const target = held.slice(0, held.indexOf('\r\n')).split(' ')[1] ?? '/';
      held = held.slice(end + 4);
      seen.requests++;
      answer(socket, target);
    }
  });
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

before(async () => {
  fx = await makeFixtures({});
  origin = net.createServer((tcp) => serveRequests(tcp));
  const secureContext = tls.createSecureContext({ cert: fs.readFileSync(fx.certFile), key: fs.readFileSync(fx.keyFile) });
  tlsOrigin = net.createServer((tcp) => serveRequests(new tls.TLSSocket(tcp, { isServer: true, secureContext })));
  const [port, tlsPort] = [await listen(origin), await listen(tlsOrigin)];
  const front = ['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--offload', 'userspace'];
  proxy = await startAludel([...front, '--to', `http://127.0.0.1:${port}`]);
  tlsProxy = await startAludel([...front, '--to', `https://127.0.0.1:${tlsPort}`, '--upstream-insecure']);
});

after(async () => {
  await proxy?.stop();
  await tlsProxy?.stop();
  origin?.close();
  tlsOrigin?.close();
  fx?.cleanup();
});

/** One GET over `agent`: the status and the body (errors resolve too, so every request is waited for). */
function get(port: number, agent: https.Agent, urlPath: string): Promise<{ status: number; body: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const req = https.get({ host: '127.0.0.1', port, path: urlPath, agent, ca: fs.readFileSync(fx.certFile), servername: 'localhost' }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
      res.on('error', (err) => resolve({ status: 0, body: Buffer.alloc(0), error: err.message }));
    });
    req.on('error', (err) => resolve({ status: 0, body: Buffer.alloc(0), error: err.message }));
  });
}

const FRONTS = [
  ['plain upstream', (): Running => proxy],
  ['TLS upstream', (): Running => tlsProxy],
] as const;

for (const [upstream, front] of FRONTS) {
  describe(`aludel proxy: an upstream that sends a second answer unasked (${upstream})`, () => {
    for (const urlPath of ['/len/1024', '/len/102400', '/chunked/1024', '/chunked/102400']) {
      test(`${urlPath}: ${CLIENTS} clients x ${EACH} requests each get their own body, never the unasked answer`, { timeout: 120_000 }, async () => {
        const want = BODY.subarray(0, Number(urlPath.split('/')[2]));
        const from = front().logs.length;
        const before = { ...seen };
        const agent = new https.Agent({ keepAlive: true, maxSockets: CLIENTS });
        const results = (await Promise.all(Array.from({ length: CLIENTS }, async () => {
          const mine = [];
          for (let i = 0; i < EACH; i++) mine.push(await get(front().port, agent, urlPath));
          return mine;
        }))).flat();
        agent.destroy();
        const wrong = results.filter((r) => r.status !== 200 || !r.body.equals(want));
        assert.equal(wrong.length, 0, `${wrong.length} of ${results.length} answers differ, e.g. ${JSON.stringify(wrong.slice(0, 3).map((r) => ({ status: r.status, size: r.body.length, text: r.body.subarray(0, 16).toString('latin1'), error: r.error })))}`);
        // Every answer came on a connection of its own: none was reused after its overrun.
        assert.equal(seen.requests - before.requests, CLIENTS * EACH);
        assert.equal(seen.connections - before.connections, CLIENTS * EACH, 'one upstream connection per request');
        // The warning is written once the answer has gone out: it may trail the client's last bytes.
        const warnings = (): LogLine[] => front().logs.slice(from).filter((l) => l.level === 40 && /more data than its answer framed/.test(l.msg));
        for (const end = Date.now() + 10_000; warnings().length < CLIENTS * EACH && Date.now() < end;) await new Promise((r) => setTimeout(r, 50));
        const warned = warnings();
        assert.equal(warned.length, CLIENTS * EACH, 'a warning for each closed connection');
        assert.equal(warned[0]!.url, urlPath);
      });
    }
  });
}

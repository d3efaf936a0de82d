/**
 * An upstream that sends more than it framed, and the clients that would
 * get what it sent past an answer (test/integration/proxy-upstream-overrun,
 * test/ktls/proxy-overrun-ktls). After each answer's body (Content-Length,
 * or chunked up to its last chunk) the origin writes a whole second answer
 * nobody asked for, "EVIL!", in the same write.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { startAludel, type LogLine, type Running } from './aludel-process.js';
import { makeFixtures, type Fixtures } from './fixtures.js';
import { listenLocal, onRequestTargets } from './raw-http.js';

const BODY = crypto.randomBytes(100 * 1024);
const EVIL = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!';
export const CLIENTS = 32;
export const EACH = 30;

let fx: Fixtures<never>;
let origin: net.Server;
let tlsOrigin: net.Server;
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
  onRequestTargets(socket, (target) => {
    seen.requests++;
    answer(socket, target);
  });
}

/** The two origins (plain, TLS) and a proxy in front of each, with `--offload offload`. */
export async function startOverrun(offload: 'userspace' | 'kernel', startTimeoutMs?: number): Promise<{ proxy: Running; tlsProxy: Running; stop: () => Promise<void> }> {
  fx = await makeFixtures({});
  origin = net.createServer((tcp) => serveRequests(tcp));
  const secureContext = tls.createSecureContext({ cert: fs.readFileSync(fx.certFile), key: fs.readFileSync(fx.keyFile) });
  tlsOrigin = net.createServer((tcp) => serveRequests(new tls.TLSSocket(tcp, { isServer: true, secureContext })));
  const [port, tlsPort] = [await listenLocal(origin), await listenLocal(tlsOrigin)];
  const front = ['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--offload', offload];
  const proxy = await startAludel([...front, '--to', `http://127.0.0.1:${port}`], { startTimeoutMs });
  const tlsProxy = await startAludel([...front, '--to', `https://127.0.0.1:${tlsPort}`, '--upstream-insecure'], { startTimeoutMs });
  return {
    proxy,
    tlsProxy,
    stop: async () => {
      await proxy.stop();
      await tlsProxy.stop();
      origin.close();
      tlsOrigin.close();
      fx.cleanup();
    },
  };
}

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

/** The URL paths asked for: bodies read with the head (1 KiB) and past it (100 KiB), each length- and chunk-framed. */
export const OVERRUN_PATHS = ['/len/1024', '/len/102400', '/chunked/1024', '/chunked/102400'];

/**
 * `clients` clients at once, `each` keep-alive GETs of `urlPath` each through
 * `front`: every answer is the body asked for, each came on an upstream
 * connection of its own (none reused after its overrun), and each closed
 * connection has its warning.
 */
export async function assertNoOverrunServed(front: Running, urlPath: string, clients = CLIENTS, each = EACH): Promise<void> {
  const want = BODY.subarray(0, Number(urlPath.split('/')[2]));
  const from = front.logs.length;
  const before = { ...seen };
  const agent = new https.Agent({ keepAlive: true, maxSockets: clients });
  const results = (await Promise.all(Array.from({ length: clients }, async () => {
    const mine = [];
    for (let i = 0; i < each; i++) mine.push(await get(front.port, agent, urlPath));
    return mine;
  }))).flat();
  agent.destroy();
  const wrong = results.filter((r) => r.status !== 200 || !r.body.equals(want));
  assert.equal(wrong.length, 0, `${wrong.length} of ${results.length} answers differ, e.g. ${JSON.stringify(wrong.slice(0, 3).map((r) => ({ status: r.status, size: r.body.length, text: r.body.subarray(0, 16).toString('latin1'), error: r.error })))}`);
  // Every answer came on a connection of its own: none was reused after its overrun.
  assert.equal(seen.requests - before.requests, clients * each);
  assert.equal(seen.connections - before.connections, clients * each, 'one upstream connection per request');
  // The warning is written once the answer has gone out: it may trail the client's last bytes.
  const warnings = (): LogLine[] => front.logs.slice(from).filter((l) => l.level === 40 && /more data than its answer framed/.test(l.msg));
  for (const end = Date.now() + 10_000; warnings().length < clients * each && Date.now() < end;) await new Promise((r) => setTimeout(r, 50));
  const warned = warnings();
  assert.equal(warned.length, clients * each, 'a warning for each closed connection');
  assert.equal(warned[0]!.url, urlPath);
}

/**
 * The tests, for the plain and the TLS upstream's proxy: each of
 * OVERRUN_PATHS by assertNoOverrunServed, then `check(front, upstream,
 * urlPath, from)` with the log index from before, for what the file adds.
 */
export function describeOverrun(
  title: string,
  fronts: () => { proxy: Running; tlsProxy: Running },
  o: { clients: number; each: number; timeoutMs: number; check?: (front: Running, upstream: 'plain' | 'TLS', urlPath: string, from: number) => void | Promise<void> },
): void {
  for (const upstream of ['plain', 'TLS'] as const) {
    describe(`${title}: an upstream that sends a second answer unasked (${upstream} upstream)`, () => {
      for (const urlPath of OVERRUN_PATHS) {
        test(`${urlPath}: ${o.clients} clients x ${o.each} requests each get their own body, never the unasked answer`, { timeout: o.timeoutMs }, async () => {
          const front = upstream === 'plain' ? fronts().proxy : fronts().tlsProxy;
          const from = front.mark();
          await assertNoOverrunServed(front, urlPath, o.clients, o.each);
          await o.check?.(front, upstream, urlPath, from);
        });
      }
    });
  }
}

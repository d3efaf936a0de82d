/**
 * `aludel proxy` and protocol switching (RFC 9110 §7.8, §15.2.2), against a
 * raw TCP origin that answers as the test says:
 * - an Upgrade request whose upstream never answers, abandoned by its client:
 *   the client's descriptor and the upstream attempt go at once (both were
 *   held until the upstream timeout, the client's then until --idle-timeout:
 *   a descriptor a minute per aborted upgrade, costing the client nothing);
 * - a 101 Switching Protocols to a request that asked for no upgrade: a 502,
 *   and that upstream connection is never used again (the 101 was relayed
 *   with "Connection: keep-alive" and the connection went back to the pool);
 * - an upstream that fails once its answer has begun (a reset after its 101,
 *   or in a refusal's body): no answer of ours follows (a "502 Bad Gateway"
 *   was written after the 101, into the tunnel, and after half a 426 body);
 * - how a tunnel's end is logged: one main-log line when it ends (nothing
 *   was logged for a clean end, a warning for one cut by the shutdown), and
 *   the request's access-log line then, with status 101 and the bytes the
 *   tunnel carried, as nginx writes it (there was none at all).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { rawTls, splitHttp } from '../support/raw-http.js';
import { delay, waitUntil } from '../support/wait.js';
import { fdsBeyondKept } from '../fuzz/proc-stats.js';

interface RawOrigin {
  port: number;
  /** Each request's target and the client port of the connection it came on. */
  requests: Array<{ target: string; remotePort: number }>;
  /** Connections open now. */
  open: number;
  /** The client ports of the connections closed so far. */
  closedPorts: Set<number>;
  close(): Promise<void>;
}

/**
 * Per request path: /never is never answered; /101 gets a bare "101
 * Switching Protocols" (no Upgrade field), whatever the request asked for;
 * anything else a 200 naming the connection's client port, keep-alive.
 */
async function startRawOrigin(): Promise<RawOrigin> {
  const origin: RawOrigin = { port: 0, requests: [], open: 0, closedPorts: new Set(), close: async () => undefined };
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    origin.open++;
    sockets.add(sock);
    const port = sock.remotePort ?? 0;
    sock.on('close', () => { origin.open--; origin.closedPorts.add(port); sockets.delete(sock); });
    sock.on('error', () => undefined);
    let buf = Buffer.alloc(0);
    let echoing = false;
    sock.on('data', (d: Buffer) => {
      if (echoing) { sock.write(d); return; }
      buf = Buffer.concat([buf, d]);
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
        const target = buf.subarray(0, end).toString('latin1').split(' ')[1] ?? '/';
        buf = buf.subarray(end + 4);
        origin.requests.push({ target, remotePort: sock.remotePort ?? 0 });
        if (target === '/never') continue;
        if (target === '/101') {
          sock.write('HTTP/1.1 101 Switching Protocols\r\n\r\n');
          continue;
        }
        if (target === '/101-echo') {
          // A WebSocket-ish peer: switches, then echoes every byte; the client's FIN ends it (node ends ours).
          sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
          echoing = true;
          if (buf.length > 0) sock.write(buf);
          return;
        }
        if (target === '/101-reset') {
          // Switches, says one line, and resets: the client's bytes sent behind its request
          // then reach a connection already reset.
          sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nDATA\n', () => sock.resetAndDestroy());
          continue;
        }
        if (target === '/101-stream' || target === '/101-quiet') {
          // Switches, then streams as fast as the proxy takes it (a feed), or says nothing.
          sock.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
          const chunk = Buffer.alloc(64 * 1024, 0x70);
          const pump = (): void => { while (target === '/101-stream' && !sock.destroyed && sock.write(chunk)); };
          sock.on('drain', pump);
          pump();
          continue;
        }
        if (target === '/refuse-reset') {
          // A refusal whose body is cut short by a reset.
          sock.write('HTTP/1.1 426 Upgrade Required\r\nContent-Length: 1000\r\n\r\n' + 'x'.repeat(100), () => sock.resetAndDestroy());
          continue;
        }
        if (target === '/refuse-length' || target === '/refuse-chunked') {
          // A refusal of the upgrade with a body (RFC 9110 §15.5.22: 426 Upgrade Required), in two pieces.
          const body = 'upgrade to websocket/13 instead\n'.repeat(200);
          sock.write(target === '/refuse-length'
            ? `HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 100)}`
            : `HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n${body.slice(0, 100)}\r\n`);
          setTimeout(() => sock.end(target === '/refuse-length' ? body.slice(100) : `${(body.length - 100).toString(16)}\r\n${body.slice(100)}\r\n0\r\n\r\n`), 50);
          continue;
        }
        const text = `port ${sock.remotePort}`;
        sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${text.length}\r\n\r\n${text}`);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin.port = (server.address() as net.AddressInfo).port;
  origin.close = () => new Promise((resolve) => { server.close(() => resolve()); for (const s of sockets) s.destroy(); });
  return origin;
}

let fx: StandardFixtures;
let origin: RawOrigin;
const running: Running[] = [];

async function proxy(...args: string[]): Promise<Running> {
  const p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${origin.port}`, '--offload', 'userspace', '--max-fails', '0', ...args]);
  running.push(p);
  return p;
}

const UPGRADE = 'GET /never HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';

/**
 * An Upgrade to /never, `then` written once the origin has the request (the
 * upstream attempt is pending), then the client leaves (FIN, no
 * close_notify, as the tester's client did).
 */
async function abandonedUpgrade(p: Running, then: Buffer | null): Promise<void> {
  const seen = origin.requests.length;
  const sock = tls.connect({ host: '127.0.0.1', port: p.port, servername: 'localhost', ca: fx.certPem });
  sock.on('error', () => undefined);
  await new Promise<void>((resolve) => sock.once('secureConnect', () => resolve()));
  sock.write(UPGRADE);
  await waitUntil(() => origin.requests.length > seen);
  if (then !== null) await new Promise<void>((resolve) => sock.write(then, () => resolve()));
  await delay(50);
  sock.destroy();
}

before(async () => {
  fx = await makeFixtures();
  origin = await startRawOrigin();
});

after(async () => {
  for (const p of running) await p.stop();
  await origin?.close();
  fx?.cleanup();
});

describe('aludel proxy: protocol switching (RFC 9110 §7.8, §15.2.2)', () => {
  test('an upgrade abandoned by its client while the upstream says nothing: the client descriptor and the upstream connection go at once (each was held until --idle-timeout)', async () => {
    // The upstream timeout far off: only noticing the client can free anything within the wait.
    const p = await proxy('--upstream-headers-timeout', '60s');
    const pid = p.child.pid!;
    const fds = (): number => fdsBeyondKept(pid) ?? 0;
    const start = fds();
    const openBefore = origin.open;
    for (let i = 0; i < 10; i++) await abandonedUpgrade(p, null);
    await waitUntil(() => fds() <= start + 2 && origin.open <= openBefore, 5_000).catch(() => undefined);
    assert.ok(fds() <= start + 2, `${start} descriptors before, ${fds()} 5 s after 10 abandoned upgrades`);
    assert.equal(origin.open, openBefore, 'each pending upstream attempt was abandoned (its connection closed)');
    const line = await p.waitForLog((l) => l.url === '/never' && l.error === 'ERR_CLIENT_GONE');
    assert.equal(line.level, 30, 'the client leaving is no upstream failure: info, not warn');
    assert.equal(splitHttp(await rawTls(p.port, fx.certPem, 'GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).status, 200, 'still serving');
  });

  test('an upgrade attempt that ends without a tunnel (the upstream timed out) releases its client connection, also one that sent bytes ahead and left unseen', async () => {
    // Nothing sent ahead of the answer (the tester's case), then from less to more than the
    // proxy holds for the tunnel: past that it stops reading, sees the client go only once the
    // upstream attempt is over, and then cannot send its 504 (the TLS layer has read the bare
    // FIN). Run side by side.
    const p = await proxy('--upstream-headers-timeout', '1s');
    const pid = p.child.pid!;
    const fds = (): number => fdsBeyondKept(pid) ?? 0;
    const start = fds();
    const sizes = [0, ...Array.from({ length: 11 }, (_, i) => (8 + 4 * i) * 1024)];
    await Promise.all(sizes.map((n) => abandonedUpgrade(p, n > 0 ? Buffer.alloc(n, 0x61) : null)));
    // The upstream attempts end 1 s after the clients left: 5 s is plenty, --idle-timeout (60 s) was needed.
    await waitUntil(() => fds() <= start + 2, 5_000).catch(() => undefined);
    assert.ok(fds() <= start + 2, `${start} descriptors before, ${fds()} after ${sizes.length} abandoned upgrades that timed out upstream`);
    // A client that stays gets the 504, and then the connection closes.
    const t0 = Date.now();
    const raw = await rawTls(p.port, fx.certPem, UPGRADE, 10_000);
    assert.equal(splitHttp(raw).status, 504);
    assert.ok(Date.now() - t0 < 5_000, `closed ${Date.now() - t0} ms after the request`);
  });

  test('a 101 to a request that asked for no upgrade: 502, logged once, and that upstream connection is closed, never reused (it went back to the pool)', async () => {
    const p = await proxy();
    const from = p.mark();
    const raw = await rawTls(p.port, fx.certPem, 'GET /101 HTTP/1.1\r\nHost: x\r\n\r\n', 5_000);
    const text = raw.toString('latin1');
    assert.equal(splitHttp(raw).status, 502, JSON.stringify(text.slice(0, 200)));
    assert.ok(!text.includes(' 101 '), JSON.stringify(text.slice(0, 200)));
    const switched = origin.requests.find((r) => r.target === '/101')!;
    await waitUntil(() => origin.closedPorts.has(switched.remotePort), 5_000).catch(() => undefined);
    assert.ok(origin.closedPorts.has(switched.remotePort), 'the upstream connection that answered 101 was closed');
    const next = splitHttp(await rawTls(p.port, fx.certPem, 'GET /after-101 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'));
    assert.equal(next.status, 200);
    assert.notEqual(next.body.toString(), `port ${switched.remotePort}`, 'the next request went on the connection that answered 101');
    const warned = p.logs.slice(from).filter((l) => l.level === 40);
    assert.equal(warned.length, 1, JSON.stringify(warned));
    assert.equal(warned[0]!.error, 'ERR_UPSTREAM_BAD_RESPONSE');
    assert.match(String(warned[0]!.detail), /101 Switching Protocols to a request that asked for no upgrade/);
  });

  test('an upstream that refuses the upgrade with a body (426, by Content-Length or chunked): the client gets the whole body, framed, then the close', async () => {
    const p = await proxy();
    const body = 'upgrade to websocket/13 instead\n'.repeat(200);
    for (const path of ['/refuse-length', '/refuse-chunked']) {
      const raw = await rawTls(p.port, fx.certPem, UPGRADE.replace('/never', path), 10_000);
      const r = splitHttp(raw);
      assert.equal(r.status, 426, path);
      assert.equal(r.headers.connection, 'close', path);
      const got = r.headers['transfer-encoding'] === 'chunked' ? dechunk(r.body) : r.body.toString('latin1');
      assert.equal(got, body, `${path}: the whole body (${got.length} of ${body.length} bytes)`);
      if (path === '/refuse-length') assert.equal(r.headers['content-length'], String(body.length));
    }
  });

  test('an upstream that resets after its 101, with client bytes sent behind the request: the client gets the 101 and the upstream\'s line, then the close, never a 502 in the tunnel', async () => {
    const p = await proxy();
    const from = p.mark();
    // The tunnel bytes ride with the request (node hands them over with the upgrade): their write
    // to the upstream is refused. Five rounds: the reset may also come once they are written.
    for (let i = 0; i < 5; i++) {
      const raw = await rawTls(p.port, fx.certPem, UPGRADE.replace('/never', '/101-reset') + 'EARLY', 10_000);
      const r = splitHttp(raw);
      assert.equal(r.status, 101, JSON.stringify(raw.toString('latin1')));
      assert.equal(r.body.toString('latin1'), 'DATA\n', `round ${i}: after the 101, only what the upstream sent`);
    }
    await waitUntil(() => p.logs.slice(from).filter((l) => l.msg === 'upgrade failed').length >= 5, 5_000);
    const failed = p.logs.slice(from).filter((l) => l.msg === 'upgrade failed');
    assert.equal(failed.length, 5, 'one line per failed tunnel');
    assert.equal(new Set(failed.map((l) => l.conn)).size, 5);
  });

  test('an upstream that resets in the body of its refusal: the client gets what came, then the close, never a 502 inside the body', async () => {
    const p = await proxy();
    const raw = await rawTls(p.port, fx.certPem, UPGRADE.replace('/never', '/refuse-reset'), 10_000).catch((err: Error) => Buffer.from(`error ${err.message}`));
    const r = splitHttp(raw);
    assert.equal(r.status, 426, JSON.stringify(raw.toString('latin1').slice(0, 200)));
    assert.equal(r.body.toString('latin1'), 'x'.repeat(100), 'the part of the body that came, nothing after it');
  });

  test('a WebSocket client that stops reading while the upstream streams: the tunnel is closed after --idle-timeout (it was held for good), an idle one is not', async () => {
    const p = await proxy('--idle-timeout', '1s', '--upstream-idle-timeout', '60s');
    const from = p.mark();
    const opened = (path: string): Promise<{ raw: net.Socket; port: number }> => new Promise((resolve, reject) => {
      const raw = net.connect({ host: '127.0.0.1', port: p.port });
      const c = tls.connect({ socket: raw, servername: 'localhost', ca: fx.certPem });
      c.on('error', () => undefined);
      c.once('secureConnect', () => c.write(UPGRADE.replace('/never', path)));
      c.once('data', (d: Buffer) => {
        if (!d.toString('latin1').startsWith('HTTP/1.1 101 ')) reject(new Error(d.toString('latin1').slice(0, 100)));
        // Reads nothing more: TLS records pile up in our socket, then in the proxy's.
        raw.pause();
        c.pause();
        resolve({ raw, port: origin.requests.filter((r) => r.target === path).at(-1)!.remotePort });
      });
    });
    const stalled = await opened('/101-stream');
    const quiet = await opened('/101-quiet');
    const quietSince = Date.now();
    try {
      // The stalled one's upstream connection goes once the client has taken nothing for 1 s.
      await waitUntil(() => origin.closedPorts.has(stalled.port), 10_000).catch(() => undefined);
      assert.ok(origin.closedPorts.has(stalled.port), 'the tunnel to a client that reads nothing was still open after 10 s');
      const line = await p.waitForLog((l) => l.msg === 'upgrade failed', 3_000, from);
      assert.equal(line.error, 'ERR_CLIENT_STALLED', JSON.stringify(line));
      assert.equal(line.level, 30, 'the client\'s doing: info, as nginx\'s "client timed out"');
      // Idle both ways is not stalled: --upstream-idle-timeout (60 s) governs that one, as before.
      await delay(Math.max(0, 2500 - (Date.now() - quietSince)));
      assert.ok(!origin.closedPorts.has(quiet.port), 'the idle tunnel was closed');
    } finally {
      stalled.raw.destroy();
      quiet.raw.destroy();
    }
  });
});

/**
 * A WebSocket-ish client on /101-echo: after the 101 it sends `rounds` pieces
 * of 1000 bytes, each once the last came back; `close` then ends its side
 * (close_notify, FIN) and waits for the proxy's end, 'keep' leaves it open.
 * Resolves with the connection and the tunnel bytes each way.
 */
async function echoTunnel(p: Running, rounds: number, close: 'close' | 'keep'): Promise<{ c: tls.TLSSocket; raw: net.Socket; bytes: number }> {
  const raw = net.connect({ host: '127.0.0.1', port: p.port });
  raw.on('error', () => undefined);
  const c = tls.connect({ socket: raw, servername: 'localhost', ca: fx.certPem, allowHalfOpen: true } as tls.ConnectionOptions);
  c.on('error', () => undefined);
  await new Promise<void>((resolve) => c.once('secureConnect', () => resolve()));
  let got = Buffer.alloc(0);
  let want = 0;
  let arrived: () => void = () => undefined;
  c.on('data', (d: Buffer) => { got = Buffer.concat([got, d]); if (got.length >= want) arrived(); });
  const until = (n: number): Promise<void> => new Promise((resolve) => { want = n; arrived = resolve; if (got.length >= n) resolve(); });
  c.write(UPGRADE.replace('/never', '/101-echo'));
  const head = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n';
  await until(head.length);
  for (let i = 1; i <= rounds; i++) {
    c.write(Buffer.alloc(1000, 0x30 + i));
    await until(head.length + 1000 * i);
  }
  assert.equal(got.length, head.length + 1000 * rounds, 'every byte echoed, nothing more');
  if (close === 'close') {
    const ended = new Promise<void>((resolve) => c.once('end', () => resolve()));
    c.end();
    await ended;
  }
  return { c, raw, bytes: 1000 * rounds };
}

describe('aludel proxy: the line an Upgrade (WebSocket) tunnel leaves when it ends', () => {
  const request = (url: string) => (l: LogLine): boolean => l.msg === 'request' && l.url === url;

  test('a tunnel both sides end: one info line in the main log with the bytes each way, then its access-log line with 101 and the bytes sent (nothing was logged at its end)', async () => {
    const dir = fs.mkdtempSync(path.join(fx.dir, 'upgrade-log-'));
    const file = path.join(dir, 'access.log');
    const p = await proxy('--access-log', file, '--access-log-format', 'combined');
    const from = p.mark();
    const { bytes } = await echoTunnel(p, 5, 'close');
    const closed = await p.waitForLog((l) => l.msg === 'upgrade closed' || l.msg === 'upgrade failed', 5_000, from);
    assert.equal(closed.msg, 'upgrade closed', JSON.stringify(closed));
    assert.equal(closed.level, 30);
    assert.equal(closed.url, '/101-echo');
    assert.equal(closed.status, 101);
    assert.equal(closed.up, bytes, 'client -> upstream bytes');
    assert.equal(closed.down, bytes, 'upstream -> client bytes');
    assert.equal(typeof closed.ms, 'number');
    assert.equal(p.logs.slice(from).filter((l) => l.msg === 'upgrade closed' || l.msg === 'upgrade failed').length, 1, 'one line per tunnel');
    // The access-log line is the request's, written at the end (nginx: "GET ... HTTP/1.1" 101 $body_bytes_sent).
    await waitUntil(() => fs.existsSync(file) && fs.readFileSync(file, 'utf8').includes('/101-echo'), 5_000).catch(() => undefined);
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.includes('/101-echo'));
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.match(lines[0]!, new RegExp(`"GET /101-echo HTTP/1\\.1" 101 ${bytes} `));
    assert.match(lines[0]!, /ua=http:\/\/127\.0\.0\.1:\d+ uht=\d+\.\d{3} /);
  });

  test('every upgrade request has its access-log line: a refusal relayed (426) with its body bytes, a tunnel with 101 and its bytes', async () => {
    const p = await proxy();
    const from = p.mark();
    const body = 'upgrade to websocket/13 instead\n'.repeat(200);
    assert.equal(splitHttp(await rawTls(p.port, fx.certPem, UPGRADE.replace('/never', '/refuse-length'), 10_000)).status, 426);
    const refused = await p.waitForLog(request('/refuse-length'), 5_000, from);
    assert.equal(refused.status, 426);
    assert.equal(refused.bytes, body.length);
    const { bytes } = await echoTunnel(p, 3, 'close');
    const line = await p.waitForLog(request('/101-echo'), 5_000, from);
    assert.equal(line.status, 101);
    assert.equal(line.bytes, bytes);
    assert.equal(line.level, 30);
    assert.equal(typeof line.upstreamMs, 'number');
  });

  test('without --access-log (its JSON lines in the main log): a tunnel both sides end leaves one line at its end, the request line, with the bytes each way (it also wrote "upgrade closed", saying the same at the same moment)', async () => {
    const p = await proxy();
    const from = p.mark();
    const { bytes } = await echoTunnel(p, 3, 'close');
    const line = await p.waitForLog(request('/101-echo'), 5_000, from);
    assert.deepEqual([line.level, line.status, line.bytes, line.up], [30, 101, bytes, bytes], JSON.stringify(line));
    assert.equal(line.reason, undefined, 'both sides ended it');
    const after = p.logs.slice(from);
    assert.deepEqual(after.filter((l) => l.msg === 'upgrade closed' || l.msg === 'upgrade failed'), [], 'no second line about the same end');
    assert.equal(after.filter((l) => l.msg === 'upgrade').length, 1, 'the line at the 101 stays: a tunnel may live for hours');
  });

  test('who ended a tunnel sets its level: the client\'s reset is info, a tunnel quiet past --upstream-idle-timeout is closed at info, the upstream\'s reset is a warning (all three were warnings)', async () => {
    const p = await proxy('--upstream-idle-timeout', '1s');
    // A tunnel closed as configured says so in its request line (in the main log here); a failed one has its own line first.
    const ends = (from: number): Promise<LogLine> => p.waitForLog((l) => l.msg === 'upgrade closed' || l.msg === 'upgrade failed' || (l.msg === 'request' && l.status === 101), 5_000, from);
    let from = p.mark();
    const reset = await echoTunnel(p, 2, 'keep');
    reset.raw.resetAndDestroy();
    const byClient = await ends(from);
    assert.deepEqual([byClient.msg, byClient.level, byClient.error], ['upgrade failed', 30, 'ECONNRESET'], JSON.stringify(byClient));
    assert.equal(byClient.down, reset.bytes);
    assert.equal((await p.waitForLog(request('/101-echo'), 5_000, from)).level, 30);
    from = p.mark();
    const quiet = await echoTunnel(p, 1, 'keep');
    try {
      const idle = await ends(from);
      assert.deepEqual([idle.msg, idle.level, idle.reason], ['request', 30, 'idle timeout'], JSON.stringify(idle));
      assert.equal(idle.bytes, quiet.bytes);
    } finally {
      quiet.c.destroy();
    }
    from = p.mark();
    assert.equal(splitHttp(await rawTls(p.port, fx.certPem, UPGRADE.replace('/never', '/101-reset') + 'EARLY', 10_000)).status, 101);
    const byUpstream = await ends(from);
    assert.deepEqual([byUpstream.msg, byUpstream.level], ['upgrade failed', 40], JSON.stringify(byUpstream));
    assert.equal((await p.waitForLog(request('/101-reset'), 5_000, from)).level, 40);
  });

  test('a tunnel still open at the --shutdown-timeout deadline: an info line saying the shutdown cut it, its access-log line and its bytes counted, before the totals (it was a warning, ERR_STREAM_PREMATURE_CLOSE, and nothing counted)', async () => {
    const p = await proxy('--shutdown-timeout', '1s');
    const { c, bytes } = await echoTunnel(p, 4, 'keep');
    try {
      const gone = new Promise<void>((resolve) => p.child.once('close', () => resolve()));
      p.child.kill('SIGTERM');
      await gone;
    } finally {
      c.destroy();
    }
    assert.ok(p.logs.some((l) => l.msg.startsWith('shutdown deadline reached')), 'the tunnel outlived the deadline');
    // Request lines in the main log: the cut tunnel's request line says it all, nothing beside it.
    const ends = p.logs.filter((l) => l.msg === 'upgrade closed' || l.msg === 'upgrade failed');
    assert.deepEqual(ends, [], ends.map((l) => JSON.stringify(l)).join('\n'));
    const line = p.logs.find(request('/101-echo'));
    assert.ok(line !== undefined, 'the access-log line of the cut tunnel');
    assert.deepEqual([line.status, line.level, line.reason, line.bytes, line.up], [101, 30, 'shutdown', bytes, bytes], JSON.stringify(line));
    const totals = p.logs.findIndex((l) => l.totals !== undefined);
    assert.ok(totals > p.logs.indexOf(line), 'the lines come before the totals');
    const counted = (p.logs[totals]!.totals as { bodies: { write: { bodies: number; bytes: number } } }).bodies.write;
    assert.deepEqual(counted, { bodies: 1, bytes }, 'the tunnel\'s bytes to the client are counted');
  });
});

/** A chunked body's data (RFC 9112 §7.1), for checking what the client got. */
function dechunk(b: Buffer): string {
  let out = '';
  let at = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', at);
    const size = parseInt(b.toString('latin1', at, eol), 16);
    if (size === 0) return out;
    out += b.toString('latin1', eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
}

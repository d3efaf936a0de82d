/**
 * `aludel tcp`: how a tunnel ends. Each tunnel must end with one log line
 * ('tunnel closed' or 'tunnel failed') and release both descriptors, whatever
 * the two peers do: a client gone without close_notify (a bare FIN, RFC 8446
 * §6.1 calls it a truncation) or with a reset, a tunnel idle past
 * --idle-timeout (nginx stream's proxy_timeout). Half-close (RFC 9293 §3.6)
 * must still carry the rest of the other direction.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { delay, waitUntil } from '../support/wait.js';
import { fdsBeyondKept } from '../fuzz/proc-stats.js';

let fx: StandardFixtures;
const running: Running[] = [];
const servers: net.Server[] = [];

before(async () => {
  fx = await makeFixtures();
});

after(async () => {
  for (const p of running) await p.stop();
  for (const s of servers) s.close();
  fx?.cleanup();
});

/**
 * A plain TCP backend. echo: echoes, and on the client's FIN writes "BYE\n"
 * and ends (a backend that answers the FIN); close: echoes, and ends at the
 * client's FIN without a word; count: on the FIN, after 100 ms, says how many
 * bytes came and ends. `sockets` sees every connection, to check it closed.
 */
async function backend(mode: 'echo' | 'close' | 'count', sockets: net.Socket[] = []): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.push(s);
    s.on('error', () => undefined);
    let n = 0;
    s.on('data', (d: Buffer) => {
      n += d.length;
      if (mode !== 'count') s.write(d);
    });
    s.on('end', () => {
      if (mode === 'echo') s.end('BYE\n');
      else if (mode === 'close') s.end();
      else setTimeout(() => s.end(`got ${n} bytes\n`), 100);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as net.AddressInfo).port;
}

async function tcp(upstreamPort: number, ...extra: string[]): Promise<Running> {
  const p = await startAludel(['tcp', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--offload', 'userspace', '--to', `127.0.0.1:${upstreamPort}`, ...extra]);
  running.push(p);
  return p;
}

const ended = (l: LogLine): boolean => l.msg === 'tunnel closed' || l.msg === 'tunnel failed';

function connect(port: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const c = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: fx.certPem, allowHalfOpen: true } as tls.ConnectionOptions, () => resolve(c));
    c.once('error', reject);
  });
}

/** Resolves with the first bytes `c` receives. */
function nextData(c: tls.TLSSocket): Promise<string> {
  return new Promise((resolve) => c.once('data', (d: Buffer) => resolve(d.toString())));
}

/** The descriptor count of an idle aludel, once it holds still. */
async function settledFds(pid: number): Promise<number> {
  let last = fdsBeyondKept(pid)!;
  for (let i = 0; i < 10; i++) {
    await delay(100);
    const now = fdsBeyondKept(pid)!;
    if (now === last) return now;
    last = now;
  }
  return last;
}

/**
 * A TLS client over a transport of its own, so the test can act on the TCP
 * connection below TLS: send the FIN itself (`raw.end()`, no close_notify
 * first) and keep reading, or reset it (`raw.resetAndDestroy()`).
 */
function ownTransportClient(port: number): Promise<{ c: tls.TLSSocket; raw: net.Socket }> {
  const raw = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  const transport = new Duplex({
    read() { raw.resume(); },
    write(chunk: Buffer, _enc, cb) {
      if (raw.writableEnded) cb();
      else raw.write(chunk, () => cb());
    },
    final(cb) { cb(); },
    destroy(err, cb) {
      raw.destroy();
      cb(err);
    },
  });
  raw.on('data', (d: Buffer) => { if (!transport.push(d)) raw.pause(); });
  raw.on('end', () => transport.push(null));
  raw.on('error', (err) => transport.destroy(err));
  return new Promise((resolve, reject) => {
    const c = tls.connect({ socket: transport, servername: 'localhost', ca: fx.certPem, allowHalfOpen: true } as tls.ConnectionOptions, () => resolve({ c, raw }));
    c.once('error', reject);
  });
}

describe('aludel tcp: how tunnels end', () => {
  for (const mode of ['echo', 'close'] as const) {
    test(`20 clients gone without close_notify (FIN, and RST) against a backend that ${mode === 'echo' ? 'answers' : 'closes on'} the FIN: descriptors come back, one log line each`, async () => {
      const port = await backend(mode);
      // The idle timeouts are far away: only the clients' going may end these tunnels.
      const p = await tcp(port, '--idle-timeout', '60s');
      const pid = p.child.pid!;
      const start = await settledFds(pid);
      const from = p.mark();
      const clients = await Promise.all(Array.from({ length: 20 }, () => ownTransportClient(p.port)));
      await waitUntil(() => fdsBeyondKept(pid)! >= start + 40, 3000); // each tunnel: a client and an upstream socket
      // A little data, then gone at once: the echo (and the echo backend's BYE) comes back
      // after the client's FIN. destroy(): a TCP FIN without close_notify; one in four
      // resets its TCP connection instead (resetAndDestroy(): SO_LINGER 0, a RST).
      await Promise.all(clients.map(({ c, raw }, i) => new Promise<void>((resolve) => {
        c.write(`hello ${i}\n`, () => {
          if (i % 4 === 3) raw.resetAndDestroy();
          else c.destroy();
          resolve();
        });
      })));
      await waitUntil(() => fdsBeyondKept(pid) === start, 5000).catch(() => {
        assert.fail(`descriptors still ${fdsBeyondKept(pid)} 5 s after the clients left (start ${start})`);
      });
      await waitUntil(() => p.logs.slice(from).filter(ended).length >= 20, 2000);
      await delay(200);
      const lines = p.logs.slice(from).filter(ended);
      assert.equal(lines.length, 20, lines.map((l) => JSON.stringify(l)).join('\n'));
      assert.equal(new Set(lines.map((l) => l.conn)).size, 20, 'one line per tunnel');
    });
  }

  test('--idle-timeout 1s closes an idle tunnel on both sides, not one with data every 300 ms', async () => {
    const upstreams: net.Socket[] = [];
    const port = await backend('echo', upstreams);
    const p = await tcp(port, '--idle-timeout', '1s');
    const pid = p.child.pid!;
    const start = await settledFds(pid);
    const from = p.mark();
    const idle = await connect(p.port);
    const busy = await connect(p.port);
    // The client sees aludel's FIN ('end'; it half-closes itself, allowHalfOpen) or a reset ('close').
    const idleClosed = new Promise<number>((resolve) => {
      idle.once('end', () => resolve(Date.now()));
      idle.once('close', () => resolve(Date.now()));
    });
    idle.on('error', () => undefined);
    const opened = Date.now();
    let echoes = 0;
    busy.on('data', () => echoes++);
    const ticker = setInterval(() => busy.write('.'), 300);
    try {
      const closedAt = await Promise.race([idleClosed, delay(4000).then(() => null)]);
      assert.notEqual(closedAt, null, 'the idle tunnel was not closed within 4 s');
      const after = closedAt! - opened;
      assert.ok(after >= 900 && after < 2500, `closed after ${after} ms`);
      const line = await p.waitForLog((l) => ended(l), 1000, from);
      assert.equal(line.msg, 'tunnel closed');
      assert.equal(line.level, 30, 'info');
      assert.equal(line.reason, 'idle timeout');
      // Both sides: the upstream connection of the idle tunnel is gone too.
      await waitUntil(() => upstreams.length === 2 && upstreams.some((s) => s.destroyed), 1000);
      // The busy tunnel lives on well past the timeout.
      await delay(1500);
      assert.ok(!busy.destroyed && !busy.readableEnded, 'the busy tunnel was closed');
      assert.ok(echoes >= 8, `the busy tunnel echoed ${echoes} times`);
      assert.equal(p.logs.slice(from).filter(ended).length, 1);
    } finally {
      clearInterval(ticker);
      busy.end();
      idle.destroy();
    }
    await waitUntil(() => p.logs.slice(from).filter(ended).length === 2, 3000);
    await waitUntil(() => fdsBeyondKept(pid) === start, 3000);
  });

  test('one-way traffic (a log shipper: the client sends, the upstream never answers) outlives --upstream-idle-timeout', async () => {
    // The backend takes every byte and says nothing until the client's FIN (count).
    const port = await backend('count');
    const p = await tcp(port, '--upstream-idle-timeout', '1s', '--idle-timeout', '60s');
    const from = p.mark();
    const c = await connect(p.port);
    c.on('error', () => undefined);
    let got = '';
    c.on('data', (d: Buffer) => (got += d.toString()));
    const ended = new Promise<void>((r) => c.once('end', () => r()));
    // A line every 100 ms for 3 s, three times the upstream timeout: the upstream takes each
    // at once, so it is not stalled, only silent, as nginx stream's proxy_timeout counts it.
    for (let i = 0; i < 30; i++) {
      await new Promise<void>((r) => c.write('log line\n', () => r()));
      await delay(100);
    }
    assert.equal(p.logs.slice(from).filter((l) => l.msg === 'tunnel failed').length, 0, JSON.stringify(p.logs.slice(from).filter((l) => l.msg === 'tunnel failed')));
    c.end();
    await Promise.race([ended, delay(3000)]);
    assert.equal(got, `got ${30 * 'log line\n'.length} bytes\n`, 'every line reached the upstream, and its answer came back');
    const line = await p.waitForLog((l) => l.msg === 'tunnel closed' || l.msg === 'tunnel failed', 3000, from);
    assert.equal(line.msg, 'tunnel closed', JSON.stringify(line));
  });

  test('--upstream-idle-timeout below --idle-timeout: a quiet tunnel is closed as idle at the smaller, not failed', async () => {
    const port = await backend('echo');
    const p = await tcp(port, '--upstream-idle-timeout', '1s', '--idle-timeout', '10s');
    const from = p.mark();
    const c = await connect(p.port);
    c.on('error', () => undefined);
    const line = await p.waitForLog((l) => ended(l), 4000, from);
    assert.equal(line.msg, 'tunnel closed', JSON.stringify(line));
    assert.equal(line.level, 30, 'info');
    assert.equal(line.reason, 'idle timeout');
    assert.equal(line.idleMs, 1000);
    c.destroy();
  });

  test('half-close: a client that sends its FIN (with close_notify, or without) still gets the upstream\'s answer', async () => {
    const port = await backend('count');
    const p = await tcp(port, '--idle-timeout', '10s');
    const pid = p.child.pid!;
    const start = await settledFds(pid);
    const from = p.mark();
    // close_notify then FIN (TLS end()), still reading.
    const a = await connect(p.port);
    let gotA = '';
    a.on('data', (d: Buffer) => (gotA += d.toString()));
    const endA = new Promise<void>((r) => a.once('end', () => r()));
    a.end(Buffer.alloc(1000, 1));
    await Promise.race([endA, delay(3000)]);
    assert.equal(gotA, 'got 1000 bytes\n');
    // A bare FIN below TLS (no close_notify), still reading.
    const { c: b, raw } = await ownTransportClient(p.port);
    let gotB = '';
    b.on('data', (d: Buffer) => (gotB += d.toString()));
    b.on('error', () => undefined);
    const closedB = new Promise<void>((r) => raw.once('close', () => r()));
    b.write(Buffer.alloc(2000, 2), () => raw.end());
    await Promise.race([closedB, delay(3000)]);
    assert.equal(gotB, 'got 2000 bytes\n', 'the answer after a FIN without close_notify');
    await waitUntil(() => p.logs.slice(from).filter(ended).length >= 2, 3000);
    await waitUntil(() => fdsBeyondKept(pid) === start, 3000);
  });

  test('half-close the other way: the upstream ends first, the client goes on sending', async () => {
    let received = 0;
    let upstreamDone!: (n: number) => void;
    const done = new Promise<number>((resolve) => (upstreamDone = resolve));
    const server = net.createServer({ allowHalfOpen: true }, (s) => {
      s.end('HELLO\n'); // the upstream's FIN first: passed on as close_notify, and the client is still read
      s.on('data', (d: Buffer) => (received += d.length));
      s.on('end', () => upstreamDone(received));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const p = await tcp(port, '--idle-timeout', '10s');
    const c = await connect(p.port);
    let got = '';
    c.on('data', (d: Buffer) => (got += d.toString()));
    await new Promise<void>((r) => c.once('end', () => r()));
    assert.equal(got, 'HELLO\n');
    c.write(Buffer.alloc(5000, 3));
    await delay(100);
    c.end(Buffer.alloc(5000, 4));
    assert.equal(await Promise.race([done, delay(3000).then(() => -1)]), 10_000);
    await p.waitForLog((l) => l.msg === 'tunnel closed', 3000);
  });

  test('SIGTERM past --shutdown-timeout: each tunnel still open is cut with its line, before the process exits', async () => {
    const port = await backend('echo');
    const p = await tcp(port, '--shutdown-timeout', '1s');
    const clients = await Promise.all([0, 1, 2].map(() => connect(p.port)));
    for (const [i, c] of clients.entries()) {
      c.on('error', () => undefined);
      const echoed = nextData(c);
      c.write(`hello ${i}\n`);
      assert.equal(await echoed, `hello ${i}\n`);
    }
    // 'close': the process is gone and its stdout read to the end.
    const gone = new Promise<void>((resolve) => p.child.once('close', () => resolve()));
    p.child.kill('SIGTERM');
    await gone;
    assert.ok(p.logs.some((l) => l.msg.startsWith('shutdown deadline reached')), 'the tunnels outlived the deadline');
    const lines = p.logs.filter(ended);
    assert.equal(lines.length, 3, `one line per tunnel cut at the deadline, got:\n${lines.map((l) => JSON.stringify(l)).join('\n')}`);
    // Cut as the admin asked (nginx's worker_shutdown_timeout), not failed: info, saying so, with
    // what each carried (a warning, ERR_STREAM_PREMATURE_CLOSE, without bytes, and none counted).
    for (const l of lines) {
      assert.deepEqual([l.msg, l.level, l.reason], ['tunnel closed', 30, 'shutdown'], JSON.stringify(l));
      assert.deepEqual([l.up, l.down], [8, 8], JSON.stringify(l));
    }
    const totals = p.logs.findIndex((l) => l.totals !== undefined);
    assert.ok(p.logs.every((l, i) => !ended(l) || i < totals), 'the tunnel lines come before the last line, the totals');
    const counted = (p.logs[totals]!.totals as { bodies: { write: { bodies: number; bytes: number } } }).bodies.write;
    assert.deepEqual(counted, { bodies: 3, bytes: 24 }, 'the bytes the cut tunnels sent to their clients are counted');
    for (const c of clients) c.destroy();
  });

  test('an upstream that answers and closes while the client is still sending: its answer reaches the client', async () => {
    // As a server that rejects a request too large (redis' "-ERR Protocol error", an SMTP 552)
    // and closes: its kernel resets the connection over the bytes it left unread, and our writes
    // fail, but what it sent before the reset is still ours to read (a plain TCP client gets it).
    const server = net.createServer((s) => {
      s.on('error', () => undefined);
      s.once('data', () => s.end('ERR too big\n', () => s.destroy()));
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const p = await tcp((server.address() as net.AddressInfo).port);
    const start = await settledFds(p.child.pid!);
    // Half the rounds read the answer only 300 ms after it came, still writing meanwhile: a
    // client cut at once (our RST over its unread bytes) had its next write fail and dropped
    // the answer unread, every time (node's sockets do; any client that writes before it reads).
    for (let round = 0; round < 6; round++) {
      const c = await connect(p.port);
      let got = '';
      c.on('error', () => undefined);
      if (round % 2 === 1) c.pause();
      c.on('data', (d: Buffer) => (got += d.toString()));
      if (round % 2 === 1) setTimeout(() => c.resume(), 300);
      // The client closes once it has the answer and our end of it (close_notify).
      c.on('end', () => c.end());
      const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
      const chunk = Buffer.alloc(64 * 1024, 0x61);
      const pump = (): void => {
        while (c.writable && c.write(chunk));
        if (c.writable) c.once('drain', pump);
      };
      pump();
      assert.equal(await Promise.race([closed.then(() => 'closed'), delay(4000).then(() => 'open')]), 'closed', `round ${round}: closed before the linger's end`);
      assert.equal(got, 'ERR too big\n', `round ${round}: the upstream's answer`);
    }
    const lines = p.logs.filter((l) => l.msg === 'tunnel failed');
    assert.equal(lines.length, 6, 'one line per tunnel');
    // The upstream's failure, not the client's: a warning, as under an HTTP upgrade.
    assert.ok(lines.every((l) => l.level === 40), JSON.stringify(lines));
    // The lingering close ends with the client's close: both descriptors of each tunnel are released.
    await waitUntil(() => fdsBeyondKept(p.child.pid!) === start, 3000);
  });
});

/**
 * The admin listener (--admin) of `aludel serve`, `aludel proxy` and `aludel
 * tcp` on this kernel (userspace TLS): /metrics counts exactly the body bytes
 * curl says it received and one handshake per connection curl opened, passes
 * `promtool check metrics`, and /status tells the same story as JSON.
 * test/ktls/admin-metrics-ktls.test.ts checks the kernel paths and counters.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { runCli, serveArgs, startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curlTransfers, type Transfer } from '../support/clients.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { adminAddress, assertPromtoolPasses, scrape, select, status, total, type Sample } from '../support/metrics.js';
import { patternBytes, startNginxOrigin, type NginxOrigin } from '../support/origins.js';
import { rawTcp } from '../support/raw-http.js';
import { run } from '../support/run-process.js';
import { hasKernelTls } from '../support/tls-stat.js';
import { waitUntil } from '../support/wait.js';

const PACKAGE_VERSION = (JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

let fx: StandardFixtures;
const running: Running[] = [];

async function start(args: string[]): Promise<{ server: Running; admin: string }> {
  const server = await startAludel(args);
  running.push(server);
  return { server, admin: await adminAddress(server) };
}

function sum(ts: Transfer[], pick: (t: Transfer) => number): number {
  return ts.reduce((a, t) => a + pick(t), 0);
}

/** Waits until n lines with `msg` were logged (each is written right after the stats call it reports). */
async function logged(server: Running, msg: string, n: number): Promise<LogLine[]> {
  await waitUntil(() => server.logs.filter((l) => l.msg === msg).length >= n, 10_000);
  return server.logs.filter((l) => l.msg === msg);
}

/** Series of `name` as "label=value,... -> value", for readable deepEqual failures. */
function series(samples: Sample[], name: string): Record<string, number> {
  return Object.fromEntries(select(samples, name).map((s) => [Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(','), s.value]));
}

before(async () => {
  fx = await makeFixtures();
});

after(async () => {
  for (const r of running) await r.stop();
  fx?.cleanup();
});

describe('aludel serve --admin', () => {
  test('/metrics: body bytes = what curl received, one handshake per connection, promtool passes; /status agrees', async () => {
    const { server, admin } = await start(serveArgs(fx, '--offload', 'userspace', '--admin', '127.0.0.1:0'));
    const idle = await scrape(admin);
    assert.match(idle.contentType ?? '', /^text\/plain; version=0\.0\.4/);
    assert.equal(total(idle.samples, 'aludel_body_bytes_total'), 0);
    assert.equal(total(idle.samples, 'aludel_handshakes_total'), 0);

    const url = (f: { name: string }): string => `https://localhost:${server.port}/${f.name}`;
    const common = ['--cacert', fx.certFile];
    const transfers: Transfer[] = [];
    // One connection per file, then three requests on one keep-alive connection: a range, a HEAD and a 404.
    for (const f of Object.values(fx.files)) transfers.push(...(await curlTransfers(common, [[url(f)]])));
    transfers.push(...(await curlTransfers(common, [['-r', '100-65635', url(fx.files.big)], ['-I', url(fx.files.mid)], [`https://localhost:${server.port}/missing`]])));
    assert.deepEqual(transfers.map((t) => t.status), [200, 200, 200, 200, 206, 200, 404]);
    assert.deepEqual(transfers.map((t) => t.connects), [1, 1, 1, 1, 1, 0, 0], 'curl reused its connection');
    assert.equal(transfers[4]!.bytes, 65536);
    const connections = sum(transfers, (t) => t.connects);
    // Plain HTTP to the TLS port: a handshake that fails (answered with a plain 400, as nginx).
    const plain = await run('curl', ['-sS', '--max-time', '10', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${server.port}/`], { timeoutMs: 15_000 });
    assert.equal(plain.stdout.toString(), '400');
    const failure = await server.waitForLog((l) => l.msg === 'TLS handshake failed');
    const requests = await logged(server, 'request', transfers.length);
    const established = server.logs.filter((l) => l.msg === 'TLS established');

    const { text, samples } = await scrape(admin);
    await assertPromtoolPasses(text);
    const received = sum(transfers, (t) => t.bytes);
    assert.equal(total(samples, 'aludel_body_bytes_total'), received, 'every byte curl received, no more');
    // Userspace TLS: file bodies by read + SSL_write; the 404's text is Aludel's own (path none).
    assert.deepEqual(series(samples, 'aludel_body_bytes_total'), { 'path=write,tx=user,rx=user': received - 'Not Found\n'.length, 'path=none,tx=user,rx=user': 'Not Found\n'.length });
    // Files of 1 B, 16385 B, 5 MiB and the range by write; the empty file, the HEAD and the 404 have no file body.
    assert.deepEqual(series(samples, 'aludel_bodies_total'), { 'path=write,tx=user,rx=user': 4, 'path=none,tx=user,rx=user': 3 });
    assert.equal(total(samples, 'aludel_bodies_total'), requests.length);
    assert.deepEqual(series(samples, 'aludel_connections_total'), { 'tx=user,rx=user': connections });

    const ok: Record<string, number> = {};
    for (const l of established) {
      const key = `version=${String(l.tls)},cipher=${String(l.cipher)},result=ok`;
      ok[key] = (ok[key] ?? 0) + 1;
    }
    assert.equal(established.length, connections);
    assert.deepEqual(series(samples, 'aludel_handshakes_total'), { ...ok, [`version=none,cipher=none,result=failed,error=${String(failure.code)}`]: 1 });
    const engine = established[0]!.engine;
    assert.equal(total(samples, 'aludel_handshake_duration_seconds_count'), engine === 'system-openssl' ? connections : 0, `engine ${String(engine)}`);
    assert.ok(total(samples, 'aludel_handshake_duration_seconds_sum') > 0);
    assert.ok(total(samples, 'process_cpu_seconds_total') > 0, 'process metrics');
    assert.ok(select(samples, 'nodejs_eventloop_lag_seconds').length === 1, 'Node.js metrics');
    const kernel = samples.filter((s) => s.name.startsWith('aludel_kernel_tls_'));
    assert.equal(kernel.length > 0, hasKernelTls(), `kernel TLS series exist exactly when /proc/net/tls_stat does: ${kernel.map((s) => s.name).join(' ')}`);

    const st = await status(admin);
    assert.equal(st.version, PACKAGE_VERSION);
    assert.equal(st.command, 'serve');
    assert.equal(st.listen, `127.0.0.1:${server.port}`);
    assert.equal(st.admin, admin);
    assert.equal(st.pid, server.child.pid);
    assert.deepEqual([st.offload.requested, st.offload.ktls], ['userspace', false]);
    assert.deepEqual(st.handshakes, { ok: connections, failed: 1 });
    assert.equal(st.connections.total, connections);
    assert.equal(st.connections.kernelTx, 0);
    assert.equal(st.bodies.write.bytes + st.bodies.none.bytes, received);
    assert.deepEqual([st.bodies.sendfile, st.bodies.splice], [{ bodies: 0, bytes: 0 }, { bodies: 0, bytes: 0 }]);
    assert.equal(st.upstreams, undefined, 'serve has no upstreams');
    assert.equal(st.kernelTls.available, hasKernelTls());
    if (!st.kernelTls.available) assert.match(st.kernelTls.reason, /modprobe tls/);
  });

  test('aludel_connections_open follows a connection held open', async () => {
    const { server, admin } = await start(serveArgs(fx, '--offload', 'userspace', '--admin', '127.0.0.1:0'));
    const open = async (): Promise<number> => total((await scrape(admin)).samples, 'aludel_connections_open');
    assert.equal(await open(), 0);
    const sock = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: fx.certPem });
    await new Promise<void>((resolve, reject) => sock.once('secureConnect', resolve).once('error', reject));
    assert.equal(await open(), 1);
    assert.equal((await status(admin)).connections.open, 1);
    sock.destroy();
    let now = 1;
    for (let i = 0; i < 100 && now !== 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      now = await open();
    }
    assert.equal(now, 0, 'back to 0 after the client closed');
  });

  test('the admin listener answers GET and HEAD only, and only /metrics and /status', async () => {
    const { admin } = await start(serveArgs(fx, '--offload', 'userspace', '--admin', '127.0.0.1:0'));
    const post = await fetch(`http://${admin}/metrics`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
    const missing = await fetch(`http://${admin}/`);
    assert.equal(missing.status, 404);
    assert.match(await missing.text(), /\/metrics.*\/status/);
    const head = await fetch(`http://${admin}/metrics`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.ok(Number(head.headers.get('content-length')) > 1000);
    assert.equal((await head.arrayBuffer()).byteLength, 0);
    assert.equal((await fetch(`http://${admin}/status?pretty`)).status, 200, 'a query string is ignored');
  });

  test('an over-long request target gets 414, as nginx answers it; over-long header fields 431; a bad head 400, a slow one 408: each whole answer byte for byte', async () => {
    const { admin } = await start(serveArgs(fx, '--offload', 'userspace', '--admin', '127.0.0.1:0'));
    const port = Number(admin.slice(admin.lastIndexOf(':') + 1));
    const closing = (line: string): string => `HTTP/1.1 ${line}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`;
    // node's parser counts the request line and the fields together (--max-header-size): node answered 431 for both.
    const longTarget = await rawTcp(port, `GET /metrics?${'a'.repeat(100_000)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    assert.equal(longTarget.toString('latin1'), closing('414 URI Too Long'));
    const longField = await rawTcp(port, `GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: ${'a'.repeat(100_000)}\r\n\r\n`);
    assert.equal(longField.toString('latin1'), closing('431 Request Header Fields Too Large'));
    const badField = await rawTcp(port, 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon here\r\n\r\n');
    assert.equal(badField.toString('latin1'), closing('400 Bad Request'));
    // A head never finished: the listener's 10 s request timeout (sideServerOptions) answers it.
    const unfinished = await rawTcp(port, 'GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n', 30_000);
    assert.equal(unfinished.toString('latin1'), closing('408 Request Timeout'));
    // The listener still answers.
    assert.equal((await fetch(`http://${admin}/metrics`)).status, 200);
  });

  test('on loopback, a request whose Host is not loopback gets 403 (DNS rebinding: a web page reading /status as same-origin)', async () => {
    const { server, admin } = await start(serveArgs(fx, '--offload', 'userspace', '--admin', '127.0.0.1:0'));
    const [host, port] = [admin.slice(0, admin.lastIndexOf(':')), Number(admin.slice(admin.lastIndexOf(':') + 1))];
    const get = (hostHeader: string, path = '/status'): Promise<number> =>
      new Promise((resolve, reject) => {
        http.get({ host, port, path, headers: { Host: hostHeader } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on('error', reject);
      });
    const from = server.mark();
    assert.equal(await get('rebound.example'), 403);
    assert.equal(await get(`rebound.example:${port}`, '/metrics'), 403);
    assert.equal(await get('127.0.0.2.example'), 403);
    await server.waitForLog((l) => /DNS rebinding/.test(String(l.msg)) && l.host === 'rebound.example', 5000, from);
    for (const ok of [`127.0.0.1:${port}`, 'localhost', `LOCALHOST.:${port}`, `[::1]:${port}`, 'metrics.localhost']) assert.equal(await get(ok), 200, ok);
  });

  test('off unless given; a bad --admin or a taken port stops start-up with the reason', async () => {
    const plain = await startAludel(serveArgs(fx, '--offload', 'userspace'));
    running.push(plain);
    assert.equal(plain.logs.some((l) => l.msg === 'admin listening'), false);

    const bad = await runCli(serveArgs(fx, '--admin', 'localhost:9100'));
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--admin: expected PORT \(binds 127\.0\.0\.1\) or ADDRESS:PORT/);

    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (taken.address() as net.AddressInfo).port;
      const busy = await runCli(serveArgs(fx, '--admin', String(port)));
      assert.equal(busy.code, 2);
      assert.match(busy.stderr, new RegExp(`--admin 127\\.0\\.0\\.1:${port}: bind: Address already in use`));
    } finally {
      taken.close();
    }
  });
});

describe('aludel proxy --admin', () => {
  let nginx: NginxOrigin;
  before(async () => {
    nginx = await startNginxOrigin({ root: fx.root });
  });
  after(async () => {
    await nginx?.stop();
  });

  test('bytes through the proxy = what curl received; a dead upstream: errors, up=0, /status', async () => {
    const live = `http://127.0.0.1:${nginx.port}`;
    const dead = 'http://127.0.0.1:1';
    const { server, admin } = await start(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', live, dead, '--offload', 'userspace', '--admin', '127.0.0.1:0']);
    const url = (p: string): string => `https://localhost:${server.port}${p}`;
    const common = ['--cacert', fx.certFile];
    const transfers: Transfer[] = [];
    // Round-robin: the second request goes to the dead upstream (502), which is then marked down.
    for (const p of [`/${fx.files.big.name}`, `/${fx.files.mid.name}`, `/chunked/${fx.files.big.name}`, `/chunked/${fx.files.mid.name}`, `/${fx.files.one.name}`, `/${fx.files.empty.name}`]) {
      transfers.push(...(await curlTransfers(common, [[url(p)]])));
    }
    assert.deepEqual(transfers.map((t) => t.status), [200, 502, 200, 200, 200, 200]);
    await logged(server, 'request', transfers.length);

    const { text, samples } = await scrape(admin);
    await assertPromtoolPasses(text);
    const received = sum(transfers, (t) => t.bytes);
    assert.equal(transfers[1]!.bytes, 'Bad Gateway\n'.length);
    assert.equal(total(samples, 'aludel_body_bytes_total'), received, 'every byte curl received, no more');
    assert.deepEqual(series(samples, 'aludel_body_bytes_total'), { 'path=write,tx=user,rx=user': received - transfers[1]!.bytes, 'path=none,tx=user,rx=user': transfers[1]!.bytes });
    assert.deepEqual(series(samples, 'aludel_connections_total'), { 'tx=user,rx=user': transfers.length });
    assert.equal(total(samples, 'aludel_handshakes_total', { result: 'ok' }), transfers.length);
    assert.deepEqual(series(samples, 'aludel_upstream_errors_total'), { [`upstream=${dead},code=ECONNREFUSED`]: 1 });
    assert.deepEqual(series(samples, 'aludel_upstream_up'), { [`upstream=${live}`]: 1, [`upstream=${dead}`]: 0 });

    const st = await status(admin);
    assert.equal(st.command, 'proxy');
    assert.deepEqual(st.upstreamErrors, { [`${dead} ECONNREFUSED`]: 1 });
    assert.deepEqual(st.upstreams?.map((u) => [u.url, u.up, u.fails, u.downUntil !== null]), [[live, true, 0, false], [dead, false, 1, true]]);
    assert.equal(st.bodies.write.bytes + st.bodies.none.bytes, received);
  });
});

describe('aludel tcp --admin', () => {
  test('tunnelled bytes = what s_client received', async () => {
    const size = 300_000;
    const origin = net.createServer((s) => s.end(patternBytes(size)));
    await new Promise<void>((resolve) => origin.listen(0, '127.0.0.1', resolve));
    try {
      const to = `127.0.0.1:${(origin.address() as net.AddressInfo).port}`;
      const { server, admin } = await start(['tcp', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', to, '--offload', 'userspace', '--admin', '127.0.0.1:0']);
      const r = await run('openssl', ['s_client', '-quiet', '-connect', `127.0.0.1:${server.port}`, '-servername', 'localhost', '-CAfile', fx.certFile], { input: '', timeoutMs: 30_000 });
      assert.equal(r.stdout.length, size, r.stderr);
      await logged(server, 'tunnel closed', 1);
      const { text, samples } = await scrape(admin);
      await assertPromtoolPasses(text);
      assert.deepEqual(series(samples, 'aludel_body_bytes_total'), { 'path=write,tx=user,rx=user': size });
      assert.deepEqual(series(samples, 'aludel_upstream_up'), { [`upstream=${to}`]: 1 });
      const st = await status(admin);
      assert.equal(st.command, 'tcp');
      assert.equal(st.bodies.write.bytes, size);
    } finally {
      origin.close();
    }
  });
});

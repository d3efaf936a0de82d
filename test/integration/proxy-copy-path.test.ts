/**
 * The copy path (src/transport/copy-body.ts) end to end: `aludel proxy`
 * with userspace TLS in front of a raw origin that frames its bodies as
 * told (Content-Length, chunked with chosen chunk sizes, ended by close)
 * and can reset its connection mid-body. Every body from 0 B to 64 MiB must
 * arrive with its sha256, also to a client that reads slowly (its socket
 * fills, so writes stop part-way and the unsent bytes are peeked again), and
 * a reset mid-body must cut the response short with only correct bytes.
 * All of it three times: from a plain origin (bytes peeked in the upstream
 * socket, dropped as taken), and from the same origin over TLS, decrypted by
 * the system OpenSSL in user space (src/proxy/ssl-upstream.ts) and by
 * node:tls (--upstream-ciphers keeps it there); both hand their bytes to the
 * copy through src/transport/stream-source.ts.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { startAludel, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { listenLocal, onRequestTargets } from '../support/raw-http.js';

const MiB = 1024 * 1024;
const BODY = crypto.randomBytes(64 * MiB);

let fx: Fixtures<never>;
let origin: net.Server;
let tlsOrigin: net.Server;
let proxy: Running;
let tlsProxy: Running;
let nodeTlsProxy: Running;

/**
 * GET /len/N, /chunked/N/K (chunks of K bytes), /close/N (no length, ended
 * by closing), /reset/N/M (Content-Length M, N bytes, then an RST): the first
 * N bytes of BODY. Keep-alive for the first two, as the proxy pools
 * connections.
 */
function answer(socket: net.Socket, target: string, tcp: net.Socket): void {
  const [kind, a, b] = target.split('/').slice(1);
  const n = Number(a);
  const body = BODY.subarray(0, n);
  const head = (fields: string): string => `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n${fields}\r\n`;
  if (kind === 'len') {
    socket.write(head(`Content-Length: ${n}\r\n`));
    socket.write(body);
  } else if (kind === 'chunked') {
    const k = Number(b);
    socket.write(head('Transfer-Encoding: chunked\r\n'));
    for (let off = 0; off < n; off += k) {
      const piece = body.subarray(off, Math.min(n, off + k));
      socket.write(`${piece.length.toString(16)}\r\n`);
      socket.write(piece);
      socket.write('\r\n');
    }
    socket.write('0\r\n\r\n');
  } else if (kind === 'close') {
    socket.end(Buffer.concat([Buffer.from(head('Connection: close\r\n')), body]));
  } else if (kind === 'reset') {
    socket.write(head(`Content-Length: ${Number(b)}\r\n`));
    // The RST goes on the TCP socket: a TLSSocket's handle is not a TCP handle (node refuses resetAndDestroy there).
    socket.write(body, () => setTimeout(() => tcp.resetAndDestroy(), 50));
  } else {
    socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
  }
}

/** Answers each request head as it arrives (keep-alive, pipelining allowed); `tcp`: the socket under TLS. */
function serveRequests(socket: net.Socket, tcp: net.Socket = socket): void {
  onRequestTargets(socket, (target) => answer(socket, target, tcp));
}

before(async () => {
  fx = await makeFixtures({});
  origin = net.createServer((tcp) => serveRequests(tcp));
  const secureContext = tls.createSecureContext({ cert: fs.readFileSync(fx.certFile), key: fs.readFileSync(fx.keyFile) });
  tlsOrigin = net.createServer((tcp) => serveRequests(new tls.TLSSocket(tcp, { isServer: true, secureContext }), tcp));
  const [port, tlsPort] = [await listenLocal(origin), await listenLocal(tlsOrigin)];
  const front = ['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--offload', 'userspace'];
  proxy = await startAludel([...front, '--to', `http://127.0.0.1:${port}`]);
  tlsProxy = await startAludel([...front, '--to', `https://127.0.0.1:${tlsPort}`, '--upstream-insecure']);
  // A cipher list of its own keeps an upstream on node:tls (staticCopyReason); TLS 1.3 still comes first.
  nodeTlsProxy = await startAludel([...front, '--to', `https://127.0.0.1:${tlsPort}`, '--upstream-insecure', '--upstream-ciphers', 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256']);
});

after(async () => {
  await proxy?.stop();
  await tlsProxy?.stop();
  await nodeTlsProxy?.stop();
  origin?.close();
  tlsOrigin?.close();
  fx?.cleanup();
});

/** One GET into a file: curl's exit code, the status, and the body. */
async function fetch(front: Running, urlPath: string, ...extra: string[]): Promise<{ code: number; status: number; body: Buffer; stderr: string }> {
  const out = path.join(fx.outDir, 'body.bin');
  const r = await curl(['--cacert', fx.certFile, '-o', out, '-w', '%{http_code}', ...extra, `https://localhost:${front.port}${urlPath}`], 120_000);
  const body = fs.existsSync(out) ? await fs.promises.readFile(out) : Buffer.alloc(0);
  await fs.promises.rm(out, { force: true });
  return { code: r.code, status: Number(r.stdout.toString()), body, stderr: r.stderr };
}

async function assertBody(front: Running, urlPath: string, size: number, ...extra: string[]): Promise<void> {
  const r = await fetch(front, urlPath, ...extra);
  assert.equal(r.code, 0, `${urlPath}: ${r.stderr}`);
  assert.equal(r.status, 200, urlPath);
  assert.equal(r.body.length, size, `${urlPath}: length`);
  assert.equal(sha256(r.body), sha256(BODY.subarray(0, size)), `${urlPath}: sha256`);
}

const RECORD = 16 * 1024;
const PASS = 256 * 1024;
const SIZES = [0, 1, RECORD - 1, RECORD, RECORD + 1, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, PASS - 1, PASS, PASS + 1, MiB + 7, 64 * MiB];

const FRONTS = [
  ['plain upstream', (): Running => proxy],
  ['TLS upstream on the system OpenSSL', (): Running => tlsProxy],
  ['TLS upstream on node:tls', (): Running => nodeTlsProxy],
] as const;

for (const [upstream, front] of FRONTS) {
  describe(`aludel proxy: the copy path (userspace TLS, ${upstream})`, () => {
    test('Content-Length bodies from 0 B to 64 MiB arrive byte-exact', async () => {
      for (const n of SIZES) await assertBody(front(), `/len/${n}`, n);
    });

    test('chunked bodies (small, odd and large chunks) arrive byte-exact, re-chunked', async () => {
      for (const [n, k] of [[0, 1], [1, 1], [100_000, 1000], [PASS + 1, 65_539], [3 * MiB + 5, RECORD - 3], [64 * MiB, MiB]] as const) {
        await assertBody(front(), `/chunked/${n}/${k}`, n);
      }
    });

    test('bodies ended by the upstream closing arrive byte-exact, to HTTP/1.1 and HTTP/1.0 clients', async () => {
      for (const n of [0, 1, 64 * 1024, PASS + 1, 64 * MiB]) await assertBody(front(), `/close/${n}`, n);
      for (const n of [1, PASS + 1]) await assertBody(front(), `/close/${n}`, n, '--http1.0');
    });

    test('a client reading slowly gets every byte (writes stop part-way; the rest is peeked again)', async () => {
      await assertBody(front(), `/len/${8 * MiB + 3}`, 8 * MiB + 3, '--limit-rate', '4M');
      await assertBody(front(), `/close/${4 * MiB + 1}`, 4 * MiB + 1, '--limit-rate', '4M');
      await assertBody(front(), `/chunked/${4 * MiB}/${100_000}`, 4 * MiB, '--limit-rate', '4M');
    });

    test('an upstream reset mid-body cuts the response short: only correct bytes, never a clean end', async () => {
      for (const [n, total] of [[100_000, 4 * MiB], [PASS * 3 + 17, 16 * MiB], [20 * MiB, 64 * MiB]] as const) {
        const mark = front().mark();
        const r = await fetch(front(), `/reset/${n}/${total}`);
        assert.notEqual(r.code, 0, `/reset/${n}/${total}: curl must see the response cut short`);
        assert.ok(r.body.length <= n, `/reset/${n}/${total}: ${r.body.length} bytes, more than the upstream sent`);
        assert.ok(r.body.equals(BODY.subarray(0, r.body.length)), `/reset/${n}/${total}: the bytes that came are the body's`);
        const line = await front().waitForLog((l) => l.msg === 'request' && String(l.url).startsWith('/reset/'), 5000, mark);
        assert.ok(['ECONNRESET', 'ERR_UPSTREAM_TRUNCATED'].includes(String(line.error)), `logged ${String(line.error)}`);
      }
      // The proxy still serves afterwards, on a fresh upstream connection.
      await assertBody(front(), `/len/${PASS + 1}`, PASS + 1);
    });
  });
}

test('each TLS front says once which OpenSSL decrypts its upstream: the system one in user space, or node:tls and why', () => {
  const user = tlsProxy.logs.filter((l) => l.msg === 'upstream TLS in user space on the system OpenSSL: bodies copied');
  assert.equal(user.length, 1, JSON.stringify(user));
  assert.equal(user[0]!.reason, 'no kernel TLS here');
  assert.equal(tlsProxy.logs.filter((l) => l.msg === 'upstream TLS stays in user space (node:tls, bodies copied)').length, 0);
  assert.equal(nodeTlsProxy.logs.filter((l) => l.msg === 'upstream TLS in user space on the system OpenSSL: bodies copied').length, 0);
});

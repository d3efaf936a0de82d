/**
 * The legacy backends the proxy and tcp tests stand on (test/support/origins.ts),
 * checked for exactly what those tests rely on: nginx's static, chunked,
 * upload and status routes, its legacy HTTPS (TLS 1.0, AES128-SHA, RSA key
 * exchange) and what it refuses, the sink's misbehaviours, redis answering PING,
 * and every port closed after stop().
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { decodeChunked } from '../support/chunked.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { accepts } from '../support/loopback-port.js';
import {
  STATUS_CODES,
  makeRsaCert,
  patternBytes,
  patternSha256,
  startNginxOrigin,
  startRedis,
  startSinkOrigin,
  type NginxOrigin,
  type SinkOrigin,
} from '../support/origins.js';
import { rawTcp, splitHttp } from '../support/raw-http.js';
import { run } from '../support/run-process.js';
import { delay } from '../support/wait.js';

const FILES = {
  page: { name: 'index.html', size: 1000 },
  mid: { name: 'mid-16385.bin', size: 16385 },
  big: { name: 'big-3m.bin', size: 3 * 1024 * 1024 },
} as const;

const get = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`;

let fx: Fixtures<keyof typeof FILES>;

before(async () => {
  fx = await makeFixtures(FILES);
});

after(() => fx?.cleanup());

/** POSTs `body` with node:http and parses the JSON answer. */
function postJson(port: number, path: string, body: Buffer): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', headers: { 'Content-Length': body.length } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('POST: no answer within 10 s')));
    req.on('error', reject);
    req.end(body);
  });
}

/** Reads from `sock` until `done(received)` holds; rejects after timeoutMs or on close. */
function readUntil(sock: net.Socket, done: (received: Buffer) => boolean, timeoutMs = 5000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const finish = (err: Error | null): void => {
      clearTimeout(timer);
      sock.off('data', onData);
      sock.off('close', onClose);
      if (err) reject(err);
      else resolve(got);
    };
    const onData = (c: Buffer): void => {
      got = Buffer.concat([got, c]);
      if (done(got)) finish(null);
    };
    const onClose = (): void => finish(new Error(`closed after ${JSON.stringify(got.toString('latin1'))}`));
    const timer = setTimeout(() => finish(new Error(`timed out with ${JSON.stringify(got.toString('latin1'))}`)), timeoutMs);
    sock.on('data', onData);
    sock.on('close', onClose);
  });
}

describe('nginx origin, plain HTTP', { timeout: 20_000 }, () => {
  let origin: NginxOrigin;

  before(async () => {
    origin = await startNginxOrigin({ root: fx.root });
  });

  after(async () => {
    await origin?.stop();
  });

  test('static files: Content-Length and the bytes of the file', async () => {
    for (const f of Object.values(fx.files)) {
      const res = splitHttp(await rawTcp(origin.port, get(`/${f.name}`)));
      assert.equal(res.status, 200, f.name);
      assert.equal(res.headers['content-length'], String(f.size), f.name);
      assert.equal(res.headers['transfer-encoding'], undefined, f.name);
      assert.equal(sha256(res.body), f.sha256, f.name);
    }
  });

  test('/chunked/: Transfer-Encoding: chunked, no Content-Length, the same bytes after de-chunking', async () => {
    for (const f of [fx.files.mid, fx.files.big]) {
      const res = splitHttp(await rawTcp(origin.port, get(`/chunked/${f.name}`)));
      assert.equal(res.status, 200, f.name);
      assert.equal(res.headers['transfer-encoding'], 'chunked', f.name);
      assert.equal(res.headers['content-length'], undefined, f.name);
      const { data, sizes } = decodeChunked(res.body);
      assert.ok(sizes.length >= 1, f.name);
      assert.equal(data.length, f.size, f.name);
      assert.equal(sha256(data), f.sha256, f.name);
    }
  });

  test('/upload: a 4 MiB POST arrives whole (the sink hashes it) and the access log has its length', async () => {
    const body = randomBytes(4 * 1024 * 1024);
    const { status, json } = await postJson(origin.port, '/upload', body);
    assert.equal(status, 200);
    assert.equal(json.bytes, body.length);
    assert.equal(json.sha256, sha256(body));
    assert.ok(origin.sink.requests.some((r) => r.method === 'POST' && r.url === '/upload'));
    const entry = (await origin.accessLog(1)).find((e) => e.uri === '/upload');
    assert.ok(entry, 'an access log line for /upload');
    assert.equal(entry.method, 'POST');
    assert.equal(entry.status, 200);
    assert.ok(entry.requestLength > body.length, `requestLength ${entry.requestLength} counts head and body`);
    assert.equal(entry.tlsProtocol, null);
  });

  test('/status/<code>: that status, a small body where one is allowed', async () => {
    for (const code of STATUS_CODES) {
      const res = splitHttp(await rawTcp(origin.port, get(`/status/${code}`)));
      assert.equal(res.status, code);
      if (code === 204 || code === 304) assert.equal(res.body.length, 0, `${code}`);
      else if (code === 301 || code === 302) assert.match(res.headers.location ?? '', /\/$/);
      else assert.equal(res.body.toString('latin1'), `status ${code}\n`);
    }
  });

  test('stop() closes the port', async () => {
    await origin.stop();
    assert.equal(await accepts(origin.port), false);
  });
});

describe('sink origin', { timeout: 20_000 }, () => {
  let sink: SinkOrigin;

  before(async () => {
    sink = await startSinkOrigin();
  });

  after(async () => {
    await sink?.stop();
  });

  test('/chunked-stream: pattern bytes in chunks of many sizes', async () => {
    const size = 300_000;
    const res = splitHttp(await rawTcp(sink.port, get(`/chunked-stream?size=${size}`)));
    assert.equal(res.status, 200);
    assert.equal(res.headers['transfer-encoding'], 'chunked');
    assert.equal(res.headers['content-length'], undefined);
    const { data, sizes } = decodeChunked(res.body);
    assert.ok(new Set(sizes).size >= 5, `chunk sizes ${sizes.slice(0, 12).join(',')}`);
    assert.equal(data.length, size);
    assert.equal(sha256(data), patternSha256(size));
  });

  test('/die-after: Content-Length M, N bytes, then the connection ends', async () => {
    const res = splitHttp(await rawTcp(sink.port, get('/die-after?bytes=70000&total=100000')));
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], '100000');
    assert.deepEqual(res.body, patternBytes(70000));
  });

  test('POST with a chunked body and GET /echo-headers report what arrived', async () => {
    const posted = splitHttp(
      await rawTcp(sink.port, 'POST /in?q=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n'),
    );
    assert.equal(posted.status, 200);
    const p = JSON.parse(posted.body.toString('utf8')) as Record<string, unknown>;
    assert.deepEqual([p.method, p.url, p.bytes, p.sha256], ['POST', '/in?q=1', 5, sha256('abcde')]);

    const echoed = splitHttp(await rawTcp(sink.port, 'GET /echo-headers HTTP/1.1\r\nHost: x\r\nX-Twice: a\r\nx-twice: b\r\nConnection: close\r\n\r\n'));
    const headers = (JSON.parse(echoed.body.toString('utf8')) as { headers: string[] }).headers;
    assert.deepEqual(headers, ['Host', 'x', 'X-Twice', 'a', 'x-twice', 'b', 'Connection', 'close']);
    const last = sink.requests.at(-1);
    assert.deepEqual([last?.method, last?.url, last?.headers], ['GET', '/echo-headers', headers]);
    assert.ok((last?.remotePort ?? 0) > 0);
  });

  test('/hang-headers: never answered, but recorded', async () => {
    const sock = net.connect({ host: '127.0.0.1', port: sink.port });
    try {
      const data: Buffer[] = [];
      sock.on('data', (c: Buffer) => data.push(c));
      sock.write(get('/hang-headers'));
      await delay(300);
      assert.equal(Buffer.concat(data).length, 0);
      assert.equal(sink.requests.at(-1)?.url, '/hang-headers');
    } finally {
      sock.destroy();
    }
  });

  test('Upgrade: echo gets 101, then every byte back', async () => {
    const sock = net.connect({ host: '127.0.0.1', port: sink.port });
    try {
      sock.write('GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nfirst');
      const head = await readUntil(sock, (b) => b.includes('first'));
      assert.match(head.toString('latin1'), /^HTTP\/1\.1 101 [^\r]*\r\n[\s\S]*\r\n\r\nfirst$/);
      sock.write('second');
      assert.equal((await readUntil(sock, (b) => b.length >= 6)).toString('latin1'), 'second');
    } finally {
      sock.destroy();
    }
  });
});

describe('nginx origin, legacy HTTPS (TLS 1.0-1.2, CBC, RSA key exchange)', { timeout: 20_000 }, () => {
  let origin: NginxOrigin;
  let caFile: string;

  before(async () => {
    const cert = await makeRsaCert(fx.dir);
    caFile = cert.certFile;
    origin = await startNginxOrigin({ root: fx.root, tls: { ...cert, protocols: 'TLSv1 TLSv1.1 TLSv1.2', ciphers: 'AES128-SHA:ECDHE-RSA-AES128-SHA:@SECLEVEL=0' } });
  });

  after(async () => {
    await origin?.stop();
  });

  /** openssl s_client with a verified certificate; session details on stdout, alerts on stderr. */
  const sClient = (...args: string[]) =>
    run('openssl', ['s_client', '-connect', `127.0.0.1:${origin.port}`, '-servername', 'localhost', '-CAfile', caFile, '-verify_return_error', '-ign_eof', ...args], {
      input: get(`/${fx.files.page.name}`),
      timeoutMs: 10_000,
    });

  test('openssl s_client -tls1 negotiates TLSv1 with AES128-SHA and gets the file', async () => {
    const r = await sClient('-tls1', '-cipher', 'AES128-SHA@SECLEVEL=0');
    const out = r.stdout.toString('latin1');
    assert.equal(r.code, 0, r.stderr);
    assert.match(out, /^\s*Protocol\s*: TLSv1$/m);
    assert.match(out, /^\s*Cipher\s*: AES128-SHA$/m);
    assert.match(out, /^HTTP\/1\.1 200 OK\r$/m);
    const entry = (await origin.accessLog(1)).find((e) => e.uri === `/${fx.files.page.name}`);
    assert.ok(entry, 'an access log line for the request');
    assert.deepEqual([entry.status, entry.bodyBytesSent, entry.tlsProtocol, entry.tlsCipher], [200, fx.files.page.size, 'TLSv1', 'AES128-SHA']);
  });

  test('refuses TLS 1.3 clients and AES-GCM-only clients', async () => {
    const tls13 = await sClient('-tls1_3');
    assert.notEqual(tls13.code, 0);
    assert.match(tls13.stderr, /alert protocol version/);
    const gcm = await sClient('-tls1_2', '-cipher', 'AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256');
    assert.notEqual(gcm.code, 0);
    assert.match(gcm.stderr, /alert handshake failure/);
  });
});

describe('redis-server', { timeout: 20_000 }, () => {
  test('redis-cli PING answers PONG; stop() closes the port', async () => {
    const redis = await startRedis();
    try {
      const r = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(redis.port), 'ping'], { timeoutMs: 5000 });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString('utf8').trim(), 'PONG');
    } finally {
      await redis.stop();
    }
    assert.equal(await accepts(redis.port), false);
  });
});

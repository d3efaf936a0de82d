/**
 * `aludel serve` with --offload auto and --offload userspace on a host whose
 * kernel cannot do TLS: every suite the policy offers, every file size, real
 * curl and openssl s_client clients, HTTP semantics over the userspace path.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { serveArgs, startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { makeFixtures, sha256, type StandardFixtures } from '../support/fixtures.js';
import { pipelinedBodies, rawTls, rawTlsDropAfter, splitHttp } from '../support/raw-http.js';
import { run } from '../support/run-process.js';

const KTLS_WARN_PREFIX = 'crypto: userspace; kTLS unavailable';

const SUITES = [
  { tls: 'TLSv1.2', curl: ['--tlsv1.2', '--tls-max', '1.2', '--ciphers', 'ECDHE-ECDSA-AES128-GCM-SHA256'], cipher: 'ECDHE-ECDSA-AES128-GCM-SHA256' },
  { tls: 'TLSv1.2', curl: ['--tlsv1.2', '--tls-max', '1.2', '--ciphers', 'ECDHE-ECDSA-AES256-GCM-SHA384'], cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384' },
  { tls: 'TLSv1.2', curl: ['--tlsv1.2', '--tls-max', '1.2', '--ciphers', 'ECDHE-ECDSA-CHACHA20-POLY1305'], cipher: 'ECDHE-ECDSA-CHACHA20-POLY1305' },
  { tls: 'TLSv1.3', curl: ['--tlsv1.3', '--tls13-ciphers', 'TLS_AES_128_GCM_SHA256'], cipher: 'TLS_AES_128_GCM_SHA256' },
  { tls: 'TLSv1.3', curl: ['--tlsv1.3', '--tls13-ciphers', 'TLS_AES_256_GCM_SHA384'], cipher: 'TLS_AES_256_GCM_SHA384' },
  { tls: 'TLSv1.3', curl: ['--tlsv1.3', '--tls13-ciphers', 'TLS_CHACHA20_POLY1305_SHA256'], cipher: 'TLS_CHACHA20_POLY1305_SHA256' },
] as const;

let fx: StandardFixtures;

before(async () => {
  fx = await makeFixtures();
});

after(() => fx?.cleanup());

for (const mode of ['auto', 'userspace'] as const) {
  describe(`serve --offload ${mode}`, { timeout: 120_000 }, () => {
    let srv: Running;
    let base: string;
    let tlsArgs: string[];

    before(async () => {
      srv = await startAludel(serveArgs(fx, '--offload', mode));
      base = `https://localhost:${srv.port}`;
      tlsArgs = ['--cacert', fx.certFile, '--resolve', `localhost:${srv.port}:127.0.0.1`];
    });

    after(async () => {
      await srv?.stop();
    });

    test('start-up log says where the crypto runs', () => {
      const offloadLine = srv.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('crypto:'));
      assert.ok(offloadLine, 'a "crypto: ..." start-up line');
      assert.equal(offloadLine.ktls, false);
      assert.equal(offloadLine.engine, 'system-openssl');
      assert.equal(offloadLine.offload, mode);
      if (mode === 'auto') {
        assert.equal(offloadLine.level, 40);
        assert.ok(offloadLine.msg.startsWith(KTLS_WARN_PREFIX), offloadLine.msg);
        assert.match(String(offloadLine.reason), /CONFIG_TLS|modprobe tls|TCP_ULP/);
      } else {
        assert.equal(offloadLine.level, 30);
        assert.match(offloadLine.msg, /--offload userspace/);
      }
    });

    for (const suite of SUITES) {
      test(`${suite.tls} ${suite.cipher}: all fixture sizes download intact over one connection`, async () => {
        const from = srv.mark();
        const names = Object.values(fx.files);
        const args = [...tlsArgs, ...suite.curl, '-w', '%{http_code} %{num_connects}\n'];
        const outs: string[] = [];
        for (const f of names) {
          const out = path.join(fx.outDir, `${mode}-${suite.cipher}-${f.name}`);
          outs.push(out);
          args.push(`${base}/${f.name}`, '-o', out);
        }
        const r = await curl(args);
        assert.equal(r.code, 0, r.stderr);
        const codes = r.stdout.toString().trim().split('\n');
        assert.deepEqual(codes.map((c) => c.split(' ')[0]), names.map(() => '200'));
        names.forEach((f, i) => {
          const got = fs.readFileSync(outs[i]!);
          assert.equal(got.length, f.size, `${f.name} size`);
          assert.equal(sha256(got), f.sha256, `${f.name} sha256`);
        });

        const reqs: LogLine[] = [];
        for (const f of names) {
          reqs.push(await srv.waitForLog((l) => l.msg === 'request' && l.url === `/${f.name}`, 5000, from));
        }
        const est = srv.logs.slice(from).filter((l) => l.msg === 'TLS established');
        assert.equal(est.length, 1, 'curl reuses one connection for the four URLs');
        const e = est[0]!;
        assert.equal(e.tls, suite.tls);
        assert.equal(e.cipher, suite.cipher);
        assert.equal(e.tx, 'user');
        assert.equal(e.rx, 'user');
        assert.equal(e.engine, 'system-openssl');
        assert.equal(e.alpn, 'http/1.1');
        names.forEach((f, i) => {
          const q = reqs[i]!;
          assert.equal(q.conn, e.conn);
          assert.equal(q.status, 200);
          assert.equal(q.bytes, f.size);
          assert.equal(q.body, f.size === 0 ? 'none' : 'write', `${f.name} body path`);
          assert.equal(q.tls, suite.tls);
          assert.equal(q.cipher, suite.cipher);
          assert.equal(q.tx, 'user');
          assert.equal(q.rx, 'user');
        });
      });
    }

    test('openssl s_client -tls1_2 raw GET returns the file after the header block', { timeout: 30_000 }, async () => {
      const f = fx.files.big;
      const from = srv.mark();
      const raw = await new Promise<Buffer>((resolve, reject) => {
        const child = spawn('openssl', ['s_client', '-quiet', '-connect', `127.0.0.1:${srv.port}`, '-tls1_2', '-CAfile', fx.certFile, '-verify_return_error', '-servername', 'localhost'], { stdio: ['pipe', 'pipe', 'pipe'] });
        const chunks: Buffer[] = [];
        let err = '';
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`s_client did not finish: ${err}`));
        }, 20_000);
        child.stdout.on('data', (c: Buffer) => chunks.push(c));
        child.stderr.on('data', (c: Buffer) => (err += c.toString()));
        child.once('close', () => {
          clearTimeout(timer);
          resolve(Buffer.concat(chunks));
        });
        child.stdin.end(`GET /${f.name} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
      });
      const res = splitHttp(raw);
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-length'], String(f.size));
      assert.equal(res.body.length, f.size);
      assert.equal(sha256(res.body), f.sha256);
      const e = await srv.waitForLog((l) => l.msg === 'TLS established', 5000, from);
      assert.equal(e.tls, 'TLSv1.2');
      assert.equal(e.tx, 'user');
      const q = await srv.waitForLog((l) => l.msg === 'request' && l.conn === e.conn, 5000, from);
      assert.equal(q.body, 'write');
      assert.equal(q.bytes, f.size);
    });

    test('keep-alive: two URLs in one curl share one connection', async () => {
      const from = srv.mark();
      const r = await curl([...tlsArgs, '-w', '%{num_connects}\n', `${base}/${fx.files.one.name}`, '-o', '/dev/null', `${base}/${fx.files.mid.name}`, '-o', '/dev/null']);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.toString().trim().split('\n'), ['1', '0'], 'second transfer made no new connection');
      const q1 = await srv.waitForLog((l) => l.msg === 'request' && l.url === `/${fx.files.one.name}`, 5000, from);
      const q2 = await srv.waitForLog((l) => l.msg === 'request' && l.url === `/${fx.files.mid.name}`, 5000, from);
      const est = srv.logs.slice(from).filter((l) => l.msg === 'TLS established');
      assert.equal(est.length, 1);
      assert.equal(q1.conn, est[0]!.conn);
      assert.equal(q2.conn, est[0]!.conn);
      assert.equal(srv.logs.slice(from).filter((l) => l.msg === 'request').length, 2);
    });

    test('Range: 206 with the right bytes and Content-Range', async () => {
      const f = fx.files.big;
      const whole = fs.readFileSync(f.path);
      const r = await curl([...tlsArgs, '-D', '-', '-r', '1000-1999', `${base}/${f.name}`]);
      assert.equal(r.code, 0, r.stderr);
      const res = splitHttp(r.stdout);
      assert.equal(res.status, 206);
      assert.equal(res.headers['content-range'], `bytes 1000-1999/${f.size}`);
      assert.equal(res.headers['content-length'], '1000');
      assert.ok(res.body.equals(whole.subarray(1000, 2000)), 'range body bytes');

      // Suffix range crossing a 16 KiB record boundary on the mid file.
      const m = fs.readFileSync(fx.files.mid.path);
      const r2 = await curl([...tlsArgs, '-D', '-', '-H', 'Range: bytes=-5000', `${base}/${fx.files.mid.name}`]);
      const res2 = splitHttp(r2.stdout);
      assert.equal(res2.status, 206);
      assert.equal(res2.headers['content-range'], `bytes ${m.length - 5000}-${m.length - 1}/${m.length}`);
      assert.ok(res2.body.equals(m.subarray(m.length - 5000)));

      const r3 = await curl([...tlsArgs, '-D', '-', '-r', `${f.size + 10}-${f.size + 20}`, `${base}/${f.name}`]);
      const res3 = splitHttp(r3.stdout);
      assert.equal(res3.status, 416);
      assert.equal(res3.headers['content-range'], `bytes */${f.size}`);
    });

    test('HEAD: Content-Length of the file and no body on the wire', async () => {
      const f = fx.files.mid;
      const raw = await rawTls(srv.port, fx.certPem, `HEAD /${f.name} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
      const res = splitHttp(raw);
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-length'], String(f.size));
      assert.equal(res.body.length, 0, 'nothing after the header block');
      assert.ok(res.headers.etag);
    });

    test('conditional GET: If-None-Match with the ETag gets 304 and no body', async () => {
      const f = fx.files.mid;
      const head = await curl([...tlsArgs, '-I', `${base}/${f.name}`]);
      const etag = splitHttp(head.stdout).headers.etag;
      assert.ok(etag, 'ETag present');
      const r = await curl([...tlsArgs, '-D', '-', '-H', `If-None-Match: ${etag}`, `${base}/${f.name}`]);
      assert.equal(r.code, 0, r.stderr);
      const res = splitHttp(r.stdout);
      assert.equal(res.status, 304);
      assert.equal(res.body.length, 0);
      assert.equal(res.headers.etag, etag);
      const miss = await curl([...tlsArgs, '-D', '-', '-H', 'If-None-Match: "nope"', `${base}/${f.name}`]);
      const resMiss = splitHttp(miss.stdout);
      assert.equal(resMiss.status, 200);
      assert.equal(sha256(resMiss.body), f.sha256);
    });

    test('404 for a missing file, 405 with Allow for POST/DELETE', async () => {
      const r404 = await curl([...tlsArgs, '-D', '-', `${base}/does-not-exist.bin`]);
      assert.equal(splitHttp(r404.stdout).status, 404);
      const r405 = await curl([...tlsArgs, '-D', '-', '-X', 'POST', '--data', 'x=1', `${base}/${fx.files.one.name}`]);
      const res405 = splitHttp(r405.stdout);
      assert.equal(res405.status, 405);
      assert.equal(res405.headers.allow, 'GET, HEAD');
      const rDel = await curl([...tlsArgs, '-D', '-', '-X', 'DELETE', `${base}/${fx.files.one.name}`]);
      assert.equal(splitHttp(rDel.stdout).status, 405);
      assert.ok(fs.existsSync(fx.files.one.path), 'DELETE did not delete');
    });

    test('a directory without an index file: 403, as nginx answers it without autoindex (its listing is not given); one with an index: the index', async () => {
      const dir = path.join(fx.root, `noindex-${mode}`);
      fs.mkdirSync(dir);
      try {
        const bare = await curl([...tlsArgs, '-D', '-', `${base}/noindex-${mode}/`]);
        assert.equal(splitHttp(bare.stdout).status, 403);
        fs.writeFileSync(path.join(dir, 'index.html'), '<p>index</p>\n');
        const indexed = splitHttp((await curl([...tlsArgs, '-D', '-', `${base}/noindex-${mode}/`])).stdout);
        assert.equal(indexed.status, 200);
        assert.equal(indexed.body.toString(), '<p>index</p>\n');
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    test('path traversal never leaves the root', async () => {
      const passwd = fs.existsSync('/etc/passwd') ? fs.readFileSync('/etc/passwd') : Buffer.from('root:x:0:0');
      for (const p of ['/%2e%2e/%2e%2e/etc/passwd', '/../../etc/passwd', '/..%2f..%2fetc%2fpasswd', '/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd']) {
        const r = await curl([...tlsArgs, '--path-as-is', '-D', '-', `${base}${p}`]);
        assert.equal(r.code, 0, r.stderr);
        const res = splitHttp(r.stdout);
        assert.ok(res.status === 403 || res.status === 400, `${p}: status ${res.status}`);
        assert.ok(!res.body.includes(passwd.subarray(0, Math.min(16, passwd.length))), `${p}: body must not contain /etc/passwd`);
        assert.ok(!res.body.toString('latin1').includes('root:'), `${p}: body must not look like /etc/passwd`);
      }
    });

    test('dot segments and doubled slashes inside the root are normalised as nginx does (200), one climbing above it is refused (400)', async () => {
      const f = fx.files.mid;
      // RFC 3986 §5.2.4 remove_dot_segments after percent-decoding, and nginx's merge_slashes: lexical, so
      // the directory climbed out of need not exist (nginx answers these 200 too).
      const inside = [`/sub/../${f.name}`, `/sub/%2e%2e/${f.name}`, `/a/b/.%2E/./../${f.name}`, `//sub//..//${f.name}`, `/sub%2f..%2f${f.name}`];
      const above = [`/../${f.name}`, `/sub/../../${f.name}`, `/%2e%2e/${f.name}`, `/sub/..%2f..%2f${f.name}`];
      const out = path.join(fx.outDir, `${mode}-dot-segments`);
      const get = async (proto: string, p: string): Promise<number> => {
        const r = await curl([...tlsArgs, proto, '--path-as-is', '-o', out, '-w', '%{http_code}', `${base}${p}`]);
        assert.equal(r.code, 0, r.stderr);
        return Number(r.stdout.toString());
      };
      for (const proto of ['--http1.1', '--http2']) {
        for (const p of inside) {
          assert.equal(await get(proto, p), 200, `${proto} ${p}`);
          assert.equal(sha256(fs.readFileSync(out)), f.sha256, `${proto} ${p}`);
        }
        for (const p of above) assert.equal(await get(proto, p), 400, `${proto} ${p}`);
      }
    });

    test('a file or directory named in bytes that are not UTF-8 (Latin-1) is served by those bytes, as nginx serves it; a malformed escape stays 400', async () => {
      // "café.txt" and "répertoire" in Latin-1: é is the one byte 0xE9, which is not UTF-8 on its own.
      const latin1 = (name: string): Buffer => Buffer.concat([Buffer.from(fx.root + '/'), Buffer.from(name, 'latin1')]);
      const file = latin1('caf\u00e9.txt');
      const dir = latin1('r\u00e9pertoire');
      const index = Buffer.concat([dir, Buffer.from('/index.html')]);
      fs.writeFileSync(file, 'latin-1 name\n');
      fs.mkdirSync(dir);
      fs.writeFileSync(index, 'index of a latin-1 directory\n');
      try {
        const get = async (proto: string, p: string): Promise<{ status: number; body: string; location: string | undefined }> => {
          const r = await curl([...tlsArgs, proto, '--path-as-is', '-D', '-', `${base}${p}`]);
          assert.equal(r.code, 0, r.stderr);
          const res = splitHttp(r.stdout);
          // "HTTP/2 200" has no minor version, which splitHttp's status wants.
          const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(r.stdout.toString('latin1'))?.[1]);
          return { status, body: res.body.toString(), location: res.headers.location };
        };
        for (const proto of ['--http1.1', '--http2']) {
          for (const p of ['/caf%E9.txt', '/caf%e9.txt', '/x/../caf%E9.txt']) assert.deepEqual(await get(proto, p), { status: 200, body: 'latin-1 name\n', location: undefined }, `${proto} ${p}`);
          // The same name in UTF-8 is another file, not there (nginx: 404).
          assert.equal((await get(proto, '/caf%C3%A9.txt')).status, 404, `${proto} UTF-8 spelling`);
          assert.equal((await get(proto, '/nothere%E9.txt')).status, 404, `${proto} missing`);
          const redirect = await get(proto, '/r%E9pertoire');
          assert.equal(redirect.status, 301, `${proto} directory without its slash`);
          assert.match(redirect.location ?? '', /^(https:\/\/[^/]+)?\/r%E9pertoire\/$/, `${proto} Location`);
          assert.equal((await get(proto, '/./r%E9pertoire')).location?.replace(/^https:\/\/[^/]+/, ''), '/r%E9pertoire/', `${proto} Location of a normalised path`);
          assert.deepEqual(await get(proto, '/r%E9pertoire/'), { status: 200, body: 'index of a latin-1 directory\n', location: undefined }, `${proto} directory index`);
          for (const p of ['/caf%E9%zz', '/%E9%00', '/%E9/../..']) assert.equal((await get(proto, p)).status, 400, `${proto} ${p}`);
        }
      } finally {
        fs.rmSync(file);
        fs.rmSync(dir, { recursive: true });
      }
    });

    test('a file named with a trailing slash (or "/." after it) is 404, as nginx answers it (open(2) says ENOTDIR), never the file', async () => {
      const f = fx.files.mid;
      for (const proto of ['--http1.1', '--http2']) {
        for (const p of [`/${f.name}/`, `/${f.name}/.`, `/sub/../${f.name}/`, `/${f.name}%2f`]) {
          const r = await curl([...tlsArgs, proto, '--path-as-is', '-o', '/dev/null', '-w', '%{http_code} %{size_download}', `${base}${p}`]);
          assert.equal(r.code, 0, r.stderr);
          const [status, size] = r.stdout.toString().split(' ').map(Number);
          assert.equal(status, 404, `${proto} ${p}`);
          assert.notEqual(size, f.size, `${proto} ${p}: not the file's bytes`);
        }
        // Twice: the second finds the file's descriptor kept from the first (open-files.ts).
        for (let i = 0; i < 2; i++) {
          const ok = await curl([...tlsArgs, proto, '-o', '/dev/null', '-w', '%{http_code}', `${base}/${f.name}`]);
          assert.equal(ok.stdout.toString(), '200', `${proto} /${f.name} itself`);
          const slashed = await curl([...tlsArgs, proto, '--path-as-is', '-o', '/dev/null', '-w', '%{http_code}', `${base}/${f.name}/`]);
          assert.equal(slashed.stdout.toString(), '404', `${proto} /${f.name}/ after the file was served`);
        }
      }
    });

    test(mode === 'auto' ? 'exactly one kTLS-unavailable warning, no other warnings' : 'no kTLS-unavailable warning at all', () => {
      const ktlsWarn = srv.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith(KTLS_WARN_PREFIX));
      const warns = srv.logs.filter((l) => l.level >= 40);
      if (mode === 'auto') {
        assert.equal(ktlsWarn.length, 1);
        assert.equal(ktlsWarn[0]!.level, 40);
        assert.deepEqual(warns, ktlsWarn, 'the happy-path traffic above logged no warnings');
      } else {
        assert.equal(ktlsWarn.length, 0);
        assert.deepEqual(warns, [], 'userspace mode logs no warnings');
      }
    });

    // Refusals, after the test above that the happy path logged no warning: a 400, 414 or 431 logs one.
    test('a method node\'s parser does not know: 405 with the Allow of DELETE\'s (nginx\'s static module), an access-log line; lower-case: 400', async () => {
      const from = srv.mark();
      const r = splitHttp(await rawTls(srv.port, fx.certPem, `FOO /${fx.files.one.name}?m=foo HTTP/1.1\r\nHost: localhost\r\n\r\n`));
      assert.equal(r.status, 405);
      assert.equal(r.headers.allow, 'GET, HEAD');
      assert.equal(r.headers.connection, 'close');
      const line = await srv.waitForLog((l) => l.msg === 'request' && l.url === `/${fx.files.one.name}?m=foo`, 5000, from);
      assert.deepEqual([line.method, line.status, line.proto, line.bytes], ['FOO', 405, 'HTTP/1.1', 0]);
      const viaCurl = await curl([...tlsArgs, '--http1.1', '-X', 'BREW', '-o', '/dev/null', '-w', '%{http_code}', `${base}/`]);
      assert.equal(viaCurl.stdout.toString(), '405');
      // Pipelined behind a GET: its file first, then the 405 (RFC 9112 §9.3.2).
      const raw = (await rawTls(srv.port, fx.certPem, `GET /${fx.files.one.name} HTTP/1.1\r\nHost: localhost\r\n\r\nFOO / HTTP/1.1\r\nHost: localhost\r\n\r\n`)).toString('latin1');
      assert.deepEqual([...raw.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])), [200, 405], raw);
      assert.equal(splitHttp(await rawTls(srv.port, fx.certPem, 'get / HTTP/1.1\r\nHost: localhost\r\n\r\n')).status, 400);
    });

    test('a request line over --max-header-size: 414 (RFC 9110 §15.5.15, as nginx); header fields over it: 431', async () => {
      for (const size of [17_000, 40_000]) {
        const long = await curl([...tlsArgs, '--http1.1', '-o', '/dev/null', '-w', '%{http_code}', `${base}/${'a'.repeat(size)}`]);
        assert.equal(long.stdout.toString(), '414', `a ${size}-byte target`);
        const big = splitHttp(await rawTls(srv.port, fx.certPem, `GET / HTTP/1.1\r\nHost: localhost\r\nCookie: ${'c'.repeat(size)}\r\n\r\n`));
        assert.equal(big.status, 431, `a ${size}-byte field`);
      }
      const under = splitHttp(await rawTls(srv.port, fx.certPem, `GET /${'a'.repeat(16_000)} HTTP/1.1\r\nHost: localhost\r\nX: ${'b'.repeat(2000)}\r\n\r\n`));
      assert.equal(under.status, 431, 'a request line under the limit, its fields over it');
    });
  });
}

test('keep-alive responses are not held back by Nagle: 20 small requests on one connection take far less than 20 delayed ACKs', async () => {
  // Regression: accepted sockets had no TCP_NODELAY (http.Server's noDelay applies only to sockets
  // its own net.Server accepts), so each response's body waited for the client's delayed ACK of the
  // head: >= 40 ms per request, 180 requests/s with wrk -c8. 20 x 40 ms = 800 ms; fixed, a few ms each.
  const server = await startAludel(serveArgs(fx));
  const { default: https } = await import('node:https');
  const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: fx.certPem });
  try {
    const get = (): Promise<number> =>
      new Promise((resolve, reject) => {
        https.get({ host: '127.0.0.1', servername: 'localhost', port: server.port, path: `/${fx.files.mid.name}`, agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        }).on('error', reject);
      });
    assert.equal(await get(), 200); // handshake and warm-up outside the measurement
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 20; i++) assert.equal(await get(), 200);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.ok(ms < 500, `20 keep-alive requests took ${ms.toFixed(0)} ms (Nagle + delayed ACK would take >= 800 ms)`);
    const conns = new Set(server.logs.filter((l) => l.msg === 'request').map((l) => l.conn));
    assert.equal(conns.size, 1, 'one keep-alive connection');
  } finally {
    agent.destroy();
    await server.stop();
  }
});

test('small bodies leave with their head (up to 12 KiB, userspace TLS): sizes around the limit, a range, and two pipelined answers, byte for byte', async () => {
  const small = await makeFixtures({ one: { name: 's1.bin', size: 1 }, page: { name: 's4k.bin', size: 4096 }, at: { name: 's12k.bin', size: 12 * 1024 }, over: { name: 's12k1.bin', size: 12 * 1024 + 1 } });
  const server = await startAludel(serveArgs(small, '--offload', 'userspace'));
  try {
    const files = Object.values(small.files);
    const args = ['--cacert', small.certFile, '-w', '%{http_code}\n'];
    const outs = files.map((f) => path.join(small.outDir, `got-${f.name}`));
    files.forEach((f, i) => args.push(`https://localhost:${server.port}/${f.name}`, '-o', outs[i]!));
    const r = await curl(args);
    assert.equal(r.code, 0, r.stderr);
    files.forEach((f, i) => assert.equal(sha256(fs.readFileSync(outs[i]!)), f.sha256, f.name));
    const at = small.files.at;
    const range = await curl(['--cacert', small.certFile, '-r', '100-4195', `https://localhost:${server.port}/${at.name}`]);
    assert.deepEqual(range.stdout, fs.readFileSync(path.join(small.root, at.name)).subarray(100, 4196));
    // Two pipelined GETs in one write: both answered, in order, each body exact (RFC 9112 §9.3.2).
    const raw = await rawTls(server.port, small.certPem, `GET /${small.files.page.name} HTTP/1.1\r\nHost: localhost\r\n\r\nGET /${at.name} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    const first = splitHttp(raw);
    assert.equal(first.status, 200);
    const firstLen = Number(first.headers['content-length']);
    assert.equal(firstLen, 4096);
    const headEnd = raw.indexOf('\r\n\r\n') + 4;
    const second = splitHttp(raw.subarray(headEnd + firstLen));
    assert.equal(sha256(first.body.subarray(0, firstLen)), small.files.page.sha256);
    assert.equal(second.status, 200);
    assert.equal(sha256(second.body), at.sha256);
    // The point of it: the 4 KiB answer is one TLS record, head and body (openssl's record trace), where it was two.
    const trace = path.join(small.outDir, 'trace.txt');
    const s = await run('openssl', ['s_client', '-connect', `127.0.0.1:${server.port}`, '-tls1_3', '-trace', '-msgfile', trace, '-ign_eof', '-quiet'], {
      input: `GET /${small.files.page.name} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`, timeoutMs: 20_000,
    });
    assert.equal(s.stdout.length > 4096, true, `the answer arrived: ${s.stderr}`);
    const received = fs.readFileSync(trace, 'latin1').split('Received Record').slice(1).map((r) => r.split('Sent Record')[0]!).filter((r) => /Inner Content Type = ApplicationData/.test(r));
    assert.equal(received.length, 1, `one application-data record: ${received.map((r) => /Length = (\d+)/.exec(r)?.[1]).join(', ')}`);
    const lines = server.logs.filter((l) => l.msg === 'request');
    assert.ok(lines.length >= 8 && lines.every((l) => l.body === 'write' && l.status !== 500), JSON.stringify(lines.map((l) => [l.url, l.status, l.body])));
  } finally {
    await server.stop();
    small.cleanup();
  }
});

/** The responses in `raw`, each cut at its Content-Length. */
function responses(raw: Buffer): Array<{ status: number; headers: Record<string, string>; body: Buffer }> {
  const out = [];
  while (raw.length > 0) {
    const r = splitHttp(raw);
    const length = Number(r.headers['content-length']);
    out.push({ ...r, body: r.body.subarray(0, length) });
    raw = r.body.subarray(length);
  }
  return out;
}

test('a request asking to switch protocols (Upgrade, which serve does not offer) is answered as any GET and the connection kept, as nginx does: the requests pipelined behind it are answered on it', async () => {
  // Found by testing: the connection closed after the answer (Connection: close), where nginx
  // ignores the Upgrade (RFC 9110 §7.8) and keeps the connection alive.
  const server = await startAludel(serveArgs(fx, '--offload', 'userspace'));
  try {
    for (const f of [fx.files.one, fx.files.mid]) {
      const from = server.mark();
      const upgrade = `GET /${f.name} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`;
      const next = `GET /${f.name} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`;
      // One write, 12 Upgrade requests then one more: more than node's 10 listeners, were any left behind per request.
      const raw = await rawTls(server.port, fx.certPem, upgrade.repeat(12) + next, 20_000);
      const got = responses(raw);
      assert.equal(got.length, 13, f.name);
      got.forEach((r, i) => {
        assert.equal(r.status, 200, `${f.name} #${i}`);
        assert.equal(sha256(r.body), f.sha256, `${f.name} #${i}`);
        assert.equal(r.headers.connection, i < 12 ? 'keep-alive' : 'close', `${f.name} #${i}`);
      });
      const line = await server.waitForLog((l) => l.msg === 'request' && l.url === `/${f.name}`, 5_000, from);
      assert.deepEqual([line.status, line.bytes], [200, f.size], JSON.stringify(line));
    }
    assert.doesNotMatch(server.stderr(), /MaxListenersExceeded/);
  } finally {
    await server.stop();
  }
});

test('an Upgrade request with a body is answered, then the connection closes, saying so: its body is not parsed here (no second body parser to disagree with an intermediary\'s)', async () => {
  const server = await startAludel(serveArgs(fx, '--offload', 'userspace'));
  try {
    const f = fx.files.one;
    for (const framing of ['Content-Length: 5\r\n\r\nhello', 'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n']) {
      // The "body" holds a request: were it parsed as one, the client would get two answers.
      const raw = await rawTls(server.port, fx.certPem, `GET /${f.name} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n${framing}GET /${f.name} HTTP/1.1\r\nHost: localhost\r\n\r\n`, 20_000);
      const got = responses(raw);
      assert.equal(got.length, 1, framing);
      assert.equal(got[0]!.status, 200, framing);
      assert.equal(got[0]!.headers.connection, 'close', framing);
    }
  } finally {
    await server.stop();
  }
});

test('the idle timeout (userspace TLS): requests closer together than --idle-timeout keep a connection, so does one sent within the 1 s buffer after it (node\'s HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER), and one idle about that long after its last answer is closed', async () => {
  const server = await startAludel(serveArgs(fx, '--offload', 'userspace', '--idle-timeout', '1s'));
  try {
    const sock = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: fx.certPem });
    let received = '';
    let closedAt = 0;
    sock.on('data', (c: Buffer) => (received += c.toString('latin1')));
    const closed = new Promise<void>((resolve) => sock.once('close', () => { closedAt = performance.now(); resolve(); }));
    sock.on('error', () => undefined);
    await new Promise<void>((resolve) => sock.once('secureConnect', () => resolve()));
    const answers = (): number => received.split('HTTP/1.1 200 ').length - 1;
    // Six requests 400 ms apart: 2.4 s on one connection, more than twice the idle timeout; then
    // a seventh 1.5 s after the sixth answer, past the timeout and within its 1 s buffer (the
    // lane's keepAliveGrace, h1-lane.ts), on the same connection too.
    let lastAnswerAt = 0;
    for (let i = 1; i <= 7; i++) {
      sock.write(`GET /${fx.files.one.name} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      const deadline = performance.now() + 5000;
      while (answers() < i && performance.now() < deadline && closedAt === 0) await new Promise((r) => setTimeout(r, 5));
      assert.equal(answers(), i, `answer ${i} came on the same connection (closed: ${closedAt !== 0})`);
      lastAnswerAt = performance.now();
      if (i < 6) await new Promise((r) => setTimeout(r, 400));
      else if (i === 6) {
        await new Promise((r) => setTimeout(r, 1500));
        assert.equal(closedAt, 0, 'open 1.5 s after an answer (1 s timeout and its 1 s buffer)');
      }
    }
    await Promise.race([closed, new Promise((r) => setTimeout(r, 6000))]);
    assert.ok(closedAt !== 0, 'the idle connection was closed');
    // node's http.Server: keepAliveTimeout (= --idle-timeout) plus its 1 s buffer once a response is done.
    const idle = closedAt - lastAnswerAt;
    assert.ok(idle >= 1900 && idle < 4000, `closed ${Math.round(idle)} ms after the last answer`);
  } finally {
    await server.stop();
  }
});

test('a stalled answer to a keep-alive connection\'s second request is cut at --idle-timeout, as its first request\'s is (node\'s socket timeout, set again when a request ends a keep-alive wait)', async () => {
  // Larger than what loopback's socket buffers take while the client reads nothing.
  const huge = await makeFixtures({ huge: 32 * 1024 * 1024 });
  const server = await startAludel(serveArgs(huge, '--offload', 'userspace', '--idle-timeout', '1s'));
  try {
    const sock = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: huge.certPem });
    sock.on('error', () => undefined);
    await new Promise<void>((resolve) => sock.once('secureConnect', () => resolve()));
    let received = '';
    const onData = (c: Buffer): void => void (received += c.toString('latin1'));
    sock.on('data', onData);
    sock.write('GET /huge?first HTTP/1.1\r\nHost: localhost\r\nRange: bytes=0-0\r\n\r\n');
    const deadline = performance.now() + 5000;
    while (!received.includes('\r\n\r\n') && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    assert.match(received, /^HTTP\/1\.1 206 /);
    // The second request's answer is never read.
    sock.off('data', onData);
    sock.pause();
    sock.write('GET /huge?second HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const line = await server.waitForLog((l) => l.msg === 'request' && l.url === '/huge?second', 15_000).catch(() => null);
    assert.ok(line !== null, 'the stalled answer was cut (its access-log line written), not held for good');
    assert.ok(Number(line.bytes) < huge.files.huge.size, `cut short: ${String(line.bytes)} bytes`);
    sock.destroy();
  } finally {
    await server.stop();
    await huge.cleanup();
  }
});

test('stopping while a lane connection\'s answer is in flight and more heads than it holds wait behind it: the answer finishes, the next says Connection: close, and the connection closes once the client does (no shutdown deadline reached)', { timeout: 60_000 }, async () => {
  // Larger than what loopback's socket buffers take while the client reads nothing.
  const huge = await makeFixtures({ huge: 32 * 1024 * 1024 });
  const server = await startAludel(serveArgs(huge, '--offload', 'userspace', '--shutdown-timeout', '10s'));
  try {
    const sock = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: huge.certPem });
    sock.on('error', () => undefined);
    await new Promise<void>((resolve) => sock.once('secureConnect', () => resolve()));
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    // More heads behind the first than the lane holds (2 x --max-header-size): it stops reading them.
    const more = `GET /huge?more${'x'.repeat(200)} HTTP/1.1\r\nHost: localhost\r\n\r\n`.repeat(200);
    const firstBytes = new Promise<void>((resolve) => sock.once('data', () => { sock.pause(); resolve(); }));
    sock.write(`GET /huge HTTP/1.1\r\nHost: localhost\r\n\r\n${more}`);
    await firstBytes;
    const exited = new Promise<void>((resolve) => server.child.once('exit', () => resolve()));
    server.child.kill('SIGTERM');
    await server.waitForLog((l) => l.msg.startsWith('stopping'), 5000);
    sock.resume();
    const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
    await Promise.race([closed, new Promise((r) => setTimeout(r, 20_000))]);
    const got = Buffer.concat(chunks).toString('latin1');
    const heads = [...got.matchAll(/HTTP\/1\.1 (\d{3}) [^]*?Connection: ([a-z-]+)\r\n/g)].map((m) => `${m[1]} ${m[2]}`);
    assert.deepEqual(heads, ['200 keep-alive', '200 close'], 'the answer in flight, then one that closes');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
    assert.equal(server.logs.find((l) => l.msg.startsWith('shutdown deadline reached')), undefined, 'nothing was left to cut at the deadline');
  } finally {
    await server.stop();
    await huge.cleanup();
  }
});

test('a client that half-closes after its requests (its FIN right behind them) still gets every answer, whole and in order, then our FIN', async () => {
  const server = await startAludel(serveArgs(fx, '--offload', 'userspace'));
  try {
    for (const files of [[fx.files.big, fx.files.one], [fx.files.one, fx.files.mid, fx.files.big, fx.files.one]]) {
      const sock = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: fx.certPem });
      sock.on('error', () => undefined);
      await new Promise<void>((resolve) => sock.once('secureConnect', () => resolve()));
      const chunks: Buffer[] = [];
      sock.on('data', (c: Buffer) => chunks.push(c));
      const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
      // The requests and the client's close_notify and FIN, together.
      sock.end(files.map((f) => `GET /${f.name} HTTP/1.1\r\nHost: localhost\r\n\r\n`).join(''));
      await Promise.race([closed, new Promise((r) => setTimeout(r, 15_000))]);
      assert.ok(sock.readableEnded, 'our FIN came after the answers');
      const got = Buffer.concat(chunks);
      const bodies = pipelinedBodies(got).map((b) => sha256(b));
      assert.deepEqual(bodies, files.map((f) => f.sha256), files.map((f) => f.name).join(' '));
    }
  } finally {
    await server.stop();
  }
});

/** The status lines and bodies of pipelined responses framed by Content-Length. */
function pipelinedAnswers(raw: Buffer): Array<{ status: number; body: Buffer }> {
  const answers: Array<{ status: number; body: Buffer }> = [];
  for (let at = 0; at < raw.length;) {
    const end = raw.indexOf('\r\n\r\n', at, 'latin1');
    if (end < 0) break;
    const head = raw.toString('latin1', at, end);
    const length = Number(/\r\nContent-Length: (\d+)/i.exec(head)?.[1] ?? 0);
    answers.push({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]), body: raw.subarray(end + 4, end + 4 + length) });
    at = end + 4 + length;
  }
  return answers;
}

test('a client that half-closes behind requests node\'s server answers (OPTIONS, a POST with a body), in the lane or not: every one is answered, in order, then our FIN, as nginx answers them', { timeout: 60_000 }, async () => {
  // Larger than loopback's socket buffers: its answer is still being written when the client's FIN is read.
  const huge = await makeFixtures({ huge: 32 * 1024 * 1024, one: { name: 'one.bin', size: 1 } });
  const server = await startAludel(serveArgs(huge, '--offload', 'userspace'));
  const get = (name: string): string => `GET /${name} HTTP/1.1\r\nHost: localhost\r\n\r\n`;
  const options = 'OPTIONS /one.bin HTTP/1.1\r\nHost: localhost\r\n\r\n';
  const post = 'POST /one.bin HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nab';
  const sequences: Array<{ what: string; requests: string[]; statuses: number[] }> = [
    // The lane answers the first GET and hands the connection to node's server at the OPTIONS, after the FIN.
    { what: 'lane first', requests: [get('huge'), options, post, get('one.bin')], statuses: [200, 405, 405, 200] },
    // node's server from the first request: the FIN comes while it writes the second answer.
    { what: 'node from the start', requests: [options, get('huge'), post, get('one.bin')], statuses: [405, 200, 405, 200] },
  ];
  try {
    for (const { what, requests, statuses } of sequences) {
      const sock = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: huge.certPem });
      sock.on('error', () => undefined);
      await new Promise<void>((resolve) => sock.once('secureConnect', () => resolve()));
      const chunks: Buffer[] = [];
      const closed = new Promise<void>((resolve) => sock.once('close', () => resolve()));
      // The requests, then close_notify and FIN; nothing read until the server has had time to
      // read the FIN, so that it comes while the huge answer is still being written.
      sock.pause();
      sock.end(requests.join(''));
      await new Promise((r) => setTimeout(r, 500));
      sock.on('data', (c: Buffer) => chunks.push(c));
      sock.resume();
      await Promise.race([closed, new Promise((r) => setTimeout(r, 30_000))]);
      const answers = pipelinedAnswers(Buffer.concat(chunks));
      assert.deepEqual(answers.map((a) => a.status), statuses, what);
      assert.equal(sha256(answers[statuses.indexOf(200)]!.body), huge.files.huge.sha256, `${what}: the huge body whole`);
      assert.ok(sock.readableEnded, `${what}: our FIN came after the answers`);
    }
  } finally {
    await server.stop();
    await huge.cleanup();
  }
});

test('several TLS records in one TCP segment (userspace TLS reads ahead): every request in them is answered', async () => {
  const server = await startAludel(serveArgs(fx, '--offload', 'userspace'));
  const tcp = net.connect(server.port, '127.0.0.1');
  try {
    await new Promise<void>((resolve, reject) => tcp.once('connect', resolve).once('error', reject));
    // node's TLS client over a transport of our own, so its records can be held and sent in one write.
    let holding = false;
    const held: Buffer[] = [];
    const transport = new Duplex({
      write(chunk: Buffer, _enc, cb) {
        if (holding) held.push(chunk);
        else tcp.write(chunk);
        cb();
      },
      read() {},
    });
    tcp.on('data', (d: Buffer) => transport.push(d));
    tcp.on('end', () => transport.push(null));
    const sock = tls.connect({ socket: transport, servername: 'localhost', ca: fx.certPem });
    sock.on('error', () => undefined);
    await new Promise<void>((resolve) => sock.once('secureConnect', () => resolve()));
    let received = '';
    sock.on('data', (c: Buffer) => (received += c.toString('latin1')));
    holding = true;
    // One write per turn of the loop: writes queued together would be gathered into one record.
    for (let i = 0; i < 3; i++) {
      sock.write(`GET /${fx.files.one.name}?r=${i} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
      await new Promise((r) => setTimeout(r, 20));
    }
    holding = false;
    const burst = Buffer.concat(held);
    let records = 0;
    for (let at = 0; at + 5 <= burst.length; at += 5 + burst.readUInt16BE(at + 3)) records++;
    assert.ok(records >= 3, `the three requests are ${records} records`);
    tcp.write(burst);
    const answers = (): number => received.split('HTTP/1.1 200 ').length - 1;
    const deadline = performance.now() + 5000;
    while (answers() < 3 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    // OpenSSL read all three records with its first read(2): the reader must not wait for the poll while it holds two.
    assert.equal(answers(), 3, `answers: ${answers()}`);
  } finally {
    tcp.destroy();
    await server.stop();
  }
});

test('pipelined small answers to a client that stops reading (userspace TLS): the gathered writes the socket cannot take wait, and every answer arrives whole and in order', { timeout: 60_000 }, async () => {
  // Each answer (head and a 12 KiB body) is one gathered SSL_write (KtlsConnection.writeGathered).
  // With the client not reading, the socket fills and SSL_write says WANT_WRITE: the rest must go
  // out later from a copy of its own, before anything written after it, and nothing twice.
  const small = await makeFixtures({ at: { name: 'p12k.bin', size: 12 * 1024 }, tiny: { name: 'p1.bin', size: 1 } });
  const server = await startAludel(serveArgs(small, '--offload', 'userspace'));
  const sock = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: small.certPem });
  try {
    sock.on('error', () => undefined);
    await new Promise<void>((resolve) => sock.once('secureConnect', () => resolve()));
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.pause();
    const N = 1200;
    const files = [small.files.at!, small.files.tiny!];
    let requests = '';
    for (let i = 0; i < N; i++) requests += `GET /${files[i % 2]!.name}?n=${i} HTTP/1.1\r\nHost: localhost\r\n\r\n`;
    sock.write(requests);
    // Long enough for the server to fill the socket (about 7 MB of answers) while nothing is read.
    await new Promise((r) => setTimeout(r, 1500));
    sock.resume();
    const parsed = (): number => {
      const all = Buffer.concat(chunks);
      let at = 0;
      let n = 0;
      for (;;) {
        const end = all.indexOf('\r\n\r\n', at);
        if (end < 0) return n;
        const length = Number(/content-length: (\d+)/i.exec(all.subarray(at, end).toString('latin1'))?.[1]);
        if (all.length < end + 4 + length) return n;
        at = end + 4 + length;
        n++;
      }
    };
    const deadline = performance.now() + 30_000;
    while (parsed() < N && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const all = Buffer.concat(chunks);
    let at = 0;
    for (let i = 0; i < N; i++) {
      const res = splitHttp(all.subarray(at));
      assert.equal(res.status, 200, `answer ${i}`);
      const f = files[i % 2]!;
      assert.equal(res.headers['content-length'], String(f.size), `answer ${i} is that of request ${i}`);
      assert.equal(sha256(res.body.subarray(0, f.size)), f.sha256, `answer ${i}: body`);
      at = all.indexOf('\r\n\r\n', at) + 4 + f.size;
    }
    assert.equal(at, all.length, 'nothing after the last answer');
    const lines = server.logs.filter((l) => l.msg === 'request');
    assert.ok(lines.every((l) => l.status === 200 && l.body === 'write'), JSON.stringify(lines.filter((l) => l.status !== 200).slice(0, 3)));
  } finally {
    sock.destroy();
    await server.stop();
    small.cleanup();
  }
});

test('an HTTP/2.0 request line over HTTP/1.x gets 505 and a transfer coding other than chunked 501, each closing the connection, as the proxy answers them (RFC 9110 §15.6.6, RFC 9112 §6.1)', async () => {
  const server = await startAludel(serveArgs(fx));
  try {
    const file = fx.files.one.name;
    const v2 = splitHttp(await rawTls(server.port, fx.certPem, `GET /${file} HTTP/2.0\r\nHost: x\r\n\r\n`));
    assert.equal(v2.status, 505);
    assert.equal(v2.headers.connection, 'close');
    const te = splitHttp(await rawTls(server.port, fx.certPem, `GET /${file} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`));
    assert.equal(te.status, 501);
    const ok = splitHttp(await rawTls(server.port, fx.certPem, `GET /${file} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    assert.equal(ok.status, 200);
  } finally {
    await server.stop();
  }
});

test('a download whose client stops reading is closed after --idle-timeout and logged as that timeout (ERR_CLIENT_TIMEOUT, nginx\'s "client timed out"), in the lane and in node\'s server; a client that leaves is still ECONNRESET or EPIPE', async () => {
  const server = await startAludel(serveArgs(fx, '--offload', 'userspace', '--idle-timeout', '1s'));
  const big = fx.files.big.name;
  try {
    // HTTP/1.1 is answered in the lane (h1-lane.ts), HTTP/1.0 by node's http.Server.
    for (const [version, url] of [['1.1', `/${big}?lane`], ['1.0', `/${big}?node`]] as const) {
      const sock = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: fx.certPem });
      sock.on('error', () => undefined);
      // Reads the first bytes, then nothing: the server's writes stop on a full socket.
      sock.once('data', () => sock.pause());
      sock.write(`GET ${url} HTTP/${version}\r\nHost: localhost\r\n\r\n`);
      const line = await server.waitForLog((l) => l.msg === 'request' && l.url === url, 10_000);
      sock.destroy();
      assert.equal(line.error, 'ERR_CLIENT_TIMEOUT', `HTTP/${version}: ${JSON.stringify(line)}`);
      assert.match(String(line.detail), /no progress for 1000 ms \(--idle-timeout/);
      assert.equal(line.status, 200);
      assert.ok(Number(line.bytes) > 0 && Number(line.bytes) < fx.files.big.size, `HTTP/${version}: ${String(line.bytes)} bytes went out`);
    }
    // The client that closes mid-body is not our timeout.
    await rawTlsDropAfter(server.port, fx.certPem, `GET /${big}?gone HTTP/1.1\r\nHost: localhost\r\n\r\n`, (got) => got.length > 0);
    const gone = await server.waitForLog((l) => l.msg === 'request' && l.url === `/${big}?gone`, 10_000);
    // Its close meets our next write as a reset or a broken pipe, as the kernel has it then.
    assert.ok(gone.error === 'ECONNRESET' || gone.error === 'EPIPE', `a client that left: ${String(gone.error)}`);
  } finally {
    await server.stop();
  }
});

test('a download cut short because the file was truncated while being sent: aborted, and the access log gives the bytes that went out (nginx\'s $body_bytes_sent), not 0', async () => {
  const small = await makeFixtures({ one: 1 });
  const file = path.join(small.root, 'shrinking.bin');
  const size = 64 * 1024 * 1024;
  const kept = 24 * 1024 * 1024;
  fs.writeFileSync(file, '');
  fs.truncateSync(file, size); // sparse: quick to make, and read as zeros
  const server = await startAludel(serveArgs(small, '--offload', 'userspace'));
  try {
    const sock = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: small.certPem });
    let received = 0;
    let truncated = false;
    const closed = new Promise<void>((resolve) => sock.on('close', () => resolve()));
    sock.on('error', () => undefined);
    sock.on('data', (d: Buffer) => {
      received += d.length;
      if (truncated || received < 1024 * 1024) return;
      // The server is blocked on a full socket well before `kept` bytes: shrink the file under it, then read on.
      truncated = true;
      sock.pause();
      setTimeout(() => {
        fs.truncateSync(file, kept);
        sock.resume();
      }, 300);
    });
    sock.write('GET /shrinking.bin HTTP/1.1\r\nHost: localhost\r\n\r\n');
    await closed;
    const line = await server.waitForLog((l) => l.msg === 'request' && l.url === '/shrinking.bin');
    assert.equal(line.error, 'ERR_FILE_TRUNCATED');
    assert.equal(line.status, 200);
    assert.equal(line.bytes, kept, `logged ${String(line.bytes)} bytes; the client received ${received} (head included)`);
    assert.ok(received > kept && received < kept + 1024, `the client got the ${kept} bytes there were and the head: ${received}`);
  } finally {
    await server.stop();
    small.cleanup();
  }
});

test('plain GETs answered in the lane, then requests it leaves to node\'s server on the same connection (a body, a head cut across writes, HTTP/1.0): all answered in order, each logged once', async () => {
  const server = await startAludel(serveArgs(fx, '--offload', 'userspace'));
  try {
    const sock = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: fx.certPem });
    sock.on('error', () => undefined);
    await new Promise<void>((resolve) => sock.once('secureConnect', () => resolve()));
    let received = Buffer.alloc(0);
    sock.on('data', (c: Buffer) => (received = Buffer.concat([received, c])));
    const get = (q: string): string => `GET /${fx.files.one.name}?${q} HTTP/1.1\r\nHost: localhost\r\n\r\n`;
    const statuses = (): string[] => [...received.toString('latin1').matchAll(/HTTP\/1\.[01] (\d{3}) /g)].map((m) => m[1]!);
    const until = async (n: number): Promise<void> => {
      const deadline = performance.now() + 5000;
      while (statuses().length < n && performance.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    };
    // Three pipelined plain GETs in one write: the lane answers them one after another.
    sock.write(get('a') + get('b') + get('c'));
    await until(3);
    // Then a head cut in two writes (node's server takes the connection from there), a POST
    // with a body, and a GET behind it: answered by node's server, in order.
    const cut = get('d');
    sock.write(cut.slice(0, 10));
    await new Promise((r) => setTimeout(r, 50));
    sock.write(cut.slice(10) + `POST /${fx.files.one.name} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc` + get('e'));
    await until(6);
    sock.write(`GET /${fx.files.one.name}?f HTTP/1.0\r\n\r\n`);
    await until(7);
    assert.deepEqual(statuses(), ['200', '200', '200', '200', '405', '200', '200']);
    // The file's byte after each 200's head: six of the seven answers (the 405 says why).
    const body = fs.readFileSync(path.join(fx.root, fx.files.one.name)).toString('latin1');
    const bodies = [...received.toString('latin1').matchAll(/HTTP\/1\.[01] 200 [^]*?\r\n\r\n([^]?)/g)].map((m) => m[1]);
    assert.deepEqual(bodies, Array(6).fill(body));
    const requests = (): LogLine[] => server.logs.filter((l) => l.msg === 'request');
    const deadline = performance.now() + 5000;
    while (requests().length < 7 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const lines = requests();
    assert.deepEqual(lines.map((l) => `${l.method} ${String(l.url).split('?')[1] ?? ''} ${l.status} ${l.proto}`), [
      'GET a 200 HTTP/1.1', 'GET b 200 HTTP/1.1', 'GET c 200 HTTP/1.1', 'GET d 200 HTTP/1.1', 'POST  405 HTTP/1.1', 'GET e 200 HTTP/1.1', 'GET f 200 HTTP/1.0',
    ]);
    sock.destroy();
  } finally {
    await server.stop();
  }
});

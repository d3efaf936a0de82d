/**
 * Requests refused at the HTTP/1.1 parse stage (400 malformed line, field or
 * framing, 408 head not complete within --headers-timeout, 414, 431) each get
 * one access-log line, as nginx writes one for each: the status, no body
 * bytes (the refusal is a head with Content-Length: 0), and `$request` as far
 * as the request line came, never made up; none for a connection that sent
 * nothing and timed out (nginx's client_header_timeout closes an empty
 * connection without a line). For serve and proxy, in the JSON lines of
 * stdout and in a combined-format file, with the client's control bytes
 * escaped (\xHH in combined, as nginx; JSON escapes in JSON). A tester
 * found only a "bad request" warning in the main log and no access line.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { serveArgs, startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { waitUntil } from '../support/wait.js';

/**
 * Sends `pieces` over one TLS connection, each its own write (so its own
 * record) `gapMs` apart, and collects what comes back until the server closes.
 */
function sendPieces(port: number, pieces: readonly string[], gapMs = 50, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
      let i = 0;
      const next = (): void => {
        if (i >= pieces.length || sock.destroyed) return;
        sock.write(Buffer.from(pieces[i++]!, 'latin1'));
        setTimeout(next, gapMs);
      };
      next();
    });
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no close within ${timeoutMs} ms: ${Buffer.concat(chunks).toString('latin1')}`)); }, timeoutMs);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', () => undefined);
    sock.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(chunks)); });
  });
}

function statusOf(raw: Buffer): number {
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(raw.toString('latin1'));
  return m ? Number(m[1]) : 0;
}

interface Case {
  name: string;
  pieces: string[];
  status: number;
  /** The request line the log must show (combined: escaped as nginx). */
  request: string;
  combined: string;
  /** JSON's method and url, when the line has a request line's shape. */
  method?: string;
  url?: string;
  /** Refused in its body, once it was a request: its own line (no `request` field), proxy only (serve answers a body's request at once). */
  inBody?: true;
}

const LONG = `/long-${'a'.repeat(20_000)}`;

const CASES: Case[] = [
  // A control byte in the method: llhttp refuses at once; nginx logs the bytes up to CRLF, escaped.
  { name: 'malformed request line', pieces: ['G\x1bT /ctl\x7f HTTP/1.1\r\nHost: x\r\n\r\n'], status: 400, request: 'G\x1bT /ctl\x7f HTTP/1.1', combined: 'G\\x1BT /ctl\\x7F HTTP/1.1' },
  { name: 'malformed field line', pieces: ['GET /bad-field HTTP/1.1\r\nHost: x\r\nBad field: y\r\n\r\n'], status: 400, request: 'GET /bad-field HTTP/1.1', combined: 'GET /bad-field HTTP/1.1', method: 'GET', url: '/bad-field' },
  // The head in two records: the request line came in the first.
  { name: 'malformed field line in a later record', pieces: ['GET /split HTTP/1.1\r\nHost: x\r\n', 'Bad field: y\r\n\r\n'], status: 400, request: 'GET /split HTTP/1.1', combined: 'GET /split HTTP/1.1', method: 'GET', url: '/split' },
  // Both Content-Length and chunked, or chunked not last: refused in the head (RFC 9112 §6.1, §6.3).
  { name: 'bad chunked framing', pieces: ['POST /framing HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n'], status: 400, request: 'POST /framing HTTP/1.1', combined: 'POST /framing HTTP/1.1', method: 'POST', url: '/framing' },
  // Behind an answered request in the same record: the failing request's own line.
  { name: 'malformed field line behind a good request', pieces: ['GET /ok HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\nBad\x01: y\r\n\r\n'], status: 400, request: 'GET /second HTTP/1.1', combined: 'GET /second HTTP/1.1', method: 'GET', url: '/second' },
  // Over the limit in its request line (several records): as much of the line as kept (8 KiB).
  { name: '414', pieces: [`GET ${LONG} HTTP/1.1\r\nHost: x\r\n\r\n`], status: 414, request: `GET ${LONG}`.slice(0, 8192), combined: `GET ${LONG}`.slice(0, 8192) },
  { name: '431', pieces: [`GET /big-field HTTP/1.1\r\nHost: x\r\nCookie: ${'c'.repeat(20_000)}\r\n\r\n`], status: 431, request: 'GET /big-field HTTP/1.1', combined: 'GET /big-field HTTP/1.1', method: 'GET', url: '/big-field' },
  // A bad chunk size while the origin waits for the body: the client gets 400, and the line says 400 (it said 499).
  { name: 'bad chunk in the body', pieces: ['POST /bad-chunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n'], status: 400, request: 'POST /bad-chunk HTTP/1.1', combined: 'POST /bad-chunk HTTP/1.1', method: 'POST', url: '/bad-chunk', inBody: true },
  { name: '408 on a head not complete in time', pieces: ['GET /slow-head HTTP/1.1\r\nHost: x\r\n'], status: 408, request: 'GET /slow-head HTTP/1.1', combined: 'GET /slow-head HTTP/1.1', method: 'GET', url: '/slow-head' },
];

let fx: StandardFixtures;
let origin: http.Server;

before(async () => {
  fx = await makeFixtures();
  origin = http.createServer((_req, res) => res.end('ok'));
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
});

after(async () => {
  await new Promise((r) => origin.close(r));
});

const LIMITS = ['--headers-timeout', '1s', '--max-header-size', '16k'];

function frontArgs(kind: 'serve' | 'proxy', ...extra: string[]): string[] {
  if (kind === 'serve') return serveArgs(fx, ...LIMITS, ...extra);
  const port = (origin.address() as { port: number }).port;
  return ['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${port}`, ...LIMITS, ...extra];
}

/** Access-log lines of refusals on stdout after `from` (not of the good request some cases send first). */
function refusals(p: Running, from: number): LogLine[] {
  return p.logs.slice(from).filter((l) => l.msg === 'request' && (l.status as number) >= 400 && l.url !== '/ok');
}

for (const kind of ['serve', 'proxy'] as const) {
  describe(`${kind}: a request refused at the parse stage gets one access-log line`, () => {
    let json: Running;
    let combined: Running;
    let file: string;

    before(async () => {
      file = path.join(fx.outDir, `refusals-${kind}.log`);
      json = await startAludel(frontArgs(kind));
      combined = await startAludel(frontArgs(kind, '--access-log', file, '--access-log-format', 'combined'));
    });

    after(async () => {
      await json?.stop();
      await combined?.stop();
    });

    for (const c of CASES.filter((k) => kind === 'proxy' || k.inBody !== true)) {
      test(`${c.name}: ${c.status}, one JSON line with the request line as far as it came`, async () => {
        const from = json.mark();
        const raw = await sendPieces(json.port, c.pieces);
        const statuses = [...raw.toString('latin1').matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
        assert.equal(statuses.at(-1), c.status, raw.toString('latin1').slice(0, 200));
        await waitUntil(() => refusals(json, from).length >= 1, 5000).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 100));
        const lines = refusals(json, from);
        assert.equal(lines.length, 1, JSON.stringify(lines));
        const l = lines[0]!;
        assert.deepEqual([l.status, l.bytes, l.request, l.method, l.url], [c.status, 0, c.inBody ? undefined : c.request, c.method, c.url]);
        const rawLine = json.raw.find((r) => r.includes(`"id":"${l.id as string}"`))!;
        assert.doesNotMatch(rawLine, /[\x00-\x1f]/, 'no raw control byte in the JSON line');
      });

      test(`${c.name}: ${c.status}, one combined line, escaped as nginx`, async () => {
        const before = fs.existsSync(file) ? fs.readFileSync(file, 'latin1').split('\n').filter(Boolean).length : 0;
        const raw = await sendPieces(combined.port, c.pieces);
        assert.ok(statusOf(raw) === c.status || raw.toString('latin1').includes(`HTTP/1.1 ${c.status} `));
        const lines = (): string[] => (fs.existsSync(file) ? fs.readFileSync(file, 'latin1').split('\n').filter(Boolean).slice(before) : []);
        const refused = (): string[] => lines().filter((s) => / (4\d\d) 0 "-" "-" /.test(s));
        await waitUntil(() => refused().length >= 1, 5000).catch(() => undefined);
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(refused().length, 1, lines().join('\n').slice(0, 500));
        const line = refused()[0]!;
        assert.ok(line.includes(`"${c.combined}" ${c.status} 0 "-" "-" `), line.slice(0, 300));
        assert.doesNotMatch(line, /[\x00-\x1f\x7f-\xff]/, 'no raw control or 8-bit byte in the combined line');
      });
    }

    test('a connection that sent nothing and timed out: no access-log line (as nginx)', async () => {
      const from = json.mark();
      const before = fs.existsSync(file) ? fs.readFileSync(file, 'latin1') : '';
      await Promise.all([sendPieces(json.port, []), sendPieces(combined.port, [])]);
      await new Promise((r) => setTimeout(r, 300));
      assert.deepEqual(json.logs.slice(from).filter((l) => l.msg === 'request'), []);
      assert.equal(fs.existsSync(file) ? fs.readFileSync(file, 'latin1') : '', before);
    });
  });
}

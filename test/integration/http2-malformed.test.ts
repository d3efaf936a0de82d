/**
 * HTTP/2 requests nghttp2 finds malformed (RFC 9113 §8.1.1, §8.2.2, §8.3.1):
 * a :path in absolute form, an upper-case field name, connection-specific
 * fields, TE other than "trailers". nghttp2 resets each stream with
 * RST_STREAM PROTOCOL_ERROR before node makes a stream of it, so the handler
 * never sees it; nginx answers such a request with a 400 and an access-log
 * line ("-" 400). A tester found them answered with a reset and no line in
 * any log. Each must now leave exactly one access-log line (status 400, the
 * reset in its detail), nothing must reach the origin, and the session must
 * go on serving the next stream.
 */
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { serveArgs, startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { startSinkOrigin, type SinkOrigin } from '../support/sink-origin.js';
import { waitUntil } from '../support/wait.js';
import { frame } from '../support/h2-frames.js';

let fx: StandardFixtures;
let sink: SinkOrigin;

before(async () => {
  fx = await makeFixtures();
  sink = await startSinkOrigin();
});

after(async () => {
  await sink?.stop();
});

/**
 * A header block of literal fields without indexing, new names, no Huffman
 * (RFC 7541 §6.2.2): what no client library sends for fields it refuses to
 * encode (upper case, connection-specific). Names and values under 127 octets.
 */
function block(fields: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of fields) {
    const n = Buffer.from(name, 'latin1');
    const v = Buffer.from(value, 'latin1');
    parts.push(Buffer.from([0x00, n.length]), n, Buffer.from([v.length]), v);
  }
  return Buffer.concat(parts);
}

interface Outcome {
  /** RST_STREAM codes by stream. */
  resets: Map<number, number>;
  /** Streams that ended (END_STREAM on HEADERS or DATA). */
  ended: Set<number>;
}

/**
 * One connection: stream 1 carries `bad`, stream 3 a good GET of `good`.
 * Resolves once stream 1 is reset or ended and stream 3 ended.
 */
function malformedThenGood(port: number, bad: ReadonlyArray<readonly [string, string]>, good: string): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: fx.certPem, ALPNProtocols: ['h2'] });
    const out: Outcome = { resets: new Map(), ended: new Set() };
    let inbox = Buffer.alloc(0);
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no answer: ${JSON.stringify([...out.resets])} ${JSON.stringify([...out.ended])}`)); }, 10_000);
    sock.on('error', reject);
    sock.on('secureConnect', () => {
      const get = (path: string): Buffer => block([[':method', 'GET'], [':scheme', 'https'], [':authority', 'localhost'], [':path', path]]);
      // END_STREAM | END_HEADERS (0x1 | 0x4).
      sock.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(0x4, 0, 0, Buffer.alloc(0)), frame(0x1, 0x5, 1, block(bad)), frame(0x1, 0x5, 3, get(good))]));
    });
    sock.on('data', (d: Buffer) => {
      inbox = Buffer.concat([inbox, d]);
      while (inbox.length >= 9) {
        const len = inbox.readUIntBE(0, 3);
        if (inbox.length < 9 + len) break;
        const [type, flags] = [inbox[3]!, inbox[4]!];
        const stream = inbox.readUInt32BE(5) & 0x7fffffff;
        if (type === 0x4 && (flags & 0x1) === 0) sock.write(frame(0x4, 0x1, 0, Buffer.alloc(0)));
        if (type === 0x3) out.resets.set(stream, inbox.readUInt32BE(9));
        if ((type === 0x0 || type === 0x1) && (flags & 0x1) !== 0) out.ended.add(stream);
        inbox = inbox.subarray(9 + len);
      }
      if ((out.resets.has(1) || out.ended.has(1)) && out.ended.has(3)) {
        clearTimeout(timer);
        sock.destroy();
        resolve(out);
      }
    });
  });
}

const PSEUDO = [[':method', 'GET'], [':scheme', 'https'], [':authority', 'localhost']] as const;

/** Each is malformed by RFC 9113; nginx 1.22 answers the first two 400 and serves the others. */
const CASES: ReadonlyArray<{ name: string; fields: ReadonlyArray<readonly [string, string]> }> = [
  { name: ':path in absolute form (§8.3.1)', fields: [...PSEUDO, [':path', 'https://localhost/one.bin']] },
  { name: 'an upper-case field name (§8.2.1)', fields: [...PSEUDO, [':path', '/one.bin'], ['X-Upper', '1']] },
  { name: 'Connection (§8.2.2)', fields: [...PSEUDO, [':path', '/one.bin'], ['connection', 'close']] },
  { name: 'Transfer-Encoding (§8.2.2)', fields: [...PSEUDO, [':path', '/one.bin'], ['transfer-encoding', 'chunked']] },
  { name: 'TE: gzip (§8.2.2)', fields: [...PSEUDO, [':path', '/one.bin'], ['te', 'gzip']] },
];

/** Access-log lines after `from`. */
const accessLines = (p: Running, from: number): LogLine[] => p.logs.slice(from).filter((l) => l.msg === 'request');

for (const kind of ['serve', 'proxy'] as const) {
  describe(`${kind}: a malformed HTTP/2 request is reset and logged`, () => {
    let p: Running;

    before(async () => {
      p = kind === 'serve'
        ? await startAludel(serveArgs(fx))
        : await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${sink.port}`, '--max-fails', '0']);
    });

    after(async () => {
      await p?.stop();
    });

    for (const c of CASES) {
      test(`${c.name}: RST_STREAM PROTOCOL_ERROR, one access-log line ("-" 400), the next stream served`, async () => {
        const from = p.mark();
        const originBefore = sink.requests.length;
        const out = await malformedThenGood(p.port, c.fields, '/one.bin');
        assert.equal(out.resets.get(1), 1, 'stream 1 reset with PROTOCOL_ERROR (RFC 9113 §8.1.1)');
        assert.ok(!out.resets.has(3), 'stream 3 served');
        await waitUntil(() => accessLines(p, from).length >= 2, 5000).catch(() => undefined);
        const lines = accessLines(p, from);
        const refused = lines.filter((l) => l.error === 'ERR_HTTP2_MALFORMED_REQUEST');
        assert.equal(refused.length, 1, JSON.stringify(lines));
        const l = refused[0]!;
        assert.deepEqual([l.status, l.bytes, l.proto, l.method, l.url], [400, 0, 'HTTP/2.0', undefined, undefined]);
        assert.match(l.detail as string, /stream 1: malformed request .*RST_STREAM PROTOCOL_ERROR/);
        // The good stream's own line: the file from serve, the sink's answer (a 404 for a path it has no route for) from the proxy.
        assert.equal(lines.filter((x) => x.url === '/one.bin' && x.status === (kind === 'serve' ? 200 : 404) && x.error === undefined).length, 1, JSON.stringify(lines));
        assert.equal(lines.length, 2, JSON.stringify(lines));
        if (kind === 'proxy') assert.deepEqual(sink.requests.slice(originBefore).map((r) => r.url), ['/one.bin'], 'only the good request reached the origin');
      });
    }

    // node resets a header block of more than maxHeaderListPairs (128) fields while decoding it
    // (RST_STREAM ENHANCE_YOUR_CALM), before a stream exists: the README says each defence logs a
    // line when it fires, and this one logged nothing. nginx (no count limit) serves it.
    test('200 cookie crumbs (RFC 9113 §8.2.3), over 128 fields: RST_STREAM ENHANCE_YOUR_CALM, one warning line, the next stream served', async () => {
      const from = p.mark();
      const crumbs = Array.from({ length: 200 }, (_, i) => ['cookie', `c${i}=1`] as const);
      const out = await malformedThenGood(p.port, [...PSEUDO, [':path', '/one.bin'], ...crumbs], '/one.bin');
      assert.equal(out.resets.get(1), 11, 'stream 1 reset with ENHANCE_YOUR_CALM');
      assert.ok(!out.resets.has(3), 'stream 3 served');
      const line = await p.waitForLog((l) => /RST_STREAM ENHANCE_YOUR_CALM/.test(l.msg), 5000, from);
      assert.deepEqual([line.level, line.stream, line.maxFields, line.maxHeaderSize], [40, 1, 128, 16 * 1024]);
      await waitUntil(() => accessLines(p, from).length >= 1, 5000);
      assert.equal(p.logs.slice(from).filter((l) => /RST_STREAM ENHANCE_YOUR_CALM/.test(l.msg)).length, 1);
    });
  });
}

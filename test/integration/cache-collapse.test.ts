/**
 * Collapsed fills (RFC 9211 §2.6 `collapsed`, nginx's proxy_cache_lock) on a
 * real `aludel proxy --cache --workers 1` and the counting sink origin:
 *
 * - streams arriving together on one HTTP/2 connection collapse as separate
 *   HTTP/1.1 connections do: one origin request per key at a time.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http2 from 'node:http2';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { patternSha256, startSinkOrigin, type SinkOrigin } from '../support/origins.js';
import { waitUntil } from '../support/wait.js';

const MiB = 1024 * 1024;
const enc = encodeURIComponent;

let fx: Fixtures;
let sink: SinkOrigin;
const running: Running[] = [];
let serial = 0;

before(async () => {
  fx = await makeFixtures({});
  sink = await startSinkOrigin();
});

after(async () => {
  for (const p of running) await p.stop();
  await sink?.stop();
  fx?.cleanup();
});

function proxyArgs(dir: string): string[] {
  return ['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${sink.port}`, '--offload', 'userspace', '--cache', dir, '--workers', '1'];
}

function sinkCount(url: string): number {
  return sink.requests.filter((r) => r.url === url).length;
}

function requestLines(p: Running, url: string, from = 0): LogLine[] {
  return p.logs.slice(from).filter((l) => l.msg === 'request' && l.url === url);
}

describe('collapsed fills', { timeout: 120_000 }, () => {
  test('20 streams on one HTTP/2 connection missing one key together: one origin request, 19 collapsed', async () => {
    const p = await startAludel(proxyArgs(path.join(fx.dir, `cache-${++serial}`)));
    running.push(p);
    const size = MiB + 5;
    const url = `/cache?cc=${enc('max-age=600')}&size=${size}&delay=500&h2=collapse`;
    const session = http2.connect(`https://localhost:${p.port}`, { ca: fs.readFileSync(fx.certFile), servername: 'localhost', host: '127.0.0.1' } as http2.SecureClientSessionOptions);
    try {
      await new Promise<void>((resolve, reject) => session.once('connect', () => resolve()).once('error', reject));
      // Opened in one turn: the client sends the 20 HEADERS frames together, and the proxy reads them together.
      const streams = Array.from({ length: 20 }, () => h2get(session, { ':path': url }));
      const answers = await Promise.all(streams);
      for (const a of answers) {
        assert.equal(a.error, undefined);
        assert.equal(a.status, 200);
        assert.equal(sha256(a.body), patternSha256(size));
      }
      assert.equal(sinkCount(url), 1, 'one origin request');
      await waitUntil(() => requestLines(p, url).length === 20, 10_000);
      const outcomes = requestLines(p, url).map((l) => l.cache);
      assert.equal(outcomes.filter((o) => o === 'miss').length, 1, outcomes.join(','));
      assert.equal(outcomes.filter((o) => o === 'collapsed').length, 19, outcomes.join(','));
      assert.equal(answers.filter((a) => /; stored/.test(String(a.headers['cache-status']))).length, 1, 'stored once');
      const hit = await h2get(session, { ':path': url });
      assert.match(String(hit.headers['cache-status']), /; hit;/);
      assert.equal(sinkCount(url), 1);
    } finally {
      session.close();
    }
  });
});

/** One request over HTTP/2 with node's client. */
function h2get(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const req = session.request(headers);
    const chunks: Buffer[] = [];
    let got: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (got = h));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ status: Number(got[':status']), headers: got, body: Buffer.concat(chunks) }));
    req.on('error', (err: Error & { code?: string }) => resolve({ status: Number(got[':status'] ?? 0), headers: got, body: Buffer.concat(chunks), error: err.code ?? err.message }));
  });
}

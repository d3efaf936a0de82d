/**
 * Collapsed fills (RFC 9211 §2.6 `collapsed`, nginx's proxy_cache_lock) on a
 * real `aludel proxy --cache --workers 1` and the counting sink origin:
 *
 * - a cache write that fails (ENOSPC on a small tmpfs) only stops storing:
 *   the leader and every follower still get the whole response, one origin
 *   request in all, one warn line with the errno, and no `stored` where the
 *   store is known to have failed;
 * - streams arriving together on one HTTP/2 connection collapse as separate
 *   HTTP/1.1 connections do: one origin request per key at a time.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http2 from 'node:http2';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { curl, h2get } from '../support/clients.js';
import { parseHead } from '../support/curl-answer.js';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { patternSha256, startSinkOrigin, type SinkOrigin } from '../support/origins.js';
import { waitUntil } from '../support/wait.js';

const MiB = 1024 * 1024;
const enc = encodeURIComponent;

let fx: Fixtures;
let sink: SinkOrigin;
const running: Running[] = [];
let serial = 0;

interface Answer {
  /** curl's exit code: 0 for a whole response. */
  code: number;
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  stderr: string;
}

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

/** curl over HTTP/1.1; never asserts, so that every client's fate can be checked. */
async function fetch(port: number, urlPath: string, ...extra: string[]): Promise<Answer> {
  const out = path.join(fx.outDir, `collapse-body-${++serial}`);
  const r = await curl(['--cacert', fx.certFile, '-D', '-', '-o', out, ...extra, `https://localhost:${port}${urlPath}`], 60_000);
  const heads = r.stdout.toString('latin1').split('\r\n\r\n').filter((b) => b.startsWith('HTTP/'));
  const { status, headers } = parseHead(heads.at(-1) ?? '');
  const body = fs.existsSync(out) ? fs.readFileSync(out) : Buffer.alloc(0);
  fs.rmSync(out, { force: true });
  return { code: r.code ?? -1, status, headers, body, stderr: r.stderr.toString() };
}

function sinkCount(url: string): number {
  return sink.requests.filter((r) => r.url === url).length;
}

function requestLines(p: Running, url: string, from = 0): LogLine[] {
  return p.logs.slice(from).filter((l) => l.msg === 'request' && l.url === url);
}

describe('collapsed fills', { timeout: 120_000 }, () => {
  test('ENOSPC while 12 clients follow one fill: every client gets the whole response, one origin request, one warn line', async () => {
    const dir = path.join(fx.dir, `cache-${++serial}`);
    fs.mkdirSync(dir);
    // A 1 MiB tmpfs over the cache directory, in a mount namespace of the proxy's own (gone with it).
    const p = await startAludel(proxyArgs(dir), { prefix: ['unshare', '-rm', 'sh', '-c', 'mount -t tmpfs -o size=1m,mode=0700 aludel-test "$0" && exec "$@"', dir] });
    running.push(p);
    const size = 3 * MiB;
    // The head waits, so all 12 are waiting for it; the body then comes at 2 MiB/s, so the
    // followers are part-way through it (about 1 MiB) when the disk fills.
    const url = `/cache?cc=${enc('max-age=600')}&size=${size}&delay=1500&enospc=collapse`;
    const answers = await Promise.all(Array.from({ length: 12 }, () => fetch(p.port, url, '-H', 'X-Sink-Rate: 2097152')));
    const want = patternSha256(size);
    const broken = answers.filter((a) => a.code !== 0 || a.status !== 200 || sha256(a.body) !== want);
    assert.deepEqual(broken.map((a) => `curl ${a.code} status ${a.status} ${a.body.length} bytes ${a.stderr.trim()}`), [], 'every client got the whole response');
    assert.equal(sinkCount(url), 1, 'one origin request');
    await waitUntil(() => requestLines(p, url).length === 12, 10_000);
    const outcomes = requestLines(p, url).map((l) => l.cache);
    assert.equal(outcomes.filter((o) => o === 'miss').length, 1, outcomes.join(','));
    assert.equal(outcomes.filter((o) => o === 'collapsed').length, 11, outcomes.join(','));
    // One warn line for the one failed store, with the errno.
    const warns = p.logs.filter((l) => l.msg.startsWith('cache: could not write a response body'));
    assert.equal(warns.length, 1, JSON.stringify(warns));
    assert.equal(warns[0]!.level, 40);
    assert.equal(warns[0]!.code, 'ENOSPC');
    assert.equal(warns[0]!.errno, -28);
    // Followers never said `stored` (RFC 9211 §2.5); the leader's line says why its store failed.
    for (const a of answers.filter((x) => x.headers['cache-status']?.includes('collapsed'))) assert.doesNotMatch(a.headers['cache-status']!, /stored/);
    assert.equal(requestLines(p, url).find((l) => l.cache === 'miss')?.cacheDetail, 'disk-error');
    // Nothing was stored: the next request goes upstream again, and its head does not claim
    // `stored` while the last write to this cache failed.
    const again = await fetch(p.port, url);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(sha256(again.body), want);
    assert.equal(sinkCount(url), 2);
    assert.doesNotMatch(again.headers['cache-status']!, /stored/);
  });

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


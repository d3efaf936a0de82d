import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsConstants, createReadStream, openSync, promises as fsp, readSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { makeEtag } from '../../src/http/conditional.js';
import { createStaticHandler, type BodyPath, type BodySender, type StaticOutcome } from '../../src/http/static-handler.js';
import type { OpenBeneath } from '../../src/http/safe-path.js';
import { STAT_SLOTS } from '../../src/http/file-stat.js';
import { loadAddon } from '../../src/native/binding.js';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/**
 * The sender's way for a body: streamed by sendBody (its sendBodyNow declines, leaving res
 * alone), failing in sendBody, or sent at once by sendBodyNow with the head it was given
 * ('now'), or sendBodyNow failing before it wrote anything ('now-fails').
 */
type SenderMode = 'stream' | 'fail-before-headers' | 'fail-mid-body' | 'now' | 'now-fails';

const SIZE = 200 * 1024 + 7;

/** big.bin's mtime in seconds (utimes): 2023-11-14 22:13:20.9996 UTC. */
const BIG_MTIME_S = 1_700_000_000.9996;

/**
 * The handler twice: resolving by realpath (no addon, or no openat2), and by
 * openat2 beneath the root (the addon's openBeneath), which must answer the
 * same in every case, symlinks included.
 */
const SUITE_NAMES = {
  realpath: 'static handler',
  openat2: 'static handler, openat2 beneath the root',
  'openat2-fstat': 'static handler, openat2 and fstat in one call into the addon (openBeneathStat)',
  'not-cached': 'static handler, openat2 finding nothing in the dentry cache (EAGAIN: the realpath way)',
} as const;

for (const mode of ['realpath', 'openat2', 'openat2-fstat', 'not-cached'] as const) describe(SUITE_NAMES[mode], () => {
  const fast = mode !== 'realpath';
  let tmp = '';
  let root = '';
  let data = Buffer.alloc(0);
  let server: http.Server;
  let port = 0;
  let senderCalls = 0;
  let senderMode: SenderMode = 'stream';
  let lastOutcome: StaticOutcome | Promise<StaticOutcome> = Promise.reject(new Error('no request yet'));
  lastOutcome.catch(() => undefined);

  /** The production sender is sendfile-based; this one streams through res like the fallback path. */
  const sender: BodySender = {
    async sendBody(res, fd, offset, length): Promise<BodyPath> {
      senderCalls++;
      if (senderMode === 'fail-before-headers') throw new Error('sender broke early');
      // This server is node's http.Server: HTTP/1.1 responses only.
      const out = res as http.ServerResponse;
      if (senderMode === 'fail-mid-body') {
        out.write(Buffer.alloc(Math.min(length - 1, 1024)));
        await new Promise((resolve) => setTimeout(resolve, 20));
        throw new Error('connection died');
      }
      const stream = createReadStream('', { fd, start: offset, end: offset + length - 1, autoClose: false });
      await pipeline(stream, out);
      return 'write';
    },
    sendBodyNow(res, fd, offset, length, head): BodyPath | undefined {
      if (senderMode === 'now-fails') throw new Error('file shorter than its fstat');
      if (senderMode !== 'now') return undefined;
      const out = res as http.ServerResponse;
      assert.equal(out.headersSent, false, 'nothing set on res before sendBodyNow');
      assert.deepEqual(out.getHeaderNames(), []);
      const buf = Buffer.alloc(length);
      assert.equal(readSync(fd, buf, 0, length, offset), length);
      out.writeHead(head.status, head.fields);
      out.end(buf);
      return 'write';
    },
  };

  before(async () => {
    tmp = await fsp.realpath(await fsp.mkdtemp(path.join(os.tmpdir(), 'aludel-static-')));
    root = path.join(tmp, 'root');
    await fsp.mkdir(path.join(root, 'docs'), { recursive: true });
    await fsp.mkdir(path.join(tmp, 'outside'));
    data = randomBytes(SIZE);
    await fsp.writeFile(path.join(root, 'big.bin'), data);
    // 0.4 ms before a second's end: Last-Modified is that second (st_mtim.tv_sec, as nginx's
    // ngx_file_mtime), where rounding to a whole ms first (node's Stats.mtime) carries it into
    // the next one. A fresh file's mtime fell there one run in a few hundred.
    await fsp.utimes(path.join(root, 'big.bin'), BIG_MTIME_S, BIG_MTIME_S);
    await fsp.writeFile(path.join(root, 'empty.txt'), '');
    await fsp.writeFile(path.join(root, 'docs', 'index.html'), '<h1>docs</h1>\n');
    await fsp.writeFile(path.join(tmp, 'outside', 'secret.txt'), 'secret');
    await fsp.symlink(path.join(tmp, 'outside', 'secret.txt'), path.join(root, 'link-out'));
    await fsp.symlink('../outside/secret.txt', path.join(root, 'link-out-relative'));
    await fsp.symlink(path.join(root, 'big.bin'), path.join(root, 'link-in-absolute'));
    await fsp.symlink('docs/index.html', path.join(root, 'link-in-relative'));

    let openBeneath: OpenBeneath | undefined;
    if (fast) {
      const addon = loadAddon();
      if (addon instanceof Error) throw addon;
      const dir = openSync(root, fsConstants.O_RDONLY | fsConstants.O_DIRECTORY);
      openBeneath = (relative) => addon.openBeneath(dir, relative);
      // A kernel without openat2 (before 5.6) answers ENOSYS, one without RESOLVE_CACHED (5.12) EINVAL: the fast path would never be taken.
      assert.ok(openBeneath('big.bin') >= 0, 'openat2 with RESOLVE_CACHED works on this kernel');
      // RESOLVE_CACHED on a cold dentry cache: -EAGAIN, and the handler must answer the same the slow way.
      if (mode === 'not-cached') openBeneath = () => -os.constants.errno.EAGAIN;
      if (mode === 'openat2-fstat') {
        assert.equal(typeof addon.openBeneathStat, 'function', 'the addon has openBeneathStat');
        const fstats = new Float64Array(STAT_SLOTS);
        openBeneath = Object.assign((relative: string) => addon.openBeneathStat!(dir, relative, fstats), { fstats });
      }
    }
    const handler = createStaticHandler({ root, sender, openBeneath });
    server = http.createServer((req, res) => {
      lastOutcome = handler(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await fsp.rm(tmp, { recursive: true, force: true });
  });

  beforeEach(() => {
    senderCalls = 0;
    senderMode = 'stream';
  });

  /** http.request rather than fetch: fetch would normalise "/%2e%2e/" away before sending. */
  function request(method: string, urlPath: string, headers: http.OutgoingHttpHeaders = {}): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('close', () => {
          if (!res.complete) reject(new Error('response truncated'));
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  /** A GET (or `method`) whose answer is read with the field names as sent, in order. */
  function rawResponse(urlPath: string, range?: string, method = 'GET'): Promise<{ status: number; names: string[]; headers: http.IncomingHttpHeaders; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers: range ? { range } : {}, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, names: res.rawHeaders.filter((_, i) => i % 2 === 0), headers: res.headers, body: Buffer.concat(chunks) }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  function sha256(buf: Buffer): string {
    return createHash('sha256').update(buf).digest('hex');
  }

  async function bigEtag(): Promise<string> {
    return makeEtag(await fsp.stat(path.join(root, 'big.bin')));
  }

  it('GET serves the whole file with validators', async () => {
    const reply = await request('GET', '/big.bin');
    assert.equal(reply.status, 200);
    assert.equal(sha256(reply.body), sha256(data));
    assert.equal(reply.headers['content-length'], String(SIZE));
    assert.equal(reply.headers['content-type'], 'application/octet-stream');
    assert.equal(reply.headers['accept-ranges'], 'bytes');
    assert.equal(reply.headers.etag, await bigEtag());
    // The second st_mtim.tv_sec says, read in nanoseconds: no rounding on the way.
    const mtimeSec = (await fsp.stat(path.join(root, 'big.bin'), { bigint: true })).mtimeNs / 1_000_000_000n;
    assert.equal(reply.headers['last-modified'], new Date(Number(mtimeSec) * 1000).toUTCString());
    assert.equal(reply.headers['last-modified'], 'Tue, 14 Nov 2023 22:13:20 GMT');
    assert.deepEqual(await lastOutcome, {
      status: 200,
      bytes: SIZE,
      bodyPath: 'write',
      file: path.join(root, 'big.bin'),
    });
  });

  it('serves index.html for a directory', async () => {
    const reply = await request('GET', '/docs/');
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-type'], 'text/html; charset=utf-8');
    assert.equal(reply.body.toString(), '<h1>docs</h1>\n');
  });

  it('a directory without its trailing slash: 301 to it, as nginx (its index\'s relative links need the slash)', async () => {
    const reply = await request('GET', '/docs?lang=en');
    assert.equal(reply.status, 301);
    assert.equal(reply.headers.location, '/docs/?lang=en');
    assert.equal(senderCalls, 0);
  });

  it('HEAD sends headers only and never calls the sender', async () => {
    const reply = await request('HEAD', '/big.bin');
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-length'], String(SIZE));
    assert.equal(reply.body.length, 0);
    assert.equal(senderCalls, 0);
    assert.deepEqual(await lastOutcome, { status: 200, bytes: 0, bodyPath: 'none', file: path.join(root, 'big.bin') });
  });

  it('HEAD ignores Range', async () => {
    const reply = await request('HEAD', '/big.bin', { range: 'bytes=0-0' });
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-length'], String(SIZE));
  });

  it('206 for the first byte', async () => {
    const reply = await request('GET', '/big.bin', { range: 'bytes=0-0' });
    assert.equal(reply.status, 206);
    assert.equal(reply.headers['content-range'], `bytes 0-0/${SIZE}`);
    assert.equal(reply.headers['content-length'], '1');
    assert.deepEqual(reply.body, data.subarray(0, 1));
    assert.equal((await lastOutcome).bytes, 1);
  });

  it('206 for the last byte, by offset and by suffix', async () => {
    for (const range of [`bytes=${SIZE - 1}-`, 'bytes=-1', `bytes=${SIZE - 1}-${SIZE + 1000}`]) {
      const reply = await request('GET', '/big.bin', { range });
      assert.equal(reply.status, 206, range);
      assert.equal(reply.headers['content-range'], `bytes ${SIZE - 1}-${SIZE - 1}/${SIZE}`, range);
      assert.deepEqual(reply.body, data.subarray(SIZE - 1), range);
    }
  });

  it('206 for a suffix range and a middle range', async () => {
    let reply = await request('GET', '/big.bin', { range: 'bytes=-5000' });
    assert.equal(reply.status, 206);
    assert.equal(reply.headers['content-length'], '5000');
    assert.equal(sha256(reply.body), sha256(data.subarray(SIZE - 5000)));

    reply = await request('GET', '/big.bin', { range: 'bytes=1000-70000' });
    assert.equal(reply.status, 206);
    assert.equal(reply.headers['content-range'], `bytes 1000-70000/${SIZE}`);
    assert.equal(sha256(reply.body), sha256(data.subarray(1000, 70001)));
  });

  it('416 for a range past the end', async () => {
    const reply = await request('GET', '/big.bin', { range: `bytes=${SIZE}-` });
    assert.equal(reply.status, 416);
    assert.equal(reply.headers['content-range'], `bytes */${SIZE}`);
    assert.equal(senderCalls, 0);
  });

  it('200 with the full body for multiple ranges or an unknown unit', async () => {
    for (const range of ['bytes=0-1,5-6', 'lines=1-2', 'bytes=9-1']) {
      const reply = await request('GET', '/big.bin', { range });
      assert.equal(reply.status, 200, range);
      assert.equal(reply.headers['content-range'], undefined, range);
      assert.equal(reply.body.length, SIZE, range);
    }
  });

  it('304 via If-None-Match, with validators and no body', async () => {
    const etag = await bigEtag();
    const reply = await request('GET', '/big.bin', { 'if-none-match': etag });
    assert.equal(reply.status, 304);
    assert.equal(reply.headers.etag, etag);
    assert.ok(reply.headers['last-modified']);
    assert.equal(reply.body.length, 0);
    assert.equal(senderCalls, 0);
  });

  it('304 via If-Modified-Since', async () => {
    const first = await request('HEAD', '/big.bin');
    const lastModified = first.headers['last-modified'] ?? '';
    const reply = await request('GET', '/big.bin', { 'if-modified-since': lastModified });
    assert.equal(reply.status, 304);
    const older = new Date(Date.parse(lastModified) - 1000).toUTCString();
    assert.equal((await request('GET', '/big.bin', { 'if-modified-since': older })).status, 200);
  });

  it('If-None-Match takes precedence over If-Modified-Since', async () => {
    const first = await request('HEAD', '/big.bin');
    const reply = await request('GET', '/big.bin', {
      'if-none-match': '"something-else"',
      'if-modified-since': first.headers['last-modified'] ?? '',
    });
    assert.equal(reply.status, 200);
  });

  it('412 when If-Match does not match', async () => {
    const reply = await request('GET', '/big.bin', { 'if-match': '"nope"' });
    assert.equal(reply.status, 412);
  });

  it('If-Range mismatch sends the full body; match sends the range', async () => {
    let reply = await request('GET', '/big.bin', { range: 'bytes=0-9', 'if-range': '"stale-etag"' });
    assert.equal(reply.status, 200);
    assert.equal(reply.body.length, SIZE);

    reply = await request('GET', '/big.bin', { range: 'bytes=0-9', 'if-range': await bigEtag() });
    assert.equal(reply.status, 206);
    assert.deepEqual(reply.body, data.subarray(0, 10));
  });

  it('405 with Allow for other methods', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS']) {
      const reply = await request(method, '/big.bin');
      assert.equal(reply.status, 405, method);
      assert.equal(reply.headers.allow, 'GET, HEAD', method);
    }
  });

  it('404 for missing files, 403 for a directory without an index (nginx without autoindex)', async () => {
    assert.equal((await request('GET', '/nope.txt')).status, 404);
    const reply = await request('GET', '/');
    assert.equal(reply.status, 403);
    assert.equal(reply.headers['content-length'], String(reply.body.length));
  });

  it('403 for a symlink out of root, 400 for encoded traversal above it (as nginx)', async () => {
    assert.equal((await request('GET', '/link-out')).status, 403);
    assert.equal((await request('GET', '/link-out-relative')).status, 403);
    assert.equal((await request('GET', '/%2e%2e/outside/secret.txt')).status, 400);
    assert.equal((await request('GET', '/docs/%2e%2e/link-out')).status, 403);
  });

  it('200 for symlinks that stay inside the root, absolute or relative (openat2 refuses the absolute one; realpath then decides)', async () => {
    const abs = await request('GET', '/link-in-absolute');
    assert.equal(abs.status, 200);
    assert.equal(sha256(abs.body), sha256(data));
    const rel = await request('GET', '/link-in-relative');
    assert.equal(rel.status, 200);
    assert.equal(rel.body.toString(), '<h1>docs</h1>\n');
  });

  it('400 for NUL and malformed escapes', async () => {
    assert.equal((await request('GET', '/big.bin%00')).status, 400);
    assert.equal((await request('GET', '/%zz')).status, 400);
  });

  it('0-byte file: 200 with Content-Length 0 and no sender call; any range is 416', async () => {
    const reply = await request('GET', '/empty.txt');
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['content-length'], '0');
    assert.equal(reply.body.length, 0);
    assert.equal(senderCalls, 0);
    assert.equal((await request('GET', '/empty.txt', { range: 'bytes=0-' })).status, 416);
  });

  it('500 when the sender fails before anything was sent', async () => {
    senderMode = 'fail-before-headers';
    const reply = await request('GET', '/big.bin');
    assert.equal(reply.status, 500);
    assert.equal(reply.headers.etag, undefined);
    const outcome = await lastOutcome;
    assert.equal(outcome.status, 500);
    assert.ok(outcome.error instanceof Error);
  });

  it('sendBodyNow gets the head to write: the same status, fields and body as the streamed way, fields in the same order', async () => {
    const streamed = await rawResponse('/big.bin', 'bytes=10-20');
    senderMode = 'now';
    senderCalls = 0;
    const now = await rawResponse('/big.bin', 'bytes=10-20');
    assert.equal(now.status, 206);
    assert.deepEqual(now.names, streamed.names);
    assert.deepEqual(now.names.slice(0, 6), ['Content-Type', 'Last-Modified', 'ETag', 'Accept-Ranges', 'Content-Length', 'Content-Range']);
    assert.equal(now.headers['content-range'], `bytes 10-20/${SIZE}`);
    assert.deepEqual(now.body, data.subarray(10, 21));
    const whole = await request('GET', '/big.bin');
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.etag, await bigEtag());
    assert.equal(whole.headers['content-length'], String(SIZE));
    assert.equal(whole.headers['accept-ranges'], 'bytes');
    assert.equal(sha256(whole.body), sha256(data));
    assert.equal(senderCalls, 0, 'sendBody never called');
    const outcome = await lastOutcome;
    assert.deepEqual({ status: outcome.status, bytes: outcome.bytes, bodyPath: outcome.bodyPath, file: outcome.file }, { status: 200, bytes: SIZE, bodyPath: 'write', file: path.join(root, 'big.bin') });
  });

  it('HEAD and 304 (written by the handler itself) carry the same validators as the GET', async () => {
    senderMode = 'now';
    const get = await rawResponse('/big.bin');
    const head = await rawResponse('/big.bin', undefined, 'HEAD');
    assert.equal(head.status, 200);
    assert.deepEqual(head.names, get.names);
    for (const name of ['content-type', 'last-modified', 'etag', 'accept-ranges', 'content-length']) assert.equal(head.headers[name], get.headers[name], name);
    assert.equal(head.body.length, 0);
    const notModified = await request('GET', '/big.bin', { 'if-none-match': get.headers.etag! });
    assert.equal(notModified.status, 304);
    assert.equal(notModified.headers.etag, get.headers.etag);
    assert.equal(notModified.headers['last-modified'], get.headers['last-modified']);
    assert.equal(notModified.headers['content-length'], undefined);
  });

  it('500 when sendBodyNow fails before writing: the head it was given never reached res', async () => {
    senderMode = 'now-fails';
    const reply = await request('GET', '/big.bin');
    assert.equal(reply.status, 500);
    assert.equal(reply.headers.etag, undefined);
    assert.equal(reply.headers['accept-ranges'], undefined);
    const outcome = await lastOutcome;
    assert.equal(outcome.status, 500);
    assert.ok(outcome.error instanceof Error);
    assert.equal(outcome.file, path.join(root, 'big.bin'));
  });

  it('destroys the connection when the body fails midway', async () => {
    senderMode = 'fail-mid-body';
    await assert.rejects(request('GET', '/big.bin'));
    const outcome = await lastOutcome;
    assert.equal(outcome.status, 200);
    assert.ok(outcome.error instanceof Error);
  });
});

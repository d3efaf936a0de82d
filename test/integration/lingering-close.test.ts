/**
 * The lingering close after an answer that ends the connection (front.ts
 * closeDetached), timed as nginx's: a client that keeps sending is read
 * (and its bytes dropped) for as long as it sends something within each
 * lingering_timeout (5 s), up to lingering_time (30 s) in all. Before, the
 * connection was cut 5 s after the answer whatever the client did: a client
 * still uploading a refused body got a RST on its next write and lost the
 * answer it had not read yet.
 */
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { startAludel, type Running } from '../support/aludel-process.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';
import { startSinkOrigin, type SinkOrigin } from '../support/origins.js';
import { splitHttp } from '../support/raw-http.js';

let fx: StandardFixtures;
let sink: SinkOrigin;
let p: Running;

before(async () => {
  fx = await makeFixtures();
  sink = await startSinkOrigin();
  p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', `http://127.0.0.1:${sink.port}`, '--max-body-size', '1k']);
});

after(async () => {
  await p?.stop();
  await sink?.stop();
  fx?.cleanup();
});

interface Upload {
  /** Everything the client read, once it reads (after its last write). */
  got: Buffer;
  /** The first error the connection had (a write refused by a RST), or null. */
  error: Error | null;
  /** ms from the request head to the connection's close. */
  closedAfterMs: number;
}

/**
 * A chunked POST past --max-body-size (the proxy answers 413 at once and
 * closes), whose client goes on writing a chunk of body every `everyMs`
 * for `forMs` without reading, as an upload on a slow link does, and only
 * then reads what it was sent.
 */
function slowUpload(everyMs: number, forMs: number): Promise<Upload> {
  return new Promise((resolve) => {
    const sock = tls.connect({ host: '127.0.0.1', port: p.port, servername: 'localhost', ca: fx.certPem });
    const chunks: Buffer[] = [];
    let error: Error | null = null;
    let t0 = 0;
    let writer: NodeJS.Timeout | undefined;
    sock.pause();
    sock.on('error', (err) => { error ??= err; });
    sock.once('secureConnect', () => {
      t0 = Date.now();
      sock.write(`POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n${'a'.repeat(0x800)}\r\n`);
      writer = setInterval(() => {
        if (Date.now() - t0 >= forMs) {
          clearInterval(writer);
          sock.on('data', (c: Buffer) => chunks.push(c));
          sock.resume();
          return;
        }
        if (!sock.destroyed) sock.write(`100\r\n${'b'.repeat(0x100)}\r\n`);
      }, everyMs);
    });
    sock.on('close', () => {
      clearInterval(writer);
      resolve({ got: Buffer.concat(chunks), error, closedAfterMs: Date.now() - t0 });
    });
  });
}

describe('the lingering close (nginx lingering_timeout and lingering_time)', () => {
  test('a client that keeps uploading for 8 s after its 413, reading nothing, then reads: it gets the whole answer and a clean close', { timeout: 60_000 }, async () => {
    const u = await slowUpload(1_000, 8_000);
    assert.equal(u.error, null, `the connection failed while the client still wrote: ${String(u.error)}`);
    assert.equal(splitHttp(u.got).status, 413, JSON.stringify(u.got.toString('latin1').slice(0, 80)));
    // The answer came at once, and the connection ended after the client stopped, not before.
    assert.ok(u.closedAfterMs >= 8_000, `closed ${u.closedAfterMs} ms after the request`);
    await p.waitForLog((l) => l.msg === 'request' && l.status === 413);
  });

  test('a client that never stops sending is cut after 30 s in all (lingering_time)', { timeout: 90_000 }, async () => {
    const u = await slowUpload(1_000, 120_000);
    // Past 5 s: each read gave it 5 s again. Within 30 s and some slack: the linger has an end.
    assert.ok(u.closedAfterMs >= 25_000 && u.closedAfterMs <= 40_000, `closed ${u.closedAfterMs} ms after the request`);
  });
});

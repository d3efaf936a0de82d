/**
 * transport/taken.ts, the awaited write the cache and HTTP/2 file bodies
 * share: resolves once the stream took the buffer, rejects when the stream
 * is gone before or while it writes, including an HTTP/2 stream reset by
 * its client (a real node:http2 server and client on loopback).
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { taken } from '../../src/transport/taken.js';

/** A Writable whose write callbacks wait for `flush()`. */
function held(): Writable & { flush(): void } {
  const pending: Array<() => void> = [];
  const w = new Writable({ write: (_chunk, _enc, cb) => void pending.push(() => cb()) });
  return Object.assign(w, { flush: () => { for (const cb of pending.splice(0)) cb(); } });
}

describe('taken (transport/taken.ts)', () => {
  it('resolves once the write callback came', async () => {
    const w = held();
    let done = false;
    const p = taken(w, Buffer.from('abc')).then(() => (done = true));
    await new Promise((r) => setImmediate(r));
    assert.equal(done, false, 'not before the stream took it');
    w.flush();
    await p;
    assert.equal(done, true);
  });

  it('rejects on a destroyed stream, and when the stream closes before taking the bytes', async () => {
    const gone = new Writable({ write: (_c, _e, cb) => cb() });
    gone.destroy();
    await assert.rejects(taken(gone, Buffer.from('x')), { code: 'ECONNRESET' });
    const w = held();
    const p = taken(w, Buffer.from('x'));
    w.destroy();
    await assert.rejects(p, { code: 'ECONNRESET' });
  });

  it('rejects on an HTTP/2 stream its client reset (RST_STREAM, RFC 9113 §6.4)', async () => {
    let serverStream!: http2.ServerHttp2Stream;
    const server = http2.createServer();
    const reset = new Promise<void>((resolve) => {
      server.on('stream', (stream) => {
        serverStream = stream;
        stream.respond({ ':status': 200 });
        stream.on('close', () => resolve());
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const client = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const req = client.request({ ':path': '/' });
      req.on('response', () => req.close(http2.constants.NGHTTP2_CANCEL));
      req.on('error', () => undefined);
      await reset;
      assert.equal(serverStream.closed, true);
      await assert.rejects(taken(serverStream, Buffer.from('late')), { code: 'ECONNRESET' });
    } finally {
      client.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

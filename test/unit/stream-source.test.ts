/**
 * StreamSource (src/transport/stream-source.ts): the copy path's view of a
 * stream that hands its bytes over whole. Looking leaves bytes held, taking
 * drops exactly those, across chunk edges; AGAIN while the stream is merely
 * empty, 0 at its end, its failure thrown; what is held past the body is
 * `leftover`. And copyBody over it moves every byte, in order, to a target
 * that takes a little at a time.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { AGAIN, WANT_WRITE } from '../../src/native/binding.js';
import { copyBody } from '../../src/transport/copy-body.js';
import { StreamSource, type PulledStream } from '../../src/transport/stream-source.js';

/** A stream whose chunks are handed over as queued; `arrive` adds some and wakes a waiter. */
class FakeStream implements PulledStream {
  queue: Buffer[] = [];
  ended = false;
  failure: Error | null = null;
  pulls = 0;
  released: string[] = [];
  private wake: (() => void) | null = null;

  release(chunk: Buffer): void {
    this.released.push(chunk.toString('latin1'));
  }

  pull(): Buffer | null {
    if (this.failure) throw this.failure;
    this.pulls++;
    if (this.queue.length === 0) return null;
    // As node's read() in paused mode: everything buffered, in one Buffer.
    const all = Buffer.concat(this.queue);
    this.queue = [];
    return all;
  }

  readable(): Promise<void> {
    if (this.queue.length > 0 || this.ended || this.failure) return Promise.resolve();
    return new Promise((resolve) => (this.wake = resolve));
  }

  arrive(...chunks: Buffer[]): void {
    this.queue.push(...chunks);
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  end(): void {
    this.ended = true;
    this.arrive();
  }
}

test('peekNow leaves bytes held and discard drops exactly those, across chunk edges', () => {
  const s = new FakeStream();
  const src = new StreamSource(s, Buffer.from('abc'));
  const buf = Buffer.alloc(32);
  assert.equal(src.peekNow(buf, 0, 2), 2, 'first is held: no pull needed');
  assert.equal(buf.toString('latin1', 0, 2), 'ab');
  s.arrive(Buffer.from('defg'));
  assert.equal(src.peekNow(buf, 5, 6), 6, 'first and pulled bytes, into buf at an offset');
  assert.equal(buf.toString('latin1', 5, 11), 'abcdef');
  assert.equal(src.leftover, 7);
  src.discard(4);
  assert.equal(src.leftover, 3);
  assert.equal(src.peekNow(buf, 0, 10), 3);
  assert.equal(buf.toString('latin1', 0, 3), 'efg', 'discard crossed the edge of the first chunk');
  src.discard(3);
  assert.equal(src.peekNow(buf, 0, 10), AGAIN, 'empty, not ended');
  assert.throws(() => src.discard(1), /1 bytes taken, 0 held/);
  s.end();
  assert.equal(src.peekNow(buf, 0, 10), 0, 'the end');
});

test('a failed stream throws its error; peek waits for bytes and reports the end', async () => {
  const s = new FakeStream();
  const src = new StreamSource(s, Buffer.alloc(0));
  const buf = Buffer.alloc(8);
  const waiting = src.peek(buf, 8);
  setImmediate(() => s.arrive(Buffer.from('xy')));
  assert.equal(await waiting, 2);
  src.skip(2);
  const atEnd = src.peek(buf, 8);
  setImmediate(() => s.end());
  assert.equal(await atEnd, 0);
  const f = new FakeStream();
  const failing = new StreamSource(f, Buffer.alloc(0));
  f.failure = Object.assign(new Error('reset'), { code: 'ECONNRESET' });
  assert.throws(() => failing.peekNow(buf, 0, 8), /reset/);
});

test('copyBody over a StreamSource moves every byte in order, to a target that takes a little at a time', async () => {
  const body = crypto.randomBytes(700_000);
  const s = new FakeStream();
  const src = new StreamSource(s, body.subarray(0, 1000));
  const got: Buffer[] = [];
  let turn = 0;
  const target = {
    writeRecords(buf: Buffer, offset: number, length: number): number {
      // Every third call the socket is full; otherwise it takes up to 20,000 bytes.
      if (++turn % 3 === 0) return WANT_WRITE;
      const n = Math.min(length, 20_000);
      got.push(Buffer.from(buf.subarray(offset, offset + n)));
      return n;
    },
    writeReady: (): Promise<void> => new Promise((resolve) => setImmediate(resolve)),
  };
  // The rest arrives in uneven pieces while the copy runs.
  let off = 1000;
  const feed = setInterval(() => {
    if (off >= body.length) return clearInterval(feed);
    const n = Math.min(body.length - off, 1 + Math.floor(Math.random() * 90_000));
    s.arrive(body.subarray(off, off + n));
    off += n;
  }, 1);
  const moved = await copyBody(src, target, body.length, false);
  clearInterval(feed);
  assert.equal(moved, body.length);
  assert.ok(Buffer.concat(got).equals(body), 'the bytes, in order');
  assert.equal(src.leftover, 0);
});

test('each pulled chunk is released once taken whole, in order; the bytes that came with the head never are', () => {
  const s = new FakeStream();
  const src = new StreamSource(s, Buffer.from('h'));
  const buf = Buffer.alloc(16);
  s.arrive(Buffer.from('ab'));
  assert.equal(src.peekNow(buf, 0, 3), 3);
  s.arrive(Buffer.from('cd'));
  assert.equal(src.peekNow(buf, 0, 5), 5, 'h, ab and cd (pulled in two pulls)');
  src.discard(2);
  assert.deepEqual(s.released, [], 'ab is still partly held; h is never released');
  src.discard(1);
  assert.deepEqual(s.released, ['ab']);
  src.discard(2);
  assert.deepEqual(s.released, ['ab', 'cd']);
  assert.equal(src.leftover, 0);
});

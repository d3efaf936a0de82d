/**
 * StreamSource (src/transport/stream-source.ts): the copy path's view of a
 * stream that hands its bytes over whole. Looking leaves bytes held, taking
 * drops exactly those, across chunk edges; AGAIN while the stream is merely
 * empty, 0 at its end, its failure thrown; what is held past the body is
 * `leftover`. And copyBody over it moves every byte, in order, to a target
 * that takes a little at a time, and to one that keeps OpenSSL's rules for a
 * retried write, from the pulled buffers themselves when the body is not
 * framed, in whole records.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { AGAIN, WANT_WRITE } from '../../src/native/binding.js';
import { copyBody } from '../../src/transport/copy-body.js';
import { CHUNK_WIRE } from '../../src/http/h1-wire.js';
import { StreamSource, type PulledStream } from '../../src/transport/stream-source.js';

/** A stream whose chunks are handed over as queued; `arrive` adds some and wakes a waiter. */
class FakeStream implements PulledStream {
  queue: Buffer[] = [];
  ended = false;
  failure: Error | null = null;
  pulls = 0;
  released: string[] = [];
  /** false: one queued chunk per pull, as SslUpstream hands over each buffer it decrypted into. */
  whole = true;
  /** Every buffer pull() handed over. */
  readonly pulled = new Set<ArrayBufferLike>();
  private wake: (() => void) | null = null;

  release(chunk: Buffer): void {
    this.released.push(chunk.toString('latin1'));
  }

  pull(): Buffer | null {
    if (this.failure) throw this.failure;
    this.pulls++;
    if (this.queue.length === 0) return null;
    if (!this.whole) {
      const one = Buffer.from(this.queue.shift()!);
      this.pulled.add(one.buffer);
      return one;
    }
    // As node's read() in paused mode: everything buffered, in one Buffer.
    const all = Buffer.concat(this.queue);
    this.queue = [];
    this.pulled.add(all.buffer);
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

test('bytes held when the stream fails (a TLS FIN without close_notify behind the last records) are handed over first; the failure comes after them', () => {
  const buf = Buffer.alloc(64);
  for (const first of ['head-bytes', '']) {
    const s = new FakeStream();
    const src = new StreamSource(s, Buffer.from(first));
    s.whole = false;
    s.arrive(Buffer.from('record-1'));
    // The stream fails once its queue is empty, as SslUpstream after the records it decrypted.
    const pull = s.pull.bind(s);
    s.pull = (): Buffer | null => {
      if (s.queue.length === 0) s.failure = Object.assign(new Error('upstream closed the TLS connection without close_notify'), { code: 'ECONNRESET' });
      return pull();
    };
    const n = src.peekNow(buf, 0, buf.length);
    assert.equal(buf.toString('latin1', 0, n), `${first}record-1`, 'every byte that came before the failure');
    src.discard(n);
    assert.throws(() => src.peekNow(buf, 0, buf.length), /without close_notify/, 'then the failure');
  }
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
  const moved = await copyBody(src, target, body.length, null);
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

test('inPlace: spans of the pulled buffers themselves, cut to whole records while more is held; a shorter tail joined into one record', () => {
  const R = 16 * 1024;
  const s = new FakeStream();
  s.whole = false;
  const src = new StreamSource(s, Buffer.alloc(0));
  assert.equal(src.inPlace(4 * R), AGAIN, 'nothing held, not ended');
  const a = crypto.randomBytes(R + 100);
  const b = crypto.randomBytes(3 * R);
  s.arrive(a, b);
  const first = src.inPlace(4 * R) as Buffer;
  assert.ok(Buffer.isBuffer(first));
  assert.equal(first.length, R, 'a whole record of the first chunk; its 100-byte tail is not sent alone');
  assert.ok(s.pulled.has(first.buffer), 'a span of the pulled buffer: no copy');
  assert.ok(first.equals(a.subarray(0, R)));
  src.discard(R);
  const joined = src.inPlace(4 * R) as Buffer;
  assert.equal(joined.length, R, 'the tail and the next chunk joined into one record');
  assert.ok(!s.pulled.has(joined.buffer), 'joined by a copy');
  assert.ok(joined.equals(Buffer.concat([a.subarray(R), b]).subarray(0, R)));
  src.discard(1000);
  const again = src.inPlace(4 * R) as Buffer;
  assert.ok(s.pulled.has(again.buffer), 'the rest of one chunk, everything held: in place, a short last record allowed');
  assert.ok(again.equals(b.subarray(900)), 'after a partial take, offered from the first byte not taken');
  assert.equal((src.inPlace(100) as Buffer).length, 100, 'never more than asked');
  const rest = again;
  src.discard(rest.length);
  assert.equal(src.leftover, 0);
  s.end();
  assert.equal(src.inPlace(R), 0, 'the end');
});

/**
 * A target that keeps OpenSSL's rules (SSL_MODE_ENABLE_PARTIAL_WRITE |
 * ACCEPT_MOVING_WRITE_BUFFER): it takes whole records of up to 16 KiB while
 * its socket has room; a record that does not fit stays pending (WANT_WRITE)
 * and a retry must offer at least as many bytes (ssl3_write_pending: "bad
 * write retry"), from the same byte of the body.
 */
class StrictTarget {
  readonly records: number[] = [];
  readonly got: Buffer[] = [];
  inPlaceBytes = 0;
  private pending: Buffer | null = null;
  private room = 0;
  constructor(private readonly pulled: Set<ArrayBufferLike>) {}

  writeRecords(buf: Buffer, offset: number, length: number): number {
    const span = buf.subarray(offset, offset + length);
    let taken = 0;
    if (this.pending !== null) {
      if (length < this.pending.length) throw new Error(`bad write retry: ${length} < ${this.pending.length}`);
      assert.ok(span.subarray(0, this.pending.length).equals(this.pending), 'a retry starts at the pending record');
      if (this.room < this.pending.length) return WANT_WRITE;
      taken = this.take(this.pending, buf);
      this.pending = null;
    }
    while (taken < length) {
      const rec = span.subarray(taken, taken + Math.min(16 * 1024, length - taken));
      if (this.room < rec.length) {
        if (taken > 0) return taken;
        this.pending = Buffer.from(rec);
        return WANT_WRITE;
      }
      taken += this.take(rec, buf);
    }
    return taken;
  }

  private take(rec: Buffer, from: Buffer): number {
    this.room -= rec.length;
    this.records.push(rec.length);
    this.got.push(Buffer.from(rec));
    if (this.pulled.has(from.buffer)) this.inPlaceBytes += rec.length;
    return rec.length;
  }

  writeReady(): Promise<void> {
    return new Promise((resolve) => setImmediate(() => {
      this.room += 10_000 + Math.floor(Math.random() * 60_000);
      resolve();
    }));
  }
}

test('copyBody takes an unframed body from the pulled buffers in place, in whole records, keeping OpenSSL\'s retry rule', async () => {
  const R = 16 * 1024;
  const body = crypto.randomBytes(2_000_000);
  const s = new FakeStream();
  s.whole = false;
  const src = new StreamSource(s, body.subarray(0, 700));
  // Chunks of whole records, as SslUpstream's pulls from an upstream writing 16 KiB records, and
  // near the end one that is not: its tail is joined to the next one's bytes from then on.
  const sizes = [4 * R, 4 * R, 3 * R, R, 4 * R];
  for (let off = 700, i = 0; off < body.length; i++) {
    const n = Math.min(body.length - off, off > 1_700_000 && off < 1_800_000 ? 40_000 : sizes[i % sizes.length]!);
    s.queue.push(body.subarray(off, off + n));
    off += n;
  }
  s.ended = true;
  const target = new StrictTarget(s.pulled);
  assert.equal(await copyBody(src, target, body.length, null), body.length);
  assert.ok(Buffer.concat(target.got).equals(body), 'the bytes, in order');
  assert.equal(target.records[0], 700, 'the bytes that came with the head: their own record');
  const short = target.records.slice(1, -1).filter((n) => n !== R);
  assert.deepEqual(short, [], 'every record between is a whole 16 KiB one');
  assert.ok(target.inPlaceBytes > 0.9 * body.length, `${target.inPlaceBytes} of ${body.length} bytes written from the pulled buffers themselves`);
  assert.equal(src.leftover, 0);
});

test('a framed body is still copied (its size lines share the records), in order', async () => {
  const body = crypto.randomBytes(300_000);
  const s = new FakeStream();
  s.whole = false;
  const src = new StreamSource(s, Buffer.alloc(0));
  for (let off = 0; off < body.length; off += 50_000) s.queue.push(body.subarray(off, off + 50_000));
  s.ended = true;
  const target = new StrictTarget(s.pulled);
  await copyBody(src, target, body.length, CHUNK_WIRE);
  assert.equal(target.inPlaceBytes, 0);
  const wire = Buffer.concat(target.got).toString('latin1');
  let pos = 0;
  const parts: Buffer[] = [];
  while (pos < wire.length) {
    const eol = wire.indexOf('\r\n', pos);
    const size = parseInt(wire.slice(pos, eol), 16);
    parts.push(Buffer.from(wire.slice(eol + 2, eol + 2 + size), 'latin1'));
    assert.equal(wire.slice(eol + 2 + size, eol + 4 + size), '\r\n');
    pos = eol + 4 + size;
  }
  assert.ok(Buffer.concat(parts).equals(body));
});

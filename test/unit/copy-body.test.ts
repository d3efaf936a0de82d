/**
 * copyBody (src/transport/copy-body.ts) against a fake upstream socket and a
 * fake SSL_write that behave as the real ones may: bytes arriving in odd
 * amounts, a client socket that fills after any record, and OpenSSL's rule
 * for a write that said WANT_WRITE (ssl3_write_pending: the retry must pass
 * at least the held record's length, and here, to be strict, the same bytes
 * at its start). The body must come out byte for byte, framed or not.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { AGAIN, WANT_READ, WANT_WRITE } from '../../src/native/binding.js';
import { COPY_MAX, copyBody, type CopySource, type CopyTarget } from '../../src/transport/copy-body.js';
import { ChunkedDecoder } from '../../src/http/chunked-decoder.js';
import { CHUNK_WIRE } from '../../src/http/h1-wire.js';
import { UpstreamTruncatedError } from '../../src/errors.js';

const RECORD = 16 * 1024;

/** A deterministic generator, so a failure can be replayed from its seed. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

/** An upstream socket holding `data`, of which bytes arrive in random amounts as readable() is awaited. */
class FakeSource implements CopySource {
  pos = 0;
  avail = 0;
  peeks = 0;
  peekedBytes = 0;
  constructor(readonly data: Buffer, private readonly rand: () => number, readonly fin: boolean) {}

  peekNow(buf: Buffer, offset: number, length: number): number {
    assert.ok(length > 0);
    if (this.pos === this.avail) return this.fin && this.avail === this.data.length ? 0 : AGAIN;
    const n = Math.min(length, this.avail - this.pos);
    this.data.copy(buf, offset, this.pos, this.pos + n);
    this.peeks++;
    this.peekedBytes += n;
    return n;
  }

  discard(n: number): void {
    assert.ok(n > 0 && n <= this.avail - this.pos, `discard ${n} of ${this.avail - this.pos} waiting`);
    this.pos += n;
  }

  async readable(): Promise<void> {
    assert.ok(this.avail < this.data.length, 'readable() awaited with nothing more to come: the copy would hang');
    const step = this.rand() < 0.3 ? 1 + Math.floor(this.rand() * 100) : Math.floor(this.rand() * 3 * COPY_MAX);
    this.avail = Math.min(this.data.length, this.avail + Math.max(1, step));
  }
}

/**
 * SSL_write in partial-write mode over a socket that fills at random: records
 * of up to 16 KiB (of odd sizes too, a harsher test than OpenSSL's); when the socket fills, the record in hand may already be
 * encrypted and held (as OpenSSL holds it), and then the next call must
 * start with the same bytes and be at least as long.
 */
class FakeTls implements CopyTarget {
  readonly out: Buffer[] = [];
  held: Buffer | null = null;
  waits = 0;
  constructor(private readonly rand: () => number) {}

  writeRecords(buf: Buffer, offset: number, length: number): number {
    assert.ok(length > 0);
    let done = 0;
    if (this.held !== null) {
      assert.ok(length >= this.held.length, `retry of ${length} bytes shorter than the held record of ${this.held.length}`);
      assert.ok(buf.subarray(offset, offset + this.held.length).equals(this.held), 'retry does not start with the held bytes');
      if (this.rand() < 0.2) return WANT_WRITE;
      this.out.push(this.held);
      done = this.held.length;
      this.held = null;
    }
    while (done < length) {
      // Records of odd sizes too, so that a fill can fall anywhere, also inside a size line or a CRLF.
      const r = this.rand();
      const n = Math.min(r < 0.15 ? 1 + Math.floor(this.rand() * 8) : r < 0.35 ? 1 + Math.floor(this.rand() * RECORD) : RECORD, length - done);
      if (this.rand() < 0.15) {
        if (this.rand() < 0.5) this.held = Buffer.from(buf.subarray(offset + done, offset + done + n));
        return done > 0 ? done : this.rand() < 0.1 ? WANT_READ : WANT_WRITE;
      }
      this.out.push(Buffer.from(buf.subarray(offset + done, offset + done + n)));
      done += n;
    }
    return done;
  }

  async writeReady(state: number): Promise<void> {
    assert.ok(state === WANT_WRITE || state === WANT_READ);
    this.waits++;
  }
}

function dechunk(wire: Buffer): Buffer {
  const dec = new ChunkedDecoder();
  const parts: Buffer[] = [];
  // Our pieces end before the last chunk, which node's res.end() writes.
  const used = dec.push(Buffer.concat([wire, Buffer.from('0\r\n\r\n')]), (b) => parts.push(Buffer.from(b)));
  assert.ok(dec.done, 'the chunked body is well formed');
  assert.equal(used, wire.length + 5);
  return Buffer.concat(parts);
}

const SIZES = [0, 1, RECORD - 1, RECORD, RECORD + 1, 65536, COPY_MAX - 1, COPY_MAX, COPY_MAX + 1, 3 * COPY_MAX + 12345, 5 * 1024 * 1024 + 7];

describe('copyBody', () => {
  for (const framed of [false, true]) {
    for (const byLength of [true, false]) {
      if (framed && byLength) continue;
      it(`${framed ? 'framed as chunks' : 'unframed'}, ${byLength ? 'by length' : 'until FIN'}: every byte once, in order, whatever the sockets do`, async () => {
        for (const size of SIZES) {
          for (let seed = 1; seed <= 4; seed++) {
            const rand = rng(size * 31 + seed + (framed ? 7 : 0));
            const data = crypto.randomBytes(size);
            // By length: bytes of a next message follow the body, and must stay in the socket.
            const extra = byLength ? crypto.randomBytes(100) : Buffer.alloc(0);
            const src = new FakeSource(Buffer.concat([data, extra]), rand, !byLength);
            const dst = new FakeTls(rand);
            let counted = 0;
            const moved = await copyBody(src, dst, byLength ? size : null, framed ? CHUNK_WIRE : null, (n) => (counted += n));
            const wire = Buffer.concat(dst.out);
            const what = `size ${size} seed ${seed}`;
            assert.equal(moved, size, what);
            assert.equal(counted, size, what);
            assert.equal(src.pos, size, `${what}: consumed exactly the body`);
            assert.equal(dst.held, null, `${what}: nothing left held`);
            assert.ok((framed ? dechunk(wire) : wire).equals(data), `${what}: bytes differ`);
            // What waits for a slow client is peeked again, but not much more than once over.
            if (size > 0) assert.ok(src.peekedBytes < 3 * size + 2 * COPY_MAX, `${what}: ${src.peekedBytes} bytes peeked`);
          }
        }
      });
    }
  }

  it('framed: fills that fall inside a size line or between CR and LF (each span first cut at a chosen byte)', async () => {
    for (const cut of [(len: number) => len - 1, (len: number) => len - 2, (len: number) => len - 3, () => 1, () => 2, () => 3, () => 4, () => 6]) {
      for (const size of [1, 17, RECORD + 3, COPY_MAX + 5]) {
        const data = crypto.randomBytes(size);
        const src = new FakeSource(data, rng(size), true);
        src.avail = data.length;
        const out: Buffer[] = [];
        let fresh = true;
        const dst: CopyTarget = {
          writeRecords(buf, off, len) {
            const n = fresh ? Math.max(1, Math.min(len, cut(len))) : len;
            fresh = !fresh;
            out.push(Buffer.from(buf.subarray(off, off + n)));
            return n;
          },
          writeReady: async () => undefined,
        };
        assert.equal(await copyBody(src, dst, null, CHUNK_WIRE), size);
        assert.ok(dechunk(Buffer.concat(out)).equals(data), `size ${size}, cut ${cut(100)} of 100`);
      }
    }
  });

  it('with both sides always ready, other work still runs during a large body (the loop yields every MiB)', async () => {
    const data = crypto.randomBytes(8 * 1024 * 1024);
    const src = new FakeSource(data, rng(3), false);
    src.avail = data.length;
    let movedWhenOtherRan = -1;
    let moved = 0;
    const dst: CopyTarget = { writeRecords: (_buf, _off, len) => ((moved += len), len), writeReady: () => assert.fail('no wait expected') };
    setImmediate(() => (movedWhenOtherRan = moved));
    await copyBody(src, dst, data.length, null);
    assert.ok(movedWhenOtherRan > 0 && movedWhenOtherRan <= 2 * 1024 * 1024, `another callback ran after ${movedWhenOtherRan} bytes`);
  });

  it('a FIN before the announced length rejects with UpstreamTruncatedError and takes no further bytes', async () => {
    const rand = rng(99);
    const src = new FakeSource(crypto.randomBytes(300_000), rand, true);
    await assert.rejects(copyBody(src, new FakeTls(rand), 400_000, null), (err: unknown) => err instanceof UpstreamTruncatedError);
    assert.equal(src.pos, 300_000);
  });

  it('a client that always has room gets 256 KiB passes: one peek per pass, no waits', async () => {
    const data = crypto.randomBytes(4 * COPY_MAX);
    const src = new FakeSource(data, rng(5), false);
    src.avail = data.length;
    const out: Buffer[] = [];
    const dst: CopyTarget = {
      writeRecords: (buf, off, len) => (out.push(Buffer.from(buf.subarray(off, off + len))), len),
      writeReady: () => assert.fail('no wait expected'),
    };
    assert.equal(await copyBody(src, dst, data.length, null), data.length);
    assert.equal(src.peeks, 4);
    assert.deepEqual(out.map((b) => b.length), [COPY_MAX, COPY_MAX, COPY_MAX, COPY_MAX]);
  });
});

/**
 * TakenFirstSource (src/transport/taken-first-source.ts): the copy path's
 * view of a plain socket whose answer was taken with one recv, the body
 * bytes taken with the head offered before the socket's. Looking leaves
 * bytes where they are, taking drops exactly those, across the edge between
 * the taken bytes and the socket's; the socket's AGAIN or FIN never hides
 * taken bytes; what is still held when the body ends is `leftover`. And
 * copyBody and moveChunked over it move every byte, in order, to a target
 * that takes a little at a time.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';
import { AGAIN } from '../../src/native/binding.js';
import { copyBody } from '../../src/transport/copy-body.js';
import { CHUNK_WIRE } from '../../src/http/h1-wire.js';
import { moveChunked } from '../../src/proxy/upstream-exchange.js';
import { TakenFirstSource } from '../../src/transport/taken-first-source.js';

/** A socket's receive queue: peekNow and peek leave bytes, discard and skip take them; `fin` once no more will come. */
class FakeSocket {
  held = Buffer.alloc(0);
  fin = false;
  discarded = 0;
  skipped = 0;

  peekNow(buf: Buffer, offset: number, length: number): number {
    if (this.held.length === 0) return this.fin ? 0 : AGAIN;
    return this.held.copy(buf, offset, 0, Math.min(length, this.held.length));
  }
  discard(n: number): void {
    if (n > this.held.length) throw new Error(`discard ${n} of ${this.held.length}`);
    this.held = this.held.subarray(n);
    this.discarded += n;
  }
  skip(n: number): void {
    this.discard(n);
    this.discarded -= n;
    this.skipped += n;
  }
  async peek(buf: Buffer, length: number): Promise<number> {
    const n = this.peekNow(buf, 0, length);
    if (n === AGAIN) throw new Error('peek would wait');
    return n;
  }
  readable(): Promise<void> {
    return Promise.reject(new Error('readable() asked while bytes are held'));
  }
}

test('taken bytes come first, then the socket\'s, and taking drops exactly those across the edge', () => {
  const sock = new FakeSocket();
  sock.held = Buffer.from('DEFGH');
  const src = new TakenFirstSource(sock, Buffer.from('ABC'));
  const out = Buffer.alloc(16);
  assert.equal(src.peekNow(out, 2, 2), 2);
  assert.equal(out.toString('latin1', 2, 4), 'AB');
  assert.equal(src.peekNow(out, 0, 16), 8);
  assert.equal(out.toString('latin1', 0, 8), 'ABCDEFGH');
  src.discard(2);
  assert.equal(src.leftover, 1);
  assert.equal(sock.discarded, 0);
  assert.equal(src.peekNow(out, 0, 16), 6);
  assert.equal(out.toString('latin1', 0, 6), 'CDEFGH');
  src.discard(3);
  assert.equal(src.leftover, 0);
  assert.equal(sock.discarded, 2, 'only the bytes past the taken ones come from the socket');
  assert.equal(src.peekNow(out, 0, 16), 3);
  assert.equal(out.toString('latin1', 0, 3), 'FGH');
});

test('the socket\'s AGAIN or FIN does not hide taken bytes; its FIN shows once they are taken', () => {
  const sock = new FakeSocket();
  const src = new TakenFirstSource(sock, Buffer.from('xyz'));
  const out = Buffer.alloc(8);
  assert.equal(src.peekNow(out, 0, 8), 3, 'socket empty (AGAIN)');
  sock.fin = true;
  assert.equal(src.peekNow(out, 0, 8), 3, 'socket at its FIN');
  src.discard(3);
  assert.equal(src.peekNow(out, 0, 8), 0);
});

test('copyBody moves the taken bytes and then the socket\'s, to a target that takes a little at a time', async () => {
  const body = crypto.randomBytes(300 * 1024);
  const sock = new FakeSocket();
  sock.held = body.subarray(16 * 1024 - 100);
  const src = new TakenFirstSource(sock, Buffer.from(body.subarray(0, 16 * 1024 - 100)));
  const got: Buffer[] = [];
  let turn = 0;
  const dst = {
    writeRecords(buf: Buffer, offset: number, length: number): number {
      const n = Math.min(length, 1000 + (turn++ % 7) * 5000);
      got.push(Buffer.from(buf.subarray(offset, offset + n)));
      return n;
    },
    writeReady: (): Promise<void> => Promise.resolve(),
  };
  assert.equal(await copyBody(src, dst, body.length, null), body.length);
  assert.ok(Buffer.concat(got).equals(body));
  assert.equal(src.leftover, 0);
  assert.equal(sock.held.length, 0);
});

test('moveChunked reads framing across the taken bytes and the socket\'s; bytes past the last chunk stay as leftover', async () => {
  const wire = Buffer.from('5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nEXTRA', 'latin1');
  for (let cut = 0; cut <= wire.length; cut++) {
    const sock = new FakeSocket();
    sock.held = wire.subarray(cut);
    sock.fin = true;
    const src = new TakenFirstSource(sock, Buffer.from(wire.subarray(0, cut)));
    let data = '';
    const clean = await moveChunked(src, async (pending) => {
      const out = Buffer.alloc(pending);
      let n = 0;
      while (n < pending) {
        const r = src.peekNow(out, n, pending - n);
        assert.ok(r > 0, `cut ${cut}: chunk data not there`);
        src.discard(r);
        n += r;
      }
      data += out.toString('latin1');
    });
    assert.equal(clean, true);
    assert.equal(data, 'hello world', `cut ${cut}`);
    // Five bytes follow the body: in the taken ones (leftover) or still in the socket.
    assert.equal(src.leftover + sock.held.length, 5, `cut ${cut}`);
    assert.equal(src.leftover, Math.max(0, cut - (wire.length - 5)), `cut ${cut}`);
  }
});

test('copyBody with chunk framing (CHUNK_WIRE) over taken and socket bytes', async () => {
  const body = crypto.randomBytes(70 * 1024);
  const sock = new FakeSocket();
  sock.held = body.subarray(5000);
  sock.fin = true;
  const src = new TakenFirstSource(sock, Buffer.from(body.subarray(0, 5000)));
  const got: Buffer[] = [];
  const dst = {
    writeRecords(buf: Buffer, offset: number, length: number): number {
      got.push(Buffer.from(buf.subarray(offset, offset + length)));
      return length;
    },
    writeReady: (): Promise<void> => Promise.resolve(),
  };
  await copyBody(src, dst, null, CHUNK_WIRE);
  const wire = Buffer.concat(got).toString('latin1');
  let data = '';
  for (let at = 0; at < wire.length;) {
    const eol = wire.indexOf('\r\n', at);
    const size = parseInt(wire.slice(at, eol), 16);
    data += wire.slice(eol + 2, eol + 2 + size);
    at = eol + 2 + size + 2;
  }
  assert.ok(Buffer.from(data, 'latin1').equals(body));
});

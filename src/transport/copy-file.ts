/**
 * The write path for file bodies: read(2) on the thread pool, then the stream's
 * own write (SSL_write in userspace, or node:tls). Used when kTLS TX is off.
 */
import fs from 'node:fs';
import type { Writable } from 'node:stream';
import { FileTruncatedError } from '../errors.js';
import { NOWAIT_UNSUPPORTED, loadAddon } from '../native/binding.js';
import { cutAfter } from './body-cut.js';

export type BodyPath = 'sendfile' | 'splice' | 'write' | 'none';

/** Recycled buffers of one size: no per-request allocation on the hot path; held only while a read or write uses them. */
export class ChunkPool {
  readonly size: number;
  private readonly idle: Buffer[] = [];
  private readonly keep: number;

  constructor(size: number, keep: number) {
    this.size = size;
    this.keep = keep;
  }

  take(): Buffer {
    return this.idle.pop() ?? Buffer.allocUnsafe(this.size);
  }

  give(buf: Buffer): void {
    if (this.idle.length < this.keep) this.idle.push(buf);
  }
}

/**
 * 32 KiB: two full TLS records per thread-pool read. A client that stops
 * reading holds exactly one of these (the write waiting for the socket) on
 * this generic path (node:tls); the rest of the body waits in the file.
 */
const pool = new ChunkPool(32 * 1024, 64);

/** One read without waiting for the disk: bytes read, AGAIN, or NOWAIT_UNSUPPORTED (native preadNowait). */
export type InlineRead = (fd: number, buf: Buffer, length: number, position: number) => number;

function addonInlineRead(): InlineRead | null {
  const addon = loadAddon();
  if (addon instanceof Error || typeof addon.preadNowait !== 'function') return null;
  return (fd, buf, length, position) => addon.preadNowait(fd, buf, length, position);
}

/** null once the kernel or filesystem said it has no RWF_NOWAIT (then every read goes to the thread pool). */
let inlineRead: InlineRead | null = addonInlineRead();

/**
 * Reads up to `length` bytes of fd at `position` into buf[0, length): on
 * the event loop when they are in the page cache (preadv2 with RWF_NOWAIT:
 * a copy of a few microseconds), else on libuv's thread pool, where a disk
 * read blocks a worker thread, never the event loop. Each thread-pool round
 * trip wakes a worker and then the loop; a profile of 4 KiB cache hits
 * without kTLS had it at a fifth of the process's CPU (docs/benchmarks.md).
 */
export function readAt(fd: number, buf: Buffer, length: number, position: number): Promise<number> {
  return readAtWith(inlineRead, fd, buf, length, position);
}

/**
 * readAt()'s attempt on the event loop alone: the bytes read (0: end of
 * file), or -1 when they cannot be had without waiting for the disk (not
 * all cached, or no RWF_NOWAIT here); readAt() then reads them.
 */
export function readNow(fd: number, buf: Buffer, length: number, position: number): number {
  return tryInline(inlineRead, fd, buf, length, position);
}

/**
 * One inline read: its bytes, or -1 when it cannot be had without waiting.
 * Throws the read's error.
 */
function tryInline(inline: InlineRead | null, fd: number, buf: Buffer, length: number, position: number): number {
  if (inline === null || length <= 0) return -1;
  const n = inline(fd, buf, length, position);
  if (n >= 0) return n;
  // The kernel (before 4.14) or this file's filesystem has no RWF_NOWAIT. From then on every read takes
  // the thread pool, for files on other filesystems too: always safe, at worst slower.
  if (n === NOWAIT_UNSUPPORTED && inline === inlineRead) inlineRead = null;
  return -1;
}

/** readAt() with the inline attempt given (tests pass a stub to take the fallback). */
export function readAtWith(inline: InlineRead | null, fd: number, buf: Buffer, length: number, position: number): Promise<number> {
  let n: number;
  try {
    n = tryInline(inline, fd, buf, length, position);
  } catch (err) {
    return Promise.reject(err);
  }
  if (n >= 0) return Promise.resolve(n);
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, 0, length, position, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function writeAll(stream: Writable, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (stream.destroyed) {
      reject(Object.assign(new Error('connection closed'), { code: 'ECONNRESET' }));
      return;
    }
    stream.write(chunk, (err) => (err ? reject(err) : resolve()));
  });
}

/**
 * Copies exactly `length` bytes of fd from `offset` into stream, one chunk at
 * a time: the next read starts once the stream has taken the previous chunk
 * (its write callback), so user space holds at most one chunk per connection
 * however long the client stalls.
 */
export async function copyFileToStream(stream: Writable, fd: number, offset: number, length: number): Promise<void> {
  const buf = pool.take();
  const CHUNK = pool.size;
  let pos = offset;
  const end = offset + length;
  try {
    while (pos < end) {
      const n = await readAt(fd, buf, Math.min(CHUNK, end - pos), pos);
      if (n === 0) throw new FileTruncatedError(length, pos - offset);
      await writeAll(stream, n === CHUNK ? buf : buf.subarray(0, n));
      pos += n;
    }
  } catch (err) {
    // What went out is what the access log says was sent (body-cut.ts).
    throw cutAfter(err, pos - offset, 'write');
  } finally {
    // Only recycled once nothing references it (a failed write may still sit in a stream's queue).
    if (pos >= end) pool.give(buf);
  }
}

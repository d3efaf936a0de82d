/**
 * The write path for file bodies: read(2) on the thread pool, then the stream's
 * own write (SSL_write in userspace, or node:tls). Used when kTLS TX is off.
 */
import fs from 'node:fs';
import type { Writable } from 'node:stream';
import { FileTruncatedError } from '../errors.js';

export type BodyPath = 'sendfile' | 'splice' | 'write' | 'none';

/** 256 KiB: large enough to amortise a thread-pool hop, small enough for many connections. */
const CHUNK = 256 * 1024;
/** Recycled buffers: no per-request allocation on the hot path. */
const pool: Buffer[] = [];
const POOL_MAX = 64;

function take(): Buffer {
  return pool.pop() ?? Buffer.allocUnsafe(CHUNK);
}

function give(buf: Buffer): void {
  if (pool.length < POOL_MAX) pool.push(buf);
}

function readAt(fd: number, buf: Buffer, length: number, position: number): Promise<number> {
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
 * Copies exactly `length` bytes of fd from `offset` into stream. Two buffers
 * alternate so the next read overlaps the current write.
 */
export async function copyFileToStream(stream: Writable, fd: number, offset: number, length: number): Promise<void> {
  const bufs = [take(), take()] as const;
  let pos = offset;
  const end = offset + length;
  let i = 0;
  try {
    // The write of one buffer overlaps the read of the next; its failure (a peer reset)
    // is observed at the next await; the no-op catch keeps it from being an unhandled
    // rejection (which would end the process) while a read is in flight.
    let pending: Promise<void> = Promise.resolve();
    while (pos < end) {
      const buf = bufs[i]!;
      const reading = readAt(fd, buf, Math.min(CHUNK, end - pos), pos);
      const [n] = await Promise.all([reading, pending]);
      if (n === 0) throw new FileTruncatedError(length, pos - offset);
      pending = writeAll(stream, n === CHUNK ? buf : buf.subarray(0, n));
      pending.catch(() => undefined);
      pos += n;
      i ^= 1;
    }
    await pending;
  } finally {
    // Only recycle once nothing references them (a write still queued would be corrupted).
    if (pos >= end) { give(bufs[0]); give(bufs[1]); }
  }
}

/**
 * File bodies over HTTP/2. sendfile cannot carry them: every DATA frame has
 * a 9-byte header (RFC 9113 §4.1) and the client's flow-control window
 * (§5.2) decides how much may go, so nghttp2 builds the frames from bytes it
 * is given. The file is read in bounded chunks on the thread pool, and the
 * next read starts only once the stream has taken the previous chunk: a
 * client that grants no window holds one chunk, never the file.
 *
 * (node's respondWithFD pipes the fd natively, but a stream reset mid-body
 * leaves its read in flight with no event saying when it is done, and the
 * handler closes the fd when the body settles: a read could hit a reused
 * descriptor.)
 */
import type http2 from 'node:http2';
import { FileTruncatedError } from '../errors.js';
import { cutAfter } from '../transport/body-cut.js';
import { ChunkPool, readAt, type BodyPath } from '../transport/copy-file.js';
import { taken } from '../transport/taken.js';
import { resetStream, startStallTimer } from './h2-front.js';

/**
 * Each read costs a round through the thread pool and a stream write that
 * nghttp2 frames and hands to the TLS socket: per chunk, not per byte. With
 * 64 KiB reads, HTTP/2 file bodies cost 3.5x the CPU of HTTP/1.1 for the same
 * bytes; with 256 KiB, 2x (docs/benchmarks.md). So the one body a connection
 * is sending reads 256 KiB at a time. Bodies sent beside it on the same
 * connection read 64 KiB (four full DATA frames of the default
 * SETTINGS_MAX_FRAME_SIZE, RFC 9113 §6.5.2): a client that opens many streams
 * and grants no window holds 256 KiB plus 64 KiB per further stream, not
 * 256 KiB per stream.
 */
const wide = new ChunkPool(256 * 1024, 8);
const narrow = new ChunkPool(64 * 1024, 32);
/** File bodies in flight per connection. */
const sending = new WeakMap<http2.Http2Session, number>();

/**
 * Sends the response head (status and headers as set on `res`), then
 * exactly `length` bytes of fd from `offset` as DATA frames, then ends the
 * stream. Resolves when the last read is done (the fd is no longer used).
 */
export async function sendFileOverH2(res: http2.Http2ServerResponse, fd: number, offset: number, length: number): Promise<BodyPath> {
  // Http2ServerResponse.flushHeaders() exists (node's compat layer) but is missing from @types/node 20.
  (res as unknown as { flushHeaders(): void }).flushHeaders();
  await sendRangeOverH2(res.stream, fd, offset, length);
  res.end();
  return 'write';
}

/**
 * `length` bytes of fd from `offset` as DATA frames on `stream`, without
 * ending it (the cache sends a body still being stored range by range).
 * Resolves when the last read is done (the fd is no longer used).
 */
export async function sendRangeOverH2(stream: http2.Http2Stream, fd: number, offset: number, length: number): Promise<BodyPath> {
  const session = stream.session;
  const beside = session ? (sending.get(session) ?? 0) : 0;
  if (session) sending.set(session, beside + 1);
  const chunks = beside === 0 ? wide : narrow;
  const buf = chunks.take();
  let pos = offset;
  const end = offset + length;
  try {
    while (pos < end) {
      const n = await readAt(fd, buf, Math.min(buf.length, end - pos), pos);
      if (n === 0) {
        // The file shrank under us: the stream is reset rather than ended short (RFC 9110 §8.6).
        resetStream(stream, 2 /* INTERNAL_ERROR */);
        throw new FileTruncatedError(length, pos - offset);
      }
      await takenInTime(stream, n === buf.length ? buf : buf.subarray(0, n));
      pos += n;
    }
  } catch (err) {
    // What went out is what the access log says was sent (body-cut.ts).
    throw cutAfter(err, pos - offset, 'write');
  } finally {
    // Back in the pool only when nothing references it (a write may still sit in a closed stream's queue).
    if (pos >= end) chunks.give(buf);
    if (session) sending.set(session, (sending.get(session) ?? 1) - 1);
  }
  return 'write';
}

/**
 * taken(), with the stream's stall limit (--idle-timeout) on each chunk: a
 * chunk the client's flow-control window (RFC 9113 §5.2) lets nowhere for
 * that long is a stalled stream, reset as nginx's send_timeout ends a
 * request whose next write cannot go. node's own stream timer does not see
 * it while the session sends for other streams (h2-front.ts watchStream),
 * so a client that fetched a small file now and then held this stream, its
 * descriptor and its chunk for ever. The reset closes the stream, and
 * taken() rejects with the cut (ECONNRESET).
 */
export function takenInTime(stream: http2.Http2Stream, b: Buffer): Promise<void> {
  const stop = startStallTimer(stream);
  return taken(stream, b).finally(stop);
}

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
import { ChunkPool, readAt, type BodyPath } from '../transport/copy-file.js';
import { resetStream } from './h2-front.js';

/** 64 KiB: four full DATA frames of the default SETTINGS_MAX_FRAME_SIZE per read. */
const chunks = new ChunkPool(64 * 1024, 32);

function streamGone(): Error {
  return Object.assign(new Error('HTTP/2 stream closed'), { code: 'ECONNRESET' });
}

/** Resolves once the stream has taken `chunk` (nghttp2 framed and wrote it); rejects if the stream closes first. */
function taken(stream: http2.Http2Stream, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (stream.destroyed || stream.closed) {
      reject(streamGone());
      return;
    }
    const onClose = (): void => reject(streamGone());
    stream.once('close', onClose);
    stream.write(chunk, (err) => {
      stream.off('close', onClose);
      if (err) reject(err);
      // A reset completes the writes still queued without an error: the stream's state says it.
      else if (stream.destroyed || stream.closed) reject(streamGone());
      else resolve();
    });
  });
}

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
      await taken(stream, n === buf.length ? buf : buf.subarray(0, n));
      pos += n;
    }
  } finally {
    // Back in the pool only when nothing references it (a write may still sit in a closed stream's queue).
    if (pos >= end) chunks.give(buf);
  }
  return 'write';
}

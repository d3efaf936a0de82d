/**
 * One buffer written to a connection or an HTTP/2 stream, awaited: what the
 * body senders that write from user space share (the cache's bytes kept in
 * memory, h2-body.ts's file chunks). Waiting for the write's callback (the
 * connection's SSL_write has the bytes, or nghttp2 framed them) lets the
 * caller reuse the buffer, and a client that stops reading holds this one
 * piece, never the body.
 */
import type { Writable } from 'node:stream';

function gone(): Error {
  return Object.assign(new Error('client connection or stream closed'), { code: 'ECONNRESET' });
}

/**
 * Resolves once `w` has taken `b`; rejects when the write failed, or `w` is
 * closed or closes first. `closed` as well as `destroyed`: an Http2Stream
 * that received RST_STREAM (RFC 9113 §6.4) is closed before it is destroyed,
 * and completes the writes still queued on it without an error, so its state
 * is what says the bytes went nowhere (on a plain Writable, closed implies
 * destroyed, so the check costs nothing there).
 */
export function taken(w: Writable, b: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    if (w.destroyed || w.closed) {
      reject(gone());
      return;
    }
    const onClose = (): void => reject(gone());
    w.once('close', onClose);
    w.write(b, (err) => {
      w.off('close', onClose);
      if (err) reject(err);
      else if (w.destroyed || w.closed) reject(gone());
      else resolve();
    });
  });
}

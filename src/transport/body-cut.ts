/**
 * How much of a file body had gone out when its sender failed (the file
 * truncated under it, the client gone): the bytes the access log and the
 * traffic counters give for a response cut short, as nginx's
 * $body_bytes_sent counts the bytes sent however the response ended. A
 * sender notes them on the error it throws (the innermost note wins); kept
 * beside the error, not on it, so no error object is changed.
 */
import type { BodyPath } from './copy-file.js';

export interface BodyCut {
  /** Body bytes handed to the connection (sendfile, SSL_write, the HTTP/2 stream) before the failure. */
  bytes: number;
  path: BodyPath;
}

const NOTHING_SENT: BodyCut = { bytes: 0, path: 'none' };

const cuts = new WeakMap<object, BodyCut>();

/** Notes that `bytes` of the body went out by `path` before `err`; returns err, to be thrown. */
export function cutAfter(err: unknown, bytes: number, path: BodyPath): unknown {
  if (typeof err === 'object' && err !== null && !cuts.has(err)) cuts.set(err, { bytes, path });
  return err;
}

/** What went out before `err` (nothing, when no sender noted it). */
export function cutOf(err: unknown): BodyCut {
  return (typeof err === 'object' && err !== null ? cuts.get(err) : undefined) ?? NOTHING_SENT;
}

/**
 * A small file body without kTLS TX goes out with its response head in one
 * write. Otherwise the head is one SSL_write and the body another: two TLS
 * records and two send(2) calls where one of each will do (a response head
 * and up to 12 KiB of body fit one 16 KiB record, RFC 8446 §5.1), and the two
 * SSL_write calls were the top of a profile of 4 KiB cache hits
 * (docs/benchmarks.md). node writes the head and the first body chunk of
 * res.end() in one writev, which the connection gathers into one record.
 *
 * With kTLS TX the body still goes by sendfile: no copy through user space.
 */
import { FileTruncatedError } from '../errors.js';
import { whenAttached } from './front.js';
import { LaneResponse, type H1Response } from './h1-lane.js';
import type { ResponseHead } from './static-handler.js';
import type { SecureConnection } from '../tls/types.js';
import { ChunkPool, readAt, readNow } from '../transport/copy-file.js';

/** The largest body sent with its head: 12 KiB, leaving 4 KiB of a 16 KiB record for the head. */
export const SMALL_BODY_MAX = 12 * 1024;

const buffers = new ChunkPool(SMALL_BODY_MAX, 64);

/** Whether sendSmallBody() applies: a body this long on this connection. */
export function sendsWithHead(conn: SecureConnection, length: number): boolean {
  return !conn.tls.ktlsTx && length > 0 && length <= SMALL_BODY_MAX;
}

/**
 * Reads `length` bytes of fd from `offset` and ends res with them, head
 * included (res's head must not have been flushed). Resolves once the file
 * is no longer read; the buffer goes back to the pool when res is done with
 * it (finished or closed).
 */
export async function sendSmallBody(res: H1Response, fd: number, offset: number, length: number): Promise<void> {
  const buf = buffers.take();
  let got = 0;
  try {
    // A read may return less than asked (RWF_NOWAIT: only the cached part); 0 is the end of the file.
    while (got < length) {
      const n = await readAt(fd, buf.subarray(got), length - got, offset + got);
      if (n === 0) throw new FileTruncatedError(length, got);
      got += n;
    }
  } catch (err) {
    buffers.give(buf);
    throw err;
  }
  // 'close' comes once, after 'finish' or when the connection dies first; either way node holds no more reference.
  res.once('close', () => buffers.give(buf));
  res.end(buf.subarray(0, length));
}

/**
 * sendSmallBody() when nothing has to be waited for: res is its connection's
 * current response (not queued behind a pipelined one), the body goes with
 * its head (sendsWithHead), and the bytes are in the page cache. true once
 * res is ended with them, its head written from `head` if given (res.writeHead,
 * after the read: a file found short still gets its 500; else the head res
 * already holds); false having done nothing to res (then sentWithHead()).
 * Throws FileTruncatedError as sendSmallBody rejects.
 */
export function sentWithHeadNow(res: H1Response, fd: number, offset: number, length: number, head?: ResponseHead): boolean {
  const conn = res.socket as unknown as SecureConnection | null;
  if (conn === null || !sendsWithHead(conn, length)) return false;
  const buf = buffers.take();
  let got = 0;
  try {
    while (got < length) {
      // The whole buffer for the first read (its start is where the bytes go): a subarray is a new
      // Buffer object per request (this one and bodyView's: about 1.7k instructions per 1 KiB
      // keep-alive GET, bench/request-cost.ts).
      const n = readNow(fd, got === 0 ? buf : buf.subarray(got), length - got, offset + got);
      if (n < 0) {
        buffers.give(buf);
        return false;
      }
      if (n === 0) throw new FileTruncatedError(length, got);
      got += n;
    }
  } catch (err) {
    buffers.give(buf);
    throw err;
  }
  if (head !== undefined) res.writeHead(head.status, head.fields);
  res.end(bodyView(buf, length));
  // The connection usually takes the whole response within end() (SSL_write copies it into
  // OpenSSL's record buffer: sendsWithHead excludes kTLS TX, which would send from ours); node
  // then holds no reference and the buffer goes back at once, without a listener per request; the
  // lane's response says so at once when its connection copied the body out (bodyCopied), where
  // node's says it at 'finish', after end() returned.
  if (res.writableFinished || (res instanceof LaneResponse && res.bodyCopied)) buffers.give(buf);
  else res.once('close', () => buffers.give(buf));
  return true;
}

/** The last view bodyView made: of `viewed`'s first `view.length` bytes. */
let viewed: Buffer | null = null;
let view: Buffer | null = null;

/**
 * buf's first `length` bytes as a Buffer: the view made last time when it is
 * of the same pooled buffer and length (the same file asked for again, its
 * buffer back in the pool at once: bodyCopied), else a new one. Sharing it is
 * sharing buf: whoever holds the view holds the buffer out of the pool too.
 */
function bodyView(buf: Buffer, length: number): Buffer {
  if (viewed === buf && view!.length === length) return view!;
  viewed = buf;
  view = buf.subarray(0, length);
  return view;
}

/**
 * For HTTP/1.1 file senders: once res is its connection's current response,
 * sends the body with its head when sendsWithHead() says so; true if it did.
 */
export async function sentWithHead(res: H1Response, fd: number, offset: number, length: number): Promise<boolean> {
  const conn = await whenAttached(res);
  if (!sendsWithHead(conn, length)) return false;
  await sendSmallBody(res, fd, offset, length);
  return true;
}

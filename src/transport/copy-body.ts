/**
 * The copy path: upstream socket -> user space -> SSL_write, for plain
 * upstreams when the kernel does not encrypt the client side (no kTLS TX,
 * so splice cannot be used). Per pass:
 *
 *   1. peek up to 256 KiB of the upstream socket into one process-wide
 *      buffer (MSG_PEEK: the bytes stay in the socket);
 *   2. SSL_write the span as whole 16 KiB records in one native call;
 *   3. drop from the upstream socket exactly the bytes OpenSSL took
 *      (recv MSG_TRUNC: no second copy).
 *
 * So no buffer is allocated per read, a 256 KiB read is three crossings
 * into the addon instead of a Buffer, a promise and sixteen SSL_write calls
 * through node's streams, and a client that stops reading holds nothing in
 * user space: what it has not taken waits in the upstream socket (and in
 * OpenSSL's one encrypted record), as on the splice path. A promise is made
 * only when a socket is not ready, and once per MiB moved without a wait, to
 * let other connections run.
 *
 * Sources whose bytes are already in user space (a TLS upstream decrypted
 * by OpenSSL or node:tls: stream-source.ts) offer an unframed body's bytes
 * in place, and step 1 copies nothing: SSL_write encrypts from the buffer
 * SSL_read decrypted into.
 *
 * Framing: with `framing` (the HTTP/1.1 chunk's, h1-wire.ts CHUNK_WIRE), each
 * pass is one piece, its line and tail written in the same span as its data,
 * so they share its records. What the bytes are is the caller's; this file
 * only lays them out and counts them.
 */
import { AGAIN, WANT_WRITE } from '../native/binding.js';
import { UpstreamTruncatedError } from '../errors.js';

export interface CopySource {
  /** Up to `length` waiting bytes into buf at `offset`, left in the socket: how many, 0 at FIN, or AGAIN. */
  peekNow(buf: Buffer, offset: number, length: number): number;
  /** Removes `n` bytes that peekNow() showed, without copying them. */
  discard(n: number): void;
  /** Resolves when bytes (or the FIN) are waiting. */
  readable(): Promise<void>;
  /**
   * Sources whose bytes are already in user space (StreamSource): up to
   * `length` of them where they lie, to be written from there at once when
   * the body is not framed (instead of peekNow); AGAIN or 0 as peekNow.
   */
  inPlace?(length: number): Buffer | number;
}

/** The bytes around each piece of a framed body: a line before its data, a tail after (an HTTP/1.1 chunk's size line and CRLF). */
export interface PieceWire {
  /** The line before a piece of `size` data bytes; at most HEAD_ROOM (16) bytes for a piece of COPY_MAX. */
  line(size: number): string;
  tail: string;
}

export interface CopyTarget {
  /** SSL_write of buf[offset, offset + length) as whole records: bytes taken (> 0), or a WANT state. Throws once closed. */
  writeRecords(buf: Buffer, offset: number, length: number): number;
  /** Resolves when a write that returned `state`, or took only part of its span, may be tried again. */
  writeReady(state: number): Promise<void>;
}

/** Bytes per pass: 16 records, few passes per MB, and at most this much copied again after the client's socket fills. */
export const COPY_MAX = 256 * 1024;
/** Room before the data for a piece's line (a chunk-size line for COPY_MAX: 5 hex digits and CRLF). */
const HEAD_ROOM = 16;
/** Room after the data for a piece's tail (a chunk's CRLF). */
const TAIL_ROOM = 16;
const scratch = Buffer.allocUnsafe(HEAD_ROOM + COPY_MAX + TAIL_ROOM);

/** One pass's bytes until they are all taken: its line and tail (framed), and the data still in the socket. */
interface Piece {
  line: string;
  lineSent: number;
  /** Data bytes of this piece still in the upstream socket (peeked, not yet taken by SSL_write). */
  dataLeft: number;
  /** The tail after the data ('' when not framed), and how much of it was taken. */
  tail: string;
  tailSent: number;
}

/** The least a pass asks for: one whole record, at least the one OpenSSL may hold from the pass before. */
const COPY_MIN = 16 * 1024;
/**
 * Bytes moved without waiting after which the copy lets the event loop run
 * (setImmediate): with both sockets ready a body would otherwise go start to
 * end in one turn, holding off every other connection's reads, writes and
 * handshakes for as long (a 64 MiB body at 500 MB/s: 130 ms). nginx returns
 * to its event loop once its proxy buffers are written. Measured with wrk at
 * 8 connections on a busy 2-CPU host: the fronts then keep more clients fed.
 */
const YIELD_AFTER = 1024 * 1024;

/**
 * Moves `length` bytes (null: until the upstream's FIN) from `src` to `dst`;
 * resolves with the data bytes moved. A FIN before `length` rejects with
 * UpstreamTruncatedError: the caller must abort the client's response.
 *
 * What the client's socket did not take is peeked again on the next pass,
 * so a pass asks for about what the socket took last time it filled (and
 * twice as much after each pass it took whole): a slow reader costs few
 * copies of bytes that then wait, a fast one gets 256 KiB passes.
 */
export async function copyBody(src: CopySource, dst: CopyTarget, length: number | null, framing: PieceWire | null, onBytes?: (n: number) => void): Promise<number> {
  let moved = 0;
  let want = COPY_MAX;
  let piece: Piece | null = null;
  let sinceWait = 0;
  for (;;) {
    let buf: Buffer = scratch;
    let start: number;
    let end: number;
    if (piece === null) {
      if (length !== null && moved >= length) return moved;
      const max = length === null ? want : Math.min(want, length - moved);
      const held = framing !== null || src.inPlace === undefined ? null : src.inPlace(max);
      const r = held === null ? src.peekNow(scratch, HEAD_ROOM, max) : typeof held === 'number' ? held : held.length;
      if (r === AGAIN) {
        sinceWait = 0;
        await src.readable();
        continue;
      }
      if (r === 0) {
        if (length !== null) throw new UpstreamTruncatedError(`closed after ${moved} of ${length} body bytes`);
        return moved;
      }
      piece = framing === null ? { line: '', lineSent: 0, dataLeft: r, tail: '', tailSent: 0 } : { line: framing.line(r), lineSent: 0, dataLeft: r, tail: framing.tail, tailSent: 0 };
      if (held instanceof Buffer) {
        // Written where the source holds it; a part not taken is offered again next pass, from
        // the same byte on and at least as long (the rest of the same span, or more).
        buf = held;
        start = 0;
        end = r;
      } else {
        ({ start, end } = spanOf(piece, r));
      }
    } else {
      // The rest of a piece the client's socket did not take: still in the source, only peeked.
      const peeked = Math.min(piece.dataLeft, want);
      if (peeked > 0 && src.peekNow(scratch, HEAD_ROOM, peeked) !== peeked) throw new UpstreamTruncatedError(`peeked body bytes gone after ${moved}`);
      ({ start, end } = spanOf(piece, peeked));
    }
    const taken = dst.writeRecords(buf, start, end - start);
    // What was written in place and not taken is offered afresh next pass, in place again.
    const inPlace = buf !== scratch;
    if (taken < 0) {
      if (inPlace) piece = null;
      sinceWait = 0;
      await dst.writeReady(taken);
      continue;
    }
    const data = account(piece, taken);
    if (data > 0) {
      src.discard(data);
      moved += data;
      onBytes?.(data);
    }
    const done = piece.lineSent === piece.line.length && piece.dataLeft === 0 && piece.tailSent === piece.tail.length;
    if (done || inPlace) piece = null;
    if (taken < end - start) {
      want = Math.min(COPY_MAX, Math.max(COPY_MIN, Math.ceil(taken / COPY_MIN) * COPY_MIN));
      sinceWait = 0;
      await dst.writeReady(WANT_WRITE);
    } else {
      want = Math.min(COPY_MAX, want * 2);
      sinceWait += taken;
      if (sinceWait >= YIELD_AFTER) {
        sinceWait = 0;
        await new Promise((resolve) => setImmediate(resolve));
      }
    }
  }
}

/**
 * Lays the piece's unsent bytes out contiguously in the scratch buffer: the
 * rest of its line before the `peeked` data bytes, and the rest of its tail
 * after them once they are the piece's last. A retry after a partial
 * write starts at the first byte not taken and is at least a record long
 * (or the rest of the body), so OpenSSL sees at least the length of the
 * record it holds (ssl3_write_pending).
 */
function spanOf(p: Piece, peeked: number): { start: number; end: number } {
  const lineRest = p.line.length - p.lineSent;
  const start = HEAD_ROOM - lineRest;
  if (lineRest > 0) scratch.write(p.lineSent === 0 ? p.line : p.line.slice(p.lineSent), start, 'latin1');
  let end = HEAD_ROOM + peeked;
  if (peeked === p.dataLeft && p.tailSent < p.tail.length) end += scratch.write(p.tailSent === 0 ? p.tail : p.tail.slice(p.tailSent), end, 'latin1');
  return { start, end };
}

/** Counts `taken` bytes against the line, then the data, then the tail; returns the data bytes among them. */
function account(p: Piece, taken: number): number {
  let t = taken;
  const fromLine = Math.min(t, p.line.length - p.lineSent);
  p.lineSent += fromLine;
  t -= fromLine;
  const fromData = Math.min(t, p.dataLeft);
  p.dataLeft -= fromData;
  t -= fromData;
  p.tailSent += t;
  return fromData;
}

/**
 * The copy path's source (copy-body.ts CopySource, and moveChunked's peek and
 * skip) over a stream that hands its bytes over whole: a TLS upstream on
 * node:tls (kTLS cannot be had for it, or this kernel has none), whose records
 * node's OpenSSL has already decrypted into the socket's readable buffer.
 *
 * A plain socket's bytes stay in the kernel until the client's socket takes
 * them (peek, then discard). Here they are taken out of node's buffer when
 * looked at and held until taken: at most what one pass of the copy asks for
 * (copy-body.ts COPY_MAX) beyond what node itself buffers (its highWaterMark).
 * Bytes still held when the body ends were sent past its framing: `leftover`
 * then says the connection must not carry another exchange.
 */
import { AGAIN } from '../native/binding.js';

/** TLS's largest record plaintext (RFC 8446 §5.1). */
const RECORD = 16 * 1024;
/** inPlace()'s record joined from the tail of one chunk and the start of the next. */
const joint = Buffer.allocUnsafe(RECORD);

/** A node stream read in paused mode, as the copy path pulls from it. */
export interface PulledStream {
  /** The bytes node holds, taken from it (socket.read()), or null when none; throws once the stream failed. */
  pull(): Buffer | null;
  /** No byte will come any more (end or close). */
  readonly ended: boolean;
  /** Resolves when bytes, the end or a failure may be there. */
  readable(): Promise<void>;
  /**
   * A chunk pull() returned has been taken whole and copied out: its buffer
   * may be used again. Called in the order pull() returned them.
   */
  release?(chunk: Buffer): void;
}

export class StreamSource {
  private readonly chunks: Buffer[] = [];
  /** Bytes of chunks[0] already taken. */
  private offset = 0;
  private held = 0;
  /** chunks[0] is `first`, which was not pulled (and is not released). */
  private firstHeld = false;

  /** `first`: body bytes that came along with the response head. */
  constructor(private readonly s: PulledStream, first: Buffer) {
    if (first.length > 0) {
      this.chunks.push(first);
      this.held = first.length;
      this.firstHeld = true;
    }
  }

  /** Bytes pulled from the stream and not taken. */
  get leftover(): number {
    return this.held;
  }

  /**
   * Pulls until `length` bytes are held or the stream has none now. A
   * failure (a TLS upstream's FIN without close_notify, a reset) while bytes
   * are held waits until they are taken: they arrived before it, and the
   * stream keeps its failure for the pull after them.
   */
  private fill(length: number): void {
    while (this.held < length) {
      let c: Buffer | null;
      try {
        c = this.s.pull();
      } catch (err) {
        if (this.held > 0) return;
        throw err;
      }
      if (c === null) return;
      if (c.length === 0) continue;
      this.chunks.push(c);
      this.held += c.length;
    }
  }

  /** Up to `length` bytes into buf at `offset`, still held: how many, 0 at the end, or AGAIN. */
  peekNow(buf: Buffer, offset: number, length: number): number {
    this.fill(length);
    if (this.held === 0) return this.s.ended ? 0 : AGAIN;
    let n = 0;
    let from = this.offset;
    for (let i = 0; n < length && i < this.chunks.length; i++, from = 0) {
      const c = this.chunks[i]!;
      n += c.copy(buf, offset + n, from, Math.min(c.length, from + (length - n)));
    }
    return n;
  }

  /**
   * For a body sent as it is (no chunk framing): up to `length` held bytes
   * where they lie, a span of one pulled buffer, so that SSL_write encrypts
   * them from the buffer SSL_read decrypted them into, with no copy between
   * (peekNow's copy was about 4 % of the proxy's samples). While more bytes
   * are held behind the span, it is cut to whole 16 KiB records, and a
   * shorter tail is joined to the next chunk's bytes in one record's copy,
   * so the client still gets whole records (but for the head's bytes). AGAIN or 0 (the end) when
   * nothing is held. The span is written before anything else runs (the
   * joined record is one process-wide buffer) and taken with discard(), as
   * peekNow's bytes are.
   */
  inPlace(length: number): Buffer | number {
    // Pulled only when there is not a record's worth held: a span is one chunk at most, and
    // pulling ahead of it to `length` would cost a failing SSL_read (a read(2) finding
    // nothing) per span.
    this.fill(Math.min(length, RECORD));
    if (this.held === 0) return this.s.ended ? 0 : AGAIN;
    const c = this.chunks[0]!;
    const n = Math.min(length, c.length - this.offset);
    // The head's bytes go as they are, short last record and all: they end where an upstream
    // record ended (the head was read in whole records), so the chunks pulled after them start
    // on the upstream's record edges, and with an upstream that writes 16 KiB records (nginx's
    // ssl_buffer_size) every later span is whole records, with no joining.
    if (n === length || this.firstHeld || n % RECORD === 0) return c.subarray(this.offset, this.offset + n);
    // A short last record only when no more bytes can be had now.
    if (n === this.held) this.fill(Math.min(length, n + RECORD));
    if (n === this.held) return c.subarray(this.offset, this.offset + n);
    const whole = n - (n % RECORD);
    if (whole > 0) return c.subarray(this.offset, this.offset + whole);
    return joint.subarray(0, this.peekNow(joint, 0, Math.min(length, RECORD)));
  }

  /** Takes `n` bytes that peekNow() showed. */
  discard(n: number): void {
    if (n > this.held) throw new Error(`stream source: ${n} bytes taken, ${this.held} held`);
    this.held -= n;
    let left = n;
    while (left > 0) {
      const rest = this.chunks[0]!.length - this.offset;
      if (left < rest) {
        this.offset += left;
        return;
      }
      left -= rest;
      const done = this.chunks.shift()!;
      this.offset = 0;
      if (this.firstHeld) this.firstHeld = false;
      else this.s.release?.(done);
    }
  }

  readable(): Promise<void> {
    return this.s.readable();
  }

  /** As PlainSocket.peek (moveChunked reads chunk framing so): waits for at least one byte, or the end (0). */
  async peek(buf: Buffer, length: number): Promise<number> {
    for (;;) {
      const n = this.peekNow(buf, 0, length);
      if (n !== AGAIN) return n;
      await this.s.readable();
    }
  }

  skip(n: number): void {
    this.discard(n);
  }
}

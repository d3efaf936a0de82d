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

  /** Up to `length` bytes into buf at `offset`, still held: how many, 0 at the end, or AGAIN. */
  peekNow(buf: Buffer, offset: number, length: number): number {
    while (this.held < length) {
      const c = this.s.pull();
      if (c === null) break;
      if (c.length === 0) continue;
      this.chunks.push(c);
      this.held += c.length;
    }
    if (this.held === 0) return this.s.ended ? 0 : AGAIN;
    let n = 0;
    let from = this.offset;
    for (let i = 0; n < length && i < this.chunks.length; i++, from = 0) {
      const c = this.chunks[i]!;
      n += c.copy(buf, offset + n, from, Math.min(c.length, from + (length - n)));
    }
    return n;
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

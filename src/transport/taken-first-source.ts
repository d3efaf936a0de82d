/**
 * The copy path's source (copy-body.ts CopySource, and moveChunked's peek and
 * skip) over a plain socket whose answer was taken with one recv
 * (takeWholeAnswer, src/proxy/upstream-exchange.ts) rather than peeked: the
 * body bytes that recv brought along with the head are offered first, as if
 * they were still in the socket, and the socket's own bytes after them. So a
 * large body still goes by the copy path (peek, SSL_write, drop as taken)
 * without a MSG_PEEK look at every answer to keep its first bytes in the
 * kernel: for the small answers most requests get, that peek and the recv
 * of the same bytes were two system calls for one.
 *
 * The bytes taken are at most the socket's answerRoom (16 KiB), held here
 * until the client's connection takes them. Those still held when the body
 * ends were sent past its framing: `leftover` then says the connection must
 * not carry another exchange (as StreamSource's).
 */
import type { PlainSocket } from './plain-socket.js';

type SocketSide = Pick<PlainSocket, 'peekNow' | 'discard' | 'readable' | 'peek' | 'skip'>;

export class TakenFirstSource {
  /** Bytes of `taken` given out (discarded or skipped) so far. */
  private used = 0;

  /** `taken`: the answer's body bytes the recv took with the head, this source's own (not a view of a buffer lent to it). */
  constructor(private readonly sock: SocketSide, private readonly taken: Buffer) {}

  /** Taken bytes not given out. */
  get leftover(): number {
    return this.taken.length - this.used;
  }

  /**
   * Up to `length` bytes into buf at `offset`: the taken ones first, then
   * what the socket holds behind them (left there); how many, 0 at the FIN,
   * or AGAIN. Only when no taken byte is left does the socket's answer stand
   * alone: taken bytes are there now, so a socket with none yet (AGAIN) or
   * at its FIN (0) does not hide them; the FIN is seen once they are taken.
   */
  peekNow(buf: Buffer, offset: number, length: number): number {
    const held = this.leftover;
    if (held === 0) return this.sock.peekNow(buf, offset, length);
    const n = this.taken.copy(buf, offset, this.used, this.used + Math.min(held, length));
    if (n === length) return n;
    const more = this.sock.peekNow(buf, offset + n, length - n);
    return more > 0 ? n + more : n;
  }

  /** Removes `n` bytes peekNow() showed: taken ones first, the rest from the socket (recv MSG_TRUNC). */
  discard(n: number): void {
    const fromSocket = this.use(n);
    if (fromSocket > 0) this.sock.discard(fromSocket);
  }

  /** Resolves when the socket has bytes or its FIN; copyBody asks only after peekNow() said AGAIN, so with no taken byte left. */
  readable(): Promise<void> {
    return this.sock.readable();
  }

  /** As PlainSocket.peek (moveChunked reads chunk framing so): at least one byte, or 0 at the FIN. */
  peek(buf: Buffer, length: number): Promise<number> {
    if (this.leftover === 0) return this.sock.peek(buf, length);
    return Promise.resolve(this.peekNow(buf, 0, length));
  }

  /** Takes `n` bytes peek() showed. */
  skip(n: number): void {
    const fromSocket = this.use(n);
    if (fromSocket > 0) this.sock.skip(fromSocket);
  }

  /** Counts up to `n` taken bytes as given out; returns how many of the `n` are the socket's. */
  private use(n: number): number {
    const mine = Math.min(n, this.leftover);
    this.used += mine;
    return n - mine;
  }
}

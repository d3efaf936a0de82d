/**
 * A TLS upstream on the system OpenSSL in user space: where the kernel has no
 * TLS (or --offload userspace), the connection the addon made and shook hands
 * on (src/tls/upstream-client.ts) stays with OpenSSL instead of going to
 * node:tls. Its records are decrypted by SSL_read straight into buffers of
 * the copy path (pull(), src/transport/stream-source.ts), as nginx's
 * upstream SSL reads into its proxy buffers, with none of node:tls's stream
 * machinery around each record.
 *
 * OpenSSL's states are states here (WANT_READ / WANT_WRITE wait on the
 * socket); its errors end the connection. A close_notify ends the stream
 * (RFC 8446 §6.1: a close-delimited body may end there); a FIN without one is
 * a truncation and fails like a reset, as on the kTLS path.
 */
import { AGAIN, EOF_NO_NOTIFY, WANT_READ, WANT_WRITE, type Native, type SslHandle } from '../native/binding.js';
import type { PlainSocket } from '../transport/plain-socket.js';
import { ChunkPool } from '../transport/copy-file.js';
import { StreamSource, type PulledStream } from '../transport/stream-source.js';
import type { UpstreamStream } from './upstream-stream.js';

/** TLS's largest record plaintext (RFC 8446 §5.1): SSL_read returns at most one record. */
const RECORD = 16 * 1024;
/** Bytes per pull(): four records, decrypted in one turn. */
const PULL = 4 * RECORD;
/** read()'s record, copied out at its exact size (one process-wide buffer). */
const scratch = Buffer.allocUnsafe(RECORD);
/**
 * pull()'s buffers, back once the copy has taken them whole (release): a
 * fresh 64 KiB Buffer per pull is external memory V8 counts, and at a few
 * hundred MB/s it kept the major GC running (ConcurrentMarking and the
 * sweeper, some 15 % of the proxy's samples under wrk at 8 connections).
 */
const pulls = new ChunkPool(PULL, 64);

function truncated(): Error {
  return Object.assign(new Error('upstream closed the TLS connection without close_notify'), { code: 'ECONNRESET' });
}

export class SslUpstream implements UpstreamStream, PulledStream {
  readonly plain = null;
  private finished = false;
  private failed: Error | null = null;
  private freed = false;
  /** Pooled buffers pull() handed out and the copy has not released, oldest first. */
  private readonly lent: Buffer[] = [];
  /** What the last SSL call that could not go on waits for. */
  private want = WANT_READ;

  constructor(
    private readonly native: Native,
    private readonly sock: PlainSocket,
    private readonly ssl: SslHandle,
  ) {
    // OpenSSL alone decrypts this connection from now on (no kTLS RX, and it never moves to the
    // kernel): each read(2) may take what the socket holds, about one per record instead of a
    // 5-byte header and then the record's body (SSL_set_read_ahead). What it reads ahead is
    // asked for by isIdleAlive (SSL_has_pending) before a pooled connection is used again.
    native.readAhead?.(ssl);
  }

  /**
   * One SSL_read into buf[offset, offset + length): bytes, 0 at close_notify,
   * or AGAIN (the state kept in `want`). Throws on a TLS error or a FIN
   * without close_notify; the failure stays.
   */
  private readStep(buf: Buffer, offset: number, length: number): number {
    if (this.failed) throw this.failed;
    if (this.finished) return 0;
    let r: number;
    try {
      r = this.native.read(this.ssl, buf, offset, length);
    } catch (err) {
      this.failed = err as Error;
      throw err;
    }
    if (r > 0) {
      this.sock.progressed();
      return r;
    }
    if (r === WANT_READ || r === WANT_WRITE) {
      this.want = r;
      return AGAIN;
    }
    if (r === EOF_NO_NOTIFY) {
      this.failed = truncated();
      throw this.failed;
    }
    this.finished = true;
    return 0;
  }

  async read(): Promise<Buffer | null> {
    for (;;) {
      const n = this.readStep(scratch, 0, RECORD);
      if (n > 0) return Buffer.from(scratch.subarray(0, n));
      if (n === 0) return null;
      await this.readable();
    }
  }

  /**
   * The copy path's pull: records decrypted into one buffer while a whole
   * record still fits (so OpenSSL never holds part of one back), until the
   * socket has no more. null when nothing could be read now.
   *
   * A failure after some records (a FIN without close_notify right behind
   * the last body record, as IIS and Apache's ssl-unclean-shutdown close)
   * returns those records first: they were authenticated, and a Content-Length
   * or chunked body they complete is whole (RFC 9112 §9.8). readStep keeps the
   * failure, so the next pull throws it.
   */
  pull(): Buffer | null {
    const buf = pulls.take();
    let n = 0;
    try {
      while (PULL - n >= RECORD) {
        const r = this.readStep(buf, n, PULL - n);
        if (r === AGAIN || r === 0) break;
        n += r;
      }
    } catch (err) {
      if (n === 0) {
        pulls.give(buf);
        throw err;
      }
    }
    if (n === 0) {
      pulls.give(buf);
      return null;
    }
    this.lent.push(buf);
    return buf.subarray(0, n);
  }

  /** The copy has taken a pulled chunk whole (StreamSource, in pull order): its buffer goes back. */
  release(): void {
    const buf = this.lent.shift();
    if (buf !== undefined) pulls.give(buf);
  }

  get ended(): boolean {
    return this.finished || this.sock.destroyed;
  }

  /**
   * What the last SSL call asked for: it is only called after one said
   * WANT_READ or WANT_WRITE. Not SSL_has_pending: that is also true for part
   * of a record read from the socket, which OpenSSL cannot return until the
   * rest arrives (ssl3_read_n), so resolving on it spun on SSL_read and
   * EAGAIN while a record came in pieces.
   */
  readable(): Promise<void> {
    if (this.failed || this.finished) return Promise.resolve();
    return this.sock.waitFor(this.want);
  }

  streamSource(first: Buffer): StreamSource {
    return new StreamSource(this, first);
  }

  async write(buf: Buffer): Promise<void> {
    for (let off = 0; off < buf.length; ) {
      if (this.failed) throw this.failed;
      off += await this.sock.drive(() => {
        const len = buf.length - off;
        return len > RECORD ? this.native.writeRecords(this.ssl, buf, off, len) : this.native.write(this.ssl, buf, off, len);
      });
    }
  }

  /** close_notify: our side is done sending (RFC 8446 §6.1); best effort, the read side stays open. */
  endWrite(): void {
    if (this.freed || this.sock.destroyed) return;
    try {
      this.native.shutdown(this.ssl);
    } catch {
      // A connection already failing: its reads will say so.
    }
  }

  destroy(err?: Error): void {
    if (err) this.failed ??= err;
    if (!this.freed) {
      this.freed = true;
      this.native.sslFree(this.ssl);
    }
    this.sock.destroy(err);
  }

  get destroyed(): boolean {
    return this.sock.destroyed;
  }

  setIdleTimeout(ms: number, error: () => Error): void {
    this.sock.setIdleTimeout(ms, error);
  }

  /**
   * As a plain upstream's (PlainSocket.idleAlive): nothing may wait on an
   * idle connection, in OpenSSL or in the socket. A record there (a late
   * session ticket, an alert, a close_notify) makes it unusable: the probe
   * takes a byte of it.
   */
  isIdleAlive(quietEnough = false): boolean {
    return this.heldHere() === null && this.sock.idleAlive(quietEnough);
  }

  /** As isIdleAlive, said as what waits: a record OpenSSL holds (decrypted, or a ticket, an alert) counts as bytes past the answer. */
  afterAnswer(): 'quiet' | 'bytes' | 'closed' {
    return this.heldHere() ?? this.sock.afterAnswer();
  }

  /** What this side knows without the socket: the connection is done with, or OpenSSL holds a record; null: ask the socket. */
  private heldHere(): 'bytes' | 'closed' | null {
    if (this.freed || this.finished || this.failed) return 'closed';
    return this.native.hasPending?.(this.ssl) === true ? 'bytes' : null;
  }

  watchIdle(onStir: (stream: UpstreamStream) => void): void {
    this.sock.watchIdle(onStir as (arg: unknown) => void, this);
  }
}

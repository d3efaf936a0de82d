/**
 * One server-side TLS connection on the system OpenSSL, as a Node Duplex, so
 * http.Server can run on it (server.emit('connection', conn)).
 *
 * State machine: handshake -> open (kTLS engaged or not, as the kernel says)
 * -> shutdown (close_notify) -> destroyed. The addon only performs single
 * OpenSSL calls; the waiting (uv_poll), timeouts and policy live here.
 * WANT_READ / WANT_WRITE are states: the operation is parked in its slot until
 * the socket is ready, then called again.
 */
import os from 'node:os';
import { performance } from 'node:perf_hooks';
// node's globals `process` and `performance` are accessors on globalThis (a getter call per read,
// about 0.15k instructions per process.nextTick of a response written whole): the modules' own.
import process from 'node:process';
import { Duplex } from 'node:stream';
import type { Logger } from '../log/logger.js';
import { AGAIN, EOF_NO_NOTIFY, READ_MORE, READABLE, WANT_READ, WANT_WRITE, WRITABLE, type Native, type SockAddr, type SslHandle } from '../native/binding.js';
import { FileTruncatedError, HandshakeTimeoutError, KeyUpdateUnsupportedError } from '../errors.js';
import { ChunkPool, readAt, type BodyPath } from '../transport/copy-file.js';
import { cutAfter } from '../transport/body-cut.js';
import { FdReadiness } from '../transport/fd-readiness.js';
import type { SecureConnection, TlsInfo } from './types.js';

/** SSL_read returns at most one record (16 KiB of plaintext, RFC 8446 §5.1). */
const RECORD_MAX = 16384;
/** One scratch buffer per process: reads are synchronous, results are copied out at their exact size. */
const scratch = Buffer.allocUnsafe(RECORD_MAX);
/** Where small writev() pieces are gathered into one record (see nextWrite). */
const gatherScratch = Buffer.allocUnsafe(RECORD_MAX);
/**
 * The response head whose latin1 bytes gatherScratch holds from its start
 * (writeWhole), or null once anything else was written there (writeGathered,
 * nextWrite). A head is the same string for every response of a file within
 * a second (h1-wire.ts framedResponseHead), and writing it again through
 * Buffer#write (node's latin1Write binding) was about 1k instructions per
 * 1 KiB keep-alive GET (bench/request-cost.ts). A body goes after the head,
 * so it leaves the head's bytes as they are.
 */
let headInScratch: string | null = null;
/** Whether each addon object (the addon, or a test's wrapper of it) took both scratches (scratchSet). */
const scratchGiven = new WeakMap<Native, boolean>();

/**
 * Gives `native` the two scratches once, so each read and gathered write
 * names only the connection and a length (readScratch, writeScratch): with
 * the Buffer, its offset and its length, every call made the addon find the
 * Buffer's bytes again (napi_get_buffer_info). false: an addon without these
 * calls, or one that holds other buffers (a second copy of this module in
 * the thread), which gets the buffers with each call as before.
 */
function giveScratch(native: Native): boolean {
  if (native.scratchSet === undefined || native.readScratch === undefined || native.writeScratch === undefined) return false;
  let given = scratchGiven.get(native);
  if (given === undefined) {
    try {
      native.scratchSet(scratch, gatherScratch);
      given = true;
    } catch {
      given = false;
    }
    scratchGiven.set(native, given);
  }
  return given;
}

/**
 * A direct reader (KtlsConnection.readInto): one read's plaintext,
 * buf[start, end), valid only during the call.
 */
export type DirectReader = (buf: Buffer, start: number, end: number) => void;

/** A write in progress: `pieces` from `index`/`off` on are still owed to the socket. */
interface PendingWrite {
  pieces: Buffer[];
  index: number;
  off: number;
  /** A gathered record that returned WANT_WRITE under kTLS TX, kept for the retry. */
  held: Buffer | null;
  cb: (err?: Error | null) => void;
}

/** A writev() piece: strings come as written (decodeStrings off), with their encoding. */
interface WriteChunk {
  chunk: Buffer | string;
  encoding: BufferEncoding;
}

function asBuffer(chunk: Buffer | string, encoding: BufferEncoding): Buffer {
  return typeof chunk === 'string' ? Buffer.from(chunk, encoding) : chunk;
}

/** Copies up to one record of the pieces from (index, off) into `into`; returns the bytes copied. */
function gatherRecord(pieces: readonly Buffer[], index: number, off: number, into: Buffer): number {
  let n = 0;
  for (let i = index; i < pieces.length && n < into.length; i++) {
    const p = pieces[i]!;
    const from = i === index ? off : 0;
    n += p.copy(into, n, from, Math.min(p.length, from + into.length - n));
  }
  return n;
}

/** Moves the write position `n` bytes on, across pieces. */
function advance(w: PendingWrite, n: number): void {
  let left = n;
  while (left > 0) {
    const rest = w.pieces[w.index]!.length - w.off;
    if (left < rest) {
      w.off += left;
      return;
    }
    left -= rest;
    w.index++;
    w.off = 0;
  }
}
/**
 * A send that took nothing and asks for no wait: the connection can no longer
 * send. OpenSSL 3 refuses every call after a fatal error with an empty error
 * queue, which the addon reports as SSL_ERROR_SYSCALL with errno 0
 * (EOF_NO_NOTIFY); a writer that parked for writability on it was woken at
 * once, every turn, forever (a busy loop holding the tunnel and both its
 * sockets).
 */
function cannotSend(r: number): boolean {
  return r <= 0 && r !== WANT_READ && r !== WANT_WRITE;
}

function sendRefused(r: number): Error {
  return Object.assign(new Error(`the TLS connection can no longer send (state ${r})`), { code: 'EPIPE' });
}

/**
 * Bodies up to this size go by SSL_sendfile on the event loop: if their pages
 * are cold the loop blocks for at most this much disk I/O, and hot small files
 * skip a thread-pool hop. Larger bodies go by sendfile(2) on the thread pool.
 */
const INLINE_SENDFILE_MAX = 128 * 1024;
/** Per thread-pool call: bounds how long one connection holds a worker. */
const POOL_SENDFILE_MAX = 2 * 1024 * 1024;
const { EAGAIN } = os.constants.errno;
/** Retries of a kTLS send that said AGAIN, when no POLLOUT came (see waitToSend): the first, and the cap. */
/** A connection's addresses as its listener learnt them; `local` null: ask the socket. */
export interface KnownAddresses {
  remote: SockAddr;
  local: SockAddr | null;
}

const AGAIN_RETRY_FIRST_MS = 100;
const AGAIN_RETRY_MAX_MS = 3200;
/**
 * File bodies without kTLS TX: read 256 KiB at a time on the thread pool (few
 * hops per MB), each buffer back in the pool as soon as the socket is full,
 * so a stalled client holds none (see writeFileUserspace).
 */
const fileChunks = new ChunkPool(256 * 1024, 16);

export class KtlsConnection extends Duplex implements SecureConnection {
  readonly id: number;
  tls: TlsInfo;
  remoteAddress?: string;
  remotePort?: number;
  remoteFamily?: string;
  localAddress?: string;
  localPort?: number;
  readonly encrypted = true;
  bytesRead = 0;
  bytesWritten = 0;

  private readonly native: Native;
  private readonly ssl: SslHandle;
  private readonly fd: number;
  private readonly ready: FdReadiness;
  /** The addon holds the scratches (giveScratch): reads and gathered writes go by readScratch / writeScratch. */
  private readonly scratchIo: boolean;
  private readonly log: Logger;
  /** Told once, as the connection is released (before its 'close'): the listener's count of live connections. */
  private readonly onReleased: ((conn: KtlsConnection) => void) | null;
  /** Reads are wanted (the stream's _read, or a direct reader not held): the read loop runs while set. */
  private reading = false;
  /** The read loop is on the stack (a direct reader's restart goes on in it, see holdReads). */
  private pumping = false;
  /** The direct reader (readInto), and whether it holds reads (holdReads). */
  private direct: DirectReader | null = null;
  private held = false;
  /** The end of input was read (and pushed): no read follows. */
  private atEnd = false;
  private pendingWrite: PendingWrite | null = null;
  private flushWaiters: Array<() => void> = [];
  /** After a fatal TLS error OpenSSL forbids SSL_shutdown; after a refused KeyUpdate we must not send. */
  private mustNotSend = false;
  private checkKeyUpdate = false;
  /** Read-ahead is on: after a read OpenSSL may hold more records (hasPending). */
  private readsAhead = false;
  private idleTimer: NodeJS.Timeout | null = null;
  /** The idle timeout set (0: none), the last activity and when the armed timer fires, on performance.now()'s clock. */
  private idleMs = 0;
  private lastActive = 0;
  private idleDue = 0;
  private released = false;
  private poolJobs = 0;
  /** The current retry delay of waitToSend(); 0 after progress. */
  private againMs = 0;

  /**
   * `addresses`: what the listener already knows (acceptPeer's peer, its own
   * address when it is bound to one), so neither getpeername nor getsockname
   * is asked again; without them, or with no local address (a wildcard
   * listener), the socket is asked.
   */
  constructor(native: Native, ssl: SslHandle, fd: number, id: number, log: Logger, onReleased: ((conn: KtlsConnection) => void) | null = null, addresses?: KnownAddresses) {
    // Strings stay strings (decodeStrings off): node's HTTP/1.1 head is a latin1 string, which a
    // gathered write copies straight into its record (writeGathered) instead of first into a
    // Buffer of its own; every other write makes the Buffer (asBuffer).
    super({ allowHalfOpen: false, decodeStrings: false });
    this.native = native;
    this.ssl = ssl;
    this.fd = fd;
    this.id = id;
    this.log = log;
    this.onReleased = onReleased;
    this.tls = { engine: 'system-openssl', version: null, cipher: null, alpn: null, servername: null, reused: false, ktlsTx: false, ktlsRx: false, kernel: null };
    this.ready = new FdReadiness(native, fd);
    this.scratchIo = giveScratch(native);
    try {
      const peer = addresses?.remote ?? native.getPeerName(fd);
      this.remoteAddress = intern(peer.address);
      this.remotePort = peer.port;
      this.remoteFamily = intern(peer.family);
      const local = addresses?.local ?? native.getSockName(fd);
      this.localAddress = intern(local.address);
      this.localPort = local.port;
    } catch {
      // The peer may already be gone (reset while queued); the handshake will report it.
    }
  }

  // ---- readiness -------------------------------------------------------------------------

  /** TLS states map to readiness: WANT_READ waits for readable, WANT_WRITE for writable. */
  private static events(state: number): number {
    return state === WANT_READ ? READABLE : WRITABLE;
  }

  // ---- handshake --------------------------------------------------------------------------

  /** Drives the server handshake; resolves once it is complete and kTLS state is known. */
  handshake(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => fail(new HandshakeTimeoutError(timeoutMs)), timeoutMs);
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.ready.clearWriter();
        this.mustNotSend = true;
        reject(err);
      };
      const step = (): void => {
        if (settled) return;
        if (this.released) {
          fail(Object.assign(new Error('connection closed during the TLS handshake'), { code: 'ECONNRESET' }));
          return;
        }
        let r: number;
        try {
          r = this.native.handshake(this.ssl);
        } catch (err) {
          fail(err as Error);
          return;
        }
        if (r === WANT_READ || r === WANT_WRITE) {
          this.ready.parkWriter(KtlsConnection.events(r), step);
          return;
        }
        if (r !== 1) {
          fail(Object.assign(new Error('peer closed the connection during the TLS handshake'), { code: 'ECONNRESET' }));
          return;
        }
        settled = true;
        clearTimeout(timer);
        this.onHandshakeDone();
        resolve();
      };
      step();
    });
  }

  private onHandshakeDone(): void {
    const p = this.native.info(this.ssl);
    // Ask, never assume: OpenSSL engages kTLS only for suites and versions the kernel takes.
    const k = this.native.ktlsState(this.ssl);
    this.tls = {
      engine: 'system-openssl', version: intern(p.version), cipher: intern(p.cipher), alpn: intern(p.alpn), servername: intern(p.servername), reused: p.reused,
      ktlsTx: (k & 1) !== 0, ktlsRx: (k & 2) !== 0, kernel: k !== 0 ? this.askKernel() : null,
    };
    this.checkKeyUpdate = this.tls.ktlsTx && p.version === 'TLSv1.3';
    // OpenSSL alone on the connection (no kTLS either way): let each read(2) take what the socket
    // holds, one syscall per request where a record's header and body took two. Left off with
    // kTLS, whose records the kernel frames (RX), and where OpenSSL must not hold bytes the
    // kernel is meant to see (an addon without these calls: as before).
    if (!this.tls.ktlsTx && !this.tls.ktlsRx && this.native.readAhead !== undefined && this.native.hasPending !== undefined) {
      this.native.readAhead(this.ssl);
      this.readsAhead = true;
    }
  }

  /** One sock_diag round trip per kTLS connection; a refusal only costs the detail. */
  private askKernel(): TlsInfo['kernel'] {
    try {
      return this.native.tlsUlpInfo(this.fd);
    } catch (err) {
      this.log.debug({ conn: this.id, err }, 'sock_diag ULP info unavailable');
      return null;
    }
  }

  // ---- reading ----------------------------------------------------------------------------

  override _read(): void {
    // With a direct reader, reads are its own and holdReads' (a 'data' listener added meanwhile
    // must not restart held reads); readInto(null) restarts them for the stream.
    if (this.reading || this.direct !== null) return;
    this.reading = true;
    this.pumpRead();
  }

  /**
   * Direct reads: `reader` gets each read's plaintext as scratch[start, end)
   * instead of a Buffer pushed into the stream and its 'data' event (a
   * Buffer, a copy and node's stream bookkeeping per read: 4.4k of floor-raw's
   * 32.5k instructions per request, docs/benchmarks.md). The bytes are the
   * process's shared read scratch, valid only during the call: the next read
   * overwrites them, so a reader copies what it keeps (a partial head, a
   * pipelined remainder). While a reader is installed the stream sees no
   * data; everything else stays the stream's and this class's as before: the
   * end of input (close_notify or a bare FIN) is the stream's end (push(null),
   * 'end', readableEnded), errors and destroy are the stream's, bytesRead and
   * the idle timeout count reads as ever. holdReads() stops and restarts
   * reads (the stream's pause() does not: it only holds pushed data back).
   * null removes the reader: reads go on into the stream (restarted on the
   * next tick if held; pushed ones stop at its high-water mark as ever), and
   * bytes the reader kept go to the stream's next consumer by unshift()
   * before any read after it is pushed: within the reader before it returns
   * (its loop then pushes the next read), or elsewhere in the same tick (no
   * read is pushed within the call that removes the reader). Installed only
   * before anything read the stream: false (nothing done) once the stream
   * was read, flows or has data, ended or was destroyed; the first read comes
   * on the next tick, never within this call.
   */
  readInto(reader: DirectReader | null): boolean {
    if (reader === null) {
      if (this.direct === null) return true;
      this.direct = null;
      this.held = false;
      // The stream may have asked for data meanwhile (_read, ignored above) and will not ask again
      // before a push: reads restart for it, unless they run or the input has ended.
      if (!this.reading && !this.atEnd && !this.released) {
        this.reading = true;
        if (!this.pumping) process.nextTick(this.pumpRead);
      }
      return true;
    }
    if (this.direct !== null || this.reading || this.released || this.destroyed || this.readableLength > 0 || this.readableEnded || this.readableFlowing !== null) return false;
    this.direct = reader;
    this.reading = true;
    process.nextTick(this.pumpRead);
    return true;
  }

  /**
   * With a reader installed (readInto): stops reads (`held` true) until
   * called with false; a read in progress delivers what it got first. Reads
   * restart on the next tick, never within this call; from within the
   * reader, in the loop that called it once the reader returns (the scratch
   * it is given is not overwritten under it).
   */
  holdReads(held: boolean): void {
    if (this.direct === null || held === this.held) return;
    this.held = held;
    if (held) {
      this.reading = false;
      return;
    }
    if (this.reading || this.released) return;
    this.reading = true;
    // On the next tick, as the stream's resume() reads: a read within this call would give the
    // reader bytes while its caller is still between two states (the lane, taking a head).
    if (!this.pumping) process.nextTick(this.pumpRead);
  }

  private readonly pumpRead = (): void => {
    if (this.pumping) return;
    this.pumping = true;
    try {
      this.readLoop();
    } finally {
      this.pumping = false;
    }
  };

  private readLoop(): void {
    while (this.reading && !this.released) {
      let r: number;
      // OpenSSL holds more bytes read from the socket after this read (readScratch says so with
      // the bytes; an older addon is asked by hasPending). Nothing below reads from the
      // connection before the answer is used: a direct reader may write (SSL_write leaves the
      // read side as it is), hold reads or destroy the connection, which the loop checks first.
      let more = false;
      try {
        if (this.scratchIo) {
          r = this.native.readScratch!(this.ssl, RECORD_MAX);
          if (r >= READ_MORE) {
            r -= READ_MORE;
            more = true;
          }
        } else r = this.native.read(this.ssl, scratch, 0, RECORD_MAX);
      } catch (err) {
        this.failHard(err as Error);
        return;
      }
      if (r > 0) {
        if (this.refuseKeyUpdate()) return;
        this.bytesRead += r;
        this.touch();
        const direct = this.direct;
        if (direct !== null) direct(scratch, 0, r);
        else {
          const chunk = Buffer.allocUnsafe(r);
          scratch.copy(chunk, 0, 0, r);
          if (!this.push(chunk)) this.reading = false;
        }
        if (r < RECORD_MAX && this.reading && !this.released && !this.tls.ktlsRx && !(this.readsAhead && (this.scratchIo ? more : this.native.hasPending!(this.ssl)))) {
          // Less than a full record, and OpenSSL holds no more bytes (without read-ahead it
          // reads one record at a time): the next SSL_read would only find the socket empty
          // (one EAGAIN read per keep-alive request). The poll is level-triggered: it wakes
          // this reader at once if more bytes are there. Returning also lets node run the ticks
          // queued meanwhile, among them the 'finish' that frees the connection for the next
          // response (http.Server queues a response while the one before is attached).
          this.ready.parkReader(READABLE, this.pumpRead);
          return;
        }
        continue;
      }
      if (r === WANT_READ || r === WANT_WRITE) {
        if (this.refuseKeyUpdate()) return;
        this.ready.parkReader(KtlsConnection.events(r), this.pumpRead);
        return;
      }
      // 0: close_notify; EOF_NO_NOTIFY: bare FIN. Both end the readable side (RFC 8446 §6.1).
      if (r === EOF_NO_NOTIFY) this.log.debug({ conn: this.id }, 'peer closed without close_notify');
      this.reading = false;
      this.atEnd = true;
      this.push(null);
      // A direct reader never read the stream: 'end' is emitted only once it flows (nothing is
      // in it to lose; _read is not called after the end).
      if (this.direct !== null) this.resume();
      return;
    }
  }

  /**
   * After each read on a TLS 1.3 kTLS-TX connection: did the peer request a KeyUpdate?
   * Then close at once, without close_notify (see KeyUpdateUnsupportedError).
   */
  private refuseKeyUpdate(): boolean {
    if (!this.checkKeyUpdate || !this.native.keyUpdateRequested(this.ssl)) return false;
    this.mustNotSend = true;
    this.destroy(new KeyUpdateUnsupportedError());
    return true;
  }

  // ---- writing ----------------------------------------------------------------------------

  override _write(chunk: Buffer | string, enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.startWrite([asBuffer(chunk, enc)], cb);
  }

  override _writev(chunks: WriteChunk[], cb: (err?: Error | null) => void): void {
    if (this.writeGathered(chunks, cb)) return;
    this.startWrite(chunks.map((c) => asBuffer(c.chunk, c.encoding)), cb);
  }

  /**
   * A writev whose bytes fit one record, without kTLS TX (OpenSSL encrypts
   * into its own buffer and never reads ours again, so the shared scratch
   * will do): gathered there and handed to one SSL_write at once. This is
   * node's whole HTTP/1.1 response to a small request, written corked by
   * res.end(): the head (a string), the body and an empty '' carrying the
   * finish callback (_http_outgoing.js end). What the socket did not take
   * goes on as any write, from a copy of its own (a WANT_WRITE retry passes
   * the same bytes again, as OpenSSL wants). false having done nothing.
   */
  private writeGathered(chunks: WriteChunk[], cb: (err?: Error | null) => void): boolean {
    if (this.tls.ktlsTx || this.mustNotSend || this.released || this.pendingWrite !== null) return false;
    let n = 0;
    for (const c of chunks) {
      n += typeof c.chunk === 'string' ? Buffer.byteLength(c.chunk, c.encoding) : c.chunk.length;
      if (n > RECORD_MAX) return false;
    }
    let at = 0;
    headInScratch = null;
    for (const c of chunks) at += typeof c.chunk === 'string' ? gatherScratch.write(c.chunk, at, c.encoding) : c.chunk.copy(gatherScratch, at);
    if (n === 0) {
      cb();
      return true;
    }
    let taken: number;
    try {
      taken = this.writeScratch(n);
    } catch (err) {
      this.mustNotSend = true;
      cb(err as Error);
      return true;
    }
    if (taken === n) {
      cb();
      this.notifyFlushed();
      return true;
    }
    this.startWrite([Buffer.from(gatherScratch.subarray(taken, n))], cb);
    return true;
  }

  /**
   * One SSL_write of the shared scratch's first `n` bytes: how many the
   * socket took (0 for WANT_WRITE, a state, not an error), counted and the
   * idle timer touched. Throws what native.write throws (a fatal error).
   */
  private writeScratch(n: number): number {
    const r = this.scratchIo ? this.native.writeScratch!(this.ssl, n) : this.native.write(this.ssl, gatherScratch, 0, n);
    const taken = r > 0 ? r : 0;
    if (taken > 0) {
      this.bytesWritten += taken;
      this.touch();
    }
    return taken;
  }

  /**
   * A whole response, `head` (latin1) then `body` (a string as utf8), written
   * at once past the stream: one SSL_write from the shared scratch, as
   * writeGathered writes node's corked response, but without the stream's
   * queue and the writev around it (three write() calls, their queued
   * entries, the callbacks' ticks: several thousand instructions of a 1 KiB
   * keep-alive GET through the lane, counted by bench/request-cost.ts). Only
   * when nothing is queued, corked or in progress, so no byte can overtake
   * an earlier one, and without kTLS TX (OpenSSL encrypts into its own
   * buffer and never reads ours again). What the socket did not take goes on
   * as a stream write from a copy of its own, as in writeGathered (a
   * WANT_WRITE retry passes the same bytes again, as OpenSSL wants). `done(arg)`
   * is called once every byte is handed to the socket (or the write failed),
   * never within this call, as a stream write's callback. false having done
   * nothing (the caller writes through the stream); true: neither `head` nor
   * `body` is referenced any more. `inCall`: when the socket takes every byte
   * within this call, 'taken' and `done` is not called (the caller, which
   * knows nobody waits for it, finishes at once: no tick queued per response,
   * bench/request-cost.ts); otherwise as without it.
   */
  writeWhole<T>(head: string, body: Buffer | string | undefined, done: (arg: T) => void, arg: T, inCall = false): boolean | 'taken' {
    if (this.tls.ktlsTx || this.mustNotSend || this.released || this.pendingWrite !== null) return false;
    if (this.writableLength !== 0 || this.writableCorked !== 0 || this.writableEnded || this.destroyed) return false;
    const headLength = head.length;
    const n = headLength + (body === undefined ? 0 : typeof body === 'string' ? Buffer.byteLength(body) : body.length);
    if (n > RECORD_MAX || headLength === 0) return false;
    if (head !== headInScratch) {
      gatherScratch.write(head, 0, headLength, 'latin1');
      headInScratch = head;
    }
    if (body !== undefined) {
      if (typeof body === 'string') gatherScratch.write(body, headLength, 'utf8');
      else body.copy(gatherScratch, headLength);
    }
    let taken: number;
    try {
      taken = this.writeScratch(n);
    } catch (err) {
      // As a stream write that failed: the connection is destroyed with the error, the callback still called.
      this.mustNotSend = true;
      this.destroy(err as Error);
      process.nextTick(done, arg);
      return true;
    }
    if (taken === n) {
      this.notifyFlushed();
      if (inCall) return 'taken';
      process.nextTick(done, arg);
      return true;
    }
    this.write(Buffer.from(gatherScratch.subarray(taken, n)), () => done(arg));
    return true;
  }

  /**
   * The pieces are written in place, never joined into a copy: a client that
   * stops reading then holds only what the stream was given (one chunk, as
   * the writers wait for 'drain' or the callback), not that and a copy.
   */
  private startWrite(pieces: Buffer[], cb: (err?: Error | null) => void): void {
    this.pendingWrite = { pieces, index: 0, off: 0, held: null, cb };
    this.pumpWrite();
  }

  /**
   * The bytes of the next SSL_write. A piece shorter than a record with more
   * after it is gathered with what follows, up to one record, so a response's
   * head and a small body (or a chunk-size line and its data) share a record.
   * A call that returned WANT_WRITE is retried with the same bytes: the
   * choice depends only on the position, and a gathered record is kept until
   * it is taken.
   */
  private nextWrite(w: PendingWrite): { buf: Buffer; off: number; len: number } {
    const piece = w.pieces[w.index]!;
    const rest = piece.length - w.off;
    if (rest >= RECORD_MAX || w.index + 1 === w.pieces.length) return { buf: piece, off: w.off, len: rest };
    if (w.held) return { buf: w.held, off: 0, len: w.held.length };
    // Without kTLS, OpenSSL encrypts into its own buffer and never looks at ours again, so a
    // shared scratch will do. With kTLS TX it sends from the caller's buffer, and after
    // WANT_WRITE resends from that same address (rec_layer_s3.c, do_ssl3_write: app_buffer):
    // the gathered record must then stay untouched until taken, so it gets its own copy.
    headInScratch = null;
    const n = gatherRecord(w.pieces, w.index, w.off, gatherScratch);
    if (!this.tls.ktlsTx) return { buf: gatherScratch, off: 0, len: n };
    w.held = Buffer.from(gatherScratch.subarray(0, n));
    return { buf: w.held, off: 0, len: n };
  }

  private readonly pumpWrite = (): void => {
    const w = this.pendingWrite;
    if (!w) return;
    if (this.mustNotSend) {
      this.pendingWrite = null;
      w.cb(Object.assign(new Error('connection can no longer send'), { code: 'EPIPE' }));
      return;
    }
    while (w.index < w.pieces.length) {
      if (w.off === w.pieces[w.index]!.length) {
        w.index++;
        w.off = 0;
        continue;
      }
      const next = this.nextWrite(w);
      let r: number;
      try {
        r = this.sslWrite(next.buf, next.off, next.len);
      } catch (err) {
        this.pendingWrite = null;
        this.mustNotSend = true;
        w.cb(err as Error);
        return;
      }
      if (r > 0) {
        w.held = null;
        advance(w, r);
        this.bytesWritten += r;
        this.touch();
        continue;
      }
      if (cannotSend(r)) {
        this.pendingWrite = null;
        this.mustNotSend = true;
        w.cb(sendRefused(r));
        return;
      }
      this.waitToSend(KtlsConnection.events(r), this.pumpWrite);
      return;
    }
    this.pendingWrite = null;
    w.cb();
    this.notifyFlushed();
  };

  /**
   * SSL_write of up to `len` bytes: more than a record goes as whole records
   * in one native call (writeRecords), so a 256 KiB file chunk or a large
   * stream write is one crossing into the addon rather than sixteen. Both
   * return the bytes taken (> 0) or a WANT state; after a partial take the
   * next call says what to wait for.
   */
  private sslWrite(buf: Buffer, off: number, len: number): number {
    return len > RECORD_MAX ? this.native.writeRecords(this.ssl, buf, off, len) : this.native.write(this.ssl, buf, off, len);
  }

  private notifyFlushed(): void {
    if (this.pendingWrite === null && this.writableLength === 0 && this.flushWaiters.length > 0) {
      const waiters = this.flushWaiters;
      this.flushWaiters = [];
      for (const fn of waiters) fn();
    }
  }

  /** Resolves when everything written so far has been handed to the socket. */
  private flushed(): Promise<void> {
    if (this.pendingWrite === null && this.writableLength === 0) return Promise.resolve();
    return new Promise((resolve) => this.flushWaiters.push(resolve));
  }

  /**
   * Sends `length` bytes of `fd` from `offset` after all earlier writes.
   * kTLS TX on: sendfile, so the kernel encrypts straight from the page cache
   * (small bodies by SSL_sendfile here, large ones by sendfile(2) on the
   * thread pool, so a cold file never blocks the event loop). kTLS TX off:
   * read + SSL_write.
   */
  async sendFile(fd: number, offset: number, length: number): Promise<BodyPath> {
    await this.flushed();
    if (!this.tls.ktlsTx) {
      await this.writeFileUserspace(fd, offset, length);
      return 'write';
    }
    const end = offset + length;
    let pos = offset;
    const inline = length <= INLINE_SENDFILE_MAX;
    try {
      while (pos < end) {
        if (this.released) throw Object.assign(new Error('connection closed during sendfile'), { code: 'ECONNRESET' });
        const r = inline ? this.native.sendfile(this.ssl, fd, pos, end - pos) : await this.sendfileInPool(fd, pos, Math.min(end - pos, POOL_SENDFILE_MAX));
        if (r > 0) {
          pos += r;
          this.bytesWritten += r;
          this.touch();
        } else if (r === WANT_WRITE) {
          await this.sendable();
        } else {
          // sendfile(2) returned 0: the file is shorter than its stat said.
          throw new FileTruncatedError(length, pos - offset);
        }
      }
    } catch (err) {
      // What went out is what the access log says was sent (body-cut.ts).
      throw cutAfter(err, pos - offset, 'sendfile');
    }
    return 'sendfile';
  }

  /**
   * read + SSL_write, holding no user-space buffer while the socket is full:
   * when SSL_write says WANT_WRITE, the record it could not send is already
   * encrypted in OpenSSL's own write buffer (without kTLS), and the retry
   * only has to pass at least as many bytes (ssl3_write_pending checks the
   * length, and the address only without ACCEPT_MOVING_WRITE_BUFFER, which
   * is set). So the chunk goes back to the pool, and once the socket takes
   * more the bytes from that position are read from the file again. A
   * stalled client costs OpenSSL's record buffer and its kernel socket
   * buffer, nothing more.
   */
  private async writeFileUserspace(fd: number, offset: number, length: number): Promise<void> {
    const end = offset + length;
    let pos = offset;
    try {
      while (pos < end) {
        const buf = fileChunks.take();
        let n: number;
        try {
          n = await readAt(fd, buf, Math.min(buf.length, end - pos), pos);
        } catch (err) {
          fileChunks.give(buf);
          throw err;
        }
        if (n === 0) {
          fileChunks.give(buf);
          throw new FileTruncatedError(length, pos - offset);
        }
        const sent = this.writeSome(buf, n);
        fileChunks.give(buf);
        pos += sent.bytes;
        if (sent.wait !== 0) await (sent.wait === WANT_READ ? this.ready.readable() : this.ready.writable());
      }
    } catch (err) {
      // What went out is what the access log says was sent (body-cut.ts).
      throw cutAfter(err, pos - offset, 'write');
    }
  }

  /** SSL_write of buf[0, n) until done or the socket is full; the bytes taken, and the state to wait for (0: none). */
  private writeSome(buf: Buffer, n: number): { bytes: number; wait: number } {
    let off = 0;
    while (off < n) {
      if (this.released || this.mustNotSend) throw Object.assign(new Error('connection closed during a file body'), { code: 'ECONNRESET' });
      let r: number;
      try {
        r = this.sslWrite(buf, off, n - off);
      } catch (err) {
        this.mustNotSend = true;
        throw err;
      }
      if (cannotSend(r)) {
        this.mustNotSend = true;
        throw sendRefused(r);
      }
      if (r <= 0) return { bytes: off, wait: r };
      off += r;
      this.bytesWritten += r;
      this.touch();
    }
    return { bytes: off, wait: 0 };
  }

  /**
   * Moves exactly `length` bytes, already in the pipe, into the socket with
   * splice(2), after all earlier writes. Only with kTLS TX: the kernel frames
   * and encrypts them as TLS records, so they bypass OpenSSL (which has nothing
   * buffered once flushed). The pipe holds at least `length` bytes, so AGAIN
   * means the socket is full.
   */
  async spliceFromPipe(pipeRead: number, length: number): Promise<void> {
    await this.flushed();
    let left = length;
    while (left > 0) {
      if (this.released || this.mustNotSend) throw Object.assign(new Error('connection closed during splice'), { code: 'ECONNRESET' });
      const r = this.native.splice(pipeRead, this.fd, left);
      if (r > 0) {
        left -= r;
        this.bytesWritten += r;
        this.touch();
      } else if (r === AGAIN) {
        await this.sendable();
      } else {
        throw new Error(`splice: the pipe ran dry with ${left} bytes owed`);
      }
    }
  }

  /**
   * The copy path's write (src/transport/copy-body.ts): SSL_write of
   * buf[offset, offset + length) as whole records in one native call, once
   * earlier writes are out (the caller awaits whenFlushed() first). The
   * bytes taken, or a WANT state when none were.
   */
  writeRecords(buf: Buffer, offset: number, length: number): number {
    if (this.released || this.mustNotSend) throw Object.assign(new Error('connection closed during a body copy'), { code: 'ECONNRESET' });
    let r: number;
    try {
      r = this.native.writeRecords(this.ssl, buf, offset, length);
    } catch (err) {
      this.mustNotSend = true;
      throw err;
    }
    if (r > 0) {
      this.bytesWritten += r;
      this.touch();
    } else if (cannotSend(r)) {
      this.mustNotSend = true;
      throw sendRefused(r);
    }
    return r;
  }

  /** Resolves when a write that returned `state` (or took part of its bytes) may be tried again. */
  writeReady(state: number): Promise<void> {
    return new Promise((resolve) => this.waitToSend(KtlsConnection.events(state), resolve));
  }

  /** Resolves when everything written so far through the stream has been handed to the socket. */
  whenFlushed(): Promise<void> {
    return this.flushed();
  }

  /** waitToSend(WRITABLE) as a promise. */
  private sendable(): Promise<void> {
    return new Promise((resolve) => this.waitToSend(WRITABLE, resolve));
  }

  /**
   * Parks a send that said WANT_WRITE / AGAIN. Without kTLS TX that is
   * POLLOUT. With it, Linux (seen on 6.1) can say AGAIN while the socket has
   * room and never raise POLLOUT: under TCP memory pressure (the host-wide
   * net.ipv4.tcp_mem) tls_sw's record allocation fails (sk_wmem_schedule has
   * no per-socket minimum there; plain TCP keeps tcp_wmem[0] for each
   * socket), and the record handed to TCP just before, sent with
   * MSG_SENDPAGE_NOTLAST, stays corked below the MSS. Nothing is in flight,
   * no ACK ever runs sk_write_space, and the body stalls for good: seen as
   * 12 of 200 concurrent downloads stuck at `ss` notsent:16406 with the
   * window open. So: push the corked bytes (setting TCP_NODELAY calls
   * tcp_push_pending_frames, even when it is already on), and retry after a
   * doubling delay even without POLLOUT, as the memory may come back with no
   * event on this socket.
   */
  private waitToSend(events: number, resume: () => void): void {
    if (!this.tls.ktlsTx || events !== WRITABLE || this.released) {
      this.ready.parkWriter(events, resume);
      return;
    }
    try {
      this.native.setNoDelay(this.fd, true);
    } catch {
      // The socket is gone: the retry sees the error.
    }
    this.againMs = this.againMs === 0 ? AGAIN_RETRY_FIRST_MS : Math.min(this.againMs * 2, AGAIN_RETRY_MAX_MS);
    let done = false;
    const once = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resume();
    };
    const timer = setTimeout(() => {
      this.ready.clearWriter();
      once();
    }, this.againMs);
    timer.unref();
    this.ready.parkWriter(WRITABLE, once);
  }

  /** One sendfile(2) on the thread pool; the socket fd stays open until it returns (see release()). */
  private sendfileInPool(fd: number, offset: number, length: number): Promise<number> {
    this.poolJobs++;
    return new Promise((resolve, reject) => {
      this.native.sendfileAsync(this.fd, fd, offset, length, (sent, errno) => {
        if (--this.poolJobs === 0 && this.released) this.native.closeFd(this.fd);
        if (sent >= 0) resolve(sent);
        else if (errno === EAGAIN) resolve(WANT_WRITE);
        else reject(Object.assign(new Error(`sendfile: ${errnoName(errno)}`), { code: errnoName(errno), errno, syscall: 'sendfile' }));
      });
    });
  }

  // ---- end and teardown -------------------------------------------------------------------

  override _final(cb: (err?: Error | null) => void): void {
    if (this.mustNotSend) { cb(); return; }
    const step = (): void => {
      let r: number;
      try {
        r = this.native.shutdown(this.ssl);
      } catch {
        cb(); // the peer may have gone; close_notify is a courtesy at this point
        return;
      }
      if (r === WANT_READ || r === WANT_WRITE) { this.ready.parkWriter(KtlsConnection.events(r), step); return; }
      cb(); // 0: our close_notify is out; we do not wait for the peer's (as nginx).
    };
    step();
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    this.release();
    cb(err);
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    this.idleMs = 0;
    // Parked operations are resumed last, not dropped: each sees the connection is gone
    // and settles (a sendFile() waiting for writability must reject, or its file stays open).
    const parked = this.ready.close();
    this.native.sslFree(this.ssl);
    // A sendfile(2) still running on the thread pool uses this fd: close it when that returns,
    // or the number could be reused by a new connection and receive another file's bytes.
    if (this.poolJobs === 0) this.native.closeFd(this.fd);
    const w = this.pendingWrite;
    this.pendingWrite = null;
    if (w) w.cb(Object.assign(new Error('connection closed'), { code: 'ECONNRESET' }));
    for (const fn of this.flushWaiters) fn();
    this.flushWaiters = [];
    for (const fn of parked) fn();
    this.onReleased?.(this);
  }

  private failHard(err: Error): void {
    this.mustNotSend = true;
    this.destroy(err);
  }

  // ---- net.Socket surface http.Server uses ----------------------------------------------------

  /**
   * The idle timeout: 'timeout' once no byte has moved for `ms`, again after
   * the next activity. One timer per connection, armed at most once per
   * period: each read and write only notes the time, and the timer, when it
   * fires early (activity since), re-arms for what is left. http.Server calls
   * setTimeout twice per keep-alive request (keepAliveTimeout once a response
   * is done, its timeout again when the next request comes) and node's
   * refresh() re-inserts the timer in its list: a timer created or moved per
   * request and per read or write was among serve's own costs in a profile
   * of 1 KiB keep-alive GETs.
   */
  setTimeout(ms: number, cb?: () => void): this {
    if (cb) this.once('timeout', cb);
    if (!(ms > 0) || this.released) {
      this.idleMs = 0;
      // Turned off, the timer is left armed but inert (onIdleTimer does nothing while idleMs is
      // 0), not cleared: the proxy turns the client's timeout off while the upstream prepares
      // each answer and on again after it, and a cleared timer was a new one per request.
      if (this.idleTimer && this.released) { clearTimeout(this.idleTimer); this.idleTimer = null; }
      return this;
    }
    const now = performance.now();
    this.idleMs = ms;
    this.lastActive = now;
    // A timer due later than the new period ends is moved; one due sooner re-arms when it fires.
    if (this.idleTimer !== null && this.idleDue > now + ms) { clearTimeout(this.idleTimer); this.idleTimer = null; }
    if (this.idleTimer === null) this.armIdle(ms, now);
    return this;
  }

  private armIdle(ms: number, now: number): void {
    this.idleDue = now + ms;
    this.idleTimer = setTimeout(this.onIdleTimer, ms);
    this.idleTimer.unref();
  }

  private readonly onIdleTimer = (): void => {
    this.idleTimer = null;
    if (this.idleMs === 0 || this.released) return;
    const now = performance.now();
    const idle = now - this.lastActive;
    // libuv times the timer from its loop clock, which may lag this one by the loop's current
    // turn: a timer can come a little before the period is over, and then waits the rest.
    if (idle < this.idleMs) { this.armIdle(Math.max(1, Math.ceil(this.idleMs - idle)), now); return; }
    this.emit('timeout');
  };

  private touch(): void {
    this.againMs = 0;
    if (this.idleMs === 0) return;
    const now = performance.now();
    this.lastActive = now;
    // After a 'timeout' the timer is gone: activity starts a new period (as refresh() of a fired timer did).
    if (this.idleTimer === null) this.armIdle(this.idleMs, now);
  }

  setNoDelay(noDelay = true): this {
    if (!this.released) this.native.setNoDelay(this.fd, noDelay);
    return this;
  }

  setKeepAlive(): this {
    return this;
  }

  address(): { address: string; port: number; family: string } | Record<string, never> {
    return this.localAddress ? { address: this.localAddress, port: this.localPort ?? 0, family: this.remoteFamily ?? 'IPv4' } : {};
  }
}

/**
 * The strings each connection keeps for its life (the addresses, 'IPv4', the
 * TLS version, cipher, ALPN and server name) come from the addon as new
 * strings each time (napi_create_string_*), some 30 bytes of V8 heap each per
 * idle connection; these repeat across connections (the listener's address,
 * a balancer's or a NAT's, a handful of versions and suites), so one copy is
 * kept and shared. Bounded: many distinct peers only empty it now and then.
 */
const INTERN_MAX = 1024;
const interned = new Map<string, string>();
function intern<T extends string | null | undefined>(s: T): T {
  if (typeof s !== 'string') return s;
  const known = interned.get(s);
  if (known !== undefined) return known as T;
  if (interned.size >= INTERN_MAX) interned.clear();
  interned.set(s, s);
  return s;
}

const errnoNames = new Map<number, string>(Object.entries(os.constants.errno).map(([k, v]) => [v, k]));
function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `errno ${errno}`;
}

/**
 * A plain TCP connection to an upstream, on a non-blocking fd of our own (not
 * a net.Socket), so response bodies can leave it by splice(2) straight into
 * a kTLS socket. libuv never reads this fd: every byte is taken by recv() or
 * splice() when the proxy asks for it, which is what lets the proxy read a
 * response head and leave the body in the kernel.
 *
 * Operations park on readiness (AGAIN is a state); an idle timer runs while
 * an operation waits and destroys the socket with the caller's error.
 */
import dns from 'node:dns';
import net from 'node:net';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { AGAIN, EOF_NO_NOTIFY, READABLE, WANT_WRITE, WRITABLE, type Native } from '../native/binding.js';
import { FdReadiness } from './fd-readiness.js';

/** recv() size: one read takes whatever the socket holds, up to this. */
const READ_MAX = 64 * 1024;
const scratch = Buffer.allocUnsafe(READ_MAX);
/**
 * write()'s answer when the socket took every byte at once: one settled
 * promise for all, which a caller may compare with (instead of an await and
 * its microtask turn, forward.ts).
 */
export const SENT: Promise<void> = Promise.resolve();
/** Takes the byte an idle connection should not have had (idleAlive). */
const idleProbe = Buffer.allocUnsafe(1);
const errnoNames = new Map<number, string>(Object.entries(os.constants.errno).map(([k, v]) => [v, k]));

export function errnoError(errno: number, syscall: string): Error & { code: string; errno: number; syscall: string } {
  const code = errnoNames.get(errno) ?? `errno ${errno}`;
  return Object.assign(new Error(`${syscall}: ${code}`), { code, errno, syscall });
}

function closedError(): Error {
  return Object.assign(new Error('upstream connection closed'), { code: 'ECONNRESET' });
}

/**
 * A socket with kTLS RX (a TLS upstream, src/tls/upstream-client.ts): the
 * kernel refuses a record that is not application data to recv() (EIO) and
 * to splice() (EINVAL) and keeps it queued; this takes it with recvmsg and
 * acts on it. 'again': it was dealt with (a NewSessionTicket), retry the
 * operation; 'eof': close_notify, the end of the stream. Anything fatal throws.
 */
export interface ControlRecordReader {
  takeControlRecord(): 'again' | 'eof';
}

export interface ConnectOptions {
  host: string;
  port: number;
  timeoutMs: number;
  /** Makes the error for a connect that took too long. */
  onTimeout: () => Error;
}

export class PlainSocket {
  readonly fd: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
  private readonly native: Native;
  private readonly ready: FdReadiness;
  private destroyedWith: Error | null = null;
  private closed = false;
  private idleMs = 0;
  private idleError: (() => Error) | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  /** When idleTimer fires (performance.now()'s clock). */
  private idleDue = 0;
  /** The last progress, or the start of the current wait, whichever came later (performance.now()'s clock). */
  private lastActive = 0;
  private waiting = 0;
  private records: ControlRecordReader | null = null;
  /** FdReadiness.watchIdle()'s mark for the current idle period; -1: none. */
  private idleMark = -1;

  private constructor(native: Native, fd: number, address: string, port: number) {
    this.native = native;
    this.fd = fd;
    this.remoteAddress = address;
    this.remotePort = port;
    this.ready = new FdReadiness(native, fd);
  }

  /** Resolves the name (when it is one), connects, and waits until the connection is up. */
  static async connect(native: Native, o: ConnectOptions): Promise<PlainSocket> {
    const address = net.isIP(o.host) ? o.host : (await dns.promises.lookup(o.host)).address;
    const sock = new PlainSocket(native, native.connectTcp(address, o.port), address, o.port);
    sock.setIdleTimeout(o.timeoutMs, o.onTimeout);
    try {
      await sock.wait(WRITABLE);
      const err = native.socketError(sock.fd);
      if (err !== 0) throw errnoError(err, 'connect');
      native.setNoDelay(sock.fd, true);
      return sock;
    } catch (err) {
      sock.destroy();
      throw err;
    }
  }

  get destroyed(): boolean {
    return this.closed;
  }

  /** kTLS RX: the kernel decrypts what this socket receives (a TLS upstream, src/tls/upstream-client.ts). */
  get decryptsInKernel(): boolean {
    return this.records !== null;
  }

  /** From now on the kernel decrypts what this socket receives (kTLS RX): records that are not data go to `r`. */
  setControlRecordReader(r: ControlRecordReader): void {
    this.records = r;
  }

  /**
   * Runs `step` (a handshake) until it returns a number >= 0, waiting for
   * readability on WANT_READ and writability on WANT_WRITE, with the idle timer armed.
   */
  async drive(step: () => number): Promise<number> {
    for (;;) {
      if (this.closed) throw this.destroyedWith ?? closedError();
      const r = step();
      if (r >= 0) {
        this.progressed();
        return r;
      }
      // The peer's FIN in the middle (no close_notify, RFC 8446 §6.1): waiting for readability again would spin.
      if (r === EOF_NO_NOTIFY) throw Object.assign(new Error('connection closed by the peer during the TLS handshake'), { code: 'ECONNRESET' });
      await this.wait(r === WANT_WRITE ? WRITABLE : READABLE);
    }
  }

  /** recv(), with kTLS RX's non-data records taken on the way: bytes, 0 at the end (FIN or close_notify), or AGAIN. */
  private recvBytes(buf: Buffer, offset: number, length: number, peek: boolean): number {
    for (;;) {
      try {
        return this.native.recv(this.fd, buf, offset, length, peek);
      } catch (err) {
        if (this.takeControl(err, 'EIO') === 'eof') return 0;
      }
    }
  }

  /** A non-data record that stopped `code` (EIO from recv, EINVAL from splice) on a kTLS RX socket; else `err` again. */
  private takeControl(err: unknown, code: string): 'again' | 'eof' {
    if (this.records === null || (err as { code?: string }).code !== code) throw err;
    return this.records.takeControlRecord();
  }

  /**
   * While an operation waits on this socket for longer than `ms`, the socket is
   * destroyed with `error()` (0 turns it off). Progress starts the period again.
   */
  setIdleTimeout(ms: number, error: () => Error): void {
    // 0 leaves the timer inert rather than cleared: an exchange on a pooled connection sets
    // its timeout, then 0 when released, then the same again on the next lease, and a
    // timer cleared each time was a new one (an insert into node's timer lists) per request.
    this.idleMs = ms;
    this.idleError = error;
    if (this.waiting > 0 && ms > 0) this.startIdlePeriod();
  }

  /**
   * Bytes moved either way: an operation waiting meanwhile gets its period
   * from now. A tunnel's read waits on the upstream while the client's bytes
   * go up (a log shipper, a long upload): an upstream that takes them is not
   * stalled, only silent, and was cut after --upstream-idle-timeout. As node's
   * socket.setTimeout and nginx stream's proxy_timeout count it, any read or
   * write is activity. Public for the TLS layer above (SslUpstream), whose
   * records move through this socket's descriptor.
   */
  progressed(): void {
    if (this.waiting > 0 && this.idleMs > 0) this.lastActive = performance.now();
  }

  /**
   * The idle period starts now. The timer is not moved (timer.refresh()
   * re-inserted it into node's timer lists, a loop-clock read and about 0.5k
   * instructions per proxied 1 KiB keep-alive GET, bench/request-cost.ts): one
   * due no later than the new period's end stays, and when it fires it
   * looks at the clock and waits out what is left of the period (as
   * ktls-connection.ts times its idle connections). One due later, made for a
   * longer period, is replaced.
   */
  private startIdlePeriod(): void {
    const now = performance.now();
    this.lastActive = now;
    if (this.idleTimer !== null && this.idleDue > now + this.idleMs) {
      clearTimeout(this.idleTimer);
      this.idleTimer = null;
    }
    if (this.idleTimer === null) this.armIdleTimer(this.idleMs, now);
  }

  private armIdleTimer(ms: number, now: number): void {
    this.idleDue = now + ms;
    this.idleTimer = setTimeout(this.onIdleTimer, ms);
    // An armed timer of an idle pooled connection must not keep the process alive.
    this.idleTimer.unref();
  }

  /** Fires only while an operation waits, with a timeout set, and no progress for the whole period. */
  private readonly onIdleTimer = (): void => {
    this.idleTimer = null;
    if (this.waiting === 0 || this.idleMs === 0 || this.closed) return;
    const now = performance.now();
    const idle = now - this.lastActive;
    // libuv times the timer from its loop clock, which may lag this one by the loop's current
    // turn: a timer can come a little before the period is over, and then waits the rest.
    if (idle < this.idleMs) {
      this.armIdleTimer(Math.max(1, Math.ceil(this.idleMs - idle)), now);
      return;
    }
    this.destroy(this.idleError?.() ?? closedError());
  };

  /**
   * Waits for `events` (READABLE: the reading side's slot, WRITABLE: the
   * writing side's) with the idle timer armed; rejects if the socket is
   * destroyed meanwhile (destroy() resumes what is parked). One promise,
   * settled from the readiness callback itself: an async function around
   * FdReadiness.readable() was a second promise, its frame and a microtask
   * turn per wait, about two waits per proxied request.
   */
  private wait(events: typeof READABLE | typeof WRITABLE): Promise<void> {
    if (this.closed) return Promise.reject(this.destroyedWith ?? closedError());
    if (this.waiting++ === 0 && this.idleMs > 0) this.startIdlePeriod();
    return new Promise((resolve, reject) => {
      const resume = (): void => {
        // The timer is left armed but inert: the next wait starts its period (startIdlePeriod), instead
        // of a new timer per wait (one per body read on the copy path, each an insert into node's timer lists).
        --this.waiting;
        if (this.closed) reject(this.destroyedWith ?? closedError());
        else resolve();
      };
      if (events === READABLE) this.ready.parkReader(READABLE, resume);
      else this.ready.parkWriter(WRITABLE, resume);
    });
  }

  /** The next bytes (a copy of exactly what arrived), or null at the peer's FIN. */
  async read(): Promise<Buffer | null> {
    for (;;) {
      if (this.closed) throw this.destroyedWith ?? closedError();
      const r = this.recvBytes(scratch, 0, READ_MAX, false);
      if (r === 0) return null;
      if (r > 0) {
        this.progressed();
        return Buffer.from(scratch.subarray(0, r));
      }
      await this.wait(READABLE);
    }
  }

  /**
   * The next bytes into `buf` (up to its length): how many, or 0 at the
   * peer's FIN. For body copies, which reuse one buffer instead of getting a
   * fresh copy per read (read() allocates one each time).
   */
  async readInto(buf: Buffer): Promise<number> {
    for (;;) {
      if (this.closed) throw this.destroyedWith ?? closedError();
      const r = this.recvBytes(buf, 0, buf.length, false);
      if (r > 0) this.progressed();
      if (r >= 0) return r;
      await this.wait(READABLE);
    }
  }

  /**
   * Resolves once the socket has taken all of `buf`. Not async itself: a
   * request head nearly always fits the socket's buffer at once, and then
   * the answer is a promise already settled instead of an async function's.
   */
  write(buf: Buffer): Promise<void> {
    if (this.closed || buf.length === 0) return this.writeFrom(buf, 0);
    let r: number;
    try {
      r = this.native.send(this.fd, buf, 0, buf.length);
    } catch (err) {
      return Promise.reject(err);
    }
    if (r > 0) this.progressed();
    if (r === buf.length) return SENT;
    return this.writeFrom(buf, r === AGAIN ? 0 : r);
  }

  private async writeFrom(buf: Buffer, start: number): Promise<void> {
    let off = start;
    while (off < buf.length) {
      if (this.closed) throw this.destroyedWith ?? closedError();
      const r = this.native.send(this.fd, buf, off, buf.length - off);
      if (r === AGAIN) await this.wait(WRITABLE);
      else {
        off += r;
        this.progressed();
      }
    }
  }

  /**
   * Copies up to `length` waiting bytes into `buf` without taking them from the
   * socket (MSG_PEEK); 0 at the peer's FIN. Waits when nothing is there.
   */
  async peek(buf: Buffer, length: number): Promise<number> {
    for (;;) {
      const r = this.peekSome(buf, length);
      if (r !== AGAIN) return r;
      await this.wait(READABLE);
    }
  }

  /**
   * peek() without waiting: up to `length` waiting bytes into `buf`, left in
   * the socket; 0 at the peer's FIN, AGAIN when nothing is there. The bytes
   * are in `buf` in the same turn, so a buffer shared by all sockets will do
   * (peek()'s result reaches its caller a microtask later, when another
   * socket's peek may have used the buffer meanwhile).
   */
  peekSome(buf: Buffer, length: number): number {
    if (this.closed) throw this.destroyedWith ?? closedError();
    return this.recvBytes(buf, 0, length, true);
  }

  /**
   * recv() without waiting and without MSG_PEEK: up to `length` bytes into
   * `buf`, taken from the socket; 0 at the peer's FIN, AGAIN when nothing is
   * there. For an answer whose every byte goes through user space anyway
   * (takeWholeAnswer), where a peek and then a recv of the same bytes were
   * two system calls for one.
   */
  takeSome(buf: Buffer, length: number): number {
    if (this.closed) throw this.destroyedWith ?? closedError();
    const r = this.recvBytes(buf, 0, length, false);
    if (r > 0) this.progressed();
    return r;
  }

  /**
   * This connection's own buffer for answers taken whole (takeWholeAnswer,
   * src/proxy/upstream-exchange.ts): made at the first, null while an
   * answer holds it. Only the exchange holding the connection reads into
   * it, so bytes lent from it stay as they are until the connection carries
   * its next exchange.
   */
  answerRoom: Buffer | null = null;

  /** Takes `n` bytes that peek() has shown are waiting (so it never blocks) and drops them. */
  skip(n: number): void {
    let left = n;
    while (left > 0) {
      const r = this.recvBytes(scratch, 0, Math.min(left, READ_MAX), false);
      if (r <= 0) throw new Error(`recv: ${left} peeked bytes not there`);
      left -= r;
    }
  }

  /**
   * Copies up to `length` waiting bytes into buf[offset, ...) and leaves them
   * in the socket (MSG_PEEK), without waiting: how many, 0 at the peer's FIN,
   * or AGAIN. The copy path's read: only the bytes the client's socket then
   * takes are removed (discard), so none wait in user space.
   */
  peekNow(buf: Buffer, offset: number, length: number): number {
    if (this.closed) throw this.destroyedWith ?? closedError();
    return this.native.recv(this.fd, buf, offset, length, true);
  }

  /** Removes `n` bytes that peekNow() has shown are waiting, without copying them (recv MSG_TRUNC). */
  discard(n: number): void {
    let left = n;
    while (left > 0) {
      const r = this.native.recvDiscard(this.fd, left);
      if (r <= 0) throw new Error(`recv: ${left} peeked bytes not there`);
      left -= r;
    }
  }

  /**
   * splice(2) from this socket into a pipe's write end: bytes moved, or 0 at
   * the peer's FIN. The pipe must have room for `max` bytes (the caller fills
   * only an empty pipe), so AGAIN here means "no data yet".
   */
  async spliceInto(pipeWrite: number, max: number): Promise<number> {
    for (;;) {
      if (this.closed) throw this.destroyedWith ?? closedError();
      let r: number;
      try {
        r = this.native.splice(this.fd, pipeWrite, max);
      } catch (err) {
        if (this.takeControl(err, 'EINVAL') === 'eof') return 0;
        continue;
      }
      if (r > 0 && this.records !== null) return r + this.spliceMoreRecords(pipeWrite, max - r);
      if (r !== AGAIN) return r;
      await this.wait(READABLE);
    }
  }

  /**
   * kTLS RX moves at most one record per splice (tls_sw_splice_read, Linux
   * 6.1): without this loop a body would cross user space's event loop once
   * per 16 KiB. Takes the records already decrypted-ready, up to `room`,
   * without waiting; anything else (no data, a record that is not data, the
   * end, an error) stops it and is met by the next spliceInto.
   */
  private spliceMoreRecords(pipeWrite: number, room: number): number {
    let moved = 0;
    while (moved < room) {
      let r: number;
      try {
        r = this.native.splice(this.fd, pipeWrite, room - moved);
      } catch {
        break;
      }
      if (r <= 0) break;
      moved += r;
    }
    return moved;
  }

  /** Resolves when bytes (or the FIN) are waiting to be read. */
  readable(): Promise<void> {
    return this.wait(READABLE);
  }

  /** Waits as a TLS call's state says (WANT_WRITE: writable, else readable), with the idle timer armed. */
  waitFor(state: number): Promise<void> {
    return this.wait(state === WANT_WRITE ? WRITABLE : READABLE);
  }

  /**
   * Whether an idle keep-alive connection may be reused: nothing may wait on
   * it. An idle keep-alive connection has nothing to read: a FIN means the
   * peer closed it, bytes mean it broke the protocol, and either way it must
   * not be reused (a byte is consumed by the probe: the connection is
   * unusable then anyway).
   *
   * With `quietEnough`, nothing reported readable since watchIdle() is enough:
   * as of the loop's last poll the peer has sent neither bytes nor its FIN,
   * so the recv would find nothing (nginx goes by the same events:
   * ngx_http_upstream_keepalive_close_handler). Whatever came after that poll
   * is met by the caller's retry on a fresh connection.
   */
  idleAlive(quietEnough: boolean): boolean {
    if (this.closed) return false;
    if (quietEnough && this.quietSinceIdle()) return true;
    return this.afterAnswer() === 'quiet';
  }

  /**
   * What waits on the connection now, looked at with one recv: nothing
   * ('quiet', EAGAIN), the peer's FIN or an error ('closed'), or bytes
   * ('bytes'; one is taken, and the connection is unusable then anyway).
   */
  afterAnswer(): 'quiet' | 'bytes' | 'closed' {
    if (this.closed) return 'closed';
    let r: number;
    try {
      r = this.recvBytes(idleProbe, 0, 1, false);
    } catch {
      return 'closed';
    }
    return r === AGAIN ? 'quiet' : r === 0 ? 'closed' : 'bytes';
  }

  /**
   * Starts an idle period (a pooled keep-alive connection): readiness watches
   * for anything the peer sends, and calls `onStir(arg)` once when it does.
   */
  watchIdle(onStir: ((arg: unknown) => void) | null = null, arg: unknown = null): void {
    this.idleMark = this.ready.watchIdle(onStir, arg);
  }

  /** Readiness has reported nothing since watchIdle() (as of the loop's last poll: see FdReadiness.quietSince). */
  private quietSinceIdle(): boolean {
    return !this.closed && this.idleMark >= 0 && this.ready.quietSince(this.idleMark);
  }

  /** Our FIN; the read side stays open (half-close). */
  endWrite(): void {
    if (!this.closed) this.native.shutdownWrite(this.fd);
  }

  /** Closes the fd; operations waiting on it reject with `err` (or ECONNRESET). */
  destroy(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.destroyedWith = err ?? null;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const parked = this.ready.close();
    this.native.closeFd(this.fd);
    for (const fn of parked) fn();
  }
}

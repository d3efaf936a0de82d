/**
 * Readiness of one non-blocking fd through a libuv uv_poll_t: at most one
 * parked reader and one parked writer, each resumed once when the fd becomes
 * readable / writable. libuv polling is level-triggered, so the poll interest
 * is what the parked operations wait for, plus readability kept until a
 * wake-up finds nobody waiting for it (at most one idle wake-up, no busy
 * ones; see update()), and it is settled once per dispatch rather than per park.
 */
import { READABLE, WRITABLE, type Native, type PollHandle } from '../native/binding.js';

type Slot = { events: number; resume: (() => void) | null };

export class FdReadiness {
  private readonly native: Native;
  private readonly poll: PollHandle;
  private readonly reader: Slot = { events: 0, resume: null };
  private readonly writer: Slot = { events: 0, resume: null };
  private polling = 0;
  private dispatching = false;
  private closed = false;
  /** Wake-ups for readability that found nobody waiting for it (see quietSince()). */
  private stirs = 0;
  /** watchIdle()'s callback and its argument, called at the next such wake-up. */
  private onStir: ((arg: unknown) => void) | null = null;
  private stirArg: unknown = null;

  constructor(native: Native, fd: number) {
    this.native = native;
    this.poll = native.pollNew(fd, (status, events) => this.onReady(status, events));
  }

  /**
   * Parks the reading side until the fd has `events` (READABLE / WRITABLE). A
   * TLS read may need the socket writable and a TLS write (or a handshake, a
   * shutdown) may need it readable: the slot says who waits, `events` for what.
   */
  parkReader(events: number, resume: () => void): void {
    this.park(this.reader, events, resume);
  }

  parkWriter(events: number, resume: () => void): void {
    this.park(this.writer, events, resume);
  }

  /** Drops a parked writer without resuming it (its operation failed elsewhere). */
  clearWriter(): void {
    this.writer.events = 0;
    this.writer.resume = null;
  }

  /**
   * Watches readability with nobody waiting (an idle keep-alive connection,
   * whose peer should say nothing) and returns a mark for quietSince(). The
   * interest is usually still on from the last response's wait: then this
   * costs no epoll_ctl. `onStir(arg)` is called once, at the first wake-up
   * for readability that finds nobody waiting (a function and its argument,
   * not a closure: one idle period per pooled request).
   */
  watchIdle(onStir: ((arg: unknown) => void) | null = null, arg: unknown = null): number {
    this.onStir = onStir;
    this.stirArg = arg;
    if (!this.closed && (this.polling & READABLE) === 0) {
      this.polling |= READABLE;
      this.native.pollStart(this.poll, this.polling);
    }
    return this.stirs;
  }

  /**
   * Nothing was reported readable since watchIdle() returned `mark`, and
   * readability was watched all along: as of the loop's last poll, no byte
   * and no FIN has arrived. Says nothing of what came after that poll.
   */
  quietSince(mark: number): boolean {
    return !this.closed && this.stirs === mark && (this.polling & READABLE) !== 0;
  }

  readable(): Promise<void> {
    return new Promise((resolve) => this.park(this.reader, READABLE, resolve));
  }

  writable(): Promise<void> {
    return new Promise((resolve) => this.park(this.writer, WRITABLE, resolve));
  }

  private park(slot: Slot, events: number, resume: () => void): void {
    if (this.closed) {
      // Settle at once: the owner's resume sees it is closed and fails its operation.
      queueMicrotask(resume);
      return;
    }
    slot.events = events;
    slot.resume = resume;
    if (!this.dispatching) this.update();
  }

  /**
   * One uv_poll_start (epoll_ctl) per change of interest. Readability stays
   * watched after its waiter is resumed (`dropRead` false), until a wake-up
   * finds nobody waiting for it: a reader is usually parked again within a
   * turn or two (the next response on an upstream connection, the next
   * record on a client's), and uv_poll_stop + uv_poll_start cost an
   * EPOLL_CTL_DEL and an EPOLL_CTL_ADD each time (libuv's
   * uv__platform_invalidate_fd, uv__io_poll). Writability is dropped at
   * once: a socket is writable nearly always, so a kept interest would wake
   * the loop on every turn.
   */
  private update(dropRead = false): void {
    if (this.closed) return;
    const want = this.reader.events | this.writer.events | (dropRead ? 0 : this.polling & READABLE);
    if (want !== this.polling) {
      this.polling = want;
      this.native.pollStart(this.poll, want);
    }
  }

  private onReady(status: number, events: number): void {
    // status < 0: libuv reports a reset peer as UV_EBADF and stops the handle; retrying the
    // parked operations surfaces the real error (ECONNRESET) from the socket itself.
    const fire = status < 0 ? READABLE | WRITABLE : events;
    if (status < 0) this.polling = 0;
    // Readable with nobody waiting for it: the interest kept by update() has served its time.
    const unwanted = (fire & READABLE) !== 0 && ((this.reader.events | this.writer.events) & READABLE) === 0;
    const stirred = unwanted ? this.onStir : null;
    if (unwanted) this.stirs++;
    const r = this.reader.events & fire ? this.reader.resume : null;
    const w = this.writer.events & fire ? this.writer.resume : null;
    if (r) { this.reader.events = 0; this.reader.resume = null; }
    if (w) { this.writer.events = 0; this.writer.resume = null; }
    // Resumed operations usually park again at once (a reader on EAGAIN): settle the
    // poll interest once afterwards instead of stopping and restarting it.
    this.dispatching = true;
    try {
      if (r) r();
      if (w) w();
    } finally {
      this.dispatching = false;
      this.update(unwanted);
    }
    if (stirred !== null) {
      const arg = this.stirArg;
      this.onStir = this.stirArg = null;
      stirred(arg);
    }
  }

  /**
   * Stops polling for good (before the fd is closed) and hands back the parked
   * operations. The owner must call them once it has torn down: they are
   * resumed, not dropped, so each sees the fd is gone and settles (a send
   * waiting for writability must reject, or what it holds stays open).
   */
  close(): Array<() => void> {
    if (this.closed) return [];
    this.closed = true;
    this.onStir = this.stirArg = null;
    const parked = [this.reader.resume, this.writer.resume].filter((fn): fn is () => void => fn !== null);
    this.reader.resume = this.writer.resume = null;
    this.reader.events = this.writer.events = 0;
    this.native.pollClose(this.poll);
    return parked;
  }
}

/**
 * A response on its way into the store, shared by the request that fetches it
 * (the leader) and every request for the same key that arrives meanwhile
 * (followers, "collapsed" in RFC 9211's words): one upstream request, however
 * many clients.
 *
 * The leader writes the body into the store's temporary file; followers read
 * the same file by offset (sendfile / pread, so one descriptor serves all) up
 * to `written`, then wait for more. The file stays open while anyone reads
 * it, whatever happens to its name (renamed at commit, unlinked when the fill
 * fails). A follower never ends a response cleanly before the whole body is
 * written: when the fill fails (the upstream broke off), each one is told,
 * and a response already started is aborted, never completed short.
 *
 * Storing may stop while the body still comes (a disk error such as ENOSPC,
 * or a chunked body outgrowing the cache): that is the cache's failure, not
 * the response's, and costs no client its response (as in nginx, a cache
 * write error only stops storing). The followers have already sent their
 * heads and part of the body, so they cannot be sent upstream; the bytes
 * they still need are the leader's, which keeps reading the upstream. So
 * from then on the fill keeps the rest of the body in memory (`kept`): a
 * follower sends the file up to where it ends (still open, still readable),
 * then the kept bytes, which are dropped once every follower has sent them.
 * At most KEPT_MAX bytes are kept: a follower that lags further behind (its
 * client stopped reading) is aborted rather than holding the leader or
 * memory. New requests no longer follow the fill (they would need bytes
 * already dropped): they make their own upstream request.
 */
import type { BodyFile, StoredResponse } from './store.js';

/** Bytes a fill that stopped storing keeps in memory for its followers, at most (see above). */
export const KEPT_MAX = 16 * 1024 * 1024;

/** A follower reading a fill: where it is, so that the kept bytes it has sent can go. */
export class FillReader {
  /** Body offset of the next byte this follower sends. */
  pos = 0;
  /** Set when it lagged more than KEPT_MAX behind: its next read throws this. */
  dropped: Error | null = null;
}

/** The stored form of the response head, known once the upstream answered and the response was found storable. */
export type FillHead = Omit<StoredResponse, 'length'>;

export class Fill {
  readonly key: string;
  /** The leader's request fields: followers must select the same variant (§4.1). */
  readonly requestHeaders: readonly string[];
  /** The head, once known to be storable; null while pending or when there is none to follow. */
  head: FillHead | null = null;
  /** Body length from Content-Length, or null until a chunked body ends. */
  length: number | null = null;
  file: BodyFile | null = null;
  /** Set when an unsafe method or a purge hit the key meanwhile: readers finish, nothing is stored. */
  invalidated = false;
  /** HttpCache.endFill() ran: committed or discarded, no longer followed by new requests. */
  ended = false;
  /** Why endFill() did not commit a storable response, for the leader's log line (its head already said `stored`). */
  notCommitted: 'invalidated' | 'too-large' | 'disk-error' | null = null;
  private state: 'pending' | 'filling' | 'done' | 'failed' = 'pending';
  private failure: Error | null = null;
  private readonly readyPromise: Promise<FillHead | null>;
  private resolveReady!: (head: FillHead | null) => void;
  private wakers: Array<() => void> = [];
  /** The leader's reference plus one per reading follower; the file closes at zero. */
  private refs = 1;
  /** Why storing stopped while the body still comes (a disk error, too large): nothing is committed, followers get the rest from memory. */
  unstored: Error | null = null;
  /** Body bytes received since storing stopped, from `keptFrom` on, while a follower still needs them. */
  private kept: Buffer[] = [];
  private keptFrom = 0;
  private keptBytes = 0;
  /** Body bytes received (file and memory) once storing stopped. */
  private received = 0;
  /** The followers, each with its position. */
  private readonly readers = new Set<FillReader>();

  constructor(key: string, requestHeaders: readonly string[]) {
    this.key = key;
    this.requestHeaders = requestHeaders;
    this.readyPromise = new Promise((resolve) => (this.resolveReady = resolve));
  }

  /** The head to follow, or null when the response is not stored (followers then go to the origin themselves). */
  ready(): Promise<FillHead | null> {
    return this.readyPromise;
  }

  /** Body bytes readable now: in the file, and in memory once storing stopped. */
  get written(): number {
    return this.unstored === null ? this.inFile : this.received;
  }

  /** Body bytes in the file (from 0): read these by `file.fd`, the rest by piece(). */
  get inFile(): number {
    return this.file?.written ?? 0;
  }

  get complete(): boolean {
    return this.state === 'done';
  }

  get failed(): boolean {
    return this.state === 'failed';
  }

  /** New requests for the key may still follow it (HttpCache.follow, claimFill). */
  get joinable(): boolean {
    return !this.ended && !this.invalidated && this.state !== 'failed' && this.unstored === null;
  }

  /** The response is storable: followers may start. */
  start(head: FillHead, length: number | null, file: BodyFile): void {
    this.head = head;
    this.length = length;
    this.file = file;
    this.state = 'filling';
    this.resolveReady(head);
  }

  /** Nothing to follow (not storable, or the upstream failed before a head). */
  abandon(): void {
    if (this.state === 'pending') this.state = 'failed';
    this.resolveReady(null);
  }

  /**
   * The next piece of the body: to the file while storing, else to memory for
   * the followers; wakes them. Never rejects: a write error stops the storing
   * (the piece is then kept in memory) and is returned, for the log line.
   */
  async append(buf: Buffer): Promise<Error | null> {
    if (this.state !== 'filling') return null;
    let stopped: Error | null = null;
    if (this.unstored === null) {
      try {
        await this.file!.append(buf);
        this.wake();
        return null;
      } catch (err) {
        stopped = err as Error;
        this.stopStoring(stopped);
      }
    }
    this.keep(buf);
    this.wake();
    return stopped;
  }

  /** Storing stops (see the header comment); the body goes on for the followers. */
  stopStoring(why: Error): void {
    if (this.unstored !== null || this.state !== 'filling') return;
    this.unstored = why;
    this.received = this.inFile;
    this.keptFrom = this.received;
  }

  /** A piece past the file's end, copied (the upstream reader may reuse `buf`) while a follower needs it. */
  private keep(buf: Buffer): void {
    this.received += buf.length;
    if (this.readers.size === 0) {
      this.keptFrom = this.received;
      return;
    }
    this.kept.push(Buffer.from(buf));
    this.keptBytes += buf.length;
    // Too far behind: the slowest followers go, rather than memory or the leader's pace.
    while (this.keptBytes > KEPT_MAX && this.readers.size > 0) {
      let slowest: FillReader | null = null;
      for (const r of this.readers) if (slowest === null || r.pos < slowest.pos) slowest = r;
      slowest!.dropped = Object.assign(new Error(`the response stopped being stored and this client fell more than ${KEPT_MAX} bytes behind the upstream`), { code: 'ERR_CACHE_FOLLOWER_BEHIND' });
      this.readers.delete(slowest!);
      this.trim();
    }
  }

  /** Drops the kept pieces every follower has sent. */
  private trim(): void {
    let low = this.received;
    for (const r of this.readers) low = Math.min(low, r.pos);
    while (this.kept.length > 0 && this.keptFrom + this.kept[0]!.length <= low) {
      const b = this.kept.shift()!;
      this.keptFrom += b.length;
      this.keptBytes -= b.length;
    }
  }

  /** Bytes from body offset `from` (at or past inFile, below written), at most `max`, from memory. */
  piece(reader: FillReader, from: number, max: number): Buffer {
    if (reader.dropped !== null) throw reader.dropped;
    let at = this.keptFrom;
    for (const b of this.kept) {
      if (from < at + b.length) return b.subarray(from - at, Math.min(b.length, from - at + max));
      at += b.length;
    }
    throw new Error(`body bytes from ${from} are not kept (kept ${this.keptFrom}-${at})`);
  }

  /** The follower has sent everything before `pos`. */
  sentUpTo(reader: FillReader, pos: number): void {
    if (reader.dropped !== null) throw reader.dropped;
    reader.pos = pos;
    if (this.kept.length > 0) this.trim();
  }

  /** Every body byte is in the file. */
  finish(): void {
    if (this.state !== 'filling') return;
    this.length = this.written;
    this.state = 'done';
    this.wake();
  }

  fail(err: Error): void {
    if (this.state === 'done' || this.state === 'failed') return;
    this.state = 'failed';
    this.failure = err;
    this.resolveReady(null);
    this.wake();
  }

  /** Resolves when more bytes were written or the fill ended; rejects when it failed. */
  async progress(): Promise<void> {
    if (this.state === 'filling') await new Promise<void>((resolve) => this.wakers.push(resolve));
    if (this.state === 'failed') throw Object.assign(new Error(`the response being stored failed: ${this.failure?.message ?? 'unknown'}`), { code: 'ERR_CACHE_FILL_FAILED' });
  }

  private wake(): void {
    const w = this.wakers;
    this.wakers = [];
    for (const fn of w) fn();
  }

  /** A follower starts reading the fill; null when its file is already closed or storing stopped (bytes may be gone). */
  acquire(): FillReader | null {
    if (this.refs === 0 || this.file === null || this.unstored !== null) return null;
    this.refs++;
    const reader = new FillReader();
    this.readers.add(reader);
    return reader;
  }

  /** Drops a reference (the leader's, or a follower's with its reader); the last one closes the file. */
  release(reader?: FillReader): void {
    if (reader !== undefined && this.readers.delete(reader) && this.kept.length > 0) this.trim();
    if (this.refs > 0 && --this.refs === 0) void this.file?.handle.close().catch(() => undefined);
  }
}

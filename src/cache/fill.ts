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
 * written: when the fill fails, each one is told, and a response already
 * started is aborted, never completed short.
 */
import type { BodyFile, StoredResponse } from './store.js';

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

  constructor(key: string, requestHeaders: readonly string[]) {
    this.key = key;
    this.requestHeaders = requestHeaders;
    this.readyPromise = new Promise((resolve) => (this.resolveReady = resolve));
  }

  /** The head to follow, or null when the response is not stored (followers then go to the origin themselves). */
  ready(): Promise<FillHead | null> {
    return this.readyPromise;
  }

  /** Bytes in the file, readable now. */
  get written(): number {
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
    return !this.ended && !this.invalidated && this.state !== 'failed';
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

  /** Appends to the file and wakes the followers; rejects (and fails the fill) on a disk error. */
  async append(buf: Buffer): Promise<void> {
    if (this.state !== 'filling') return;
    try {
      await this.file!.append(buf);
    } catch (err) {
      this.fail(err as Error);
      throw err;
    }
    this.wake();
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

  /** A follower starts reading the file; false when it is already closed. */
  acquire(): boolean {
    if (this.refs === 0 || this.file === null) return false;
    this.refs++;
    return true;
  }

  /** Drops a reference (the leader's or a follower's); the last one closes the file. */
  release(): void {
    if (this.refs > 0 && --this.refs === 0) void this.file?.handle.close().catch(() => undefined);
  }
}

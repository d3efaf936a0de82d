/**
 * File descriptors kept open between uses, by key, as nginx's
 * `open_file_cache` keeps them: the cache's stored bodies (cache/open-bodies.ts)
 * and serve's files (http/open-files.ts). What a descriptor is worth and when
 * it is stale is the owner's; this is only the bookkeeping they share:
 *
 * - a use marks the descriptor in use until released, and a descriptor in use
 *   is never closed (a sendfile(2) on the thread pool, or an HTTP/2 body,
 *   may still read it);
 * - drop() closes it at once when unused, else when its last user is done;
 * - at most `max` are kept: making room closes the least recently used one
 *   not in use (a Map keeps insertion order; a use re-inserts);
 * - sweep() closes those unused for a while, as nginx's `inactive=`: an
 *   unlinked file keeps its disk space while a descriptor holds it.
 */
import { closeQuietly } from './close-quietly.js';

export interface Kept<T> {
  readonly fd: number;
  /** The owner's own record about the descriptor (validators, identity). */
  readonly value: T;
}

interface Slot<T> extends Kept<T> {
  /** Uses in progress. */
  users: number;
  /** Left the owner's view: closed when the last user is done. */
  dropped: boolean;
  /** performance.now()-like ms of the last release (or of the keeping). */
  lastUsed: number;
}

export class KeptDescriptors<T> {
  /** By key, least recently used first. */
  private readonly kept = new Map<string, Slot<T>>();
  /** The key set last into `kept` (its last entry), if it is still there; undefined when unknown. */
  private newest: string | undefined = undefined;

  constructor(private readonly max: number) {}

  /** Descriptors kept now. */
  get size(): number {
    return this.kept.size;
  }

  /** The descriptor kept for `key` and not dropped, now in use (release() it); undefined when there is none. */
  use(key: string): Kept<T> | undefined {
    const s = this.kept.get(key);
    if (s === undefined || s.dropped) return undefined;
    s.users++;
    // Re-inserted to be the most recently used, unless it already is (a file asked for again and
    // again): a delete and a set of a Map's only or last entry made V8 shrink and regrow its
    // table on every request (Runtime_MapShrink, about 750 instructions per keep-alive GET
    // counted by bench/request-cost.ts). Map order is insertion order (ECMA-262 §24.1), so the
    // last entry's key is the one set last.
    if (key !== this.newest) {
      this.kept.delete(key);
      this.kept.set(key, s);
      this.newest = key;
    }
    return s;
  }

  /**
   * Keeps `fd` for `key`, in use once (release() it), when there is room:
   * false when every kept one is in use, or a dropped one for the same key
   * still is (the caller then closes its own when done).
   */
  add(key: string, fd: number, value: T, now: number): Kept<T> | undefined {
    if (this.kept.has(key) || !this.makeRoom()) return undefined;
    const s: Slot<T> = { fd, value, users: 1, dropped: false, lastUsed: now };
    this.kept.set(key, s);
    this.newest = key;
    return s;
  }

  /**
   * A use of `fd` for `key` is done: a kept one's use (from use() or add())
   * ends, closed if it was dropped meanwhile; any other, the caller's own,
   * is closed.
   */
  release(key: string, fd: number, now: number): void {
    const s = this.kept.get(key);
    if (s === undefined || s.fd !== fd) {
      closeQuietly(fd);
      return;
    }
    s.users--;
    s.lastUsed = now;
    if (s.users === 0 && s.dropped) this.close(key, s);
  }

  /** `key`'s descriptor is no longer good: closed now, or when its last user is done. */
  drop(key: string): void {
    const s = this.kept.get(key);
    if (s === undefined) return;
    s.dropped = true;
    if (s.users === 0) this.close(key, s);
  }

  /** Closes the unused descriptors last used `idleMs` or more before `now`; how many. */
  sweep(now: number, idleMs: number): number {
    let closed = 0;
    for (const [key, s] of this.kept) {
      if (s.users > 0 || now - s.lastUsed < idleMs) continue;
      this.close(key, s);
      closed++;
    }
    return closed;
  }

  /** Closes every unused one and drops the rest (closed as their users finish). */
  clear(): void {
    for (const key of [...this.kept.keys()]) this.drop(key);
  }

  /** Below `max` kept, closing the least recently used unused one if needed; false when every one is in use. */
  private makeRoom(): boolean {
    if (this.kept.size < this.max) return true;
    for (const [key, s] of this.kept) {
      if (s.users > 0) continue;
      this.close(key, s);
      return true;
    }
    return false;
  }

  private close(key: string, s: Slot<T>): void {
    this.kept.delete(key);
    if (key === this.newest) this.newest = undefined;
    closeQuietly(s.fd);
  }
}

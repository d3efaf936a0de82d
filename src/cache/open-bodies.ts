/**
 * The descriptors of stored bodies, kept open between hits, as nginx's
 * `open_file_cache` keeps those of files it serves: open(2) and close(2) of
 * the body were about 8 % of the CPU of a 1 KiB cache hit (node --cpu-prof,
 * docs/benchmarks.md).
 *
 * Why a kept descriptor serves the right bytes: a body file never changes once
 * committed. A new response (a replacement, a combined partial) is a new
 * entry with a new id and file, and a 304 rewrites only the metadata
 * (store.ts). So a descriptor opened for an entry reads that entry's bytes
 * for as long as it is open, whatever happens to the name.
 *
 * When it is closed:
 * - the entry leaves this process's index (replaced, invalidated, purged,
 *   evicted, here or by another worker: CacheStore.onDropped): at once when
 *   no hit is sending from it, else when the last one is done;
 * - more than `max` are open: the least recently used one no hit is sending
 *   from (a hit that finds none idle opens a descriptor of its own, closed
 *   when it is done, as before).
 *
 * Shared with other workers, an entry may leave their index before this one
 * hears of it; a purge unlinks the body before it answers, so that no worker
 * serves it afterwards. A kept descriptor therefore checks on reuse that its
 * file still has a name (fstat st_nlink > 0; the addon's linkCount, one
 * syscall, or fs.fstatSync where the addon is older): an unlinked body is
 * treated as gone, as the ENOENT of a fresh open(2) was.
 */
import fs from 'node:fs';
import { closeQuietly } from '../transport/close-quietly.js';

/** What a hit holds: the descriptor, and whether it is kept (shared) or its own. */
export interface BodyLease {
  readonly fd: number;
  readonly kept: boolean;
}

interface Kept {
  fd: number;
  /** Hits sending from it now. */
  users: number;
  /** Left the index: closed when the last user is done. */
  dropped: boolean;
}

export interface OpenBodiesOptions {
  /** How many descriptors stay open at most. */
  max: number;
  /** Opens a body file; throws as fs.openSync does (ENOENT: gone). */
  open(file: string): number;
  /** st_nlink of an open descriptor (0: unlinked), or -errno. */
  linkCount(fd: number): number;
  /** Whether another process may unlink a body this one still indexes (workers sharing the directory). */
  shared: boolean;
}

/** The default bound: as nginx's `open_file_cache max=1000` examples; each costs one descriptor. */
export const OPEN_BODIES_MAX = 1000;

/**
 * How many to keep under a descriptor limit of `nofile` (RLIMIT_NOFILE, soft;
 * null: unknown): an eighth of it at most, so that kept bodies never take the
 * descriptors connections need (accepts would fail with EMFILE).
 */
export function openBodiesBound(nofile: number | null): number {
  if (nofile === null || !Number.isFinite(nofile)) return OPEN_BODIES_MAX;
  return Math.max(0, Math.min(OPEN_BODIES_MAX, Math.floor(nofile / 8)));
}

/** The soft RLIMIT_NOFILE of this process, from /proc/self/limits (node has no getrlimit); null when unreadable or unlimited. */
export function descriptorLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'latin1'));
    return m === null || m[1] === 'unlimited' ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/** st_nlink by node's fs.fstatSync: the fallback where the addon has no linkCount. */
export function linkCountByFstat(fd: number): number {
  try {
    return fs.fstatSync(fd).nlink;
  } catch (err) {
    return -((err as { errno?: number }).errno ?? 1);
  }
}

export class OpenBodies {
  /** By entry id, least recently used first (a Map keeps insertion order; a use re-inserts). */
  private readonly kept = new Map<string, Kept>();

  constructor(private readonly o: OpenBodiesOptions) {}

  /** Descriptors open now (kept ones; a hit's own is not counted). */
  get size(): number {
    return this.kept.size;
  }

  /**
   * A descriptor of entry `id`'s body, or null when its file is gone (never
   * opened, or unlinked by another process). Throws what open(2) throws
   * otherwise. Give it back with release().
   */
  acquire(id: string, file: string): BodyLease | null {
    const k = this.kept.get(id);
    if (k !== undefined && !k.dropped) {
      if (this.o.shared && this.o.linkCount(k.fd) <= 0) {
        this.drop(id);
        return null;
      }
      k.users++;
      this.kept.delete(id);
      this.kept.set(id, k);
      return { fd: k.fd, kept: true };
    }
    let fd: number;
    try {
      fd = this.o.open(file);
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return null;
      throw err;
    }
    // A dropped one still being sent from keeps its place until its last user is done; this hit gets its own.
    if (k !== undefined || !this.makeRoom()) return { fd, kept: false };
    this.kept.set(id, { fd, users: 1, dropped: false });
    return { fd, kept: true };
  }

  /** The hit is done with the descriptor: no sendfile(2) on the thread pool still reads it. */
  release(id: string, lease: BodyLease): void {
    const k = lease.kept ? this.kept.get(id) : undefined;
    if (k === undefined || k.fd !== lease.fd) {
      closeQuietly(lease.fd);
      return;
    }
    k.users--;
    if (k.users === 0 && k.dropped) this.closeKept(id, k);
  }

  /** Entry `id` left the index: its descriptor closes now, or when the last hit sending from it is done. */
  drop(id: string): void {
    const k = this.kept.get(id);
    if (k === undefined) return;
    k.dropped = true;
    if (k.users === 0) this.closeKept(id, k);
  }

  /** Below `max` kept, closing the least recently used idle one if needed; false when every one is in use. */
  private makeRoom(): boolean {
    if (this.kept.size < this.o.max) return true;
    for (const [id, k] of this.kept) {
      if (k.users > 0) continue;
      this.closeKept(id, k);
      return true;
    }
    return false;
  }

  private closeKept(id: string, k: Kept): void {
    this.kept.delete(id);
    closeQuietly(k.fd);
  }
}


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
import { KeptDescriptors } from '../transport/kept-descriptors.js';

/** What a hit holds: the descriptor, and whether it is kept (shared) or its own. */
export interface BodyLease {
  readonly fd: number;
  readonly kept: boolean;
}

export interface OpenBodiesOptions {
  /** How many descriptors stay open at most. */
  max: number;
  /** Opens a body file of `length` bytes (when given); throws as fs.openSync does (ENOENT: gone). */
  open(file: string, length?: number): number;
  /** st_nlink of an open descriptor (0: unlinked), or -errno. */
  linkCount(fd: number): number;
  /** Whether another process may unlink a body this one still indexes (workers sharing the directory). */
  shared: boolean;
}

/** The default bound (descriptor-limit.ts), under their old names. */
export { KEPT_MAX as OPEN_BODIES_MAX, keptBound as openBodiesBound, descriptorLimit } from '../transport/descriptor-limit.js';

/** st_nlink by node's fs.fstatSync: the fallback where the addon has no linkCount. */
export function linkCountByFstat(fd: number): number {
  try {
    return fs.fstatSync(fd).nlink;
  } catch (err) {
    return -((err as { errno?: number }).errno ?? 1);
  }
}

export class OpenBodies {
  private readonly kept: KeptDescriptors<null>;

  constructor(private readonly o: OpenBodiesOptions) {
    this.kept = new KeptDescriptors(o.max);
  }

  /** Descriptors open now (kept ones; a hit's own is not counted). */
  get size(): number {
    return this.kept.size;
  }

  /**
   * A descriptor of entry `id`'s body, or null when its file is gone (never
   * opened, or unlinked by another process). Throws what open(2) throws
   * otherwise. Give it back with release().
   */
  acquire(id: string, file: string, length?: number): BodyLease | null {
    const k = this.kept.use(id);
    if (k !== undefined) {
      if (this.o.shared && this.o.linkCount(k.fd) <= 0) {
        this.kept.release(id, k.fd, 0);
        this.kept.drop(id);
        return null;
      }
      return { fd: k.fd, kept: true };
    }
    let fd: number;
    try {
      fd = this.o.open(file, length);
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return null;
      throw err;
    }
    // A dropped one still being sent from keeps its place until its last user is done; this hit gets its own.
    return { fd, kept: this.kept.add(id, fd, null, 0) !== undefined };
  }

  /** The hit is done with the descriptor: no sendfile(2) on the thread pool still reads it. */
  release(id: string, lease: BodyLease): void {
    this.kept.release(id, lease.fd, 0);
  }

  /** Entry `id` left the index: its descriptor closes now, or when the last hit sending from it is done. */
  drop(id: string): void {
    this.kept.drop(id);
  }
}

/**
 * serve's file descriptors kept open between requests, as nginx's
 * `open_file_cache` keeps them, but asked about on every request: nginx
 * trusts a kept descriptor for `open_file_cache_valid` (60 s by default), so
 * a file replaced meanwhile is served old. Here each request makes one
 * fstatat(2) of its path (the addon's statAt), and the kept descriptor is
 * used only when that finds the very inode it holds (st_dev, st_ino),
 * unchanged (size, mtime, ctime, mode): a file replaced by rename, written
 * in place, truncated, unlinked or chmod'ed since is opened afresh, by
 * openat2 beneath the root as before. So a request costs fstatat and the
 * read, where it cost openat2, fstat, the read and close (open and close were
 * a tenth of serve's CPU for a 1 KiB file, docs/benchmarks.md).
 *
 * What the check leaves as it was: a file changed in place within the same
 * timestamp tick reads as it would from a fresh open (the same inode, the
 * same page cache), with the validators such an open would compute.
 *
 * A kept descriptor is released after the response (after sendfile(2) on the
 * thread pool, or the HTTP/2 body); those unused for a sweep interval are
 * closed, so an unlinked file's disk space comes back (nginx's `inactive`).
 */
import { KeptDescriptors } from '../transport/kept-descriptors.js';
import type { FileStat } from './file-stat.js';

/** The slots statAt and openBeneathStat fill with ctime: mode, size, mtime (s, ns), ino, dev, ctime (s, ns). */
export const FILE_SLOTS = 8;

/**
 * What find() gives for a kept descriptor: the same object for every request
 * that finds it (made once by keep(), never changed), where an object made
 * per request was an allocation per 1 KiB keep-alive GET. Its shape is
 * safe-path.ts's OpenedUnderRoot, which openUnderRoot hands on as it is.
 */
export interface KeptFile {
  readonly kind: 'open';
  readonly fd: number;
  readonly stat: FileStat;
  /** The file's path as the requests that find it name it (their access-log line, validators' key), if given to keep(). */
  readonly path: string | undefined;
  /** Its path beneath the root: the key it is kept by. */
  readonly relative: string;
}

/** What a kept descriptor's file was when opened: find()'s answer, and the slots a later statAt must match. */
interface OpenedAs {
  readonly found: KeptFile;
  readonly slots: Float64Array;
}

/** statAt bound to the root's descriptor: fstatat(2) of `relative` into `out` (FILE_SLOTS), 0 or -errno. */
export type StatAt = (relative: string, out: Float64Array) => number;

/** How often unused descriptors are looked for; one unused across a whole interval is closed. */
export const SWEEP_MS = 30_000;

export class OpenFiles {
  private readonly kept: KeptDescriptors<OpenedAs>;
  /** Where statAt writes: its own, or the addon's shared slots (served-root.ts), which it is given with. */
  private readonly probe: Float64Array;
  /** Sweeps so far: the clock of lastUsed (no time read per request). */
  private tick = 0;

  /**
   * `probe`: the slots statAt fills whatever `out` it is passed (the addon's
   * statAtShared, which takes none), read at once after each call; by
   * default a new array of FILE_SLOTS.
   */
  constructor(private readonly statAt: StatAt, max: number, probe?: Float64Array) {
    this.kept = new KeptDescriptors(max);
    if (probe !== undefined && probe.length < FILE_SLOTS) throw new RangeError(`OpenFiles needs ${FILE_SLOTS} stat slots, given ${probe.length}`);
    this.probe = probe ?? new Float64Array(FILE_SLOTS);
  }

  /** Descriptors kept now. */
  get size(): number {
    return this.kept.size;
  }

  /**
   * The kept descriptor of `relative` and its fstat, when the path still
   * names that file unchanged; release() it when done. undefined otherwise
   * (a stale one is dropped): open the file, then offer it to keep().
   */
  find(relative: string): KeptFile | undefined {
    const k = this.kept.use(relative);
    if (k === undefined) return undefined;
    if (this.statAt(relative, this.probe) === 0 && sameSlots(this.probe, k.value.slots)) return k.value.found;
    this.kept.release(relative, k.fd, this.tick);
    this.kept.drop(relative);
    return undefined;
  }

  /**
   * Offers `fd`, just opened for `relative` and fstat'ed into `slots`
   * (FILE_SLOTS of them: ctime included), for keeping. Either way the
   * caller release()s it when done: a descriptor not kept is closed then.
   * `path`: what find() gives back as the file's path, the same string each
   * time (not made anew per request: a string made per request was hashed,
   * flattened and compared anew as the key of validatorsFor's map).
   */
  keep(relative: string, fd: number, stat: FileStat, slots: Float64Array, path?: string): void {
    this.kept.add(relative, fd, { found: { kind: 'open', fd, stat, path, relative }, slots: Float64Array.from(slots) }, this.tick);
  }

  /** The response is done with `fd` (found or kept for `relative`, or not kept). */
  release(relative: string, fd: number): void {
    this.kept.release(relative, fd, this.tick);
  }

  /** Its root is served no more: every kept descriptor closes (one in use, when its response is done), and the sweep forgets it. */
  close(): void {
    swept.delete(this);
    this.kept.clear();
  }

  /** Closes the descriptors no request used since the sweep before; called every SWEEP_MS. */
  sweep(): number {
    this.tick++;
    return this.kept.sweep(this.tick, 2);
  }
}

function sameSlots(a: Float64Array, b: Float64Array): boolean {
  for (let i = 0; i < FILE_SLOTS; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** One sweep timer for every OpenFiles of the process (one per served root), not keeping it alive. */
const swept = new Set<OpenFiles>();
let sweeper: NodeJS.Timeout | null = null;

export function sweepEvery(files: OpenFiles, ms: number = SWEEP_MS): void {
  swept.add(files);
  if (sweeper !== null) return;
  sweeper = setInterval(() => {
    for (const f of swept) f.sweep();
  }, ms);
  sweeper.unref();
}

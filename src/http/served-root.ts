/**
 * The document root `serve` serves, as configured (a path that may be a
 * symlink: the `current -> releases/N` of a deploy) and as it resolves now.
 * nginx resolves `root` for every request, so a deploy that flips the link
 * is served at once; Aludel resolved it once, at start-up, and kept serving
 * the old release until a reload. Now, at most once a second (on a request),
 * one stat(2) of the configured path asks whether it still names the same
 * directory (st_dev, st_ino); when not, the new one is realpath'ed, opened
 * and served from the next request on, and the old one's descriptors close
 * once nothing serves it.
 *
 * Per resolved root, for as long as something serves it: its directory's
 * descriptor (openat2 beneath it, safe-path.ts) and the files kept open in it
 * (open-files.ts). Each reload (SIGHUP) opens a ServedRoot of its own; the
 * one it replaces is closed once its generation is drained (close()), as
 * nginx's old workers exit once their connections are done, so a root flipped
 * away from later is not held by generations that serve nothing.
 */
import fs from 'node:fs';
import type { Logger } from '../log/logger.js';
import { loadAddon, type Native } from '../native/binding.js';
import { descriptorLimit, keptBound } from '../transport/descriptor-limit.js';
import { closeQuietly } from '../transport/close-quietly.js';
import { FILE_SLOTS, OpenFiles, sweepEvery } from './open-files.js';
import type { OpenBeneath } from './safe-path.js';

/** What serving one resolved root holds: its directory's descriptor, the files kept open in it, and how many ServedRoots use it. */
interface RootHold {
  fd: number;
  files: OpenFiles | undefined;
  users: number;
}

const holds = new Map<string, RootHold>();

/** What a static handler needs of a resolved root (createStaticHandler's options). */
export interface RootAccess {
  root: string;
  openBeneath?: OpenBeneath;
  files?: OpenFiles;
}

/**
 * openat2 beneath `real` where the addon and the kernel (Linux >= 5.6) have
 * it, and its kept files where the addon has statAt; only the root without
 * them (the handler then resolves by realpath). Asked once per root: "."
 * beneath it must open, or the fast path is not offered.
 */
function access(real: string): RootAccess {
  const addon = loadAddon();
  if (addon instanceof Error || typeof addon.openBeneath !== 'function') return { root: real };
  let hold = holds.get(real);
  if (hold === undefined) {
    let fd: number;
    try {
      fd = fs.openSync(real, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    } catch {
      return { root: real };
    }
    const probe = addon.openBeneath(fd, '.');
    if (probe < 0) {
      closeQuietly(fd);
      return { root: real };
    }
    closeQuietly(probe);
    hold = { fd, files: undefined, users: 0 };
    holds.set(real, hold);
  }
  hold.users++;
  const fd = hold.fd;
  if (typeof addon.openBeneathStat !== 'function') return { root: real, openBeneath: (relative) => addon.openBeneath(fd, relative) };
  // Open and fstat in one call (file-stat.ts), into these slots, ctime included (open-files.ts keeps a descriptor by it).
  const fstats = new Float64Array(FILE_SLOTS);
  const openBeneath = Object.assign((relative: string) => addon.openBeneathStat!(fd, relative, fstats), { fstats });
  if (hold.files === undefined) hold.files = openFiles(addon, fd);
  return { root: real, openBeneath, files: hold.files };
}

/**
 * The kept descriptors of the root open as `fd`, checked by the addon's
 * statAtShared into its shared slots where it has them (one argument less to
 * look up per request: native/file.c statSlots), else by statAt; none
 * without either. The slots are read right after each call, on this thread,
 * so every root may share them.
 */
function openFiles(addon: Native, fd: number): OpenFiles | undefined {
  let files: OpenFiles;
  if (typeof addon.statAtShared === 'function' && typeof addon.statSlots === 'function') {
    const statAtShared = addon.statAtShared;
    files = new OpenFiles((relative) => statAtShared(fd, relative), keptBound(descriptorLimit()), addon.statSlots());
  } else if (typeof addon.statAt === 'function') {
    const statAt = addon.statAt;
    files = new OpenFiles((relative, out) => statAt(fd, relative, out), keptBound(descriptorLimit()));
  } else return undefined;
  sweepEvery(files);
  return files;
}

/** One user less of `real`'s hold: with none left, its kept files and its directory's descriptor close. */
function release(real: string): void {
  const hold = holds.get(real);
  if (hold === undefined || --hold.users > 0) return;
  holds.delete(real);
  hold.files?.close();
  closeQuietly(hold.fd);
}

/** How often the configured path is asked again, at most. */
export const ROOT_CHECK_MS = 1000;

const watched = new Set<ServedRoot>();
let ticker: NodeJS.Timeout | null = null;

export class ServedRoot<H = unknown> {
  private real: string;
  private id: { dev: number; ino: number };
  private handler: H;
  /** Whether `real` is held (access() took its directory's descriptor for this root), to be released once. */
  private held: boolean;
  private due = false;
  private closed = false;

  private constructor(
    private readonly configured: string,
    real: string,
    id: { dev: number; ino: number },
    private readonly make: (root: RootAccess) => H,
    private readonly log: Logger,
  ) {
    this.real = real;
    this.id = id;
    const root = access(real);
    this.held = root.openBeneath !== undefined;
    this.handler = make(root);
  }

  /** `configured` resolved now (realpath; rejects as fs.realpath does), with a handler made for it by `make`. */
  static async open<H>(configured: string, make: (root: RootAccess) => H, log: Logger): Promise<ServedRoot<H>> {
    const real = await fs.promises.realpath(configured);
    const st = await fs.promises.stat(real);
    const r = new ServedRoot(configured, real, { dev: st.dev, ino: st.ino }, make, log);
    watched.add(r);
    if (ticker === null) {
      ticker = setInterval(() => { for (const w of watched) w.due = true; }, ROOT_CHECK_MS);
      ticker.unref();
    }
    return r;
  }

  /** The resolved root served now. */
  get root(): string {
    return this.real;
  }

  /** The handler for this request: the configured path asked again first when a second has passed. */
  current(): H {
    if (this.due) this.recheck();
    return this.handler;
  }

  /**
   * Nothing serves from this root any more (its generation drained after a
   * reload, or the process stopping): it leaves the once-a-second watch and
   * gives up its hold on the resolved root, whose descriptors close when no
   * other ServedRoot holds it. Its handler must not be used after.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    watched.delete(this);
    if (watched.size === 0 && ticker !== null) {
      clearInterval(ticker);
      ticker = null;
    }
    this.releaseRoot();
  }

  private releaseRoot(): void {
    if (this.held) release(this.real);
    this.held = false;
  }

  private recheck(): void {
    this.due = false;
    if (this.closed) return;
    let st: fs.Stats;
    try {
      st = fs.statSync(this.configured);
    } catch {
      return; // Gone for a moment (a deploy between unlink and symlink): the last root serves on.
    }
    if (st.dev === this.id.dev && st.ino === this.id.ino) return;
    let real: string;
    try {
      real = fs.realpathSync(this.configured);
    } catch {
      return;
    }
    const old = this.real;
    const root = access(real);
    this.handler = this.make(root);
    this.releaseRoot();
    this.held = root.openBeneath !== undefined;
    this.real = real;
    this.id = { dev: st.dev, ino: st.ino };
    this.log.info({ root: this.configured, now: real, before: old }, 'root now names another directory: serving it');
  }
}

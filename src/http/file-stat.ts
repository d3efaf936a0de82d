/**
 * What the static handler reads of a file's fstat(2): size, mtime, inode,
 * device and type. fs.Stats has these; so has the addon's openBeneathStat,
 * which opens and fstat's in one call into the addon and writes the fields
 * into a Float64Array (native/file.c), read back here as node's own
 * fs.fstatSync would make them (lib/internal/fs/utils.js: mtimeMs is
 * sec * 1e3 + nsec / 1e6, so both ways give the same validators).
 */
import { constants } from 'node:fs';

export interface FileStat {
  readonly size: number;
  readonly mtimeMs: number;
  readonly ino: number;
  readonly dev: number;
  isFile(): boolean;
  isDirectory(): boolean;
}

/** The slots openBeneathStat fills: st_mode, st_size, st_mtim.tv_sec, st_mtim.tv_nsec, st_ino, st_dev. */
export const STAT_SLOTS = 6;

const { S_IFMT, S_IFREG, S_IFDIR } = constants;

class SlotStat implements FileStat {
  readonly size: number;
  readonly mtimeMs: number;
  readonly ino: number;
  readonly dev: number;
  private readonly mode: number;

  constructor(slots: Float64Array) {
    this.mode = slots[0]!;
    this.size = slots[1]!;
    this.mtimeMs = slots[2]! * 1e3 + slots[3]! / 1e6;
    this.ino = slots[4]!;
    this.dev = slots[5]!;
  }

  isFile(): boolean {
    return (this.mode & S_IFMT) === S_IFREG;
  }

  isDirectory(): boolean {
    return (this.mode & S_IFMT) === S_IFDIR;
  }
}

/** The stat openBeneathStat wrote into `slots`, copied out (the slots are reused by the next call). */
export function statFromSlots(slots: Float64Array): FileStat {
  return new SlotStat(slots);
}

/**
 * The per-file values of a static response: ETag, Last-Modified (as a Date
 * for conditional requests and as its HTTP-date text) and Content-Type. They
 * depend only on the file's name, size and mtime (and the clock, for a file
 * stamped in the future), so they are kept per file while its fstat says the
 * same inode, size and mtime, instead of being formatted anew for each
 * request (a profile of 1 KiB keep-alive GETs had the ETag concatenation and
 * toUTCString() among serve's own costs).
 */
import type { FileStat } from './file-stat.js';
import { makeEtag } from './conditional.js';
import { contentTypeFor } from './content-type.js';
import { wallNow } from './wall-clock.js';

export interface FileValidators {
  readonly etag: string;
  readonly lastModified: Date;
  /** lastModified as an IMF-fixdate (RFC 9110 §5.6.7). */
  readonly lastModifiedText: string;
  readonly contentType: string;
  /**
   * The fields of a 200 of the whole file (static-handler.ts fileFields), and
   * of a 304 (§15.4.5: the validators again), made once per file version: the
   * same list for each request, given to writeHead, which neither keeps nor
   * changes it (LaneResponse copies before a change; node's copies as it
   * writes). A list made per request, and the lane's copy of it, were about
   * 0.5k instructions per 1 KiB keep-alive GET (bench/request-cost.ts). Not
   * to be changed.
   */
  readonly fullFields: Array<string | number>;
  readonly notModifiedFields: Array<string | number>;
}

interface Entry extends FileValidators {
  readonly dev: number;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
}

/** Files remembered at most; past that the map starts again (a miss only costs the formatting it saves). */
export const VALIDATORS_KEPT = 1024;

const entries = new Map<string, Entry>();

/**
 * §8.8.2.1: an origin MUST NOT send a Last-Modified later than its Date, so
 * a file stamped in the future (clock skew, bad archive) is reported as now.
 * HTTP-dates have one-second resolution, so sub-second parts are dropped.
 */
function lastModifiedFor(mtimeMs: number, now: number): Date {
  return new Date(Math.floor(Math.min(mtimeMs, now) / 1000) * 1000);
}

/**
 * The validators of `file` as fstat'ed now. An entry is used only while the
 * fstat matches it and its mtime is not in the future (then Last-Modified is
 * the mtime itself, whatever the clock says); a file stamped in the future
 * is computed for each request, as its Last-Modified follows the clock.
 * The clock is the one the lane's Date field reads (wall-clock.ts).
 */
export function validatorsFor(file: string, stat: FileStat, now: number = wallNow()): FileValidators {
  const kept = entries.get(file);
  const fresh = stat.mtimeMs <= now;
  if (kept !== undefined && fresh && kept.mtimeMs === stat.mtimeMs && kept.size === stat.size && kept.ino === stat.ino && kept.dev === stat.dev) return kept;
  const lastModified = lastModifiedFor(stat.mtimeMs, now);
  const etag = makeEtag(stat);
  const lastModifiedText = lastModified.toUTCString();
  const contentType = contentTypeFor(file);
  const made: Entry = {
    dev: stat.dev, ino: stat.ino, size: stat.size, mtimeMs: stat.mtimeMs,
    etag, lastModified, lastModifiedText, contentType,
    // In the order setHeader once gave them.
    fullFields: ['Content-Type', contentType, 'Last-Modified', lastModifiedText, 'ETag', etag, 'Accept-Ranges', 'bytes', 'Content-Length', stat.size],
    notModifiedFields: ['ETag', etag, 'Last-Modified', lastModifiedText],
  };
  if (fresh) {
    if (entries.size >= VALIDATORS_KEPT && kept === undefined) entries.clear();
    entries.set(file, made);
  }
  return made;
}

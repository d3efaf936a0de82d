/**
 * Partial content in the cache (RFC 9111 §3.3, §3.4), as pure rules: which
 * 206 responses may be stored as parts of a response, how the byte ranges a
 * stored entry holds are kept (sorted, disjoint, merged), whether they
 * cover a request's range, and when parts may be combined. No I/O.
 *
 * Choices (docs/cache.md, "Partial content"):
 * - Only a single-part 206 with `Content-Range: bytes a-b/complete-length`
 *   (the complete length known) is stored; multipart/byteranges is not
 *   (RFC 9110 §14.6: each part would have to be parsed out of the body).
 * - Only parts with a strong entity-tag are stored and combined (§3.4: "only
 *   if ... both ... have the same strong validator"; RFC 9110 §8.8.1). A
 *   Last-Modified alone is never taken as strong, though RFC 9110 §8.8.2.2
 *   sometimes allows it: proving its conditions takes a Date at least 60 s
 *   after it and trusting the origin's clock.
 * - Ranges are [start, end) pairs, end exclusive, so adjacent parts merge by
 *   equality.
 */
import { parseRange } from '../http/range.js';
import { fieldValue, freshenHeaders, storability, type Headers, type NotStoredReason, type StoreInput } from './policy.js';
import type { Targets } from './targeted.js';

/** Byte ranges, [start, end) with end exclusive; sorted, disjoint and never adjacent (merged). */
export type ByteRanges = ReadonlyArray<readonly [number, number]>;

/** A 206's Content-Range: bytes [start, end) of a representation of `complete` bytes. */
export interface PartRange {
  start: number;
  end: number;
  complete: number;
}

/** Why a 206 is not stored as a part, besides the §3 reasons of policy.storability. */
export type NotStoredPartReason = NotStoredReason | 'multipart' | 'content-range' | 'no-strong-validator';

const BYTES_RANGE = /^bytes[ \t]+(\d{1,15})-(\d{1,15})\/(\d{1,15})$/i;

/**
 * RFC 9110 §14.4: `Content-Range: bytes first-last/complete-length`. Null
 * for an unsatisfied-range (`bytes *\/n`), an unknown complete length
 * (`/*`: the part cannot be placed in a body of known size), another unit,
 * or an invalid range (§14.4: last-pos < first-pos, or past the length).
 */
export function parseContentRange(value: string | undefined): PartRange | null {
  if (value === undefined) return null;
  const m = BYTES_RANGE.exec(value.trim());
  if (m === null) return null;
  const first = Number(m[1]);
  const last = Number(m[2]);
  const complete = Number(m[3]);
  if (last < first || last >= complete) return null;
  return { start: first, end: last + 1, complete };
}

/** RFC 9110 §8.8.3: the entity-tag when it is strong (no `W/` prefix), else null. */
export function strongEtag(headers: Headers): string | null {
  const tag = fieldValue(headers, 'etag')?.trim();
  if (tag === undefined || tag.startsWith('W/') || !/^"[^"]*"$/.test(tag)) return null;
  return tag;
}

/** RFC 9110 §8.8.3.2 strong comparison: both strong and identical. */
export function sameStrongValidator(a: Headers, b: Headers): boolean {
  const x = strongEtag(a);
  return x !== null && x === strongEtag(b);
}

/**
 * §3.3 for a 206 answering a GET with Range: its range is known and single,
 * it has a strong validator (§3.4), and it is storable by the §3 rules that
 * apply to the complete 200 it is a part of (`status` is judged as 200: a
 * 206 is heuristically cacheable like it, RFC 9110 §15.1).
 */
export function partStorability(i: StoreInput): { store: true; range: PartRange } | { store: false; reason: NotStoredPartReason } {
  const type = fieldValue(i.responseHeaders, 'content-type') ?? '';
  if (/^\s*multipart\/byteranges\b/i.test(type)) return { store: false, reason: 'multipart' };
  const range = parseContentRange(fieldValue(i.responseHeaders, 'content-range'));
  if (range === null) return { store: false, reason: 'content-range' };
  if (strongEtag(i.responseHeaders) === null) return { store: false, reason: 'no-strong-validator' };
  const verdict = storability({ ...i, status: 200 });
  return verdict.store ? { store: true, range } : verdict;
}

/** `ranges` with [start, end) added, merged with every range it overlaps or touches. */
export function addRange(ranges: ByteRanges, start: number, end: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let s = start;
  let e = end;
  for (const [a, b] of ranges) {
    if (b < s) out.push([a, b]);
    else if (a > e) out.push([a, b]);
    else {
      s = Math.min(s, a);
      e = Math.max(e, b);
    }
  }
  out.push([s, e]);
  return out.sort((x, y) => x[0] - y[0]);
}

/** `ranges` without the bytes of [start, end). */
export function subtractRange(ranges: ByteRanges, start: number, end: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const [a, b] of ranges) {
    if (b <= start || a >= end) out.push([a, b]);
    else {
      if (a < start) out.push([a, start]);
      if (b > end) out.push([end, b]);
    }
  }
  return out;
}

/** Every byte of [start, end) is held: ranges are merged, so one range must hold it all. */
export function covers(ranges: ByteRanges, start: number, end: number): boolean {
  return ranges.some(([a, b]) => a <= start && end <= b);
}

/** The parts make up the whole body of `length` bytes (§3.4: the combined response is then complete). */
export function isWhole(ranges: ByteRanges, length: number): boolean {
  return covers(ranges, 0, length);
}

/** Bytes held: what a partial entry costs on disk (its file is sparse). */
export function heldBytes(ranges: ByteRanges): number {
  let n = 0;
  for (const [a, b] of ranges) n += b - a;
  return n;
}

/** Well-formed for a body of `length` bytes: sorted, disjoint, not adjacent, non-empty, within it (restart check). */
export function validRanges(ranges: ByteRanges, length: number): boolean {
  let prev = -1;
  for (const [a, b] of ranges) {
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || a <= prev || a >= b || b > length) return false;
    prev = b;
  }
  return true;
}

/**
 * What a stored partial entry can answer for a GET with `range` (and
 * `ifRange`): the stored byte range [start, end) that is the 206's body, or
 * why the request goes upstream instead:
 * - `no-range`: no Range, or one that is not a single satisfiable byte range
 *   (RFC 9110 §14.2: the whole representation, or a 416, is the answer, and
 *   the parts cannot give either);
 * - `if-range`: If-Range does not name the stored strong entity-tag
 *   (RFC 9110 §13.1.5: the answer would be the whole 200); a date in If-Range
 *   is not evaluated here (the strong-validator rule of §3.4 again);
 * - `not-covered`: some byte of the range is not stored.
 */
export function rangeFromParts(
  stored: { length: number; ranges: ByteRanges; headers: Headers },
  range: string | undefined,
  ifRange: string | undefined,
): { start: number; end: number } | 'no-range' | 'if-range' | 'not-covered' {
  const r = parseRange(range, stored.length);
  if (r.kind !== 'single') return 'no-range';
  if (ifRange !== undefined && ifRange.trim() !== strongEtag(stored.headers)) return 'if-range';
  return covers(stored.ranges, r.start, r.end + 1) ? { start: r.start, end: r.end + 1 } : 'not-covered';
}

/** The fields and times of a stored response: what a combination of parts takes from one of them. */
export interface PartHead {
  headers: string[];
  requestTime: number;
  responseTime: number;
  initialAge: number;
}

/**
 * §3.4: the head of the response combined from a stored partial entry and a
 * new part with the same strong validator. The header fields of the newer
 * one ("the new response": the later received, whichever was stored first)
 * replace the other's fields of the same names, and its times are the
 * combination's. Across workers, a part received earlier can be combined
 * later (it waited for the key's lock), so the newer is not always the
 * part being combined now.
 */
export function combinedHead(held: PartHead, part: PartHead, targets?: Targets): PartHead {
  const partNewer = part.responseTime >= held.responseTime;
  const older = partNewer ? held : part;
  const newer = partNewer ? part : held;
  return { headers: freshenHeaders(older.headers, newer.headers, newer.responseTime, targets), requestTime: newer.requestTime, responseTime: newer.responseTime, initialAge: newer.initialAge };
}

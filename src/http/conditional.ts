/**
 * Validators and conditional request evaluation (RFC 9110 §8.8, §13).
 */
import type { IncomingHttpHeaders } from 'node:http';

export type PreconditionResult = 'ok' | 'not-modified' | 'precondition-failed';

interface EntityTag {
  weak: boolean;
  /** The opaque-tag including its double quotes. */
  opaque: string;
}

/**
 * Strong ETag in nginx's format so caches primed by nginx stay valid:
 * "<mtime seconds hex>-<size hex>". Strong because a same-size rewrite within
 * the same second is the only collision, the same trade-off nginx makes.
 */
export function makeEtag(stat: { size: number; mtimeMs: number }): string {
  const seconds = Math.floor(stat.mtimeMs / 1000);
  return `"${seconds.toString(16)}-${stat.size.toString(16)}"`;
}

/**
 * Whether a request with these fields ([name, value, ...], as node's
 * rawHeaders) may carry a precondition (§13.1: If-Match, If-None-Match,
 * If-Modified-Since, If-Unmodified-Since, If-Range) or a Range (§14.2):
 * false when no field name begins with "i" or "r" in either case, and then
 * evaluatePreconditions says 'ok' and a GET gets the whole representation
 * without either being asked for. Scanning first letters is cheaper than
 * the five lookups in node's or the lane's field object (about 0.1k
 * instructions each per 1 KiB keep-alive GET, bench/request-cost.ts).
 */
export function mayHaveConditions(rawHeaders: readonly string[]): boolean {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const c = rawHeaders[i]!.charCodeAt(0) | 0x20;
    if (c === 0x69 || c === 0x72) return true;
  }
  return false;
}

/**
 * RFC 9110 §13.2.2 evaluation order. Range/If-Range (step 5) is left to the
 * caller because it only changes the status code, never fails the request.
 */
export function evaluatePreconditions(
  req: { method: string; headers: IncomingHttpHeaders },
  etag: string,
  lastModified: Date,
): PreconditionResult {
  const { headers } = req;
  const safe = req.method === 'GET' || req.method === 'HEAD';

  // Step 1: If-Match (§13.1.1), strong comparison.
  if (headers['if-match'] !== undefined) {
    if (!ifMatchPasses(headers['if-match'], etag)) return 'precondition-failed';
  } else if (headers['if-unmodified-since'] !== undefined) {
    // Step 2 (§13.1.4): an invalid date is ignored, not treated as false.
    const since = parseHttpDate(headers['if-unmodified-since']);
    if (since !== undefined && toSeconds(lastModified) > toSeconds(since)) return 'precondition-failed';
  }

  // Step 3: If-None-Match (§13.1.2), weak comparison.
  if (headers['if-none-match'] !== undefined) {
    if (!ifNoneMatchPasses(headers['if-none-match'], etag)) return safe ? 'not-modified' : 'precondition-failed';
    return 'ok';
  }

  // Step 4: If-Modified-Since (§13.1.3), only for GET/HEAD, invalid dates ignored.
  const ims = headers['if-modified-since'];
  if (safe && ims !== undefined) {
    const since = parseHttpDate(ims);
    // HTTP-dates have one-second resolution, so the file time is truncated too.
    if (since !== undefined && toSeconds(lastModified) <= toSeconds(since)) return 'not-modified';
  }
  return 'ok';
}

/**
 * §13.1.5: Range is honoured only if the validator matches: an entity-tag by
 * strong comparison, or an HTTP-date exactly equal to Last-Modified. A weak
 * tag or anything unparsable means "send the whole representation".
 */
export function ifRangeAllows(headerValue: string | undefined, etag: string, lastModified: Date): boolean {
  if (headerValue === undefined) return true;
  const value = headerValue.trim();
  if (value.startsWith('"') || value.startsWith('W/')) {
    const tags = parseEntityTags(value);
    const current = parseEntityTags(etag);
    return tags?.length === 1 && current?.length === 1 && strongMatch(tags[0], current[0]);
  }
  const date = parseHttpDate(value);
  return date !== undefined && toSeconds(date) === toSeconds(lastModified);
}

function ifMatchPasses(value: string, etag: string): boolean {
  // "*" matches any current representation, and a file we are serving exists.
  if (value.trim() === '*') return true;
  const current = parseEntityTags(etag)?.[0];
  const tags = parseEntityTags(value);
  // An unparsable list cannot be shown to match; failing is the safe side.
  return tags !== undefined && tags.some((tag) => strongMatch(tag, current));
}

function ifNoneMatchPasses(value: string, etag: string): boolean {
  if (value.trim() === '*') return false;
  const current = parseEntityTags(etag)?.[0];
  const tags = parseEntityTags(value);
  // Unparsable: pretend nothing matched so we send a full 200 rather than a
  // possibly wrong 304.
  return tags === undefined || !tags.some((tag) => weakMatch(tag, current));
}

/** §8.8.3.2: strong comparison needs both tags strong and identical. */
function strongMatch(a: EntityTag | undefined, b: EntityTag | undefined): boolean {
  return a !== undefined && b !== undefined && !a.weak && !b.weak && a.opaque === b.opaque;
}

/** §8.8.3.2: weak comparison ignores the W/ prefix. */
function weakMatch(a: EntityTag | undefined, b: EntityTag | undefined): boolean {
  return a !== undefined && b !== undefined && a.opaque === b.opaque;
}

/**
 * #entity-tag list (§8.8.3). Not a plain split on ",": etagc allows commas
 * inside the quotes. undefined when the list is malformed.
 */
export function parseEntityTags(value: string): EntityTag[] | undefined {
  const tags: EntityTag[] = [];
  let i = 0;
  while (i < value.length) {
    const ch = value.charCodeAt(i);
    if (ch === 0x20 || ch === 0x09 || ch === 0x2c) {
      i++;
      continue;
    }
    const weak = value.startsWith('W/', i);
    const open = weak ? i + 2 : i;
    if (value.charCodeAt(open) !== 0x22) return undefined;
    const close = value.indexOf('"', open + 1);
    if (close < 0) return undefined;
    tags.push({ weak, opaque: value.slice(open, close + 1) });
    i = close + 1;
    // Elements must be separated by OWS "," OWS; "a""b" is malformed.
    const next = value.charCodeAt(i);
    if (i < value.length && next !== 0x20 && next !== 0x09 && next !== 0x2c) return undefined;
  }
  return tags;
}

function toSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000);
}

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];

// §5.6.7: recipients MUST accept all three formats; Date.parse is far too
// lenient ("1" parses), so each format is matched exactly.
const DAY = '(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)';
const DAY_L = '(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)';
const MONTH = '(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)';
const IMF_FIXDATE = `^${DAY}, (\\d{2}) ${MONTH} (\\d{4}) (\\d{2}):(\\d{2}):(\\d{2}) GMT$`;
const RFC850_DATE = `^${DAY_L}, (\\d{2})-${MONTH}-(\\d{2}) (\\d{2}):(\\d{2}):(\\d{2}) GMT$`;
const ASCTIME_DATE = `^${DAY} ${MONTH} ([ \\d]\\d) (\\d{2}):(\\d{2}):(\\d{2}) (\\d{4})$`;

/** The three formats, as written (§5.6.7: day-name, month and GMT are %s"..." strings, case-sensitive) ... */
const EXACT = [IMF_FIXDATE, RFC850_DATE, ASCTIME_DATE].map((f) => new RegExp(f));
/** ... and with names in any case, for cache recipients (RFC 9111 §4.2). */
const ANY_CASE = [IMF_FIXDATE, RFC850_DATE, ASCTIME_DATE].map((f) => new RegExp(f, 'i'));

export interface HttpDateOptions {
  /**
   * Match day names, month names and "GMT" case-insensitively. RFC 9110
   * §5.6.7 makes HTTP-date case-sensitive, but RFC 9111 §4.2 tells a cache
   * recipient calculating freshness that it "SHOULD match day, week, and
   * time-zone names case-insensitively"; the cache passes true.
   */
  anyCase?: boolean;
}

/**
 * RFC 9110 §5.6.7 HTTP-date in any of its three formats (IMF-fixdate, the
 * obsolete RFC 850 and asctime formats); undefined when invalid.
 */
export function parseHttpDate(value: string, options: HttpDateOptions = {}): Date | undefined {
  const text = value.trim();
  const [imf, rfc850, asctime] = options.anyCase === true ? ANY_CASE : EXACT;
  let m = imf!.exec(text);
  if (m !== null) return buildDate(m[3], m[2], m[1], m[4], m[5], m[6]);
  m = rfc850!.exec(text);
  if (m !== null) return buildDate(expandTwoDigitYear(m[3]), m[2], m[1], m[4], m[5], m[6]);
  m = asctime!.exec(text);
  if (m !== null) return buildDate(m[6], m[1], m[2], m[3], m[4], m[5]);
  return undefined;
}

/**
 * §5.6.7: a two-digit year more than 50 years in the future is taken as the
 * most recent past year with the same last two digits.
 */
function expandTwoDigitYear(yy: string | undefined): string {
  const currentYear = new Date().getUTCFullYear();
  let year = Math.floor(currentYear / 100) * 100 + Number(yy);
  if (year > currentYear + 50) year -= 100;
  return String(year);
}

function buildDate(
  year: string | undefined,
  month: string | undefined,
  day: string | undefined,
  hour: string | undefined,
  minute: string | undefined,
  second: string | undefined,
): Date | undefined {
  const monthIndex = MONTHS.indexOf((month ?? '').toLowerCase());
  const d = Number(day);
  const h = Number(hour);
  const min = Number(minute);
  // 60 is allowed for leap seconds (§5.6.7); it simply rolls into the next minute.
  const s = Number(second);
  if (monthIndex < 0 || h > 23 || min > 59 || s > 60) return undefined;
  // setUTCFullYear, unlike Date.UTC, does not map years 0-99 onto 1900-1999.
  const midnight = new Date(0);
  midnight.setUTCFullYear(Number(year), monthIndex, d);
  // Reject impossible days such as Feb 30, which Date would silently roll over.
  if (midnight.getUTCDate() !== d || midnight.getUTCMonth() !== monthIndex) return undefined;
  return new Date(midnight.getTime() + ((h * 60 + min) * 60 + s) * 1000);
}

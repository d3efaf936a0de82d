/**
 * The decisions of an RFC 9111 shared cache, as pure functions of headers and
 * times: what may be stored (§3), how long it is fresh (§4.2.1, heuristics
 * §4.2.2), how old it is (§4.2.3), whether a stored response may be reused
 * for a request (§4, §5.2.1) or must be validated first (§4.3), which stored
 * variant a request selects (Vary, §4.1), how a 304 updates what is stored
 * (§3.2, §4.3.4), what an unsafe method invalidates (§4.4), and the
 * Cache-Status field that reports it (RFC 9211). No I/O, no clocks: callers
 * pass the times.
 *
 * Headers are flat [name, value, name, value, ...] lists, names as sent (the
 * form of node's rawHeaders and of the upstream response parser).
 *
 * Choices where the RFC leaves room, each on the side that cannot serve a
 * response to someone it was not meant for:
 * - Only GET responses are stored; HEAD is answered from them, every other
 *   method is forwarded.
 * - storability() never stores a 206 or a 304 as such: a 206 to a GET with
 *   Range is judged by partial.ts (§3.3, §3.4: stored as a part of the 200
 *   it belongs to), a 304 only freshens a stored 200. Any other final status
 *   code is stored when §3 allows it, one this cache does not know
 *   included, except with must-understand (§5.2.2.3).
 * - A valid targeted field (RFC 9213: CDN-Cache-Control, or the one
 *   --targeted-cache-control names) replaces Cache-Control and Expires for
 *   every decision about a response (responseControl()).
 * - A close-delimited body is not stored: a dropped connection looks exactly
 *   like its end, so completeness (§3.3) cannot be proven.
 * - Heuristic freshness (§4.2.2, a MAY) is 10% of the time since
 *   Last-Modified, capped at one day, and only for heuristically cacheable
 *   status codes or `public`; without Last-Modified there is none.
 * - A response that sets a cookie is not stored (nginx's proxy_cache and
 *   Varnish refuse them too): Set-Cookie does not inhibit caching (§7.3),
 *   but legacy applications set session cookies on pages they also mark
 *   cacheable, and replaying one user's session to every client is the
 *   worst a shared cache can do. `cacheCookies` (--cache-cookies) stores
 *   those the origin made cacheable explicitly (public, s-maxage, max-age,
 *   Expires), never on a heuristic, which is the cache's own guess. A
 *   qualified private="Set-Cookie" (or no-cache=) needs no opt-in: the
 *   response is stored without the cookie (§5.2.2.7).
 * - A response that would be stale at once and has no validator is not
 *   stored: it could never be reused.
 * - Pragma (deprecated, §5.4) is not interpreted; it is forwarded.
 */
import { connectionOptions, HOP_BY_HOP } from '../http/forward-headers.js';
import { parseHttpDate } from '../http/conditional.js';
import { trimOws } from '../text/char-classes.js';
import { deltaSeconds, DELTA_SECONDS_MAX, parseCacheControl, qualifiedFieldNames, type Directives } from './cache-control.js';
import { DEFAULT_TARGETS, targetedDirectives, type Targets } from './targeted.js';

export type Headers = readonly string[];

/** Every value of field `lower` (a lowercase name), in order. */
export function fieldValues(headers: Headers, lower: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if (headers[i]!.toLowerCase() === lower) out.push(headers[i + 1]!);
  }
  return out;
}

/** The first value of field `lower`, or undefined. */
export function fieldValue(headers: Headers, lower: string): string | undefined {
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if (headers[i]!.toLowerCase() === lower) return headers[i + 1]!;
  }
  return undefined;
}

export function cacheControl(headers: Headers): Directives {
  return parseCacheControl(fieldValues(headers, 'cache-control'));
}

/**
 * The directives that govern this cache's handling of a response: those of
 * the first targeted field on `targets` with a valid, non-empty value
 * (RFC 9213 §2.1), else Cache-Control. `targeted` also means that Expires
 * is to be ignored (§2.1: "MUST ignore the Cache-Control and Expires header
 * fields"). The response's Cache-Control still goes to the client as it is.
 */
export function responseControl(headers: Headers, targets: Targets = DEFAULT_TARGETS): { directives: Directives; targeted: boolean } {
  const t = targetedDirectives(headers, targets);
  return t === null ? { directives: cacheControl(headers), targeted: false } : { directives: t.directives, targeted: true };
}

function responseDirectives(headers: Headers, targets: Targets): Directives {
  return responseControl(headers, targets).directives;
}

// ---- keys and methods ----------------------------------------------------------------------

/**
 * The primary cache key (§2): the target URI. Aludel's clients always speak
 * https, so the scheme is fixed; the authority is the Host field (lowercase,
 * RFC 3986 §6.2.2.1) or the authority of an absolute-form target, which
 * RFC 9112 §3.2.2 makes win over Host.
 */
export function cacheKey(host: string | undefined, target: string): string {
  if (/^https?:\/\//i.test(target)) {
    // RFC 3986 §3.2: the authority ends at the first "/", "?" or "#", as forward-headers.ts reads it
    // for the upstream. Cut at "/" only, "http://h?q=1" was keyed "https://h?q=1/" while the
    // origin got "/?q=1" for h: two entries for one target URI, and an unsafe method sent in one
    // form left the other form's entry to be served (§4.4).
    const start = target.indexOf('//') + 2;
    let end = start;
    while (end < target.length && target[end] !== '/' && target[end] !== '?' && target[end] !== '#') end++;
    const rest = target.slice(end);
    return `https://${target.slice(start, end).toLowerCase()}${rest.startsWith('/') ? rest : `/${rest}`}`;
  }
  return `https://${(host ?? '').toLowerCase()}${target}`;
}

/** RFC 9110 §9.2.1: everything else is unsafe, methods of unknown safety included. */
const SAFE = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE']);

export function isUnsafe(method: string): boolean {
  return !SAFE.has(method);
}

// ---- request directives (§5.2.1) -----------------------------------------------------------

export interface RequestDirectives {
  /** §5.2.1.4: never reuse without validating. */
  noCache: boolean;
  /** §5.2.1.5: store nothing of this exchange (a stored response may still answer it). */
  noStore: boolean;
  /** §5.2.1.7: answer from the cache or with 504. */
  onlyIfCached: boolean;
  /** §5.2.1.1: the client does not want a response older than this (seconds). */
  maxAge: number | null;
  /** §5.2.1.2: the client accepts this much staleness (seconds; Infinity when unbounded). */
  maxStale: number | null;
  /** §5.2.1.3: the client wants the response to stay fresh at least this long (seconds). */
  minFresh: number | null;
}

/** An unreadable argument is read on the side that reuses less, as each line says. */
export function requestDirectives(rawHeaders: Headers): RequestDirectives {
  return requestDirectivesOf(fieldValues(rawHeaders, 'cache-control'));
}

/** A request without Cache-Control: no directive (one object for all of them, never changed). */
const NO_REQUEST_DIRECTIVES: RequestDirectives = Object.freeze({ noCache: false, noStore: false, onlyIfCached: false, maxAge: null, maxStale: null, minFresh: null });

/** requestDirectives() from the request's Cache-Control field values (none: every directive absent). */
export function requestDirectivesOf(cacheControlValues: readonly string[]): RequestDirectives {
  if (cacheControlValues.length === 0) return NO_REQUEST_DIRECTIVES;
  const cc = parseCacheControl(cacheControlValues);
  const maxStale = cc.get('max-stale');
  return {
    noCache: cc.has('no-cache'),
    noStore: cc.has('no-store'),
    onlyIfCached: cc.has('only-if-cached'),
    // An unreadable max-age is read as 0: the client then gets a validated response, never an older one.
    maxAge: cc.has('max-age') ? (deltaSeconds(cc.get('max-age')) ?? 0) : null,
    // max-stale without a value accepts any staleness; an unreadable value accepts none.
    maxStale: maxStale === undefined ? null : maxStale === null ? Infinity : (deltaSeconds(maxStale) ?? 0),
    // An unreadable min-fresh is read as "fresh for a long time yet", so nothing stale-ish is reused.
    minFresh: cc.has('min-fresh') ? (deltaSeconds(cc.get('min-fresh')) ?? DELTA_SECONDS_MAX) : null,
  };
}

// ---- status codes --------------------------------------------------------------------------

/** RFC 9110 §15.1: cacheable by default, so heuristic freshness may apply. */
const HEURISTICALLY_CACHEABLE = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501]);

/**
 * The final status codes this cache understands (RFC 9110 §15): the ones
 * `must-understand` (§5.2.2.3) lets it store. 206 and 304 are left out: they
 * are never stored here. Any other final status code may be stored when its
 * response carries explicit freshness (§3), but not with must-understand.
 */
const UNDERSTOOD = new Set([
  200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 307, 308,
  400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 426,
  500, 501, 502, 503, 504, 505,
]);

// ---- storing (§3) --------------------------------------------------------------------------

export type NotStoredReason =
  | 'method'
  | 'status'
  | 'must-understand'
  | 'no-store'
  | 'private'
  | 'authorization'
  | 'vary-star'
  | 'not-cacheable'
  | 'set-cookie'
  | 'framing'
  | 'no-validator';

export interface StoreInput {
  method: string;
  requestHeaders: Headers;
  status: number;
  responseHeaders: Headers;
  /** How the body is delimited (RFC 9112 §6.3). */
  framing: 'none' | 'length' | 'chunked' | 'close';
  /** When the response head arrived (ms since the epoch). */
  responseTime: number;
  /** --cache-cookies: store explicitly cacheable responses that set cookies. */
  cacheCookies: boolean;
  /** The targeted fields this cache honours, most specific first (RFC 9213 §2.1). */
  targets?: Targets;
}

/** §3 for a shared cache, plus the choices in the header comment. */
export function storability(i: StoreInput): { store: true } | { store: false; reason: NotStoredReason } {
  if (i.method !== 'GET') return { store: false, reason: 'method' };
  // §3: only final responses; 206 (partial.ts) and 304 are never stored as such (header comment).
  if (i.status < 200 || i.status > 599 || i.status === 206 || i.status === 304) return { store: false, reason: 'status' };
  const targets = i.targets ?? DEFAULT_TARGETS;
  const req = cacheControl(i.requestHeaders);
  const { directives: res, targeted } = responseControl(i.responseHeaders, targets);
  // §3: "if ... the must-understand cache directive ... is present: the cache understands the response
  // status code"; §5.2.2.3: a cache that does may then ignore the no-store next to it.
  if (res.has('must-understand') && !UNDERSTOOD.has(i.status)) return { store: false, reason: 'must-understand' };
  if (res.has('no-store') && !res.has('must-understand')) return { store: false, reason: 'no-store' };
  if (req.has('no-store')) return { store: false, reason: 'no-store' };
  // §5.2.2.7: an unqualified private forbids a shared cache to store; a qualified one only its fields.
  if (res.has('private') && qualifiedFieldNames(res, 'private').length === 0) return { store: false, reason: 'private' };
  // §3.5
  if (fieldValues(i.requestHeaders, 'authorization').length > 0 && !allowsAuthorized(res)) return { store: false, reason: 'authorization' };
  if (varyNames(i.responseHeaders) === '*') return { store: false, reason: 'vary-star' };
  // §3: explicit freshness, `public`, or a status code that is cacheable by default.
  const explicit = hasExplicitExpiry(res, i.responseHeaders, targeted);
  if (!explicit && !res.has('public') && !HEURISTICALLY_CACHEABLE.has(i.status)) return { store: false, reason: 'not-cacheable' };
  if (setsStoredCookie(res, i.responseHeaders) && !(i.cacheCookies && (explicit || res.has('public')))) return { store: false, reason: 'set-cookie' };
  if (i.framing === 'close') return { store: false, reason: 'framing' };
  const { seconds } = freshnessLifetime(i.status, i.responseHeaders, i.responseTime, targets);
  const v = validators(i.responseHeaders);
  if (seconds <= 0 && v.etag === null && v.lastModified === null) return { store: false, reason: 'no-validator' };
  return { store: true };
}

/** Set-Cookie would be stored with the response: present and not excluded by a qualified private or no-cache (§5.2.2.4, §5.2.2.7). */
function setsStoredCookie(res: Directives, headers: Headers): boolean {
  if (fieldValues(headers, 'set-cookie').length === 0) return false;
  return !qualifiedFieldNames(res, 'private').includes('set-cookie') && !qualifiedFieldNames(res, 'no-cache').includes('set-cookie');
}

/** §3.5: directives that let a shared cache store and reuse a response to a request with Authorization. */
function allowsAuthorized(res: Directives): boolean {
  return res.has('public') || res.has('must-revalidate') || res.has('s-maxage');
}

/** §3.5 at reuse time: may this stored response answer a request carrying Authorization? */
export function reusableWithAuthorization(storedHeaders: Headers, targets: Targets = DEFAULT_TARGETS): boolean {
  return allowsAuthorized(responseDirectives(storedHeaders, targets));
}

/** Explicit freshness (§4.2.1); a targeted field's directives replace Expires too (RFC 9213 §2.1). */
function hasExplicitExpiry(res: Directives, headers: Headers, targeted: boolean): boolean {
  return res.has('s-maxage') || res.has('max-age') || (!targeted && fieldValues(headers, 'expires').length > 0);
}

/**
 * The header fields kept with a stored response (§3.1): not the hop-by-hop
 * ones nor those Connection names, not Content-Length (the store knows the
 * body's length) nor Age (recomputed on every use, §4.2.3), not the fields a
 * qualified private or no-cache names (§5.2.2.4, §5.2.2.7: a shared cache may
 * store the rest without them). A Date is added when the origin sent none
 * (RFC 9110 §6.6.1: a cache records when it received the response).
 */
export function headersToStore(headers: Headers, responseTime: number, targets: Targets = DEFAULT_TARGETS): string[] {
  return withDate(withoutFields(headers, qualifiedExclusions(headers, targets)), responseTime);
}

/** The fields a qualified private or no-cache names (§5.2.2.4, §5.2.2.7), and those Connection names: not stored. */
function qualifiedExclusions(headers: Headers, targets: Targets): Set<string> {
  const res = responseDirectives(headers, targets);
  return new Set([...connectionOptions(headers), ...qualifiedFieldNames(res, 'private'), ...qualifiedFieldNames(res, 'no-cache')]);
}

/** `headers` without hop-by-hop fields, Content-Length, Age and the `excluded` names (lowercase). */
function withoutFields(headers: Headers, excluded: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const lower = headers[i]!.toLowerCase();
    if (HOP_BY_HOP.has(lower) || excluded.has(lower) || lower === 'content-length' || lower === 'age') continue;
    out.push(headers[i]!, headers[i + 1]!);
  }
  return out;
}

function withDate(out: string[], responseTime: number): string[] {
  if (fieldValue(out, 'date') === undefined) out.push('Date', new Date(responseTime).toUTCString());
  return out;
}

/**
 * §3.2: a 304 (or a HEAD response, §4.3.5) updates the stored fields: each
 * field it carries replaces all of the stored ones of that name, except those
 * §3.1 keeps out of storage and Content-Length (the stored body's length is
 * what it is). The qualified private / no-cache of the updated response name
 * fields kept out whichever response brought them: a 304 with a Set-Cookie
 * and no Cache-Control of its own still falls under the stored
 * `private="Set-Cookie"` (§5.2.2.7), else that one client's cookie would be
 * stored and sent with every hit.
 */
export function freshenHeaders(stored: Headers, update: Headers, responseTime: number, targets: Targets = DEFAULT_TARGETS): string[] {
  const merged = updatedHeaders(stored, headersToStore(update, responseTime, targets));
  return withoutFields(merged, qualifiedExclusions(merged, targets));
}

/**
 * The response a 304 makes of the stored one for the request it validated
 * (§4.3.4): the stored fields with every end-to-end field of the 304 in
 * place of those of its name, its qualified private and no-cache fields
 * included (they are this client's, as a miss's leader gets them); what is
 * kept in the store is freshenHeaders().
 */
export function answeredHeaders(stored: Headers, update: Headers, responseTime: number): string[] {
  return updatedHeaders(stored, withDate(withoutFields(update, new Set(connectionOptions(update))), responseTime));
}

function updatedHeaders(stored: Headers, incoming: string[]): string[] {
  const replaced = new Set<string>();
  for (let i = 0; i < incoming.length; i += 2) replaced.add(incoming[i]!.toLowerCase());
  // A 304 without Date got one (withDate): it replaces the stored Date, since the
  // freshness of the update is measured from the response that brought it (§4.2.3).
  const out: string[] = [];
  for (let i = 0; i + 1 < stored.length; i += 2) {
    if (!replaced.has(stored[i]!.toLowerCase())) out.push(stored[i]!, stored[i + 1]!);
  }
  out.push(...incoming);
  return out;
}

/**
 * Why a stored response may not be kept once a 304 (§4.3.4) updated its
 * fields, or null when it may. §3.2 merges the 304's fields into the stored
 * ones, and those fields are the origin's word on the response from then
 * on: a 304 can bring `no-store`, an unqualified `private`, `Vary: *` or a
 * `Set-Cookie` (the session of the client whose request was validated).
 * Kept, the entry would be sent to every client with them, which §3 (and
 * this cache's cookie rule, §7.3) forbids for a response arriving whole; so
 * the updated response is judged by the same rules. Only the response's own
 * fields count: the request that brought the 304 did not choose what was
 * stored (a client's `no-store` must not drop an entry for everyone).
 */
export function notKeptAfterUpdate(status: number, headers: Headers, responseTime: number, cacheCookies: boolean, targets: Targets = DEFAULT_TARGETS): NotStoredReason | null {
  // The stored body is complete and of a known length: framing 'length'.
  const verdict = storability({ method: 'GET', requestHeaders: [], status, responseHeaders: headers, framing: 'length', responseTime, cacheCookies, targets });
  return verdict.store ? null : verdict.reason;
}

// ---- freshness (§4.2) ----------------------------------------------------------------------

/** §4.2.2 heuristics: this fraction of the time since Last-Modified ... */
export const HEURISTIC_FRACTION = 0.1;
/** ... and never more than a day. */
export const HEURISTIC_MAX_SECONDS = 86_400;

/**
 * §4.2.1 for a shared cache: s-maxage, else max-age, else Expires - Date,
 * else a heuristic. An invalid or duplicated-and-unreadable value counts as
 * already expired (§5.3: "especially the value 0"). Seconds, never negative.
 * A valid targeted field (RFC 9213 §2.1) replaces Cache-Control and Expires.
 */
export function freshnessLifetime(status: number, headers: Headers, responseTime: number, targets: Targets = DEFAULT_TARGETS): { seconds: number; heuristic: boolean } {
  const { directives: cc, targeted } = responseControl(headers, targets);
  if (cc.has('s-maxage')) return { seconds: deltaSeconds(cc.get('s-maxage')) ?? 0, heuristic: false };
  if (cc.has('max-age')) return { seconds: deltaSeconds(cc.get('max-age')) ?? 0, heuristic: false };
  const expires = targeted ? [] : fieldValues(headers, 'expires');
  if (expires.length > 0) {
    const at = expires.length === 1 ? cacheDate(expires[0]!) : undefined;
    if (at === undefined) return { seconds: 0, heuristic: false };
    return { seconds: Math.max(0, Math.floor((at.getTime() - dateValue(headers, responseTime)) / 1000)), heuristic: false };
  }
  if (!HEURISTICALLY_CACHEABLE.has(status) && !cc.has('public')) return { seconds: 0, heuristic: false };
  const lm = fieldValue(headers, 'last-modified');
  const modified = lm === undefined ? undefined : cacheDate(lm);
  if (modified === undefined) return { seconds: 0, heuristic: true };
  const since = (dateValue(headers, responseTime) - modified.getTime()) / 1000;
  return { seconds: Math.max(0, Math.min(HEURISTIC_MAX_SECONDS, Math.floor(since * HEURISTIC_FRACTION))), heuristic: true };
}

/** The Date field (ms), or the time the response was received when it has none or an unreadable one. */
function dateValue(headers: Headers, responseTime: number): number {
  const d = fieldValue(headers, 'date');
  const parsed = d === undefined ? undefined : cacheDate(d);
  return parsed === undefined ? responseTime : parsed.getTime();
}

/**
 * An HTTP-date read for freshness: all three formats of RFC 9110 §5.6.7, and
 * names in any case, because RFC 9111 §4.2 says that "a cache recipient
 * SHOULD match day, week, and time-zone names case-insensitively" although
 * HTTP-date itself is case-sensitive. A zone other than GMT stays invalid
 * (§4.2: "SHOULD consider a date with a zone abbreviation other than GMT to
 * be invalid").
 */
function cacheDate(value: string): Date | undefined {
  return parseHttpDate(value, { anyCase: true });
}

/**
 * The Age field's value in seconds (§5.1), 0 when there is none or it is
 * invalid. "a cache encountering a message with a list-based Age field value
 * SHOULD use the first member of the field value, discarding subsequent
 * ones" ("Age: 7200, 0" is 7200, and so are two Age lines), and "If the field
 * value (after discarding additional members ...) is invalid ..., a cache
 * SHOULD ignore the field": ignored, it is the age_value of a response
 * without Age, 0 (§4.2.3). Empty list elements do not count as members
 * (RFC 9110 §5.6.1).
 */
export function ageValue(headers: Headers): number {
  for (const line of fieldValues(headers, 'age')) {
    for (const member of line.split(',')) {
      const m = trimOws(member);
      if (m !== '') return deltaSeconds(m) ?? 0;
    }
  }
  return 0;
}

/**
 * §4.2.3 corrected_initial_age in seconds, from the response's Age and Date
 * and the cache's own request and response times (ms).
 */
export function initialAge(headers: Headers, requestTime: number, responseTime: number): number {
  const apparentAge = Math.max(0, (responseTime - dateValue(headers, responseTime)) / 1000);
  const responseDelay = Math.max(0, (responseTime - requestTime) / 1000);
  const correctedAgeValue = ageValue(headers) + responseDelay;
  return Math.max(apparentAge, correctedAgeValue);
}

/** §4.2.3 current_age in whole seconds, as the Age field carries it (§5.1: at most 2^31). */
export function currentAge(initial: number, responseTime: number, now: number): number {
  const residentTime = Math.max(0, (now - responseTime) / 1000);
  return Math.min(DELTA_SECONDS_MAX, Math.floor(initial + residentTime));
}

export interface StoredTiming {
  status: number;
  headers: Headers;
  /** Seconds, from freshnessLifetime(). */
  lifetime: number;
  /** Seconds, from initialAge(). */
  initialAge: number;
  responseTime: number;
}

/**
 * Why a stored response is not reused without validation (RFC 9211 §2.8
 * `detail`, and the log line): `stale` past its lifetime (and any max-stale
 * the request allows); `no-cache` in the response (§5.2.2.4); the request's
 * `no-cache`, `max-age`, `min-fresh` (§5.2.1); `must-revalidate` when the
 * request's max-stale would have allowed it but must-revalidate,
 * proxy-revalidate or s-maxage forbid serving it stale (§4.2.4).
 */
export type ReuseRefusal = 'stale' | 'no-cache' | 'req-no-cache' | 'req-max-age' | 'req-min-fresh' | 'must-revalidate';

export type Reuse =
  | { use: 'fresh'; ttl: number }
  /** Must be validated with the origin first; `stale` tells Cache-Status whether it was stale or only forbidden. */
  | { use: 'validate'; ttl: number; stale: boolean; why: ReuseRefusal };

/**
 * The directives of stored response heads, by the identity of the field list
 * and of the targets they were read with: reuse() reads them on every hit,
 * and parsing Cache-Control anew each time was among the top entries of a
 * profile of 1 KiB hits. A stored head's list is never edited in place (a
 * freshened entry gets a new one, freshenHeaders; the cache's edits work on
 * copies), so its identity stands for its content. Weak: an entry gone
 * takes its line with it.
 */
const storedDirectives = new WeakMap<Headers, { targets: Targets; directives: Directives }>();

function storedResponseDirectives(headers: Headers, targets: Targets): Directives {
  const known = storedDirectives.get(headers);
  if (known !== undefined && known.targets === targets) return known.directives;
  const directives = responseDirectives(headers, targets);
  storedDirectives.set(headers, { targets, directives });
  return directives;
}

/**
 * §4, §4.2.4, §5.2: may `stored` answer a request with these directives now,
 * or must it be validated first? ttl = lifetime - age (negative when stale).
 */
export function reuse(stored: StoredTiming, req: RequestDirectives, now: number, targets: Targets = DEFAULT_TARGETS): Reuse {
  const age = currentAge(stored.initialAge, stored.responseTime, now);
  const ttl = stored.lifetime - age;
  const res = storedResponseDirectives(stored.headers, targets);
  const stale = ttl <= 0;
  const refuse = (why: ReuseRefusal): Reuse => ({ use: 'validate', ttl, stale, why });
  // §5.2.2.4 unqualified no-cache (a qualified one removed its fields at storage); §5.2.1.4.
  if (res.has('no-cache') && qualifiedFieldNames(res, 'no-cache').length === 0) return refuse('no-cache');
  if (req.noCache) return refuse('req-no-cache');
  if (req.maxAge !== null && age > req.maxAge) return refuse('req-max-age');
  if (req.minFresh !== null && ttl < req.minFresh) return refuse('req-min-fresh');
  if (!stale) return { use: 'fresh', ttl };
  if (req.maxStale === null || -ttl > req.maxStale) return refuse('stale');
  // §4.2.4: stale only when the client allows it and no directive forbids it: must-revalidate,
  // proxy-revalidate, and s-maxage (which implies proxy-revalidate for a shared cache, §5.2.2.10).
  if (res.has('must-revalidate') || res.has('proxy-revalidate') || res.has('s-maxage')) return refuse('must-revalidate');
  return { use: 'fresh', ttl };
}

/** Why a request does not follow a fill in progress (the debug log line, Cache-Status detail). */
export type NotFollowedReason = 'stale-on-arrival' | ReuseRefusal;

/**
 * §4 for a request that would follow a response still being received (a
 * collapsed fill, RFC 9211 §2.6). A follower is answered from the cache, not
 * by an exchange of its own, so everything reuse() demands of a stored
 * response holds for it, whatever the fill's state (head pending, body
 * streaming, body complete but not yet committed):
 * - the response was fresh when it was received (lifetime > corrected
 *   initial age): one stale on arrival (an upstream cache's Age past its
 *   max-age) may only be reused after validation (§4.2.4, §4.3);
 * - no unqualified no-cache in the response (§5.2.2.4), none in the request
 *   (§5.2.1.4), and the request's max-age and min-fresh (§5.2.1.1,
 *   §5.2.1.3) allow it.
 * max-age is compared with the exact age, not whole seconds: the follower's
 * request arrived after the leader's had gone upstream, so rounding a
 * response received 0.9 s ago down to age 0 would let `max-age=0` (what a
 * browser's reload sends) collapse into a response older than the request.
 * Otherwise the follower makes its own upstream request.
 */
export function followable(
  fill: StoredTiming,
  req: RequestDirectives,
  now: number,
  targets: Targets = DEFAULT_TARGETS,
): { follow: true; ttl: number } | { follow: false; why: NotFollowedReason } {
  const res = responseDirectives(fill.headers, targets);
  if (res.has('no-cache') && qualifiedFieldNames(res, 'no-cache').length === 0) return { follow: false, why: 'no-cache' };
  if (fill.lifetime - fill.initialAge <= 0) return { follow: false, why: 'stale-on-arrival' };
  const exactAge = fill.initialAge + Math.max(0, (now - fill.responseTime) / 1000);
  if (req.maxAge !== null && exactAge > req.maxAge) return { follow: false, why: 'req-max-age' };
  const r = reuse(fill, req, now, targets);
  if (r.use === 'fresh') return { follow: true, ttl: r.ttl };
  return { follow: false, why: r.why };
}

// ---- validation (§4.3) ---------------------------------------------------------------------

export function validators(headers: Headers): { etag: string | null; lastModified: string | null } {
  return { etag: fieldValue(headers, 'etag') ?? null, lastModified: fieldValue(headers, 'last-modified') ?? null };
}

/**
 * §4.3.4: does a 304 answering our conditional request apply to the stored
 * response we asked about? With an entity-tag it must be the stored one
 * (strong or weak alike: we sent only that tag); without one, a Last-Modified
 * must equal the stored one; a 304 with neither answers the only validators
 * we sent.
 */
export function notModifiedApplies(stored: Headers, notModified: Headers): boolean {
  const theirs = validators(notModified);
  const ours = validators(stored);
  if (theirs.etag !== null) return ours.etag !== null && opaqueTag(theirs.etag) === opaqueTag(ours.etag);
  if (theirs.lastModified !== null) return ours.lastModified !== null && theirs.lastModified === ours.lastModified;
  return true;
}

function opaqueTag(tag: string): string {
  const t = tag.trim();
  return t.startsWith('W/') ? t.slice(2) : t;
}

/**
 * The fields a 304 built from a stored response carries (RFC 9110 §15.4.5):
 * Content-Location, Date, ETag, Vary, Cache-Control and Expires; Last-Modified
 * only when there is no ETag (it then guides the client's cache).
 */
export function notModifiedFields(stored: Headers): string[] {
  const keep = new Set(['content-location', 'date', 'etag', 'vary', 'cache-control', 'expires']);
  if (fieldValue(stored, 'etag') === undefined) keep.add('last-modified');
  const out: string[] = [];
  for (let i = 0; i + 1 < stored.length; i += 2) {
    if (keep.has(stored[i]!.toLowerCase())) out.push(stored[i]!, stored[i + 1]!);
  }
  return out;
}

// ---- Vary (§4.1) ---------------------------------------------------------------------------

/** The lowercase field names a response varies on, or '*' (which never matches, §4.1). */
export function varyNames(headers: Headers): string[] | '*' {
  const names: string[] = [];
  for (const value of fieldValues(headers, 'vary')) {
    for (const element of value.split(',')) {
      const name = trimOws(element).toLowerCase();
      if (name === '*') return '*';
      if (name !== '' && !names.includes(name)) names.push(name);
    }
  }
  return names;
}

/**
 * The request's value of each field a response varies on, normalised as §4.1
 * allows ("by adding or removing whitespace where allowed in the field's
 * syntax, by combining multiple field lines ..., and by normalizing both
 * header field values in a way that is known to have identical semantics"):
 * all field lines combined, list elements trimmed and rejoined with ", " (so
 * "gzip,br" and "gzip, br" select the same variant); for the proactive
 * negotiation fields, also negotiationElements() below. null when the request
 * has no such field (which matches only an absent field).
 */
export function varySelection(names: readonly string[], requestHeaders: Headers): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  const unsent = connectionOptions(requestHeaders);
  for (const name of names) {
    const values = notForwarded(name, unsent) ? [] : fieldValues(requestHeaders, name);
    if (values.length === 0) {
      out[name] = null;
      continue;
    }
    const elements = values.flatMap((v) => v.split(',')).map((e) => trimOws(e)).filter((e) => e !== '');
    out[name] = (WEIGHTED_CASELESS.has(name) ? negotiationElements(elements) : elements).join(', ');
  }
  return out;
}

/**
 * Whether the upstream never gets the request's `name` field (lowercase):
 * hop-by-hop, or named by the request's Connection (`options`), which
 * forward-headers.ts removes (RFC 9110 §7.6.1), Host excepted. The origin
 * chose its answer without it, so for Vary it is absent. Read as sent,
 * "Accept-Language: fr" with "Connection: Accept-Language" stored the
 * origin's answer to a request without Accept-Language as the "fr" variant,
 * served to every French client after it (cache poisoning by hop-by-hop
 * removal; nginx forwards named fields, so what it stores is what its
 * origin answered).
 */
function notForwarded(name: string, options: ReadonlySet<string>): boolean {
  return name !== 'host' && (HOP_BY_HOP.has(name) || options.has(name));
}

/**
 * Fields whose elements are a case-insensitive token plus an optional weight
 * (RFC 9110 §12.5.3 Accept-Encoding: content-codings are case-insensitive,
 * §8.4.1; §12.5.4 Accept-Language: language ranges, case-insensitive per
 * RFC 4647 §2; Accept-Charset, §12.5.2). Accept is left as sent: its media
 * type parameters may be case-sensitive.
 */
const WEIGHTED_CASELESS: ReadonlySet<string> = new Set(['accept-encoding', 'accept-language', 'accept-charset']);

/**
 * Elements of Accept-Encoding / Accept-Language / Accept-Charset in one
 * canonical form with the same meaning: lowercase, no whitespace around ";"
 * and "=" (BWS/OWS, RFC 9110 §5.6.6), the weight written as a number and
 * left out when it is 1, the default (§12.4.2); then ordered by weight,
 * highest first, and by name among equal weights, since the preference
 * between equally weighted items is not expressed by their order (§12.4.2:
 * the weight is the preference). "gzip, br" = "BR,gzip;q=1" = "br;q=1.0, gzip".
 */
function negotiationElements(elements: readonly string[]): string[] {
  const items = elements.map((e) => {
    const parts = e.toLowerCase().split(';').map((p) => trimOws(p)).filter((p) => p !== '');
    let weight = 1;
    const kept: string[] = [parts[0] ?? ''];
    for (const param of parts.slice(1)) {
      const eq = param.indexOf('=');
      const pname = trimOws(eq < 0 ? param : param.slice(0, eq));
      const pvalue = eq < 0 ? '' : trimOws(param.slice(eq + 1));
      // qvalue (§12.4.2); an unreadable one is kept as written, never merged with another value.
      if (pname === 'q' && /^(0(\.\d{0,3})?|1(\.0{0,3})?)$/.test(pvalue)) weight = Number(pvalue);
      else kept.push(eq < 0 ? pname : `${pname}=${pvalue}`);
    }
    if (weight !== 1) kept.push(`q=${weight}`);
    return { text: kept.join(';'), weight };
  });
  items.sort((a, b) => b.weight - a.weight || (a.text < b.text ? -1 : a.text > b.text ? 1 : 0));
  return items.map((i) => i.text);
}

/** §4.1: does a request select a response stored with this selection? */
export function varyMatches(selection: Readonly<Record<string, string | null>>, requestHeaders: Headers): boolean {
  const names = Object.keys(selection);
  const now = varySelection(names, requestHeaders);
  return names.every((n) => now[n] === selection[n]);
}

// ---- invalidation (§4.4) -------------------------------------------------------------------

/**
 * §4.4: a non-error answer (2xx, 3xx) to an unsafe method invalidates the
 * target URI, and (a MAY, taken) the URIs in Location and Content-Location
 * when they have the target's authority, so no one can invalidate another
 * site's entries. The scheme is not compared: a legacy origin behind Aludel
 * writes http:// into Location for what clients reach by https.
 */
export function invalidationKeys(method: string, status: number, targetKey: string, responseHeaders: Headers): string[] {
  if (!isUnsafe(method) || status < 200 || status >= 400) return [];
  const keys = [targetKey];
  const target = new URL(targetKey);
  for (const name of ['location', 'content-location']) {
    const value = fieldValue(responseHeaders, name);
    if (value === undefined) continue;
    let url: URL;
    try {
      url = new URL(value, targetKey);
    } catch {
      continue;
    }
    if (url.host !== target.host) continue;
    const key = `https://${url.host}${url.pathname}${url.search}`;
    if (!keys.includes(key)) keys.push(key);
  }
  return keys;
}

// ---- Cache-Status (RFC 9211) ---------------------------------------------------------------

/** The cache's name in Cache-Status (RFC 9211 §2: an identifier for the cache). */
export const CACHE_NAME = 'aludel';

export interface CacheStatus {
  hit?: boolean;
  /** RFC 9211 §2.2: why the request went forward. */
  fwd?: 'bypass' | 'method' | 'uri-miss' | 'vary-miss' | 'miss' | 'request' | 'stale' | 'partial';
  /** §2.3: the status the forward request got. */
  fwdStatus?: number;
  /** §2.4: freshness left, in seconds (negative when stale). */
  ttl?: number;
  /** §2.5: the response was stored. */
  stored?: boolean;
  /** §2.6: the request was collapsed into another one's forward request. */
  collapsed?: boolean;
  /** §2.8: implementation-specific detail (here: why a response was not stored). */
  detail?: string;
}

/** One Cache-Status list member (an sf-item with parameters, RFC 8941), e.g. `aludel; fwd=uri-miss; stored`. */
export function cacheStatus(s: CacheStatus): string {
  if (s.hit === true && s.ttl !== undefined && s.fwd === undefined && s.fwdStatus === undefined && s.stored !== true && s.collapsed !== true && s.detail === undefined) {
    return freshHit(Math.trunc(s.ttl));
  }
  let v = CACHE_NAME;
  if (s.hit) v += '; hit';
  if (s.fwd !== undefined) v += `; fwd=${s.fwd}`;
  if (s.fwdStatus !== undefined) v += `; fwd-status=${s.fwdStatus}`;
  if (s.ttl !== undefined) v += `; ttl=${Math.trunc(s.ttl)}`;
  if (s.stored) v += '; stored';
  if (s.collapsed) v += '; collapsed';
  if (s.detail !== undefined) v += `; detail=${s.detail}`;
  return v;
}

/**
 * A fresh hit's member (RFC 9211 §2.1 hit, §2.4 ttl), as cacheStatus writes
 * it, the same string for the same ttl: a slot per ttl's low bits holds the
 * last one made. Joined anew per hit it cost about 0.3k instructions, and
 * the lane's head memo (h1-wire.ts sameHead) then compared it with the last
 * head's by its characters, where the same string is equal by pointer
 * (bench/request-cost.ts). A hit's ttl changes once a second; other ttls
 * only take the slot over.
 */
function freshHit(ttl: number): string {
  const slot = ttl & (HIT_SLOTS - 1);
  if (hitTtls[slot] === ttl) return hitTexts[slot]!;
  const text = `${CACHE_NAME}; hit; ttl=${ttl}`;
  hitTtls[slot] = ttl;
  hitTexts[slot] = text;
  return text;
}

const HIT_SLOTS = 64;
/** Each slot's ttl (NaN: none yet, equal to no ttl) and its member. */
const hitTtls = new Float64Array(HIT_SLOTS).fill(NaN);
const hitTexts: string[] = new Array<string>(HIT_SLOTS).fill('');

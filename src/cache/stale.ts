/**
 * Serving a stale stored response (RFC 5861; RFC 9111 §4.2.4), as pure
 * functions of the stored response, the request's directives and the time:
 *
 * - `stale-while-revalidate=N` (RFC 5861 §3, a response directive): a
 *   response stale by at most N seconds is sent at once while the cache
 *   revalidates it in the background;
 * - `stale-if-error=N` (RFC 5861 §4, a response and a request directive):
 *   when the attempt to validate or refetch a stale response meets an error
 *   (no answer, or 500, 502, 503, 504), a response stale by at most N
 *   seconds is sent instead; --cache-stale-if-error is the window of
 *   responses that give none.
 *
 * The response's directives are those of the targeted field that applies
 * (RFC 9213 §2.1: CDN-Cache-Control or --targeted-cache-control), else
 * Cache-Control's.
 *
 * Choices where the RFCs leave room, each on the side that serves less:
 * - Never when RFC 9111 §4.2.4 forbids stale responses: `must-revalidate`,
 *   `proxy-revalidate`, `s-maxage` (§5.2.2.10: it implies proxy-revalidate
 *   for a shared cache) and an unqualified `no-cache` (§5.2.2.4) in the
 *   stored response; a request's stale-if-error does not override them
 *   either.
 * - A request that asked for a validated or younger response (`no-cache`
 *   §5.2.1.4, `max-age` §5.2.1.1, `min-fresh` §5.2.1.3) gets neither
 *   (stale-while-revalidate would answer it with what it refused), except
 *   that its own `stale-if-error` says it accepts a stale answer on error.
 * - A directive whose argument is not delta-seconds is a window of 0 (RFC
 *   9111 §1.2.2, read on the cautious side), and it still replaces
 *   --cache-stale-if-error: the origin said something about this response.
 * - Both windows count from the end of the freshness lifetime: staleness is
 *   current age minus lifetime (§4.2.4), in whole seconds as Age is sent.
 */
import { deltaSeconds, qualifiedFieldNames, type Directives } from './cache-control.js';
import { cacheControl, currentAge, responseControl, type Headers, type RequestDirectives, type StoredTiming } from './policy.js';
import { DEFAULT_TARGETS, type Targets } from './targeted.js';

/** RFC 5861 §4: "an error is any situation that would result in a 500, 502, 503, or 504 HTTP response status code being returned". */
const ERROR_STATUSES = new Set([500, 502, 503, 504]);

export function isErrorStatus(status: number): boolean {
  return ERROR_STATUSES.has(status);
}

/** RFC 9111 §4.2.4: directives of the stored response under which no stale response may be sent. */
export function staleForbidden(res: Directives): boolean {
  if (res.has('must-revalidate') || res.has('proxy-revalidate') || res.has('s-maxage')) return true;
  // §5.2.2.4: a qualified no-cache only removed its fields at storage; an unqualified one means "validate every time".
  return res.has('no-cache') && qualifiedFieldNames(res, 'no-cache').length === 0;
}

/** A window directive in seconds: undefined when absent, 0 when its argument is unreadable. */
function windowOf(cc: Directives, name: 'stale-while-revalidate' | 'stale-if-error'): number | undefined {
  if (!cc.has(name)) return undefined;
  return deltaSeconds(cc.get(name)) ?? 0;
}

/** The request's own `stale-if-error=N` (RFC 5861 §4), in seconds, or null when it has none. */
export function requestStaleIfError(requestHeaders: Headers): number | null {
  return windowOf(cacheControl(requestHeaders), 'stale-if-error') ?? null;
}

/** Age and ttl (lifetime - age) now, whole seconds as reuse() and Age count them. */
function timing(stored: StoredTiming, now: number): { age: number; ttl: number } {
  const age = currentAge(stored.initialAge, stored.responseTime, now);
  return { age, ttl: stored.lifetime - age };
}

/** §5.2.1.1, §5.2.1.3, §5.2.1.4: the request asked for a validated, younger or fresher response than this one. */
function requestRefuses(req: RequestDirectives, age: number, ttl: number): boolean {
  return req.noCache || (req.maxAge !== null && age > req.maxAge) || (req.minFresh !== null && ttl < req.minFresh);
}

/**
 * RFC 5861 §3: may this stale stored response answer the request now, while
 * it is revalidated in the background? Only a response that is stale (ttl
 * <= 0) by no more than its own stale-while-revalidate window.
 */
export function staleWhileRevalidate(stored: StoredTiming, req: RequestDirectives, now: number, targets: Targets = DEFAULT_TARGETS): boolean {
  const res = responseControl(stored.headers, targets).directives;
  const window = windowOf(res, 'stale-while-revalidate');
  if (window === undefined || staleForbidden(res)) return false;
  const { age, ttl } = timing(stored, now);
  if (ttl > 0 || requestRefuses(req, age, ttl)) return false;
  return -ttl <= window;
}

export interface StaleIfErrorWindows {
  /** The request's stale-if-error (requestStaleIfError()), or null. */
  request: number | null;
  /** --cache-stale-if-error in seconds: for responses without a stale-if-error of their own; 0 = none. */
  fallback: number;
}

/**
 * RFC 5861 §4 and RFC 9111 §4.2.4: the attempt to validate or refetch this
 * stale stored response failed; may it answer the request instead of the
 * error? Within the request's window, or else (when the request did not ask
 * for a validated or younger response) within the response's window, or
 * --cache-stale-if-error when the response gives none.
 */
export function staleIfError(stored: StoredTiming, req: RequestDirectives, windows: StaleIfErrorWindows, now: number, targets: Targets = DEFAULT_TARGETS): boolean {
  const res = responseControl(stored.headers, targets).directives;
  if (staleForbidden(res)) return false;
  const { age, ttl } = timing(stored, now);
  if (ttl > 0) return false;
  const staleness = -ttl;
  // "the client is willing to accept a stale response if the check for a fresher one fails" (§4).
  if (windows.request !== null && staleness <= windows.request) return true;
  if (requestRefuses(req, age, ttl)) return false;
  return staleness <= (windowOf(res, 'stale-if-error') ?? windows.fallback);
}

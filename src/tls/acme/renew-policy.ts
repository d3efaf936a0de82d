/**
 * When to renew a managed certificate, and how long to wait after a failure.
 * Pure: the scheduler (acme-manager.ts) gives the clock and the randomness.
 *
 * - Renew at two thirds of the lifetime (what certbot and Caddy do for 90-day
 *   certificates: 30 days before the end), so a failing CA leaves a third of
 *   the lifetime for retries before clients see an expired certificate.
 * - After a failure: exponential backoff (1 min doubling to 6 h), with up to
 *   ±25 % jitter so that many servers failing together do not retry together
 *   (RFC 8555 §6.6 asks clients to avoid hammering a CA); never sooner than a
 *   Retry-After the CA gave (RFC 9110 §10.2.3), never later than the point
 *   where the certificate would expire before the next attempt.
 * - When the CA publishes ACME Renewal Information (RFC 9773, fetched by
 *   ari.ts), its suggested window replaces the two-thirds rule: a moment
 *   chosen uniformly at random inside it, checked again after its Retry-After.
 */

export const FIRST_RETRY_MS = 60_000;
export const MAX_RETRY_MS = 6 * 3600_000;
const JITTER = 0.25;

/** The moment (ms since the epoch) a certificate valid from notBefore to notAfter should be renewed. */
export function renewalTime(notBefore: number, notAfter: number): number {
  return notBefore + Math.floor(((notAfter - notBefore) * 2) / 3);
}

/** Whether the stored certificate must be replaced now: none, already at its renewal time, or expired. */
export function needsRenewal(now: number, cert: { notBefore: number; notAfter: number } | null): boolean {
  return cert === null || now >= renewalTime(cert.notBefore, cert.notAfter);
}

/**
 * Delay before attempt `failures + 1`, after `failures` (>= 1) failures in a
 * row. `random` is in [0, 1). `retryAfterMs`: what the CA asked for, or null.
 */
export function retryDelay(failures: number, random: number, retryAfterMs: number | null): number {
  const base = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.max(0, Math.min(failures - 1, 20)));
  const jittered = Math.round(base * (1 - JITTER + 2 * JITTER * random));
  return Math.max(jittered, retryAfterMs ?? 0);
}

/** Retry-After as seconds or an HTTP date (RFC 9110 §10.2.3) -> milliseconds from now, or null if absent or unusable. */
export function parseRetryAfter(value: string | undefined, now: number): number | null {
  if (value === undefined) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

/** A suggested renewal window (RFC 9773 §4.2), in ms since the epoch; end > start. */
export interface RenewalWindow {
  start: number;
  end: number;
}

/**
 * RFC 9773 §4.2: a time uniformly at random inside the window, so that the
 * CA's clients spread over it rather than all coming at its start. A window
 * the CA answers again unchanged keeps the time chosen before: choosing anew
 * on every check would pull the renewal towards the window's start.
 * The caller renews at once when the time is already past (§4.2, step 3).
 */
export function timeInWindow(w: RenewalWindow, random: number, previous?: { window: RenewalWindow; at: number }): number {
  if (previous && previous.window.start === w.start && previous.window.end === w.end) return previous.at;
  return w.start + Math.floor((w.end - w.start) * random);
}

/** Bounds for the next renewalInfo check after an answer (see ariCheckDelay). */
export const ARI_MIN_CHECK_MS = 60_000;
export const ARI_MAX_CHECK_MS = 24 * 3600_000;
/** No Retry-After in the answer: RFC 9773 §4.3 leaves the interval to the client; a few checks a day. */
export const ARI_DEFAULT_CHECK_MS = 6 * 3600_000;

/**
 * When to check renewalInfo again, from the answer's Retry-After (RFC 9773
 * §4.3). Clamped as §4.3 suggests clients do: under a minute would have a
 * client poll its CA in a loop (a broken or hostile answer of 0), and over a
 * day would miss a window the CA moves early, e.g. ahead of a mass revocation,
 * the case ARI exists for (§1).
 */
export function ariCheckDelay(retryAfterMs: number | null): number {
  return Math.min(ARI_MAX_CHECK_MS, Math.max(ARI_MIN_CHECK_MS, retryAfterMs ?? ARI_DEFAULT_CHECK_MS));
}

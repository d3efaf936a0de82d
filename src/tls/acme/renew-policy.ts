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

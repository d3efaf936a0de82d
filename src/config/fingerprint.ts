/**
 * Certificate pins: node reports a peer certificate's SHA-256 as
 * `fingerprint256`, upper-case hex pairs joined by colons, so pins are
 * normalised to exactly that form and compared as strings.
 */

/** openssl x509 -fingerprint prints "sha256 Fingerprint=AA:..." (or "SHA256 Fingerprint="): admins paste it whole. */
const OPENSSL_PREFIX = /^sha-?256(\s+fingerprint)?\s*[=:]\s*/i;

/** "aabb..." / "AA:BB:..." / openssl's output -> "AA:BB:..."; null when it is not a SHA-256 digest. */
export function normaliseFingerprint(value: string): string | null {
  const hex = value.trim().replace(OPENSSL_PREFIX, '').replace(/:/g, '');
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) return null;
  return hex.toUpperCase().replace(/(..)(?!$)/g, '$1:');
}

/** A SHA-1 pin (40 hex digits) is the common mistake: old tools print SHA-1 by default. */
export function looksLikeSha1(value: string): boolean {
  return /^[0-9a-fA-F]{40}$/.test(value.trim().replace(OPENSSL_PREFIX, '').replace(/:/g, ''));
}

/**
 * Which kTLS directions the bound system OpenSSL hands to the kernel, per TLS
 * version: 3.0/3.1 give TLS 1.2 TX+RX and TLS 1.3 TX only; 3.2+ give both
 * directions for both. (OpenSSL must be built with enable-ktls, as Debian's is.)
 */
import type { Capabilities } from './capabilities.js';

export interface KtlsDirections {
  tls: '1.2' | '1.3';
  tx: boolean;
  rx: boolean;
}

export interface OpensslReport {
  available: boolean;
  /** Why the system OpenSSL cannot be used; null when it can. */
  problem: string | null;
  version: string | null;
  versionNumber: number | null;
  libssl: string | null;
  major: number | null;
  minor: number | null;
  patch: number | null;
  ktls: KtlsDirections[];
}

/** OPENSSL_VERSION_NUMBER for 3.x is 0xMNN00PP0: major, minor, patch. */
export function splitVersionNumber(n: number): { major: number; minor: number; patch: number } {
  return { major: n >>> 28, minor: (n >>> 20) & 0xff, patch: (n >>> 4) & 0xff };
}

export function ktlsMatrix(versionNumber: number): KtlsDirections[] {
  const { major, minor } = splitVersionNumber(versionNumber);
  if (major < 3) return [{ tls: '1.2', tx: false, rx: false }, { tls: '1.3', tx: false, rx: false }];
  const tls13Rx = major > 3 || minor >= 2;
  return [{ tls: '1.2', tx: true, rx: true }, { tls: '1.3', tx: true, rx: tls13Rx }];
}

export function opensslReport(caps: Pick<Capabilities, 'openssl' | 'opensslProblem'>): OpensslReport {
  const o = caps.openssl;
  if (!o) {
    return { available: false, problem: caps.opensslProblem ?? 'system OpenSSL not loaded', version: null, versionNumber: null, libssl: null, major: null, minor: null, patch: null, ktls: [] };
  }
  return { available: true, problem: null, version: o.version, versionNumber: o.versionNumber, libssl: o.libssl, ...splitVersionNumber(o.versionNumber), ktls: ktlsMatrix(o.versionNumber) };
}

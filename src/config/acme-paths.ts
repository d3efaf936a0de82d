/**
 * Where ACME keeps its files under --acme-storage DIR (tls/acme/storage.ts
 * writes them): the settings name each managed certificate's pair by these
 * paths before any order is made, and the doctor reads them from another
 * process.
 */
import path from 'node:path';

export interface ManagedPaths {
  /** The chain, leaf first, then the private key: one file, so one rename(2) replaces both at once. */
  certFile: string;
  /** The same file as certFile (a key may sit with its certificates, docs/certificates.md). */
  keyFile: string;
  lockFile: string;
  /** The scheduler's state (next renewal, last error), for `aludel doctor --acme-storage` in another process. */
  statusFile: string;
  /** While a TLS-ALPN-01 challenge is pending: its self-signed certificate and key (RFC 8737 §3). */
  challengeFile: string;
}

export function accountKeyFile(dir: string): string {
  return path.join(dir, 'account.key');
}

/** The files of one managed name; `name` is a checked DNS name (no '/', no '..'). */
export function managedPaths(dir: string, name: string): ManagedPaths {
  const d = path.join(dir, 'certificates', name);
  const pair = path.join(d, 'pair.pem');
  return { certFile: pair, keyFile: pair, lockFile: path.join(d, 'lock'), statusFile: path.join(d, 'status.json'), challengeFile: path.join(d, 'tls-alpn-01.pem') };
}

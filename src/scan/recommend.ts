/**
 * What `aludel scan` recommends for one process, from what it can see:
 * - run: the program maps a shared OpenSSL >= 3.0, which can drive kTLS
 *   itself once SSL_OP_ENABLE_KTLS is on: `aludel run` sets it, no extra hop;
 *   or OpenSSL 1.1.1: `aludel run --strategy keys` hands its TLS 1.2 AES-GCM
 *   connections to the kernel.
 * - proxy: the program's TLS cannot be reached in-process (statically linked,
 *   another library, or OpenSSL < 1.1.1): `aludel proxy`/`aludel tcp`
 *   terminate TLS in front of it.
 * - cache: as proxy, for an HTTPS port: cached responses then leave by
 *   sendfile on a kTLS socket and the program serves only misses.
 * - none: kTLS is already on, the process is Aludel itself, or there is
 *   nothing to front (no listening port, or libcrypto without libssl, e.g. SSH).
 */
export type Action = 'run' | 'proxy' | 'cache' | 'none';

export type KtlsUse = 'yes' | 'no' | 'idle' | 'unknown';

export interface RecommendInput {
  /** OpenSSL's major.minor from the mapped libssl ("3.0", "1.1"); null when no libssl is mapped. */
  libsslVersion: string | null;
  libcryptoMapped: boolean;
  listeningPorts: number[];
  ktls: KtlsUse;
  /** aludel-preload.so is mapped. */
  underRun: boolean;
  /** The process is Aludel (its addon is mapped). */
  aludel: boolean;
}

export interface Recommendation {
  action: Action;
  reason: string;
}

/** Ports where HTTPS is the convention (IANA https 443, and the common alternative 8443). */
const HTTPS_PORTS = new Set([443, 8443]);

export function recommend(p: RecommendInput): Recommendation {
  if (p.ktls === 'yes') return { action: 'none', reason: 'its TLS connections already use kernel TLS' };
  if (p.aludel) return { action: 'none', reason: 'Aludel itself: it sets up kernel TLS on its own where the kernel allows (see aludel doctor)' };
  if (p.listeningPorts.length === 0) return { action: 'none', reason: 'no listening TCP port (a client, a worker without sockets, or idle): nothing to front' };
  if (p.libsslVersion !== null) {
    const major = Number(p.libsslVersion.split('.')[0]);
    if (major >= 3 && p.underRun) return { action: 'run', reason: `already under aludel run; ${p.ktls === 'no' ? 'its connections still lack kTLS: see aludel doctor (kernel tls module, cipher suites)' : 'kTLS shows once it has TLS connections'}` };
    if (major >= 3) return { action: 'run', reason: `shared OpenSSL ${p.libsslVersion} can drive kTLS itself: restart it under aludel run` };
    if (/^1\.1\.1/.test(p.libsslVersion)) {
      return { action: 'run', reason: `OpenSSL ${p.libsslVersion} has no kTLS of its own: restart it under aludel run --strategy keys (TLS 1.2 AES-GCM connections go to the kernel)` };
    }
    return {
      action: frontAction(p.listeningPorts),
      reason: `OpenSSL ${p.libsslVersion} has no kTLS and is too old for aludel run --strategy keys (needs 1.1.1); terminate TLS in front of it`,
    };
  }
  if (p.libcryptoMapped) return { action: 'none', reason: 'libcrypto without libssl: no OpenSSL TLS to offload here (e.g. SSH)' };
  return {
    action: frontAction(p.listeningPorts),
    reason: 'TLS library not visible (statically linked, another TLS library, or plain TCP): terminate TLS in front of it',
  };
}

function frontAction(ports: number[]): Action {
  return ports.some((port) => HTTPS_PORTS.has(port)) ? 'cache' : 'proxy';
}

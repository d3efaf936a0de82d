/**
 * How many descriptors a process keeps open between uses (the cache's bodies,
 * serve's files: transport/kept-descriptors.ts), under its descriptor limit.
 */
import fs from 'node:fs';

/** The default bound: as nginx's `open_file_cache max=1000` examples; each costs one descriptor. */
export const KEPT_MAX = 1000;

/**
 * How many to keep under a descriptor limit of `nofile` (RLIMIT_NOFILE, soft;
 * null: unknown): an eighth of it at most, so that kept descriptors never take the
 * descriptors connections need (accepts would fail with EMFILE).
 */
export function keptBound(nofile: number | null): number {
  if (nofile === null || !Number.isFinite(nofile)) return KEPT_MAX;
  return Math.max(0, Math.min(KEPT_MAX, Math.floor(nofile / 8)));
}

/** The soft RLIMIT_NOFILE of this process, from /proc/self/limits (node has no getrlimit); null when unreadable or unlimited. */
export function descriptorLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'latin1'));
    return m === null || m[1] === 'unlimited' ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/** The most connections one plain side listener holds (see sideListenerBound). */
export const SIDE_LISTENER_MAX = 256;

/**
 * How many connections a plain side listener (--redirect-http, --admin) may
 * hold under a descriptor limit of `nofile`: a sixteenth of it, at most 256
 * and at least 4. Without a cap, idle connections to the redirect port (port
 * 80, open to anyone) took every descriptor the process had, and the TLS
 * listener's accept(2) failed with EMFILE: nginx bounds every listener by
 * worker_connections (512 by default) for the same reason. A redirect lives
 * one request and an admin scrape a few, so 256 is far above their use.
 */
export function sideListenerBound(nofile: number | null): number {
  if (nofile === null || !Number.isFinite(nofile)) return SIDE_LISTENER_MAX;
  return Math.max(4, Math.min(SIDE_LISTENER_MAX, Math.floor(nofile / 16)));
}

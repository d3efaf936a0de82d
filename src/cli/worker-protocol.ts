/**
 * What the primary and its workers say to each other (node's IPC channel of
 * child_process.fork: JSON messages), and how a worker knows it is one. Pure:
 * the process wiring is in primary.ts and worker-link.ts.
 */
import type { AcmeChallenge, ChallengeChange } from '../tls/acme/challenges.js';

/** Set by the primary in each worker's environment: its index (1..N). */
export const WORKER_ENV = 'ALUDEL_WORKER';
/** The descriptors of the listening sockets the worker inherits, one per --listen address, in order ("4,5"). */
export const WORKER_FDS_ENV = 'ALUDEL_WORKER_FDS';
/** Where the inherited sockets start: after stdin, stdout, stderr and the IPC channel (fd 3). */
export const FIRST_LISTEN_FD = 4;

export type ToWorker =
  /**
   * The answer to 'hello': session ticket keys (base64, canonical form), or null when --ticket-keys files are read by each worker;
   * the ACME challenges pending now (--acme-domain), so a worker started during an order can answer them too.
   */
  | { type: 'start'; ticketKeys: string[] | null; challenges: AcmeChallenge[] }
  /** A rotation: [current, previous]. */
  | { type: 'ticket-keys'; keys: string[] }
  /** A scrape of the primary's admin listener: the worker answers with its registry as JSON. */
  | { type: 'metrics'; id: number }
  /** --acme-domain: a challenge became pending or is done (the primary orders; any worker may be the one the CA reaches). */
  | ({ type: 'acme-challenge' } & ChallengeChange)
  /** --acme-domain: a certificate was issued or renewed into the storage directory: take it into service as a HUP does. */
  | { type: 'certificates' }
  /**
   * A reload (HUP to the primary) that the primary checked: apply `config`, the --config text it read and
   * checked (null: no --config, the command line alone), never the file as it is when this message arrives;
   * `files`: the certificate, key, ticket key and --upstream-ca files it read then (held-files.ts; null: too large, read from disk).
   */
  | { type: 'reload'; config: string | null; files: string | null };

export type ToPrimary =
  | { type: 'hello' }
  /** answersTlsAlpn01: its TLS engine can answer TLS-ALPN-01 (RFC 8737), which decides the challenge the primary orders with. */
  | { type: 'ready'; addresses: string[]; answersTlsAlpn01: boolean }
  | { type: 'metrics'; id: number; metrics: unknown[] };

function typed(m: unknown): m is { type: string } {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string';
}

const TO_WORKER = new Set(['start', 'ticket-keys', 'metrics', 'acme-challenge', 'certificates', 'reload']);
const TO_PRIMARY = new Set(['hello', 'ready', 'metrics']);

export function isToWorker(m: unknown): m is ToWorker {
  return typed(m) && TO_WORKER.has(m.type);
}

export function isToPrimary(m: unknown): m is ToPrimary {
  return typed(m) && TO_PRIMARY.has(m.type);
}

export interface WorkerRole {
  index: number;
  fds: number[];
}

/** This process's role from its environment: a worker (index and inherited sockets), or null. */
export function workerRole(env: NodeJS.ProcessEnv): WorkerRole | null {
  const index = Number(env[WORKER_ENV]);
  const fds = (env[WORKER_FDS_ENV] ?? '').split(',').filter((f) => f !== '').map(Number);
  if (!Number.isSafeInteger(index) || index < 1 || fds.length === 0 || !fds.every((fd) => Number.isSafeInteger(fd) && fd >= FIRST_LISTEN_FD)) return null;
  return { index, fds };
}

/**
 * NODE_OPTIONS without the inspector flags: a worker must not open a debugger
 * port (nor fail on one the primary holds) because the operator debugged the
 * primary. Everything else (--max-old-space-size, ...) is kept.
 */
export function withoutInspectFlags(nodeOptions: string | undefined): string | undefined {
  if (nodeOptions === undefined) return undefined;
  const kept = nodeOptions.split(/\s+/).filter((o) => o !== '' && !/^--(inspect|debug)(-brk|-port|-wait|-publish-uid)?(=|$)/.test(o));
  return kept.join(' ');
}

/**
 * How many processes serve (role null: not a worker itself). `workers` as
 * settled, except that `auto` (the default) stays one process where workers
 * cannot run, and says why: they share listening sockets made by Aludel's
 * addon (`addonProblem`: why it did not load; null: it did). A number given
 * is kept: the primary then refuses to start, naming the cause.
 */
export function workersToStart(s: { workers: number; workersAuto: boolean }, addonProblem: string | null): { workers: number; oneProcessBecause: string | null } {
  if (s.workers > 1 && s.workersAuto && addonProblem !== null) {
    return { workers: 1, oneProcessBecause: `--workers auto: one process: the workers share listening sockets made by Aludel's addon, which did not load (${addonProblem})` };
  }
  return { workers: s.workers, oneProcessBecause: null };
}

/**
 * Whether this process says what every worker would find alike (warnings
 * about the files all of them read): the one process, or worker 1. A
 * restarted worker keeps its index (primary.ts), so it says them again.
 */
export function firstOrOnly(role: WorkerRole | null): boolean {
  return role === null || role.index === 1;
}

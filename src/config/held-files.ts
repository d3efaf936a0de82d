/**
 * --workers N: the certificate, key, --ticket-keys and --upstream-ca files a
 * worker starts from are the primary's copy, the bytes of the last load that succeeded
 * (at start, at a HUP, at an --acme-domain renewal), not the files as they
 * are when the worker starts. nginx's master reads them once per
 * (re)load and a respawned worker inherits them in memory, so a key file
 * deleted or a certificate half-written meanwhile never keeps a worker from
 * coming back. Read by path, such a file made every restart fail (exit 2,
 * then again with the backoff, for ever); with every worker down, the
 * primary still held the listening sockets, and clients sat in the accept
 * queue without an answer.
 *
 * The primary records the reads of one load (recordReads; the --upstream-ca
 * bytes, read as the settings were assembled, are noted from the settings
 * that carry them, noteCarried) and hands the
 * result to each worker it forks in its environment (WORKER_FILES_ENV), as
 * it hands the config text (held-config.ts): needed before anything is
 * built, and Linux caps one environment string at 128 KiB (past
 * MAX_HELD_BYTES nothing is held and files are read by path, as before).
 * The worker answers its start-up reads from that copy, then drops it once
 * it serves. A reload the primary passes on carries the copy of that
 * reload's check (the 'reload' message, worker-link.ts), and the worker's
 * reload reads from it (withHeldFiles): a file replaced after the primary's
 * check would otherwise reach the running workers unchecked, while a
 * restarted worker starts from the checked bytes.
 * OpenSSL's engine loads the pairs by path (SSL_CTX_use_certificate_chain_file):
 * for that one synchronous call the held bytes are written to a private
 * directory (mkdtemp, 0700; files 0600) and removed right after
 * (withHeldCopies). The
 * environment of a process is readable by its own user and root only
 * (/proc/PID/environ, 0400), the same who can read the key files; the
 * variable is removed from process.env at once so no child inherits it.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Set by the primary in each worker's environment: the files it holds, JSON. */
export const WORKER_FILES_ENV = 'ALUDEL_WORKER_FILES';

/** Below Linux's 128 KiB limit on one environment string (MAX_ARG_STRLEN), with room for the name. */
export const MAX_HELD_BYTES = 120 * 1024;

export interface HeldFile {
  bytes: Buffer;
  mode: number;
}

/** In a starting worker: the primary's copy, by absolute path. */
let held: ReadonlyMap<string, HeldFile> | null = null;
/** While the primary records a load: what it read. */
let recording: Map<string, HeldFile> | null = null;
/** Among them, the files the settings carried (noteCarried): the first left out when all do not fit. */
let carried: Set<string> | null = null;

/** The primary's copy of `file`, in a worker still starting. */
export function heldFile(file: string): HeldFile | undefined {
  return held?.get(path.resolve(file));
}

/** readable-file.ts: a file was read (recorded while the primary records a load). */
export function noteRead(file: string, read: HeldFile): void {
  recording?.set(path.resolve(file), { bytes: Buffer.from(read.bytes), mode: read.mode });
}

/**
 * Settings that carry a file's bytes, read and checked as they were
 * assembled (--upstream-ca: UpstreamTls.caPem), before the primary records
 * the load: held as the settings carry them, so that the workers get those
 * very bytes, not a second read. Only a key file's mode is ever looked at
 * (certificates.ts), so such a file is held as 0644.
 */
export function noteCarried(file: string, bytes: Buffer): void {
  const key = path.resolve(file);
  // Also read by the check (a --cert named as the CA bundle too): that read is held, and is no carried file.
  if (recording === null || recording.has(key)) return;
  noteRead(key, { bytes, mode: 0o644 });
  carried?.add(key);
}

/** What recordReads recorded. */
export interface Recorded {
  /** The text for WORKER_FILES_ENV; null: too large even without the carried files (everything is read by path). */
  text: string | null;
  /**
   * The carried files left out so that the rest fits (a CA bundle such as
   * the system's, some 200 KiB, beside the pairs): those alone are read by path.
   */
  leftOut: string[];
}

function heldText(files: Iterable<[string, HeldFile]>): string {
  return JSON.stringify(Object.fromEntries([...files].map(([file, r]) => [file, [r.mode, r.bytes.toString('base64')]])));
}

/**
 * Runs `load` (synchronous) with every small-file read recorded; returns
 * them as the text for WORKER_FILES_ENV. When they do not all fit, the
 * carried files are left out first: the certificate, key and ticket key
 * files are what a restarted worker cannot start without. Throws what
 * `load` throws: then nothing is recorded.
 */
export function recordReads(load: () => void): Recorded {
  recording = new Map();
  carried = new Set();
  try {
    load();
    const all = heldText(recording);
    if (all.length <= MAX_HELD_BYTES) return { text: all, leftOut: [] };
    const left = carried;
    const rest = heldText([...recording].filter(([file]) => !left.has(file)));
    return rest.length <= MAX_HELD_BYTES ? { text: rest, leftOut: [...left] } : { text: null, leftOut: [] };
  } finally {
    recording = null;
    carried = null;
  }
}

/** The primary's copy, from recordReads' text. */
function parseHeld(text: string): Map<string, HeldFile> {
  const parsed = JSON.parse(text) as Record<string, [number, string]>;
  return new Map(Object.entries(parsed).map(([file, [mode, b64]]) => [file, { mode, bytes: Buffer.from(b64, 'base64') }]));
}

/** In a worker, before its settings are read: takes the primary's copy from the environment (and out of it). */
export function useHeldFiles(isWorker: boolean, env: NodeJS.ProcessEnv = process.env): void {
  const text = env[WORKER_FILES_ENV];
  delete env[WORKER_FILES_ENV];
  if (!isWorker || text === undefined) return;
  held = parseHeld(text);
}

/**
 * In a serving worker: runs `reload` with the files read from `text`, the
 * primary's copy of the reload it checked (null: too large to hold, read
 * from disk), then drops the copy. Reloads run one at a time (serving.ts).
 */
export async function withHeldFiles<T>(text: string | null, reload: () => Promise<T>): Promise<T> {
  held = text === null ? null : parseHeld(text);
  try {
    return await reload();
  } finally {
    held = null;
  }
}

/** The worker serves: from here on (its reloads), files are read from disk. */
export function dropHeldFiles(): void {
  held = null;
}

/** A held copy written for OpenSSL; `file` itself when nothing is held for it. */
function writeCopy(dir: string, file: string, n: number): string {
  const h = heldFile(file);
  if (h === undefined) return file;
  const out = path.join(dir, `${n}.pem`);
  fs.writeFileSync(out, h.bytes, { mode: 0o600, flag: 'wx' });
  return out;
}

/**
 * Calls `use` (synchronous: OpenSSL reads the files in it) with the pairs,
 * the held ones as private copies on disk that are removed when it returns.
 */
export function withHeldCopies<P extends { certFile: string; keyFile: string }, T>(pairs: readonly P[], use: (pairs: P[]) => T): T {
  if (!pairs.some((p) => heldFile(p.certFile) !== undefined || heldFile(p.keyFile) !== undefined)) return use([...pairs]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-held-'));
  try {
    return use(pairs.map((p, i) => ({ ...p, certFile: writeCopy(dir, p.certFile, 2 * i), keyFile: writeCopy(dir, p.keyFile, 2 * i + 1) })));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

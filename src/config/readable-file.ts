import fs from 'node:fs';
import { heldFile, noteRead } from './held-files.js';

/**
 * Why a file named in the settings cannot be used (null when it can), checked
 * before anything starts so the error names the flag or key rather than
 * surfacing later as an OpenSSL error.
 */
export async function unreadableFileReason(file: string, kind: 'file' | 'directory' = 'file'): Promise<string | null> {
  // A starting worker reads this file from its primary's copy (held-files.ts), whatever the disk holds now.
  if (kind === 'file' && heldFile(file) !== undefined) return null;
  try {
    // access(R_OK) as well as stat: stat succeeds on a file this user cannot read.
    const st = await fs.promises.stat(file);
    if (kind === 'file' && !st.isFile()) return 'not a regular file';
    if (kind === 'directory' && !st.isDirectory()) return 'not a directory';
    await fs.promises.access(file, kind === 'file' ? fs.constants.R_OK : fs.constants.R_OK | fs.constants.X_OK);
    return null;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'no such file';
    if (code === 'EACCES') return 'permission denied (the user running aludel cannot read it)';
    return (err as Error).message;
  }
}

/** Why a file read whole cannot be (the caller prefixes the flag or key). */
export class FileReadProblem extends Error {}

/** The reason unreadableFileReason gives for an errno of open or read. */
function errnoReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied (the user running aludel cannot read it)';
  return (err as Error).message;
}

/**
 * The text of a regular file of at most `maxBytes`, else FileReadProblem
 * saying why. Opened with O_NONBLOCK and checked with fstat on the open
 * descriptor, not stat on the path: a FIFO (or one swapped in after a stat)
 * would block open(2) or read(2) in a thread-pool thread for ever, every later
 * reload queued behind it and exit waiting to join it; /dev/zero or a huge
 * file would be read whole into memory, in every worker.
 */
export async function readSmallRegularFile(file: string, maxBytes: number): Promise<string> {
  // The synchronous read, also here: with O_NONBLOCK and the descriptor checked before any read,
  // nothing in it can wait (a regular file of at most maxBytes), so one body serves both.
  return readSmallRegularFileSync(file, maxBytes).toString('utf8');
}

/** The bytes of a regular file of at most `maxBytes` (readSmallRegularFile; certificates and keys are read synchronously). */
export function readSmallRegularFileSync(file: string, maxBytes: number): Buffer {
  return readSmallRegularFileWithModeSync(file, maxBytes).bytes;
}

/** readSmallRegularFileSync, with the file's mode from the same fstat (who else may read it). */
export function readSmallRegularFileWithModeSync(file: string, maxBytes: number): { bytes: Buffer; mode: number } {
  const held = heldFile(file);
  if (held !== undefined && held.bytes.length <= maxBytes) return { bytes: Buffer.from(held.bytes), mode: held.mode };
  const read = readFromDiskSync(file, maxBytes);
  noteRead(file, read);
  return read;
}

function readFromDiskSync(file: string, maxBytes: number): { bytes: Buffer; mode: number } {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    throw new FileReadProblem(errnoReason(err), { cause: err });
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new FileReadProblem('not a regular file');
    const tooBig = `larger than ${maxBytes} bytes`;
    if (st.size > maxBytes) throw new FileReadProblem(`${tooBig} (${st.size})`);
    // One byte more than allowed: a file still growing past the limit is refused too.
    const buf = Buffer.alloc(maxBytes + 1);
    let n = 0;
    for (let r = 1; r > 0 && n < buf.length; n += r) r = fs.readSync(fd, buf, n, buf.length - n, n);
    if (n > maxBytes) throw new FileReadProblem(tooBig);
    return { bytes: buf.subarray(0, n), mode: st.mode };
  } catch (err) {
    throw err instanceof FileReadProblem ? err : new FileReadProblem(errnoReason(err), { cause: err });
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Whether group or other users may read a file of `mode` (st_mode): for a
 * file that holds a key (--key, --ticket-keys), whoever reads it can
 * impersonate the server or decrypt the sessions it protected, so say so.
 */
export function exposedMode(mode: number): boolean {
  return (mode & 0o044) !== 0;
}

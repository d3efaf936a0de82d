/**
 * Where ACME keeps its secrets: DIR (mode 0700) holds account.key and, per
 * managed name, certificates/NAME/pair.pem (chain and key, mode 0600), written to
 * a temporary file, checked, and renamed over the old one (rename(2) is
 * atomic), so a reader (the listener on reload, another process) sees the old
 * pair or the new one, never half of either. A lock file per name, created with O_EXCL
 * and holding the owner's pid, keeps two processes sharing DIR from ordering
 * the same certificate at once; a lock whose pid is gone is stale and taken over.
 */
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { loadCertificate } from '../certificates.js';
import { accountKeyFile, managedPaths, type ManagedPaths } from '../../config/acme-paths.js';

/** What is on disk for one name. */
export type StoredCertificate =
  | { state: 'valid'; notBefore: number; notAfter: number; serial: string; issuer: string; selfIssued: boolean }
  | { state: 'missing' }
  | { state: 'corrupt'; reason: string };

/**
 * Creates DIR and DIR/certificates/NAME with mode 0700, and narrows existing
 * ones to it, and existing key files to 0600 (copied in by hand, say): they hold private keys.
 */
export function ensureStorage(dir: string, names: readonly string[]): void {
  for (const d of [dir, path.join(dir, 'certificates'), ...names.map((n) => path.dirname(managedPaths(dir, n).certFile))]) {
    fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    fs.chmodSync(d, 0o700);
  }
  for (const f of [accountKeyFile(dir), ...names.map((n) => managedPaths(dir, n).certFile)]) {
    if (fs.existsSync(f)) fs.chmodSync(f, 0o600);
  }
}

/**
 * Writes `data` to `file` with mode 0600 through a temporary file and
 * rename(2); `check(tmp)` may throw to keep the old file (the temporary one is removed).
 */
export function writeSecretFile(file: string, data: string | Buffer, check?: (tmp: string) => void): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o600);
  try {
    fs.fchmodSync(fd, 0o600); // the umask may have narrowed it further, never widened; make it exact
    fs.writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    check?.(tmp);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** Reads and checks the stored pair (key matches, chain in order) and its validity period. */
export function readStored(paths: ManagedPaths): StoredCertificate {
  if (!fs.existsSync(paths.certFile)) return { state: 'missing' };
  try {
    const loaded = loadCertificate(paths, 0);
    const leaf = new X509Certificate(loaded.chainPem);
    return {
      state: 'valid',
      notBefore: Date.parse(leaf.validFrom),
      notAfter: Date.parse(leaf.validTo),
      serial: leaf.serialNumber,
      issuer: leaf.issuer.replace(/\n/g, ', '),
      selfIssued: leaf.issuer === leaf.subject,
    };
  } catch (err) {
    return { state: 'corrupt', reason: (err as Error).message };
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the lock of one name: returns its release function, or the pid of the
 * live process holding it. A lock file whose pid is not running (a crash, a
 * SIGKILL) or that holds no pid is stale: it is removed and taken once more.
 */
export function acquireLock(lockFile: string): { release(): void } | { heldBy: number } {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = fs.openSync(lockFile, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
      fs.writeSync(fd, `${process.pid}\n`);
      fs.closeSync(fd);
      return { release: () => fs.rmSync(lockFile, { force: true }) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let pid = NaN;
    try {
      pid = Number.parseInt(fs.readFileSync(lockFile, 'utf8'), 10);
    } catch {
      // Removed meanwhile: try again.
    }
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && pidAlive(pid)) return { heldBy: pid };
    // Stale. (Two processes finding the same stale lock at the same instant could both remove it,
    // the second removing the first's new lock: a window of microseconds, once per crash.)
    fs.rmSync(lockFile, { force: true });
  }
  return { heldBy: -1 };
}

/** Keeps a stored pair that cannot be used beside the new one (NAME/pair.pem.corrupt-TIME) for inspection, instead of losing it. */
export function setAsideCorrupt(paths: ManagedPaths, now: number): string {
  const aside = `${paths.certFile}.corrupt-${new Date(now).toISOString().replace(/[:.]/g, '-')}`;
  fs.renameSync(paths.certFile, aside);
  return aside;
}

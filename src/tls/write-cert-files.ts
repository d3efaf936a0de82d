/**
 * Writes a certificate/key pair as `cert.pem` (0644) and `key.pem` (0600).
 *
 * The key file is created with mode 0600 in the open(2) call itself, so it is
 * never readable by others, not even briefly (no chmod after the fact). The
 * process umask can only remove permission bits, never add them.
 *
 * Missing directories are created 0700 the same way (mkdir(2)'s mode): with
 * the default 0777 a umask of 000 made them world-writable, and anyone could
 * then rename a key.pem of their own over ours. An existing directory keeps
 * its mode: it is the admin's (a shared /etc/aludel, say).
 */
import { randomBytes } from "node:crypto";
import { constants as fsConstants } from "node:fs";
import { mkdir, open, rename, rm, stat } from "node:fs/promises";
import path from "node:path";

export interface CertPair {
  certPem: string;
  keyPem: string;
}

export interface WriteCertFilesOptions {
  /** Overwrite existing cert.pem / key.pem. */
  force?: boolean;
}

export const CERT_FILE_NAME = "cert.pem";
export const KEY_FILE_NAME = "key.pem";

function isErrno(err: unknown, code: string): boolean {
  return typeof err === "object" && err !== null && (err as NodeJS.ErrnoException).code === code;
}

function existsError(file: string): Error {
  return new Error(`${file} already exists; pass --force to overwrite it`);
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (err) {
    if (isErrno(err, "ENOENT")) return false;
    throw err;
  }
}

/** Creates `file` exclusively (O_EXCL) with `mode` and writes `data`; EEXIST becomes a "--force" hint. */
async function createExclusive(file: string, data: string, mode: number): Promise<void> {
  const { O_WRONLY, O_CREAT, O_EXCL } = fsConstants;
  let fh;
  try {
    fh = await open(file, O_WRONLY | O_CREAT | O_EXCL, mode);
  } catch (err) {
    if (isErrno(err, "EEXIST")) throw existsError(file);
    throw err;
  }
  try {
    await fh.writeFile(data, "utf8");
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * Writes `file` with `mode`. Without force, O_EXCL makes "refuse to overwrite"
 * race-free. With force we do NOT open the old file with O_TRUNC (that would
 * keep its old, possibly world-readable mode); instead a fresh temp file is
 * created with `mode` and renamed over the target (atomic, and replaces a
 * symlink instead of writing through it).
 */
async function writeFileWithMode(file: string, data: string, mode: number, force: boolean): Promise<void> {
  if (!force) {
    await createExclusive(file, data, mode);
    return;
  }
  const tmp = path.join(
    path.dirname(file),
    `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`,
  );
  try {
    await createExclusive(tmp, data, mode);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}

export async function writeCertFiles(
  dir: string,
  pair: CertPair,
  opts: WriteCertFilesOptions = {},
): Promise<{ certPath: string; keyPath: string }> {
  const force = opts.force === true;
  const certPath = path.join(dir, CERT_FILE_NAME);
  const keyPath = path.join(dir, KEY_FILE_NAME);

  await mkdir(dir, { recursive: true, mode: 0o700 });

  // Check both up front so we never leave a half-written pair behind
  // (new cert.pem next to an old key.pem) when only one of them exists.
  if (!force) {
    for (const file of [certPath, keyPath]) {
      if (await exists(file)) throw existsError(file);
    }
  }

  // Key first: if it fails there is no certificate lying around without its key.
  await writeFileWithMode(keyPath, pair.keyPem, 0o600, force);
  await writeFileWithMode(certPath, pair.certPem, 0o644, force);

  return { certPath, keyPath };
}

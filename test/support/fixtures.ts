/**
 * Test content: a self-signed certificate (SAN localhost/127.0.0.1/::1) and a
 * document root of random files whose sizes sit on record and page boundaries,
 * each with its sha256; plus a scratch directory for downloads.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createSelfSignedCert } from '../../src/tls/self-signed.js';
import { writeCertFiles } from '../../src/tls/write-cert-files.js';

export interface FixtureFile {
  name: string;
  path: string;
  size: number;
  sha256: string;
}

export interface Fixtures<K extends string = string> {
  dir: string;
  certFile: string;
  keyFile: string;
  certPem: string;
  /** The document root: holds exactly `files`. */
  root: string;
  /** An empty directory outside the root, for clients to write downloads to. */
  outDir: string;
  files: Record<K, FixtureFile>;
  cleanup(): void;
}

/** A file's size; or its name and size, when the key in `files` is not the file name. */
export type FileSpec = number | { name: string; size: number };

export const BIG_SIZE = 5 * 1024 * 1024;

/** What makeFixtures() makes without arguments: 0 B, 1 B, 16385 B (one past a TLS record) and 5 MiB. */
export const STANDARD_FILES = {
  empty: { name: 'empty.bin', size: 0 },
  one: { name: 'one.bin', size: 1 },
  mid: { name: 'mid-16385.bin', size: 16385 },
  big: { name: 'big-5m.bin', size: BIG_SIZE },
} as const;

export type StandardFixtures = Fixtures<keyof typeof STANDARD_FILES>;

export function sha256(data: Buffer | string): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/**
 * A temp dir with tls/cert.pem + tls/key.pem, root/ with one random file per
 * entry of `files` (keyed as given; a bare size names the file by its key) and
 * an empty out/. Large files are written in chunks, never held in memory whole.
 */
export function makeFixtures(): Promise<StandardFixtures>;
export function makeFixtures<K extends string>(files: Record<K, FileSpec>): Promise<Fixtures<K>>;
export async function makeFixtures(files: Record<string, FileSpec> = STANDARD_FILES): Promise<Fixtures> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-test-'));
  const root = path.join(dir, 'root');
  const outDir = path.join(dir, 'out');
  await fs.promises.mkdir(root);
  await fs.promises.mkdir(outDir);
  const pair = await createSelfSignedCert();
  const { certPath, keyPath } = await writeCertFiles(path.join(dir, 'tls'), pair);
  const made: Fixtures['files'] = {};
  for (const [key, spec] of Object.entries(files)) {
    const { name, size } = typeof spec === 'number' ? { name: key, size: spec } : spec;
    const file = path.join(root, name);
    const hash = crypto.createHash('sha256');
    const fh = await fs.promises.open(file, 'w');
    try {
      for (let done = 0; done < size; ) {
        const chunk = crypto.randomBytes(Math.min(4 * 1024 * 1024, size - done));
        await fh.write(chunk);
        hash.update(chunk);
        done += chunk.length;
      }
    } finally {
      await fh.close();
    }
    made[key] = { name, path: file, size, sha256: hash.digest('hex') };
  }
  return {
    dir,
    certFile: certPath,
    keyFile: keyPath,
    certPem: pair.certPem,
    root,
    outDir,
    files: made,
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

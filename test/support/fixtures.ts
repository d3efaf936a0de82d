/** Test content: a certificate and files whose sizes sit on record and page boundaries. */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createSelfSignedCert } from '../../src/tls/self-signed.js';
import { writeCertFiles } from '../../src/tls/write-cert-files.js';

export interface Fixtures {
  dir: string;
  root: string;
  cert: string;
  key: string;
  files: Record<string, { size: number; sha256: string }>;
  cleanup(): Promise<void>;
}

export async function makeFixtures(sizes: Record<string, number>): Promise<Fixtures> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-test-'));
  const root = path.join(dir, 'www');
  await fs.promises.mkdir(root);
  const { certPath, keyPath } = await writeCertFiles(path.join(dir, 'tls'), await createSelfSignedCert());
  const files: Fixtures['files'] = {};
  for (const [name, size] of Object.entries(sizes)) {
    const hash = crypto.createHash('sha256');
    const fh = await fs.promises.open(path.join(root, name), 'w');
    for (let done = 0; done < size; ) {
      const chunk = crypto.randomBytes(Math.min(4 * 1024 * 1024, size - done));
      await fh.write(chunk);
      hash.update(chunk);
      done += chunk.length;
    }
    await fh.close();
    files[name] = { size, sha256: hash.digest('hex') };
  }
  return { dir, root, cert: certPath, key: keyPath, files, cleanup: () => fs.promises.rm(dir, { recursive: true, force: true }) };
}

export function sha256(buf: Buffer): string {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

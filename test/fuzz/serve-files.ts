/**
 * The document root the fuzzer serves: small deterministic files, so a
 * well-formed GET can be checked byte for byte by the generator alone.
 */
import fs from 'node:fs';
import path from 'node:path';

function pattern(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let x = 0x1234567;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
}

export const SERVE_FILES: ReadonlyMap<string, Buffer> = new Map([
  ['/a.txt', Buffer.from('hello from the fuzz root\n')],
  ['/empty.txt', Buffer.alloc(0)],
  // One byte past a TLS record, so a body spans records.
  ['/b.bin', pattern(16385)],
  ['/probe.txt', Buffer.from('probe ok\n')],
]);

export function writeServeRoot(dir: string): void {
  for (const [name, data] of SERVE_FILES) fs.writeFileSync(path.join(dir, name.slice(1)), data);
}

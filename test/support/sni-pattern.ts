/** The bytes of long transfers in the certificate tests: 1 MiB, the same in every process. */
import crypto from 'node:crypto';

let cached: Buffer | undefined;

export function patternBlock(): Buffer {
  if (cached) return cached;
  const parts: Buffer[] = [];
  for (let i = 0; i < 32768; i++) parts.push(crypto.createHash('sha256').update(`aludel-sni-${i}`).digest());
  cached = Buffer.concat(parts);
  return cached;
}

/** sha256 of `total` bytes of patternBlock() repeated. */
export function patternSha256(total: number): string {
  const block = patternBlock();
  const h = crypto.createHash('sha256');
  for (let left = total; left > 0; left -= block.length) h.update(left >= block.length ? block : block.subarray(0, left));
  return h.digest('hex');
}

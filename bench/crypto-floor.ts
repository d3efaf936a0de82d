/**
 * The crypto floor: what AES-128-GCM alone costs on this CPU, from
 * `openssl speed -evp aes-128-gcm` on 16 KiB blocks (one full TLS record).
 * No TLS server can use less CPU per GB than this, so every scenario's CPU/GB
 * is also given as a multiple of it.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Bytes per second from `openssl speed -mr` output (its "+F:<n>:AES-128-GCM:<bytes/s>" line). */
export function parseOpensslSpeed(stdout: string): number {
  const line = stdout.split('\n').find((l) => /^\+F:\d+:AES-128-GCM:/i.test(l));
  if (!line) throw new Error(`openssl speed printed no +F line for AES-128-GCM:\n${stdout}`);
  const value = Number(line.split(':')[3]);
  if (!(value > 0)) throw new Error(`openssl speed gave no throughput: ${line}`);
  return value;
}

/** One probe of `seconds` on one core. */
export async function measureCryptoFloor(seconds: number): Promise<number> {
  const { stdout } = await run('openssl', ['speed', '-evp', 'aes-128-gcm', '-bytes', '16384', '-seconds', String(seconds), '-mr'], { maxBuffer: 1 << 20 });
  return parseOpensslSpeed(stdout);
}

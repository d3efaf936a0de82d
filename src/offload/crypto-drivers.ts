/**
 * The kernel crypto drivers registered for the AEADs kTLS uses, from
 * /proc/crypto. kTLS allocates "gcm(aes)" and "rfc7539(chacha20,poly1305)";
 * the kernel picks the highest-priority driver. "rfc4106(gcm(aes))" is the
 * IPsec form, listed because accelerator drivers often register only that.
 */
import fs from 'node:fs';
import path from 'node:path';

export const CRYPTO_ALGORITHMS = ['gcm(aes)', 'rfc4106(gcm(aes))', 'rfc7539(chacha20,poly1305)'] as const;

export type DriverKind = 'accelerator' | 'cpu' | 'unknown';

export interface CryptoDriver {
  driver: string;
  module: string | null;
  priority: number;
  kind: DriverKind;
  label: string;
}

export interface CryptoAlgorithm {
  name: string;
  /** Highest priority first: drivers[0] is the one the kernel uses. */
  drivers: CryptoDriver[];
}

export interface CryptoDriversReport {
  present: boolean;
  algorithms: CryptoAlgorithm[];
}

const ACCELERATORS = ['chcr', 'qat', 'ccp', 'caam', 'nx', 'safexcel'];

/** Parses /proc/crypto: blank-line separated blocks of "key : value" lines. */
export function parseProcCrypto(text: string): Array<Record<string, string>> {
  const blocks: Array<Record<string, string>> = [];
  for (const chunk of text.split(/\n\s*\n/)) {
    const block: Record<string, string> = {};
    for (const line of chunk.split('\n')) {
      const i = line.indexOf(':');
      if (i < 0) continue;
      block[line.slice(0, i).trim()] = line.slice(i + 1).trim();
    }
    if (Object.keys(block).length > 0) blocks.push(block);
  }
  return blocks;
}

/** Driver names are matched by their tokens ("gcm-aes-caam-qi2" -> caam). */
export function classifyDriver(driver: string): DriverKind {
  const tokens = driver.toLowerCase().split(/[^a-z0-9]+/).filter(Boolean);
  if (tokens.some((t) => ACCELERATORS.some((a) => t === a || t.startsWith(a)))) return 'accelerator';
  if (tokens.some((t) => t.startsWith('aesni') || t.startsWith('avx') || t.startsWith('vaes') || t === 'generic' || t === 'ce' || t === 'neon' || t === 'simd')) return 'cpu';
  return 'unknown';
}

export function kindLabel(kind: DriverKind): string {
  return kind === 'accelerator' ? 'accelerator (coprocessor mode)' : kind === 'cpu' ? 'CPU' : 'unknown';
}

export function cryptoDrivers(text: string): CryptoAlgorithm[] {
  const blocks = parseProcCrypto(text);
  return CRYPTO_ALGORITHMS.map((name) => ({
    name,
    drivers: blocks
      .filter((b) => b.name === name && b.driver !== undefined)
      .map((b): CryptoDriver => {
        const kind = classifyDriver(b.driver!);
        return { driver: b.driver!, module: b.module ?? null, priority: Number(b.priority ?? 0), kind, label: kindLabel(kind) };
      })
      .sort((a, b) => b.priority - a.priority || a.driver.localeCompare(b.driver)),
  }));
}

export function readCryptoDrivers(root: string): CryptoDriversReport {
  let text: string;
  try {
    text = fs.readFileSync(path.join(root, '/proc/crypto'), 'utf8');
  } catch {
    return { present: false, algorithms: CRYPTO_ALGORITHMS.map((name) => ({ name, drivers: [] })) };
  }
  return { present: true, algorithms: cryptoDrivers(text) };
}

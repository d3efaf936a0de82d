import { InvalidOptionError } from '../errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "500ms", "10s", "2m", or a bare number of seconds (as nginx's time values) -> milliseconds. */
export function parseDuration(name: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  if (!m) throw new InvalidOptionError(`${name} ${JSON.stringify(value)}: expected a duration such as 500ms, 10s or 2m`);
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 's']!);
}

const SIZE_UNITS: Record<string, number> = { k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 };

/** "16384", "16k", "1m", "10GiB" -> bytes (binary units, as nginx's sizes). */
export function parseSize(name: string, value: string): number {
  const m = /^(\d+)([kKmMgGtT]i?[bB]?)?$/.exec(value.trim());
  if (!m) throw new InvalidOptionError(`${name} ${JSON.stringify(value)}: expected a size such as 16384, 16k, 1m or 10GiB`);
  return Number(m[1]) * (SIZE_UNITS[(m[2] ?? '').toLowerCase()[0] ?? ''] ?? 1);
}

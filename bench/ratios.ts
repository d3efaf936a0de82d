/** The arithmetic of the report, kept apart so the unit tests can check it. */

/** CPU-seconds per 10^9 bytes served. */
export function cpuPerGB(cpuSeconds: number, bytes: number): number | null {
  return bytes > 0 ? cpuSeconds / (bytes / 1e9) : null;
}

/** CPU-seconds that AES-128-GCM alone needs for 10^9 bytes at `bytesPerSec`. */
export function floorCpuPerGB(bytesPerSec: number): number {
  return 1e9 / bytesPerSec;
}

/** a / b, or null when either side is missing or b is 0. */
export function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  if (a == null || b == null || b === 0 || !Number.isFinite(a) || !Number.isFinite(b)) return null;
  return a / b;
}

export function median(values: readonly number[]): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Counter deltas after - before for the names in either (a counter missing on one side counts as 0). */
export function counterDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)])) out[k] = (after[k] ?? 0) - (before[k] ?? 0);
  return out;
}

/**
 * A kernel-mode point whose connections never reached kTLS fell back to
 * userspace silently: the kernel counts every socket that gets a TX key in
 * TlsTxSw (or TlsTxDevice), so a kernel point must have raised one of them.
 */
export function ktlsProven(delta: Record<string, number>): boolean {
  return (delta.TlsTxSw ?? 0) + (delta.TlsTxDevice ?? 0) > 0;
}

/** Turns zod issues into lines an admin can act on: which flag or key, what was expected, what was given. */
import type { z } from 'zod';
import { InvalidOptionError } from '../errors.js';

/**
 * The value as given. YAML reads 1e309 and .inf as Infinity and .nan as NaN
 * (YAML 1.2 core schema), and JSON.parse reads 1e309 as Infinity, which
 * JSON.stringify would print as null, a value nobody wrote.
 */
function shownValue(input: unknown): string {
  if (typeof input === 'number' && !Number.isFinite(input)) return String(input);
  return JSON.stringify(input, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v));
}

/** "expected a duration like 500ms, 5s, 2m (got "five")". */
export function describeIssue(issue: z.core.$ZodIssue): string {
  const got = issue.input === undefined ? '' : ` (got ${shownValue(issue.input)})`;
  return `${issue.message}${got}`;
}

/**
 * One command-line value through one of the schemas of setting-values.ts,
 * e.g. parseFlag(tlsVersion, '--tls-min', flags.tlsMin).
 */
export function parseFlag<T>(schema: z.ZodType<T>, flag: string, value: unknown): T {
  const result = schema.safeParse(value, { reportInput: true });
  if (result.success) return result.data;
  throw new InvalidOptionError(result.error.issues.map((i) => `${flag}: ${describeIssue(i)}`).join('\n'));
}

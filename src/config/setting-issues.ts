/** Turns zod issues into lines an admin can act on: which flag or key, what was expected, what was given. */
import type { z } from 'zod';
import { InvalidOptionError } from '../errors.js';

/** "expected a duration like 500ms, 5s, 2m (got "five")". */
export function describeIssue(issue: z.core.$ZodIssue): string {
  const got = issue.input === undefined ? '' : ` (got ${JSON.stringify(issue.input)})`;
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

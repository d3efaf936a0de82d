/**
 * The Cache-Control field (RFC 9111 §5.2) as a map of directives. Pure.
 *
 *   Cache-Control   = #cache-directive
 *   cache-directive = token [ "=" ( token / quoted-string ) ]
 *
 * Choices where the RFC leaves room:
 * - Names are case-insensitive (§5.2) and kept lowercase.
 * - A directive given twice keeps its first value (§4.2.1: "either the first
 *   occurrence should be used or the response should be considered stale").
 * - Both token and quoted-string arguments are accepted for every directive
 *   (§5.2: recipients "ought to accept both forms"); the quotes and the
 *   backslash escapes of a quoted-string are removed.
 * - An element that is not a token (garbage between commas) is skipped: the
 *   others still mean what they say, and no directive is invented from it.
 */
import { isToken, trimOws } from '../text/char-classes.js';

/** Directive name (lowercase) -> its argument, or null when it has none. */
export type Directives = ReadonlyMap<string, string | null>;

const EMPTY: Directives = new Map();

/** Every Cache-Control field line of a message, combined as one list (RFC 9110 §5.3). */
export function parseCacheControl(fieldValues: readonly string[]): Directives {
  if (fieldValues.length === 0) return EMPTY;
  const out = new Map<string, string | null>();
  for (const value of fieldValues) parseInto(value, out);
  return out;
}

function parseInto(value: string, out: Map<string, string | null>): void {
  let i = 0;
  while (i < value.length) {
    // One element: up to the next comma outside a quoted-string.
    let nameEnd = i;
    while (nameEnd < value.length && value[nameEnd] !== '=' && value[nameEnd] !== ',') nameEnd++;
    const name = trimOws(value.slice(i, nameEnd)).toLowerCase();
    let arg: string | null = null;
    let next = nameEnd;
    if (value[nameEnd] === '=') {
      let j = nameEnd + 1;
      while (j < value.length && (value[j] === ' ' || value[j] === '\t')) j++;
      if (value[j] === '"') {
        const q = readQuoted(value, j);
        arg = q.text;
        next = q.end;
        // Anything between the closing quote and the comma is not part of the argument.
        while (next < value.length && value[next] !== ',') next++;
      } else {
        next = j;
        while (next < value.length && value[next] !== ',') next++;
        arg = trimOws(value.slice(j, next));
      }
    }
    if (isToken(name) && !out.has(name)) out.set(name, arg);
    i = next + 1;
  }
}

/** quoted-string (RFC 9110 §5.6.4) starting at `start` (the opening quote): its text without escapes, and the index after it. */
function readQuoted(value: string, start: number): { text: string; end: number } {
  let text = '';
  let i = start + 1;
  while (i < value.length && value[i] !== '"') {
    if (value[i] === '\\' && i + 1 < value.length) i++;
    text += value[i];
    i++;
  }
  return { text, end: Math.min(i + 1, value.length) };
}

/** 2^31: the value every larger or overflowing delta-seconds becomes (RFC 9111 §1.2.2). */
export const DELTA_SECONDS_MAX = 2 ** 31;

/**
 * delta-seconds = 1*DIGIT (RFC 9111 §1.2.2), capped at 2^31; undefined when
 * the argument is missing or not digits (the caller decides what an invalid
 * value means, always on the cautious side).
 */
export function deltaSeconds(arg: string | null | undefined): number | undefined {
  if (arg === null || arg === undefined || !/^\d+$/.test(arg)) return undefined;
  const n = Number(arg);
  return n > DELTA_SECONDS_MAX ? DELTA_SECONDS_MAX : n;
}

/**
 * The field names of a qualified no-cache or private directive
 * (`private="Set-Cookie, X-User"`, §5.2.2.4, §5.2.2.7), lowercase; empty when
 * the directive is absent or unqualified.
 */
export function qualifiedFieldNames(directives: Directives, name: 'no-cache' | 'private'): string[] {
  const arg = directives.get(name);
  if (arg === null || arg === undefined) return [];
  return arg.split(',').map((n) => trimOws(n).toLowerCase()).filter((n) => isToken(n));
}

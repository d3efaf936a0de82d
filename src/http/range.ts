/**
 * Parsing of the Range request header (RFC 9110 §14.1.1, §14.2) for the
 * "bytes" unit. Pure: no I/O, no knowledge of methods or validators.
 *
 * Any header this parser does not understand yields 'none', because RFC 9110
 * §14.2 lets a server ignore Range and answer 200 with the full
 * representation; that is always a correct (if less efficient) answer.
 */

export type RangeResult =
  | { kind: 'none' }
  | { kind: 'single'; start: number; end: number }
  | { kind: 'multi' }
  | { kind: 'unsatisfiable' };

/** A syntactically valid range-spec before it is applied to a size. */
type RangeSpec =
  | { kind: 'int'; first: string; last: string | undefined }
  | { kind: 'suffix'; length: string };

const NONE = { kind: 'none' } as const;
const MULTI = { kind: 'multi' } as const;
const UNSATISFIABLE = { kind: 'unsatisfiable' } as const;

/** OWS around list elements and the "-" (tolerated like nginx does). */
const INT_RANGE = /^(\d+)[ \t]*-[ \t]*(\d*)$/;
const SUFFIX_RANGE = /^-[ \t]*(\d+)$/;

export function parseRange(header: string | undefined, size: number): RangeResult {
  if (header === undefined) return NONE;
  const specs = parseRangesSpecifier(header);
  if (specs === undefined) return NONE;

  const satisfiable = specs.some((spec) => isSatisfiable(spec, size));
  // §14.1.1: a range-set is satisfiable if any one range-spec in it is.
  if (!satisfiable) return UNSATISFIABLE;
  // Multipart/byteranges is not implemented; §14.2 allows ignoring Range.
  if (specs.length > 1) return MULTI;

  const only = specs[0];
  return only === undefined ? NONE : toSingle(only, size);
}

/**
 * ranges-specifier = range-unit "=" range-set (§14.1.1). The unit is
 * case-insensitive (§14.1). undefined means "ignore the header".
 */
function parseRangesSpecifier(header: string): RangeSpec[] | undefined {
  const eq = header.indexOf('=');
  if (eq < 0) return undefined;
  if (trimOws(header.slice(0, eq)).toLowerCase() !== 'bytes') return undefined;

  const specs: RangeSpec[] = [];
  for (const element of header.slice(eq + 1).split(',')) {
    const trimmed = trimOws(element);
    // §5.6.1: recipients accept and ignore empty list elements.
    if (trimmed === '') continue;
    const spec = parseRangeSpec(trimmed);
    if (spec === undefined) return undefined;
    specs.push(spec);
  }
  return specs.length > 0 ? specs : undefined;
}

function parseRangeSpec(text: string): RangeSpec | undefined {
  const suffix = SUFFIX_RANGE.exec(text);
  if (suffix !== null) return { kind: 'suffix', length: suffix[1] ?? '' };

  const int = INT_RANGE.exec(text);
  if (int === null) return undefined;
  const first = int[1] ?? '';
  const last = int[2] === undefined || int[2] === '' ? undefined : int[2];
  // §14.1.1: an int-range is invalid if last-pos is less than first-pos.
  if (last !== undefined && compareDecimal(last, first) < 0) return undefined;
  return { kind: 'int', first, last };
}

function isSatisfiable(spec: RangeSpec, size: number): boolean {
  // §14.1.1: int-range is satisfiable when first-pos < length; a suffix-range
  // when its length is non-zero and the representation is not empty.
  if (spec.kind === 'int') return decimalValue(spec.first) < size;
  return size > 0 && decimalValue(spec.length) > 0;
}

/** Only called for a satisfiable spec; §14.1.2 clamps last-pos to size-1. */
function toSingle(spec: RangeSpec, size: number): RangeResult {
  if (spec.kind === 'suffix') {
    const length = Math.min(decimalValue(spec.length), size);
    return { kind: 'single', start: size - length, end: size - 1 };
  }
  const start = decimalValue(spec.first);
  const last = spec.last === undefined ? size - 1 : decimalValue(spec.last);
  return { kind: 'single', start, end: Math.min(last, size - 1) };
}

/**
 * Digit strings may be longer than a double can hold exactly. Beyond 2^53 the
 * exact value no longer matters (it exceeds any file size), but comparisons
 * between two such values must stay exact, hence compareDecimal.
 */
function decimalValue(digits: string): number {
  return Number(digits);
}

function compareDecimal(a: string, b: string): number {
  const x = stripLeadingZeros(a);
  const y = stripLeadingZeros(b);
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

function stripLeadingZeros(digits: string): string {
  let i = 0;
  while (i < digits.length - 1 && digits.charCodeAt(i) === 0x30) i++;
  return digits.slice(i);
}

/** OWS is SP / HTAB only (RFC 9110 §5.6.3); String#trim would strip more. */
function trimOws(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isOws(text.charCodeAt(start))) start++;
  while (end > start && isOws(text.charCodeAt(end - 1))) end--;
  return text.slice(start, end);
}

function isOws(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

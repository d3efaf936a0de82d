/**
 * Field names lowercased (RFC 9110 §5.1: names are case-insensitive; node's
 * req.headers keys and the proxy's comparisons use lowercase). The same few
 * names come in every request and every upstream answer: one Map lookup
 * where toLowerCase made a new string each time, which then had to be
 * hashed and looked up again wherever it was used as a key
 * (bench/request-cost.ts counts it, docs/benchmarks.md). At most NAMES_KEPT
 * names are kept, the first ones seen: a client sending names of its own
 * invention gets them lowercased each time, as before, and holds no memory.
 */
const lowerNames = new Map<string, string>();
const NAMES_KEPT = 256;

export function lowerName(name: string): string {
  let lower = lowerNames.get(name);
  if (lower === undefined) {
    lower = name.toLowerCase();
    if (lowerNames.size < NAMES_KEPT) {
      // Copies of their own: a name sliced from a request's head (V8 slices strings of 13
      // characters or more) would keep that whole head alive for as long as it is kept.
      lower = detached(lower);
      lowerNames.set(detached(name), lower);
    }
  }
  return lower;
}

/** `s` in a string of its own, sharing no parent string. */
function detached(s: string): string {
  return Buffer.from(s, 'latin1').toString('latin1');
}

/**
 * `name` is `lower` but for the case of its letters (field names are
 * case-insensitive, RFC 9110 §5.1), compared in place: no lowercased copy
 * per name (h1-wire's framing fields made two per serve response, counted
 * by bench/request-cost.ts). `lower` is any lowercase token: a field name,
 * or a Connection option.
 */
export function isFieldName(name: string, lower: string): boolean {
  if (name.length !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) if (!sameFolded(name.charCodeAt(i), lower.charCodeAt(i))) return false;
  return true;
}

/**
 * isFieldName over bytes: buf[start, end) is `lower` but for the case of its
 * letters, read where it lies (the lane's Connection value, src/http/lane-head.ts,
 * with no string made of it).
 */
export function isFieldNameAt(buf: Uint8Array, start: number, end: number, lower: string): boolean {
  if (end - start !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) if (!sameFolded(buf[start + i]!, lower.charCodeAt(i))) return false;
  return true;
}

/**
 * The character `c` is `want` (of a lowercase token) in either case: a-z
 * match their capitals, which differ by the 0x20 bit alone; anything else
 * must match exactly (folding every character would take "^" for "~").
 */
function sameFolded(c: number, want: number): boolean {
  return c === want || (want >= 0x61 && want <= 0x7a && (c | 0x20) === want);
}

/**
 * Byte classes of HTTP field syntax (RFC 9110 §5.5, §5.6): the grammar that
 * the upstream response parser, the chunked decoder, the cache's directives
 * and the settings' header names all check against. Lookup tables rather than
 * regexes because they run once per byte of a head or trailer.
 */

/** tchar (RFC 9110 §5.6.2): the bytes allowed in a token, such as a field name. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
  TCHAR[c.charCodeAt(0)] = 1;
}

export function isTchar(code: number): boolean {
  return TCHAR[code] === 1;
}

export function isToken(text: string): boolean {
  if (text.length === 0) return false;
  for (let i = 0; i < text.length; i++) {
    if (TCHAR[text.charCodeAt(i)] !== 1) return false;
  }
  return true;
}

/**
 * A byte allowed inside a field value: field-vchar, SP or HTAB (RFC 9110
 * §5.5), so VCHAR and obs-text but no control byte. This is also exactly what
 * node's validateHeaderValue accepts, so a value that passes here can be
 * handed to ServerResponse without it throwing ERR_INVALID_CHAR.
 */
export function isFieldValueByte(code: number): boolean {
  return code === 0x09 || (code >= 0x20 && code !== 0x7f && code <= 0xff);
}

/** OWS / BWS are SP and HTAB only (RFC 9110 §5.6.3). */
export function isOws(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

/** Strips OWS only; String#trim would also strip other whitespace and controls. */
export function trimOws(text: string): string {
  let start = 0;
  let end = text.length;
  while (start < end && isOws(text.charCodeAt(start))) start++;
  while (end > start && isOws(text.charCodeAt(end - 1))) end--;
  return text.slice(start, end);
}

/**
 * Calls `each` with every element of a comma-separated list (RFC 9110
 * §5.6.1), OWS trimmed and lowercased, empty elements skipped (the list rule
 * allows them). Walked in place rather than split into an array: it runs on
 * the Connection field of nearly every request and response.
 */
export function forEachListElement(value: string, each: (element: string) => void): void {
  for (let start = 0; start <= value.length; ) {
    const comma = value.indexOf(',', start);
    const end = comma < 0 ? value.length : comma;
    const element = trimOws(value.slice(start, end)).toLowerCase();
    if (element !== '') each(element);
    start = end + 1;
  }
}

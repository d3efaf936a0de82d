/**
 * Byte classes of HTTP field syntax, shared by the upstream response parser
 * and the chunked decoder. Lookup tables rather than regexes because they run
 * once per byte of a head or trailer.
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

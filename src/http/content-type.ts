/**
 * Content-Type selection from the file name (RFC 9110 §8.3).
 */
import path from 'node:path';
import mime from 'mime-types';

/** §8.3: without a media type the recipient may sniff; octet-stream says "just bytes". */
const FALLBACK = 'application/octet-stream';

export function contentTypeFor(filePath: string): string {
  // Look up by extension ourselves: mime-types treats a bare name such as
  // "json" as an extension, and a file literally named "json" is not JSON.
  const ext = path.extname(filePath);
  const type = ext === '' ? false : mime.lookup(ext);
  if (type === false) return FALLBACK;
  return needsCharset(type) ? `${type}; charset=utf-8` : type;
}

/**
 * Text types default to US-ASCII/ISO-8859-1 in old clients (RFC 2046 §4.1.2),
 * which garbles UTF-8 sources; JSON is UTF-8 by definition (RFC 8259 §8.1)
 * but browsers still honour an explicit charset when decoding scripts.
 */
function needsCharset(type: string): boolean {
  return (
    type.startsWith('text/') ||
    type === 'application/javascript' ||
    type === 'application/json' ||
    type.endsWith('+json')
  );
}

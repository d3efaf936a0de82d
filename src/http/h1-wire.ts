/**
 * HTTP/1.1 message syntax written by Aludel itself (RFC 9112), in one place:
 * what node's http.Server does not write for us. Heads of answers on
 * connections node has handed over (upgrades, CONNECT, parse errors), the
 * chunk framing of bodies that leave by splice, sendfile or the copy path
 * (node frames only what passes through res.write), request bodies re-framed
 * for an upstream,
 * and the request and status line of health checks. Parsing lives beside it:
 * response-head.ts (heads) and chunked-decoder.ts (chunked bodies).
 */
import http from 'node:http';
import type { PieceWire } from '../transport/copy-body.js';

export const CRLF = Buffer.from('\r\n');

/** The last chunk and an empty trailer section (RFC 9112 §7.1). */
export const LAST_CHUNK = Buffer.from('0\r\n\r\n');

/** chunk-size CRLF (RFC 9112 §7.1): hex, no extension. */
export function chunkSizeText(size: number): string {
  return `${size.toString(16)}\r\n`;
}

export function chunkSizeLine(size: number): Buffer {
  return Buffer.from(chunkSizeText(size), 'latin1');
}

/** A chunk's bytes around its data, for bodies copied through user space (transport/copy-body.ts lays them out). */
export const CHUNK_WIRE: PieceWire = { line: chunkSizeText, tail: '\r\n' };

/**
 * How a body moved by splice or sendfile is framed around each piece: for
 * a body of unknown length to an HTTP/1.1 client, each piece is one chunk,
 * its size line written through the connection before the piece and its
 * CRLF after (the last chunk is node's, written by res.end()).
 */
export interface PieceFraming {
  before(size: number): void;
  after(): void;
}

/** Chunk framing of pieces written straight to `conn`. */
export function chunkFraming(conn: { write(chunk: Buffer): boolean }): PieceFraming {
  return { before: (size) => void conn.write(chunkSizeLine(size)), after: () => void conn.write(CRLF) };
}

/** A response head from a status, a reason and field lines as [name, value, ...]. */
export function responseHead(status: number, reason: string, fields: readonly string[]): Buffer {
  let head = `HTTP/1.1 ${status} ${reason}\r\n`;
  for (let i = 0; i + 1 < fields.length; i += 2) head += `${fields[i]}: ${fields[i + 1]}\r\n`;
  return Buffer.from(`${head}\r\n`, 'latin1');
}

/** A complete error answer, with no body, for a connection about to close. */
export function closingAnswer(status: number, extra: readonly string[] = []): Buffer {
  return responseHead(status, http.STATUS_CODES[status] ?? 'Error', ['Connection', 'close', 'Content-Length', '0', ...extra]);
}

/** A request head with no body, for requests Aludel makes itself (health checks). */
export function requestHead(method: string, target: string, fields: readonly string[]): Buffer {
  let head = `${method} ${target} HTTP/1.1\r\n`;
  for (let i = 0; i + 1 < fields.length; i += 2) head += `${fields[i]}: ${fields[i + 1]}\r\n`;
  return Buffer.from(`${head}\r\n`, 'latin1');
}

/** The status code of a status line at the start of `bytes` (RFC 9112 §4), or null when it is none. */
export function statusCodeOf(bytes: Buffer): number | null {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(bytes.toString('latin1', 0, 16));
  return m ? Number(m[1]) : null;
}

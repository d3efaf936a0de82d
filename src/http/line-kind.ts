/**
 * Which line of a request head node's parser (llhttp) is in on a
 * connection: the request line, or another one. llhttp reports a head over
 * --max-header-size as one error (HPE_HEADER_OVERFLOW) whichever line went
 * over, and its error carries only the chunk it failed in; but nginx answers
 * 414 when the request line alone is too long (RFC 9110 §15.5.15) and 431 (its
 * 494, sent as 400) when a header field is. A connection's chunks are at most a
 * TLS record (16 KiB, RFC 8446 §5.1), so a line that overflows a 16 KiB limit
 * always began in an earlier chunk: what the kind of that line was is kept
 * here, one small number per connection, updated per chunk from the bytes
 * after its last LF.
 *
 * The lines of request bodies are classified too, harmlessly: a request
 * line begins after an LF (the end of the head before it, or of an empty
 * line), or at the start of the connection. One written straight after a
 * body that does not end in LF is taken for another line (431, not 414).
 */
import { isTchar } from './char-classes.js';

/** The kind of a line so far: nothing yet, tchars only (a method or a field name: not known yet), a request line, another line. */
export const LINE_EMPTY = 0;
export const LINE_TOKEN = 1;
export const LINE_REQUEST = 2;
export const LINE_OTHER = 3;
export type LineKind = typeof LINE_EMPTY | typeof LINE_TOKEN | typeof LINE_REQUEST | typeof LINE_OTHER;

const LF = 0x0a;
const SP = 0x20;

const kLine = Symbol('aludel.lineKind');

interface Tracked {
  [kLine]?: LineKind;
  /** node's HTTP parser, null once node handed the socket over (upgrade, CONNECT). */
  parser?: unknown;
  off(event: 'data', listener: (this: Tracked, chunk: Buffer) => void): unknown;
}

/**
 * The kind of the line being read at `end` of `chunk`, given `before`, the
 * kind of the line the chunk began in. A request line is a token (the
 * method, RFC 9112 §3) then SP; a field line's name is followed by ":", an
 * obs-fold line starts with whitespace (§5.1, §5.2), so neither is taken
 * for one.
 */
export function lineKindAt(chunk: Buffer, end: number, before: LineKind): LineKind {
  const lf = end > 0 ? chunk.lastIndexOf(LF, end - 1) : -1;
  if (lf < 0 && before >= LINE_REQUEST) return before;
  let kind: LineKind = lf < 0 ? before : LINE_EMPTY;
  for (let i = lf + 1; i < end; i++) {
    const c = chunk[i]!;
    if (isTchar(c)) {
      kind = LINE_TOKEN;
      continue;
    }
    // A token of at least one tchar (the method) then SP: the request line.
    return c === SP && kind === LINE_TOKEN ? LINE_REQUEST : LINE_OTHER;
  }
  return kind;
}

/**
 * A connection's 'data' listener, after node's own (so at a parse error it
 * still says what the chunks before the failing one left). It takes itself
 * off once node has handed the socket over: the bytes after an upgrade are
 * no HTTP.
 */
function trackLine(this: Tracked, chunk: Buffer): void {
  if (this.parser == null) {
    this.off('data', trackLine);
    return;
  }
  this[kLine] = lineKindAt(chunk, chunk.length, this[kLine] ?? LINE_EMPTY);
}

/** Starts following `conn`'s lines; call after node's http.Server took it ('connection'). */
export function trackLines(conn: { on(event: 'data', listener: (chunk: Buffer) => void): unknown }): void {
  (conn as unknown as Tracked)[kLine] = LINE_EMPTY;
  conn.on('data', trackLine as (chunk: Buffer) => void);
}

/**
 * Whether the head that went over the limit at byte `at` of `chunk` (the
 * chunk node's parser failed in) was still in its request line.
 */
export function inRequestLine(conn: object, chunk: Buffer, at: number): boolean {
  const before = (conn as Tracked)[kLine] ?? LINE_EMPTY;
  return lineKindAt(chunk, Math.min(at, chunk.length), before) === LINE_REQUEST;
}

/**
 * The request line of the head node's HTTP/1.1 parser (llhttp) is reading
 * on a connection, as far as it has come, for the access-log line of a
 * request refused before it became one (a parse error, a head not complete
 * in time). nginx logs such a request with `$request` set to the bytes from
 * the request's first byte to the first CR or LF, or to the end of what it
 * read (ngx_http_variable_request_line), and with no line at all for a
 * connection on which nothing came (client_header_timeout on an empty
 * connection closes it silently).
 *
 * node's parser reports where a message begins (llhttp's on_message_begin,
 * which node calls as the parser's kOnMessageBegin when one is set) but not
 * at which byte, and its errors carry only the chunk they happened in (a TLS
 * record). So per connection this keeps where the last chunk left it:
 * nothing read yet, between messages, in a body, or in a head, with the
 * request line read so far. A head's first line is taken where it is known
 * to begin: at the start of a chunk that began a message after one ended
 * with the chunk before, or after an empty line (the end of a head or of a
 * chunked body). After a body framed by Content-Length in the same chunk
 * nothing marks where the next request begins, and the line is left unknown
 * rather than guessed.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
/** node's index of the on_message_begin callback on an HTTPParser (0 in node 20 and 22). */
const kOnMessageBegin: number = (require('_http_common') as { HTTPParser: { kOnMessageBegin: number } }).HTTPParser.kOnMessageBegin | 0;

const LF = 0x0a;
const CR = 0x0d;
/** At most this much of a request line is kept (nginx logs what fits its header buffer; an 8 KiB line is already absurd). */
export const MAX_LINE = 8192;

/** Where the last chunk left a connection. */
export type HeadState =
  | { at: 'nothing' }
  | { at: 'between' }
  | { at: 'body' }
  /** In a head: its request line so far (latin1, as node reads heads), whether its LF came, or unknown. */
  | { at: 'head'; line: string | undefined; ended: boolean };

const NOTHING: HeadState = { at: 'nothing' };
const BETWEEN: HeadState = { at: 'between' };
const BODY: HeadState = { at: 'body' };

const kState = Symbol('aludel.headState');
/** Messages begun in the chunk being parsed. */
const kBegun = Symbol('aludel.messagesBegun');
/** The parser's `incoming` when the last message began: still the same while its head is read. */
const kIncomingAtBegin = Symbol('aludel.incomingAtBegin');
/** Whether the message before the last one begun had a body framed by Content-Length (nothing marks its end). */
const kAfterLengthBody = Symbol('aludel.afterLengthBody');

interface Incoming {
  complete: boolean;
  headers: Record<string, string | string[] | undefined>;
}

interface Parser {
  socket?: Tracked | null;
  incoming?: Incoming | null;
  [index: number]: unknown;
}

interface Tracked {
  [kState]?: HeadState;
  [kBegun]?: number;
  [kIncomingAtBegin]?: object | null;
  [kAfterLengthBody]?: boolean;
  parser?: Parser | null;
  off(event: 'data', listener: (this: Tracked, chunk: Buffer) => void): unknown;
}

/** kOnMessageBegin of every parser that took a tracked connection (`this` is the parser; parsers are reused). */
function onMessageBegin(this: Parser): void {
  const conn = this.socket;
  if (conn == null || conn[kState] === undefined) return;
  conn[kBegun] = (conn[kBegun] ?? 0) + 1;
  const previous = this.incoming ?? null;
  conn[kIncomingAtBegin] = previous;
  conn[kAfterLengthBody] = previous !== null && lengthBody(previous);
}

/** Whether `req` had a body framed by Content-Length (RFC 9112 §6.3: chunked, when also there, frames it). */
function lengthBody(req: Incoming): boolean {
  const h = req.headers;
  const length = h['content-length'];
  return length !== undefined && length !== '0' && h['transfer-encoding'] === undefined;
}

/**
 * The text of `chunk` from `start` to its first CR or LF (or its end; at
 * most MAX_LINE of it), and where that CR or LF is (-1: not in the chunk).
 * The end is looked for past MAX_LINE: whether a long line ended decides
 * 414 or 431 (overflowInRequestLine).
 */
function lineFrom(chunk: Buffer, start: number): { text: string; endsAt: number } {
  let end = start;
  while (end < chunk.length && chunk[end] !== CR && chunk[end] !== LF) end++;
  return { text: chunk.toString('latin1', start, Math.min(end, start + MAX_LINE)), endsAt: end < chunk.length ? end : -1 };
}

/** The first byte after the CRs and LFs at `start` (RFC 9112 §2.2: empty lines before a request line are ignored). */
function skipEmptyLines(chunk: Buffer, start: number, end: number): number {
  let i = start;
  while (i < end && (chunk[i] === CR || chunk[i] === LF)) i++;
  return i;
}

/** Whether the line ending (with its LF) at `lf` of `chunk` is empty. */
function emptyLineEndsAt(chunk: Buffer, lf: number): boolean {
  return lf === 0 || chunk[lf - 1] === LF || (chunk[lf - 1] === CR && (lf === 1 || chunk[lf - 2] === LF));
}

/**
 * Where the head that byte `at` of `chunk` is in begins, when that is
 * known: the chunk's start when `fromStart` (it began the message), else
 * the line after the nearest empty line before `at`, unless a
 * Content-Length body came between (`afterLengthBody`); -1 when unknown.
 */
function headStart(chunk: Buffer, at: number, fromStart: boolean, afterLengthBody: boolean): number {
  if (fromStart) return skipEmptyLines(chunk, 0, at);
  if (afterLengthBody) return -1;
  let lf = at > 0 ? chunk.lastIndexOf(LF, at - 1) : -1;
  // The empty line closest before `at` ends the previous head (or chunked body); the bytes
  // between the line it ends and `at` may be a CRLF run before the request line.
  while (lf >= 0) {
    if (emptyLineEndsAt(chunk, lf)) return skipEmptyLines(chunk, lf + 1, at);
    lf = lf > 0 ? chunk.lastIndexOf(LF, lf - 1) : -1;
  }
  return -1;
}

/** A head's request line as far as it came, whether its CR or LF came, and where in the chunk (-1: in an earlier chunk, or not yet). */
export interface HeadLine {
  line: string | undefined;
  ended: boolean;
  endsAt: number;
}

const UNKNOWN_LINE: HeadLine = { line: undefined, ended: false, endsAt: -1 };

/**
 * The request line of the head byte `at` of `chunk` is in, given `before`,
 * where the chunks before it left the connection, `begun`, how many
 * messages began in this chunk up to `at` (the current one among them),
 * and whether the message before it had a Content-Length body.
 */
export function headLineAt(chunk: Buffer, at: number, before: HeadState, begun: number, afterLengthBody = false): HeadLine {
  if (begun === 0) {
    // The head began in an earlier chunk: its line, continued by this chunk's first line if it was still open.
    if (before.at !== 'head' || before.line === undefined) return { line: undefined, ended: true, endsAt: -1 };
    if (before.ended) return { line: before.line, ended: true, endsAt: -1 };
    const rest = lineFrom(chunk, 0);
    const line = before.line.length >= MAX_LINE ? before.line : (before.line + rest.text).slice(0, MAX_LINE);
    return { line, ended: rest.endsAt >= 0, endsAt: rest.endsAt };
  }
  const fromStart = begun === 1 && (before.at === 'between' || before.at === 'nothing');
  const start = headStart(chunk, Math.min(at, chunk.length), fromStart, afterLengthBody);
  if (start < 0) return UNKNOWN_LINE;
  if (start >= chunk.length) return { line: '', ended: false, endsAt: -1 };
  const { text, endsAt } = lineFrom(chunk, start);
  return { line: text, ended: endsAt >= 0, endsAt };
}

/**
 * A connection's 'data' listener, after node's own (which parsed the
 * chunk): where the chunk left the connection. Cheap unless the chunk ends
 * inside a head (a head split across TLS records).
 */
function trackHead(this: Tracked, chunk: Buffer): void {
  const parser = this.parser;
  if (parser == null) {
    this.off('data', trackHead);
    return;
  }
  const begun = this[kBegun] ?? 0;
  this[kBegun] = 0;
  const before = this[kState] ?? NOTHING;
  const incoming = parser.incoming ?? null;
  // A message begun and its head not yet complete: node sets `incoming` when a head completes.
  const inHead = (begun > 0 || before.at === 'head') && incoming === this[kIncomingAtBegin];
  if (inHead) {
    const { line, ended } = headLineAt(chunk, chunk.length, before, begun, this[kAfterLengthBody] === true);
    this[kState] = { at: 'head', line, ended };
  } else {
    this[kState] = incoming !== null && !incoming.complete ? BODY : BETWEEN;
  }
}

/**
 * Starts following `conn`'s heads; call after node's http.Server took it ('connection'), so its parser is there.
 * Again on a connection node gave back and took anew (an Upgrade answered as a request): the listener goes after node's new one, once.
 */
export function trackHeads(conn: { on(event: 'data', listener: (chunk: Buffer) => void): unknown; off(event: 'data', listener: (chunk: Buffer) => void): unknown; parser?: unknown }): void {
  const t = conn as unknown as Tracked;
  t[kState] = NOTHING;
  t[kBegun] = 0;
  t[kIncomingAtBegin] = null;
  const parser = t.parser;
  if (parser != null) parser[kOnMessageBegin] = onMessageBegin;
  conn.off('data', trackHead as (chunk: Buffer) => void);
  conn.on('data', trackHead as (chunk: Buffer) => void);
}

/** Whether `line` is a whole request line: it `ended`, and nothing of it was cut at MAX_LINE. */
function whole(line: string | undefined, ended: boolean): boolean {
  return ended && line !== undefined && line.length < MAX_LINE;
}

/**
 * At a parse error or request timeout on `conn` (its 'clientError', before
 * the failing chunk reached trackHead): whether the refused request is
 * one to log, its request line as far as it came, and whether all of it
 * came and was kept (its CR or LF came, and it is under MAX_LINE). `chunk` and `at`: the
 * chunk the parser failed in and where (none for a timeout or a FIN).
 * Nothing read on the connection at all: no request, no line (as nginx).
 */
export function refusedHead(conn: object, chunk: Buffer | undefined, at: number): { request: string | undefined; ended: boolean } | null {
  const t = conn as Tracked;
  const before = t[kState];
  if (before === undefined) return { request: undefined, ended: false };
  const begun = t[kBegun] ?? 0;
  if (chunk === undefined || chunk.length === 0) {
    if (before.at === 'nothing') return null;
    return before.at === 'head' ? { request: before.line, ended: whole(before.line, before.ended) } : { request: undefined, ended: false };
  }
  const { line, ended } = headLineAt(chunk, at, before, begun, t[kAfterLengthBody] === true);
  return { request: line, ended: whole(line, ended) };
}

/**
 * Whether the head that went over --max-header-size at byte `at` of
 * `chunk` (the chunk node's parser failed in) was still in its request
 * line: 414, as nginx answers a request line longer than its
 * large_client_header_buffers (RFC 9110 §15.5.15); else 431 (RFC 6585 §5).
 * llhttp reports both as one error (HPE_HEADER_OVERFLOW), raised where the
 * span that took the head over the limit ends (the target's, or a field's),
 * and a line that overflows a 16 KiB limit began in an earlier chunk (a TLS
 * record is at most 16 KiB, RFC 8446 §5.1): the state kept per chunk above
 * answers it. A head whose start is unknown (behind a Content-Length body in
 * the same chunk) gets 431.
 */
export function overflowInRequestLine(conn: object, chunk: Buffer, at: number): boolean {
  const t = conn as Tracked;
  const before = t[kState];
  if (before === undefined) return false;
  const head = headLineAt(chunk, at, before, t[kBegun] ?? 0, t[kAfterLengthBody] === true);
  if (head.line === undefined) return false;
  // Its CR or LF not come, or only after the span that went over: the request line went over.
  return !head.ended || head.endsAt >= at;
}

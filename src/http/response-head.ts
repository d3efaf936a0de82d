/**
 * Strict parser of the head of an upstream's HTTP/1.x response (RFC 9112).
 * Pure: it reads the bytes received so far and never touches a socket
 * (undici's rule), so the proxy keeps its own reads and can splice(2) bodies.
 *
 * Whatever is not exactly valid is refused rather than repaired: when a proxy
 * and the server behind it read the framing of one message differently, the
 * next response on a kept-alive connection goes to the wrong client (response
 * splitting and smuggling, RFC 9112 §11.1, §11.2). Decisions where the RFC
 * leaves a choice:
 * - Bare LF line endings are refused (§2.2 lets a recipient accept them; the
 *   LF-vs-CRLF difference is a classic desync vector, and llhttp refuses them).
 * - A status line without the SP before an empty reason ("HTTP/1.1 200") is
 *   accepted, as nginx and llhttp do: §4 requires the SP, but nothing can be
 *   misread without it and some small servers omit it.
 * - Only HTTP/1.0 and HTTP/1.1 are accepted. §2.3 suggests treating 1.x as
 *   1.1, but no server sends a higher minor version and llhttp refuses them.
 * - Status codes outside 100..599 are refused (RFC 9110 §15: invalid).
 */
import { UpstreamResponseError } from '../errors.js';
import { forEachListElement, isFieldValueByte, isOws, isTchar, isToken, trimOws } from '../text/char-classes.js';
import { isFieldName } from '../text/field-names.js';

/** How the response body is delimited (RFC 9112 §6.3). */
export type Framing = { kind: 'none' } | { kind: 'length'; length: number } | { kind: 'chunked' } | { kind: 'close' };

/**
 * Read-only throughout: parseResponseHead gives the same object again for
 * the same head bytes, so a head is shared by every answer parsed from them.
 */
export interface ResponseHead {
  readonly version: '1.0' | '1.1';
  readonly status: number;
  readonly reason: string;
  /**
   * Flat [name, value, name, value, ...], names as sent, values without the
   * surrounding OWS. Content-Length appears at most once, as the single
   * decimal value all its copies agreed on. Shared by the heads parsed from
   * the same bytes (parseResponseHead): never changed.
   */
  readonly headers: readonly string[];
  /** Bytes of the head, including the final CRLFCRLF; the body starts here. */
  readonly headerBytes: number;
  readonly keepAlive: boolean;
  readonly framing: Framing;
}

export interface HeadLimits {
  /** Largest head accepted, status line and final CRLFCRLF included. */
  maxHeaderSize: number;
  maxHeaderCount: number;
}

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const COLON = 0x3a;

const NONE: Framing = Object.freeze({ kind: 'none' });
const CHUNKED: Framing = Object.freeze({ kind: 'chunked' });
const CLOSE: Framing = Object.freeze({ kind: 'close' });

/** 1xx other than 101 (RFC 9110 §15.2): more heads follow before the final one. */
export function isInterim(status: number): boolean {
  return status >= 100 && status < 200 && status !== 101;
}

/**
 * Parses the head at the start of `buf`. Returns null while the head is
 * incomplete and still within limits; throws UpstreamResponseError when it is
 * invalid or too large. `requestMethod` is the method of the request this
 * answers (HEAD responses have no body). CONNECT is never forwarded, so
 * §6.3's tunnel rule for 2xx answers to it does not arise.
 *
 * Three ways, one answer: the same bytes as the last head parsed (for the
 * same method and limits) give that head again, the same object
 * (sameAsLast); else a head of the common forms is read by
 * quickHead; anything else, and every head that is to be refused, by
 * strictHead, which says why. quickHead answers only where strictHead would
 * answer the same (test/unit/response-head.test.ts runs both on each case).
 */
export function parseResponseHead(buf: Buffer, limits: HeadLimits, requestMethod: string): ResponseHead | null {
  const last = lastParsed;
  // The head itself, not a copy: nothing changes a ResponseHead (its fields are readonly), and the
  // spread was V8's CloneObjectIC, about 0.45k instructions per proxied 1 KiB GET (bench/request-cost.ts).
  if (last !== null && sameAsLast(last, buf, buf.length, limits, requestMethod)) return last.head;
  return parsedAnew(buf, limits, requestMethod);
}

/**
 * parseResponseHead of buf's first `end` bytes (a connection's answer room,
 * of which one recv filled `end`). The view of them is made only when they
 * are parsed: a Buffer's prototype is not Uint8Array's (node's FastBuffer
 * subclass), so subarray finds its result's constructor by the species
 * lookup (ECMA-262 TypedArraySpeciesCreate: constructor, then
 * Symbol.species), generic LoadIC calls, and makes it by CreateTypedArray:
 * about 0.7k instructions per proxied 1 KiB GET (bench/request-cost.ts),
 * for bytes that one compare finds the last head's.
 */
export function parseResponseHeadIn(buf: Buffer, end: number, limits: HeadLimits, requestMethod: string): ResponseHead | null {
  const last = lastParsed;
  if (last !== null && sameAsLast(last, buf, end, limits, requestMethod)) return last.head;
  return parsedAnew(buf.subarray(0, end), limits, requestMethod);
}

/** The head at the start of `buf` (not the last one's bytes), parsed and remembered. */
function parsedAnew(buf: Buffer, limits: HeadLimits, requestMethod: string): ResponseHead | null {
  const head = quickHead(buf, limits, requestMethod) ?? strictHead(buf, limits, requestMethod);
  if (head !== null) remember(buf, limits, requestMethod, head);
  return head;
}

/**
 * The last head parsed and what it was parsed from. An upstream answers the
 * same resource with the same head bytes until its Date turns (nginx's 1
 * KiB file to every client, bench/request-cost.ts): one comparison of the
 * bytes (memcmp) then stands for the whole parse, which cost a fifth of a
 * proxied request's instructions, and the field strings handed on are the
 * last head's own, so framedResponseHead (h1-wire.ts) finds its last head
 * equal by identity instead of comparing each string's characters. One
 * entry, as framedResponseHead's: nothing kept past the next different head.
 * The headers list is shared between the heads given out: ResponseHead
 * makes it readonly.
 */
let lastParsed: { head: ResponseHead; length: number; method: string; maxHeaderSize: number; maxHeaderCount: number } | null = null;
/** The last head's bytes (its first lastParsed.length), in a buffer kept and reused. */
let lastBytes = Buffer.allocUnsafeSlow(1024);

/** Whether buf's first `end` bytes (those that came) begin with the last head's bytes, for the same method and limits. */
function sameAsLast(last: NonNullable<typeof lastParsed>, buf: Buffer, end: number, limits: HeadLimits, method: string): boolean {
  const n = last.length;
  // Its bytes end with the head's CRLFCRLF, the first empty line: the same prefix is the same head.
  return end >= n && last.method === method && last.maxHeaderSize === limits.maxHeaderSize && last.maxHeaderCount === limits.maxHeaderCount &&
    buf.compare(lastBytes, 0, n, 0, n) === 0;
}

function remember(buf: Buffer, limits: HeadLimits, method: string, head: ResponseHead): void {
  const n = head.headerBytes;
  if (lastBytes.length < n) lastBytes = Buffer.allocUnsafeSlow(n);
  buf.copy(lastBytes, 0, 0, n);
  lastParsed = { head, length: n, method, maxHeaderSize: limits.maxHeaderSize, maxHeaderCount: limits.maxHeaderCount };
}

/**
 * A head whose every line is well formed, checked by one regular
 * expression over its text (irregexp's compiled code, where a loop over
 * each byte in JavaScript cost about 40 instructions a byte): the status
 * line (RFC 9112 §4), field lines of a token, a colon and field-value bytes
 * (RFC 9112 §5, RFC 9110 §5.5: no CR, LF, NUL or other control but HTAB), each
 * ending in CRLF, and the empty line. No whitespace before a colon or at a
 * line's start (obs-fold), no bare CR or LF: those heads go to strictHead.
 */
const WELL_FORMED_HEAD = /^HTTP\/1\.[01] \d{3}(?: [\t\x20-\x7e\x80-\xff]*)?\r\n(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*\r\n)*\r\n$/;

/**
 * The head at the start of `buf` when it is whole, well formed
 * (WELL_FORMED_HEAD) and of the usual kinds: at most one Content-Length, of
 * plain digits as String(n) writes them; Transfer-Encoding, if any, once
 * and just "chunked"; Connection of keep-alive or close. undefined
 * otherwise (incomplete, invalid, too large or unusual): strictHead decides.
 */
function quickHead(buf: Buffer, limits: HeadLimits, method: string): ResponseHead | undefined {
  const end = quickHeadEnd(buf, limits.maxHeaderSize);
  if (end < 0) return undefined;
  const text = buf.toString('latin1', 0, end);
  if (!WELL_FORMED_HEAD.test(text)) return undefined;
  const status = (text.charCodeAt(9) - 0x30) * 100 + (text.charCodeAt(10) - 0x30) * 10 + (text.charCodeAt(11) - 0x30);
  if (status < 100 || status > 599) return undefined;
  const version = text.charCodeAt(7) === 0x30 ? '1.0' : '1.1';
  // The status line's CR is the head's first: a reason has none.
  const statusEnd = text.indexOf('\r');
  const reason = statusEnd > 12 ? text.slice(13, statusEnd) : '';
  const headers: string[] = [];
  let contentLength = -1;
  let chunked = false;
  // Connection options seen: 1 close, 2 keep-alive.
  let options = 0;
  let count = 0;
  for (let lineStart = statusEnd + 2; lineStart < end - 2; ) {
    const colon = text.indexOf(':', lineStart);
    const cr = text.indexOf('\r', colon);
    if (++count > limits.maxHeaderCount) return undefined;
    let valueStart = colon + 1;
    let valueEnd = cr;
    while (valueStart < valueEnd && isOws(text.charCodeAt(valueStart))) valueStart++;
    while (valueEnd > valueStart && isOws(text.charCodeAt(valueEnd - 1))) valueEnd--;
    const name = text.slice(lineStart, colon);
    const value = text.slice(valueStart, valueEnd);
    const len = colon - lineStart;
    if (len === 14 && isFieldName(name, 'content-length')) {
      if (contentLength >= 0) return undefined;
      contentLength = plainLength(value);
      if (contentLength < 0) return undefined;
    } else if (len === 17 && isFieldName(name, 'transfer-encoding')) {
      if (chunked || !isFieldName(value, 'chunked')) return undefined;
      chunked = true;
    } else if (len === 10 && isFieldName(name, 'connection')) {
      if (isFieldName(value, 'close')) options |= 1;
      else if (isFieldName(value, 'keep-alive')) options |= 2;
      else return undefined;
    }
    headers.push(name, value);
    lineStart = cr + 2;
  }
  // Errors of framing (RFC 9112 §6.1, §6.3 point 3) are strictHead's to refuse.
  if (chunked && (contentLength >= 0 || version === '1.0')) return undefined;
  const framing = method === 'HEAD' || status < 200 || status === 204 || status === 304 ? NONE : chunked ? CHUNKED : contentLength >= 0 ? { kind: 'length' as const, length: contentLength } : CLOSE;
  const keepAlive = framing !== CLOSE && (options & 1) === 0 && (version === '1.1' || (options & 2) !== 0);
  return { version, status, reason, headers, headerBytes: end, keepAlive, framing };
}

/**
 * Index just past the first empty line (CRLFCRLF) within maxHeaderSize, or
 * -1. Lines may end in a bare LF here: WELL_FORMED_HEAD refuses those.
 */
function quickHeadEnd(buf: Buffer, maxHeaderSize: number): number {
  for (let from = 0; ; ) {
    const lf = buf.indexOf(LF, from);
    // strictHead refuses a line ending at or past maxHeaderSize (findHeadEnd).
    if (lf < 0 || lf + 2 >= maxHeaderSize) return -1;
    if (buf[lf + 1] === CR && buf[lf + 2] === LF) return lf + 3;
    from = lf + 1;
  }
}

/** A Content-Length value of 1 to 15 digits without a leading zero (its String() again), or -1. */
function plainLength(value: string): number {
  if (value.length === 0 || value.length > 15 || (value.charCodeAt(0) === 0x30 && value.length > 1)) return -1;
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    const digit = value.charCodeAt(i) - 0x30;
    if (digit < 0 || digit > 9) return -1;
    n = n * 10 + digit;
  }
  return n;
}

/** Every head quickHead passes over: the strict reading, with the reason for a refusal. Exported for the tests, which hold quickHead to it. */
export function strictHead(buf: Buffer, limits: HeadLimits, requestMethod: string): ResponseHead | null {
  const end = findHeadEnd(buf, limits.maxHeaderSize);
  if (end < 0) return null;

  const statusEnd = buf.indexOf(LF) - 1;
  // The whole head as one latin1 string (bytes and characters correspond one to one): names and
  // values are sliced from it, where a buf.toString() per name and per value crossed into C++ some
  // twenty times per head, about half of this parser's time on a 1 KiB nginx response.
  const text = buf.toString('latin1', 0, end);
  const { version, status, reason } = parseStatusLine(buf, text, statusEnd);

  const headers: string[] = [];
  const connection: string[] = [];
  const transferEncoding: string[] = [];
  let contentLength: number | undefined;
  let contentLengthAt = -1;
  let count = 0;

  // Each field line runs from lineStart to its CR; the last CRLF (end - 2) closes the head.
  for (let lineStart = statusEnd + 2; lineStart < end - 2; ) {
    const cr = buf.indexOf(LF, lineStart) - 1;
    if (++count > limits.maxHeaderCount) {
      throw new UpstreamResponseError(`more than ${limits.maxHeaderCount} header fields`, 'raise the upstream header count limit or make the upstream send fewer fields');
    }
    const colon = fieldNameEnd(buf, lineStart, cr);
    let valueStart = colon + 1;
    let valueEnd = cr;
    while (valueStart < valueEnd && isOws(buf[valueStart]!)) valueStart++;
    while (valueEnd > valueStart && isOws(buf[valueEnd - 1]!)) valueEnd--;
    for (let i = valueStart; i < valueEnd; i++) {
      // RFC 9110 §5.5: CR, LF and NUL in a value are dangerous; other
      // controls would make node's ServerResponse throw when forwarding.
      if (!isFieldValueByte(buf[i]!)) throw new UpstreamResponseError(`control byte 0x${buf[i]!.toString(16)} in a header field value`);
    }
    const value = text.slice(valueStart, valueEnd);

    if (nameIs(buf, lineStart, colon, 'content-length')) {
      contentLength = mergeContentLength(contentLength, value);
      // Duplicates that agree (RFC 9110 §8.6) collapse into the first field.
      if (contentLengthAt < 0) {
        contentLengthAt = headers.length;
        headers.push(text.slice(lineStart, colon), '');
      }
    } else {
      if (nameIs(buf, lineStart, colon, 'transfer-encoding')) transferEncoding.push(value);
      else if (nameIs(buf, lineStart, colon, 'connection')) connection.push(value);
      headers.push(text.slice(lineStart, colon), value);
    }
    lineStart = cr + 2;
  }
  if (contentLength !== undefined) headers[contentLengthAt + 1] = String(contentLength);

  const framing = bodyFraming(version, status, requestMethod, transferEncoding, contentLength);
  return {
    version,
    status,
    reason,
    headers,
    headerBytes: end,
    keepAlive: framing.kind !== 'close' && isKeepAlive(version, connection),
    framing,
  };
}

/**
 * Index just past the CRLFCRLF ending the head, or -1 if it has not arrived.
 * Every LF must follow a CR, which also rules out a bare CR before an LF
 * being read as the end of a line.
 */
function findHeadEnd(buf: Buffer, maxHeaderSize: number): number {
  for (let lineStart = 0; ; ) {
    const lf = buf.indexOf(LF, lineStart);
    if (lf < 0) break;
    if (lf >= maxHeaderSize) throw headTooLarge(maxHeaderSize);
    if (lf === 0 || buf[lf - 1] !== CR) throw new UpstreamResponseError('a line of the head ends in a bare LF instead of CRLF');
    // An empty line after the status line ends the head (RFC 9112 §2.1).
    if (lf === lineStart + 1 && lineStart > 0) return lf + 1;
    lineStart = lf + 1;
  }
  if (buf.length > maxHeaderSize) throw headTooLarge(maxHeaderSize);
  return -1;
}

function headTooLarge(max: number): UpstreamResponseError {
  return new UpstreamResponseError(`response head larger than ${max} bytes`, 'raise the upstream header size limit or make the upstream send smaller headers');
}

/** status-line = HTTP-version SP status-code SP [ reason-phrase ] (RFC 9112 §4). */
function parseStatusLine(buf: Buffer, text: string, end: number): { version: '1.0' | '1.1'; status: number; reason: string } {
  // "HTTP/1.1 200" is the shortest line accepted.
  if (end < 12 || !text.startsWith('HTTP/1.') || buf[8] !== SP) {
    throw new UpstreamResponseError(`status line ${JSON.stringify(buf.toString('latin1', 0, Math.min(end, 64)))} is not "HTTP/1.x <3-digit status> <reason>"`);
  }
  const minor = buf[7];
  if (minor !== 0x30 && minor !== 0x31) throw new UpstreamResponseError(`unsupported version HTTP/1.${String.fromCharCode(minor ?? 0)}`);

  let status = 0;
  for (let i = 9; i < 12; i++) {
    const digit = buf[i]! - 0x30;
    if (digit < 0 || digit > 9) throw new UpstreamResponseError('status code is not three digits');
    status = status * 10 + digit;
  }
  if (status < 100 || status > 599) throw new UpstreamResponseError(`status code ${status} outside 100..599`);

  let reason = '';
  if (end > 12) {
    if (buf[12] !== SP) throw new UpstreamResponseError('status code is not three digits followed by SP');
    for (let i = 13; i < end; i++) {
      if (!isFieldValueByte(buf[i]!)) throw new UpstreamResponseError(`control byte 0x${buf[i]!.toString(16)} in the reason phrase`);
    }
    reason = text.slice(13, end);
  }
  return { version: minor === 0x30 ? '1.0' : '1.1', status, reason };
}

/** Validates `field-name ":"` of the line starting at `start` and returns the colon's index. */
function fieldNameEnd(buf: Buffer, start: number, end: number): number {
  let i = start;
  while (i < end && isTchar(buf[i]!)) i++;
  if (i < end && buf[i] === COLON && i > start) return i;
  if (i === start && isOws(buf[i]!)) {
    // obs-fold, or whitespace after the status line (RFC 9112 §5.2, §2.2):
    // a proxy may refuse the message with 502, which is what happens here.
    throw new UpstreamResponseError('a header line starts with whitespace (obsolete line folding)');
  }
  let afterName = i;
  while (afterName < end && isOws(buf[afterName]!)) afterName++;
  if (i > start && afterName > i && buf[afterName] === COLON) {
    // RFC 9112 §5.1: whitespace before the colon once let "Transfer-Encoding :"
    // mean different things to different hops; llhttp refuses it too.
    throw new UpstreamResponseError(`whitespace between header field name ${JSON.stringify(buf.toString('latin1', start, i))} and the colon`);
  }
  throw new UpstreamResponseError(`header line ${JSON.stringify(buf.toString('latin1', start, Math.min(end, start + 64)))} is not "<token>: <value>"`);
}

/** Case-insensitive comparison of buf[start, end) with a lowercase ASCII name, without making a string. */
function nameIs(buf: Buffer, start: number, end: number, lower: string): boolean {
  if (end - start !== lower.length) return false;
  for (let i = 0; i < lower.length; i++) {
    // Names are tokens, so OR-ing 0x20 folds only A-Z onto a-z.
    if ((buf[start + i]! | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * Content-Length = 1*DIGIT (RFC 9110 §8.6), possibly repeated in a list or in
 * several fields. Copies that agree are one value; any disagreement means the
 * hops cannot agree where the body ends, so the response is refused.
 */
function mergeContentLength(previous: number | undefined, value: string): number {
  // -1: no value yet (a valid one is never negative).
  let merged = previous ?? -1;
  for (const element of value.split(',')) {
    const digits = trimOws(element);
    if (digits.length === 0) throw new UpstreamResponseError(`Content-Length ${JSON.stringify(value)} has an empty value`);
    let length = 0;
    for (let i = 0; i < digits.length; i++) {
      const digit = digits.charCodeAt(i) - 0x30;
      if (digit < 0 || digit > 9) throw new UpstreamResponseError(`Content-Length ${JSON.stringify(value)} is not a decimal number`);
      length = length * 10 + digit;
    }
    if (length > Number.MAX_SAFE_INTEGER) throw new UpstreamResponseError(`Content-Length ${digits} exceeds 2^53-1`);
    if (merged >= 0 && merged !== length) throw new UpstreamResponseError(`conflicting Content-Length values ${merged} and ${length}`);
    merged = length;
  }
  return merged;
}

/** RFC 9112 §6.3, in its order, after refusing what it calls errors. */
function bodyFraming(
  version: '1.0' | '1.1',
  status: number,
  method: string,
  transferEncoding: string[],
  contentLength: number | undefined,
): Framing {
  const codings = transferEncoding.length > 0 ? parseTransferCodings(transferEncoding) : undefined;
  if (codings !== undefined) {
    // §6.3 point 3: TE with CL "ought to be handled as an error"; a proxy
    // that forwards it anyway must drop CL first. Refusing is the choice that
    // cannot desync this connection whatever the upstream meant.
    if (contentLength !== undefined) throw new UpstreamResponseError('both Transfer-Encoding and Content-Length');
    // §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
    if (version === '1.0') throw new UpstreamResponseError('Transfer-Encoding in an HTTP/1.0 response');
  }

  // §6.3 point 1: never a body, whatever the fields say.
  if (method === 'HEAD' || (status >= 100 && status < 200) || status === 204 || status === 304) return NONE;
  if (codings !== undefined) {
    const chunkedAt = codings.indexOf('chunked');
    if (chunkedAt === codings.length - 1) return CHUNKED;
    // §6.3 point 4: chunked not final (or absent) means read until close.
    return CLOSE;
  }
  if (contentLength !== undefined) return { kind: 'length', length: contentLength };
  // §6.3 point 8.
  return CLOSE;
}

/** The lowercase coding names of every Transfer-Encoding field, in order (RFC 9112 §6.1). */
function parseTransferCodings(fields: string[]): string[] {
  const codings: string[] = [];
  for (const field of fields) {
    for (const element of field.split(',')) {
      // transfer-coding = token *( OWS ";" OWS transfer-parameter ); parameters are irrelevant here.
      const semicolon = element.indexOf(';');
      const name = trimOws(semicolon < 0 ? element : element.slice(0, semicolon)).toLowerCase();
      if (name === '') continue; // RFC 9110 §5.6.1: empty list elements are ignored.
      if (!isToken(name)) throw new UpstreamResponseError(`Transfer-Encoding ${JSON.stringify(field)} is not a list of codings`);
      // §6.1: chunked must not be applied more than once.
      if (name === 'chunked' && codings.includes('chunked')) throw new UpstreamResponseError('chunked applied twice in Transfer-Encoding');
      codings.push(name);
    }
  }
  if (codings.length === 0) throw new UpstreamResponseError('empty Transfer-Encoding');
  return codings;
}

/** RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive" (§C.2.2). */
function isKeepAlive(version: '1.0' | '1.1', connection: string[]): boolean {
  let close = false;
  let keepAlive = false;
  for (const field of connection) {
    forEachListElement(field, (option) => {
      if (option === 'close') close = true;
      else if (option === 'keep-alive') keepAlive = true;
    });
  }
  if (close) return false;
  return version === '1.1' || keepAlive;
}

/**
 * The lane's request-head reader (h1-lane.ts): a complete, strictly formed
 * GET or HEAD head (RFC 9112 §3, §5: CRLF lines, token names, no obs-fold,
 * no control bytes, one Host, no field twice, no body, Upgrade or Expect,
 * Connection only keep-alive) read from the bytes where they lie; anything
 * else is null, for node's server.
 *
 * Why bytes: the reader before this one made the first maxHeaderSize bytes
 * latin1 text, then found the lines with six indexOf, sliced each name, and
 * lowercased it through a Map that hashed every sliced name anew, into a
 * dictionary-mode field object: 7.8-8.5k instructions of serve's 51k per
 * 1 KiB keep-alive GET (bench/request-cost.ts, docs/benchmarks.md). Here
 * one pass over the bytes checks the grammar and finds the head's end,
 * only the head is made text, and each field name is looked up by its bytes
 * in a small table of names already seen (fieldName), which gives the same
 * string objects each time: no slice, no hash of a new string, and keys V8
 * finds by pointer in the field object, an object with fast properties.
 */
import { isTchar } from '../text/char-classes.js';
import { isFieldNameAt } from '../text/field-names.js';
import type { LaneRequest } from './h1-lane.js';

/** A head with more fields than this goes to node's server (its default maxHeadersCount is 2000; ours is stricter). */
const MAX_FIELDS = 64;

/** What the lane does with a field of this name. */
const ORDINARY = 0;
/** Content-Length, Transfer-Encoding (a body), Upgrade, Expect: node's server reads the request. */
const REFUSED = 1;
const CONNECTION = 2;
const HOST = 3;

/** A field name as sent, its lowercase form (RFC 9110 §5.1: names are case-insensitive) and its role. */
interface Name {
  readonly raw: string;
  /** `raw`'s bytes, compared with a head's (a string's charCodeAt costs several times a byte array's load). */
  readonly bytes: Uint8Array;
  readonly lower: string;
  readonly role: number;
}

/**
 * Names seen, by a hash of their bytes: a slot holds the last name that
 * hashed there, so a client inventing names gets them made anew each time
 * (as before) and the table holds at most NAME_SLOTS names of at most
 * NAME_MAX bytes. A hit is a name whose every byte equals the slot's raw
 * name, so it gives exactly the strings a slice and toLowerCase would.
 */
const NAME_SLOTS = 512;
const NAME_MAX = 48;
const names: Array<Name | null> = new Array<Name | null>(NAME_SLOTS).fill(null);

/**
 * The field objects of lane requests: fast properties, and a prototype of
 * nothing (not Object.prototype) so that `headers[name]` answers no
 * "constructor", "__proto__" or "toString" a client did not send, as the
 * Object.create(null) before (whose dictionary mode cost a hash per store and
 * per lookup).
 */
function Fields(): void {}
Fields.prototype = Object.create(null) as object;
const FieldObject = Fields as unknown as new () => Record<string, string>;

/**
 * tchar (RFC 9110 §5.6.2), by byte: the names' loop. A target's bytes
 * (visible ASCII) and a value's (RFC 9110 §5.5: field-vchar, obs-text, SP
 * and HTAB; char-classes.ts isFieldValueByte) are ranges, compared in their
 * loops themselves: a table load per byte, or a call of
 * isFieldValueByte, cost more (counted under callgrind, docs/benchmarks.md).
 */
const TCHAR = new Uint8Array(256);
for (let c = 0; c < 256; c++) TCHAR[c] = isTchar(c) ? 1 : 0;

/** Byte offsets of the fields found: name start, name end, value start, value end; and each name's hash. */
const at = new Int32Array(4 * MAX_FIELDS);
const hashes = new Int32Array(MAX_FIELDS);

/** The request of a head the lane takes (h1-lane.ts LaneRequest less its socket, set when taken). */
export class LaneHead {
  readonly httpVersion = '1.1';
  readonly httpVersionMajor = 1;
  readonly httpVersionMinor = 1;
  readonly complete = true;
  /** Set by LaneConnection when it takes the request. */
  socket = null as unknown as LaneRequest['socket'];
  constructor(readonly method: string, readonly url: string, readonly headers: Record<string, string>, readonly rawHeaders: string[]) {}

  /** As node's IncomingMessage.setTimeout: the connection's idle timeout (the proxy pauses it while the upstream answers). */
  setTimeout(ms: number): this {
    (this.socket as LaneRequest['socket'] & { setTimeout(ms: number): unknown }).setTimeout(ms);
    return this;
  }

  /**
   * Its body, read as node's IncomingMessage is (for await): none. The lane
   * takes no request with Content-Length or Transfer-Encoding, and without
   * either a request has no body (RFC 9112 §6.3 rule 7).
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    // Nothing: see above.
  }
}

/**
 * A complete simple head at the start of buf[start, stop): its request (no
 * reference to buf) and length; null: not one the lane takes. Only the
 * first maxHeaderSize bytes can hold a head the lane takes.
 */
export function simpleHead(buf: Buffer, maxHeaderSize: number, start = 0, stop = buf.length): { req: LaneHead; length: number } | null {
  const limit = Math.min(stop, start + maxHeaderSize);
  let p = start;
  let method: string;
  if (p + 4 <= limit && buf[p] === 0x47 && buf[p + 1] === 0x45 && buf[p + 2] === 0x54 && buf[p + 3] === 0x20) method = 'GET';
  else if (p + 5 <= limit && buf[p] === 0x48 && buf[p + 1] === 0x45 && buf[p + 2] === 0x41 && buf[p + 3] === 0x44 && buf[p + 4] === 0x20) method = 'HEAD';
  else return null;
  p += method.length + 1;
  // origin-form only (RFC 9112 §3.2.1), of visible ASCII: no obs-text, no control byte.
  const urlStart = p;
  if (p >= limit || buf[p] !== 0x2f) return null;
  // 0x21-0x7e in one unsigned compare: a byte below 0x21 wraps to a large number.
  while (p < limit && ((buf[p]! - 0x21) >>> 0) < 0x5e) p++;
  const urlEnd = p;
  if (!versionLine(buf, p, limit)) return null;
  p += VERSION_LINE.length;
  let count = 0;
  // Field lines up to the empty line (RFC 9112 §2.1), which must lie within the limit.
  for (;;) {
    if (p + 2 > limit) return null;
    if (buf[p] === 0x0d && buf[p + 1] === 0x0a) break;
    if (count === MAX_FIELDS) return null;
    const nameStart = p;
    let hash = 0;
    while (p < limit) {
      const c = buf[p]!;
      if (TCHAR[c] !== 1) break;
      hash = (Math.imul(hash, 31) + c) | 0;
      p++;
    }
    if (p === nameStart || p >= limit || buf[p] !== 0x3a) return null;
    at[4 * count] = nameStart;
    at[4 * count + 1] = p;
    hashes[count] = hash;
    p++;
    // The value: field-vchar, SP and HTAB (RFC 9110 §5.5; obs-text included), OWS around it not its own.
    while (p < limit && (buf[p] === 0x20 || buf[p] === 0x09)) p++;
    const valueStart = p;
    while (p < limit) {
      const c = buf[p]!;
      if (c < 0x20 ? c !== 0x09 : c === 0x7f) break;
      p++;
    }
    // Only CRLF ends it: a bare CR or LF, or another control byte, is refused (RFC 9112 §2.2).
    if (p + 1 >= limit || buf[p] !== 0x0d || buf[p + 1] !== 0x0a) return null;
    let valueEnd = p;
    while (valueEnd > valueStart && (buf[valueEnd - 1] === 0x20 || buf[valueEnd - 1] === 0x09)) valueEnd--;
    at[4 * count + 2] = valueStart;
    at[4 * count + 3] = valueEnd;
    p += 2;
    count++;
  }
  const length = p + 2 - start;
  return fields(buf, start, length, method, urlStart, urlEnd, count);
}

const VERSION_LINE = ' HTTP/1.1\r\n';

/** buf[p, limit) begins with VERSION_LINE: byte by byte, unrolled (a loop over a table of its bytes cost 0.4k per head). */
function versionLine(buf: Buffer, p: number, limit: number): boolean {
  return p + VERSION_LINE.length <= limit && buf[p] === 0x20 && buf[p + 1] === 0x48 && buf[p + 2] === 0x54 && buf[p + 3] === 0x54 && buf[p + 4] === 0x50
    && buf[p + 5] === 0x2f && buf[p + 6] === 0x31 && buf[p + 7] === 0x2e && buf[p + 8] === 0x31 && buf[p + 9] === 0x0d && buf[p + 10] === 0x0a;
}

/**
 * The request of a head whose grammar simpleHead found right: its fields
 * looked at by name, or null.
 */
function fields(buf: Buffer, start: number, length: number, method: string, urlStart: number, urlEnd: number, count: number): { req: LaneHead; length: number } | null {
  // The head alone made text (not up to maxHeaderSize bytes of pipelined heads behind it).
  const text = latin1(buf, start, start + length);
  const headers = new FieldObject();
  // Pushed, not made at its length: a holey array made the consumers' loads over rawHeaders (node's
  // are packed) polymorphic.
  const rawHeaders: string[] = [];
  let host = false;
  for (let i = 0; i < count; i++) {
    const name = fieldName(buf, at[4 * i]!, at[4 * i + 1]!, hashes[i]!);
    const vs = at[4 * i + 2]!;
    const ve = at[4 * i + 3]!;
    if (name.role === REFUSED) return clear(i);
    // Connection: only the keep-alive option, in any case (RFC 9112 §9.3).
    if (name.role === CONNECTION && !isFieldNameAt(buf, vs, ve, 'keep-alive')) return clear(i);
    // A field twice, in any case (RFC 9110 §5.3: a list to combine, or a Host twice, RFC 9112 §3.2): node's server reads it.
    const lower = name.lower;
    for (let j = 0; j < i; j++) if (lowers[j] === lower) return clear(i);
    lowers[i] = lower;
    if (name.role === HOST) host = true;
    const value = text.slice(vs - start, ve - start);
    headers[lower] = value;
    rawHeaders.push(name.raw, value);
  }
  clear(count);
  if (!host) return null;
  return { req: new LaneHead(method, text.slice(urlStart - start, urlEnd - start), headers, rawHeaders), length };
}

/** The lowercase names of the head being read, for the check of a field twice. */
const lowers: string[] = new Array<string>(MAX_FIELDS).fill('');

/** Forgets the first `n` names of `lowers` (no head's names held past its reading); null. */
function clear(n: number): null {
  for (let i = 0; i < n; i++) lowers[i] = '';
  return null;
}

/**
 * buf[s, e) as latin1 text: Buffer's own latin1Slice where it has one
 * (toString's argument checks and dispatch were a third of its cost per
 * head, counted by bench/request-cost.ts).
 */
const latin1: (buf: Buffer, s: number, e: number) => string = typeof (Buffer.prototype as { latin1Slice?: unknown }).latin1Slice === 'function'
  ? (buf, s, e) => (buf as Buffer & { latin1Slice(s: number, e: number): string }).latin1Slice(s, e)
  : (buf, s, e) => buf.toString('latin1', s, e);


/** The name in buf[s, e) (a token, `hash` of its bytes): the table's entry if it holds these bytes, else a new one. */
function fieldName(buf: Buffer, s: number, e: number, hash: number): Name {
  const slot = (hash ^ (hash >>> 9) ^ (e - s)) & (NAME_SLOTS - 1);
  const kept = names[slot]!;
  if (kept !== null && sameBytes(buf, s, e, kept.bytes)) return kept;
  // Strings of their own (not cut from a head's text, which a slice would keep alive in the
  // table), the lowercase one V8's internalized key itself (found by pointer in `headers`).
  const raw = latin1(buf, s, e);
  const lower = raw.toLowerCase();
  const bytes = Uint8Array.prototype.slice.call(buf, s, e);
  if (e - s > NAME_MAX) return { raw, bytes, lower, role: roleOf(lower) };
  const entry: Name = { raw, bytes, lower: Object.keys({ [lower]: 0 })[0]!, role: roleOf(lower) };
  names[slot] = entry;
  return entry;
}

function sameBytes(buf: Buffer, s: number, e: number, bytes: Uint8Array): boolean {
  if (bytes.length !== e - s) return false;
  for (let i = 0; i < bytes.length; i++) if (buf[s + i] !== bytes[i]) return false;
  return true;
}

function roleOf(lower: string): number {
  switch (lower) {
    case 'host': return HOST;
    case 'connection': return CONNECTION;
    case 'content-length':
    case 'transfer-encoding':
    case 'upgrade':
    case 'expect': return REFUSED;
    default: return ORDINARY;
  }
}

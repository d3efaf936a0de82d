/**
 * HTTP/1.1 message syntax written by Aludel itself (RFC 9112), in one place:
 * what node's http.Server does not write for us. The lane's responses
 * (h1-lane.ts LaneResponse: their heads with the fields node adds, their
 * chunks, 102 and 103 interim heads), heads of answers on
 * connections node has handed over (upgrades, CONNECT, parse errors), the
 * chunk framing of bodies that leave by splice, sendfile or the copy path
 * (node frames only what passes through res.write), request bodies re-framed
 * for an upstream,
 * the request heads sent upstream (the proxy's requests, whose fields
 * forward-headers.ts chooses, and health checks). Parsing lives beside it:
 * response-head.ts (heads) and chunked-decoder.ts (chunked bodies).
 */
import http from 'node:http';
import { isFieldName } from '../text/field-names.js';
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

const PLAIN_HTTP_BODY = 'The plain HTTP request was sent to the HTTPS port\n';

/**
 * The clear-text answer to plain HTTP sent to a TLS port (tls/plain-http.ts
 * sends it), as nginx's 400 "The plain HTTP request was sent to HTTPS port".
 */
export const PLAIN_HTTP_ANSWER = Buffer.concat([
  responseHead(400, 'Bad Request', ['Content-Type', 'text/plain', 'Content-Length', String(PLAIN_HTTP_BODY.length), 'Connection', 'close']),
  Buffer.from(PLAIN_HTTP_BODY, 'latin1'),
]);

/**
 * A request head (RFC 9112 §3, §5): the request line, Host first (§3.2: a
 * client sends it first; with no authority known it is sent empty, as
 * "Host:"), then the field lines `fields` ([name, value, ...]) in order, and
 * the empty line. The text is what goes on the wire, written as latin1.
 * The proxy's upstream requests (forward-headers.ts chooses their fields)
 * and health checks alike.
 */
export function requestHeadText(method: string, target: string, hostName: string, host: string, fields: readonly string[]): string {
  // Concatenated with +, not in template literals: the fields are strings already (no ToString each).
  let head = method + ' ' + target + ' HTTP/1.1\r\n' + hostName + (host === '' ? ':\r\n' : ': ' + host + '\r\n');
  for (let i = 0; i + 1 < fields.length; i += 2) head += fields[i]! + ': ' + fields[i + 1]! + '\r\n';
  return head + '\r\n';
}

/** requestHeadText's bytes, for requests Aludel makes itself with no body (health checks). */
export function requestHead(method: string, target: string, host: string, fields: readonly string[]): Buffer {
  return Buffer.from(requestHeadText(method, target, 'Host', host, fields), 'latin1');
}

/** The status code of a status line at the start of `bytes` (RFC 9112 §4), or null when it is none. */
export function statusCodeOf(bytes: Buffer): number | null {
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(bytes.toString('latin1', 0, 16));
  return m ? Number(m[1]) : null;
}

/**
 * Whether a response to `method` with `status` has a body (RFC 9110 §6.4.1,
 * §9.3.2; RFC 9112 §6.3 rule 1): not to HEAD, not 1xx, 204 or 304. node's
 * ServerResponse._hasBody says the same.
 */
export function responseHasBody(method: string, status: number): boolean {
  return method !== 'HEAD' && status !== 204 && status !== 304 && status >= 200;
}

/** What a response head's own fields say of its framing and its connection, read as node's _storeHeader reads them. */
interface GivenFields {
  date: boolean;
  length: boolean;
  /** Transfer-Encoding given: with chunked as a coding (the writer then frames each piece), or without. */
  te: 'none' | 'chunked' | 'other';
  /** A Connection field given: with the close option (RFC 9112 §9.6), or without. */
  connection: 'none' | 'close' | 'other';
}

/** node's chunkExpression and RE_CONN_CLOSE (_http_outgoing.js): the token anywhere in the list. */
const CHUNKED_TOKEN = /(?:^|\W)chunked(?:$|\W)/i;
const CLOSE_TOKEN = /(?:^|\W)close(?:$|\W)/i;

function givenFields(f: ReadonlyArray<string | number>): GivenFields {
  const seen: GivenFields = { date: false, length: false, te: 'none', connection: 'none' };
  for (let i = 0; i + 1 < f.length; i += 2) {
    const name = String(f[i]);
    if (isFieldName(name, 'date')) seen.date = true;
    else if (isFieldName(name, 'content-length')) seen.length = true;
    else if (isFieldName(name, 'transfer-encoding')) seen.te = CHUNKED_TOKEN.test(String(f[i + 1])) ? 'chunked' : 'other';
    else if (isFieldName(name, 'connection')) seen.connection = CLOSE_TOKEN.test(String(f[i + 1])) ? 'close' : 'other';
  }
  return seen;
}

/** A response head as a handler set it, for framedResponseHead. */
export interface HandlerHead {
  status: number;
  reason: string;
  /** The handler's field lines, [name, value, ...], written in order (after `fixed`'s). */
  fields: ReadonlyArray<string | number>;
  /**
   * Field lines written before `fields`, from a list never changed in place
   * (the cache's stored fields as a client gets them, send-stored.ts
   * fieldsForClient): their text is made once per list (fixedLines).
   */
  fixed?: ReadonlyArray<string | number>;
  /** The request's method: a HEAD's answer has no body. */
  method: string;
  /** The Date value (RFC 9110 §6.6.1) written when the handler gave none. */
  date: string;
  /** The keep-alive timeout advertised (Keep-Alive: timeout=N), or null: the connection closes after this response. */
  keepAliveSecs: number | null;
  /** The body's length when it was given whole before the head went out (end(body)); else unknown. */
  wholeLength?: number;
}

/** A head ready to write, and how what follows it is written. */
export interface FramedHead {
  text: string;
  /** Each body piece goes as a chunk, and the body ends with LAST_CHUNK (RFC 9112 §7.1). */
  chunked: boolean;
  /** The response has a body at all (responseHasBody): else nothing after the head is written. */
  body: boolean;
  /** The connection closes after this response: its own Connection: close, or keepAliveSecs null. */
  closes: boolean;
}

/**
 * The head of an HTTP/1.1 response with the fields added that node's
 * ServerResponse adds (_http_outgoing.js _storeHeader), in its order, so a
 * response the lane writes is byte for byte what node's server wrote:
 * the handler's fields, Date unless given, Connection (keep-alive with
 * Keep-Alive, or close) unless given, then the framing. A response without
 * a body gets no framing field (RFC 9112 §6.3 rule 1). Otherwise, when the
 * handler gave no Content-Length and no Transfer-Encoding, the message
 * must still say where it ends, without closing the connection (RFC 9112
 * §6.3 rule 8 would make it close-delimited): a Content-Length when the
 * body's whole length is known (§6.2), else Transfer-Encoding: chunked
 * (§6.1, §7.1), which every HTTP/1.1 client must parse. A Connection field
 * the handler gave is its own say (RFC 9112 §9.6): its close option closes
 * the connection after the response.
 */
export function framedResponseHead(h: HandlerHead): FramedHead {
  const last = lastMade;
  if (last !== null && sameHead(last.from, h)) return last.head;
  const head = makeFramedHead(h);
  lastMade = { from: copyOfHead(h), head: Object.freeze(head) };
  return head;
}

/**
 * What a head was made from, kept for sameHead: a copy of the fields, as the
 * caller's list may change after the call. Written out rather than spread
 * ({ ...h, fields }): V8 (11.3, node 20) gives each object a warmed-up
 * spread copies and then adds to a map of its own, so every new lastMade
 * (once a second, with Date) had a new one; the optimised sameHead was
 * dropped ("wrong map") and made again each time. A literal's fields in one
 * order share one map.
 */
export function copyOfHead(h: HandlerHead): HandlerHead {
  return { status: h.status, reason: h.reason, fields: h.fields.slice(), fixed: h.fixed, method: h.method, date: h.date, keepAliveSecs: h.keepAliveSecs, wholeLength: h.wholeLength };
}

/**
 * The last head framedResponseHead made and what it was made from. Its text
 * depends on nothing else, so the same inputs again (a file's 200 to every
 * client, Date changing once a second) are answered with the same string:
 * not rebuilt, its fields not read again, and already flat when written
 * (V8 flattens a concatenated string in place on its first write). Counted
 * by bench/request-cost.ts. One entry: no bound to keep, nothing kept past
 * the next different head.
 */
let lastMade: { from: HandlerHead; head: FramedHead } | null = null;

function sameHead(a: HandlerHead, b: HandlerHead): boolean {
  if (a.status !== b.status || a.reason !== b.reason || a.method !== b.method || a.date !== b.date || a.keepAliveSecs !== b.keepAliveSecs || a.wholeLength !== b.wholeLength || a.fixed !== b.fixed) return false;
  const x = a.fields;
  const y = b.fields;
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

function makeFramedHead(h: HandlerHead): FramedHead {
  const f = h.fields;
  const fixed = h.fixed === undefined ? null : fixedLines(h.fixed);
  const given = fixed === null ? givenFields(f) : laterGiven(fixed.given, givenFields(f));
  const body = responseHasBody(h.method, h.status);
  let text = `HTTP/1.1 ${h.status} ${h.reason}\r\n`;
  if (fixed !== null) text += fixed.text;
  for (let i = 0; i + 1 < f.length; i += 2) text += `${f[i]}: ${f[i + 1]}\r\n`;
  if (!given.date) text += `Date: ${h.date}\r\n`;
  if (given.connection === 'none') text += h.keepAliveSecs === null ? 'Connection: close\r\n' : `Connection: keep-alive\r\nKeep-Alive: timeout=${h.keepAliveSecs}\r\n`;
  let chunked = given.te === 'chunked' && body;
  if (body && !given.length && given.te === 'none') {
    if (h.wholeLength !== undefined) text += `Content-Length: ${h.wholeLength}\r\n`;
    else {
      text += 'Transfer-Encoding: chunked\r\n';
      chunked = true;
    }
  }
  return { text: `${text}\r\n`, chunked, body, closes: given.connection === 'close' || h.keepAliveSecs === null };
}

/** The lines of a `fixed` field list and what they say (givenFields), by the list. */
const fixedMade = new WeakMap<ReadonlyArray<string | number>, { text: string; given: GivenFields }>();

/**
 * HandlerHead.fixed's lines, made once per list: a stored response's fields
 * are the same on every hit of it, and writing them and reading their names
 * again per hit cost a cache hit more than the per-hit fields after them
 * (Age, Cache-Status, Content-Length: bench/request-cost.ts). The list is
 * never changed in place, so its text cannot go stale; the entry goes with
 * the list.
 */
function fixedLines(list: ReadonlyArray<string | number>): { text: string; given: GivenFields } {
  let made = fixedMade.get(list);
  if (made === undefined) {
    let text = '';
    for (let i = 0; i + 1 < list.length; i += 2) text += `${list[i]}: ${list[i + 1]}\r\n`;
    made = { text, given: givenFields(list) };
    fixedMade.set(list, made);
  }
  return made;
}

/** What `first`'s fields and then `then`'s say together, as givenFields of the two lists one after the other (a later field's say wins). */
function laterGiven(first: GivenFields, then: GivenFields): GivenFields {
  return {
    date: first.date || then.date,
    length: first.length || then.length,
    te: then.te !== 'none' ? then.te : first.te,
    connection: then.connection !== 'none' ? then.connection : first.connection,
  };
}

/** 102 Processing (RFC 2518 §10.1, an interim response: RFC 9110 §15.2), as node's writeProcessing writes it. */
export const PROCESSING_HEAD = 'HTTP/1.1 102 Processing\r\n\r\n';

/** A link-value (RFC 8288 §3) as node checks one (validateLinkHeaderFormat in its internal/validators). */
const LINK_VALUE = /^(?:<[^>]*>)(?:\s*;\s*[^;"\s]+(?:=(")?[^;"\s]*\1)?)*$/;

function checkedLink(value: string): string {
  if (!LINK_VALUE.test(value)) {
    throw Object.assign(new TypeError(`The argument 'hints' must be an array or string of format "</styles.css>; rel=preload; as=style". Received ${JSON.stringify(value)}`), { code: 'ERR_INVALID_ARG_VALUE' });
  }
  return value;
}

/**
 * A 103 Early Hints head (RFC 8297) as node's writeEarlyHints writes it:
 * its Link first, then the other hints in order; null when there is no
 * Link to send (a 103 exists for its Link, RFC 8297 §2). A Link that is no
 * link-value throws, with node's code (ERR_INVALID_ARG_VALUE).
 */
export function earlyHintsHead(hints: Readonly<Record<string, string | string[]>>): string | null {
  const given = hints.link;
  if (given === undefined) return null;
  const link = Array.isArray(given) ? given.map(checkedLink).join(', ') : checkedLink(given);
  if (link.length === 0) return null;
  let head = `HTTP/1.1 103 Early Hints\r\nLink: ${link}\r\n`;
  for (const key of Object.keys(hints)) if (key !== 'link') head += `${key}: ${String(hints[key])}\r\n`;
  return `${head}\r\n`;
}

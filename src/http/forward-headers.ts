/**
 * Header rewriting for the reverse proxy: the head of the request sent
 * upstream, and the upstream response's fields as forwarded to the client.
 * Pure string work, once per request.
 *
 * Choices where the RFCs leave room:
 * - Proxy-Authorization and Proxy-Authenticate are dropped with the
 *   hop-by-hop fields: as a gateway Aludel is the origin server from the
 *   client's side, so a Proxy-Authorization was meant for a proxy the client
 *   chose and must not leak upstream (RFC 9110 §11.7.2), and an upstream's
 *   Proxy-Authenticate would ask the client for credentials for a proxy that
 *   does not exist (§11.7.1).
 * - The client's Connection options remove the fields they name (RFC 9110
 *   §7.6.1), except Host: dropping it would send the request to the
 *   upstream's default virtual host. Fields Aludel generates are written
 *   after the filtering, so a client cannot strip them.
 * - A request without Host (HTTP/1.0) is sent with an empty Host, which
 *   RFC 9112 §3.2 prescribes when the authority is unknown; an HTTP/1.1
 *   upstream must answer 400 to a request without one.
 * - An absolute-form target ("GET http://h/p") is sent in origin-form with
 *   Host taken from it (RFC 9112 §3.2.2: the Host field is ignored then),
 *   since legacy applications expect a path and would trust the Host field.
 * - Untrusted X-Forwarded-For/-Proto/-Host and Forwarded are removed, and so
 *   is X-Real-IP (nginx's realip convention, which applications trust as the
 *   client address), unless --trust-forwarded.
 * - Every field name with "_" is removed (nginx's underscores_in_headers off):
 *   CGI, PHP and WSGI map both "-" and "_" to the same HTTP_* variable
 *   (RFC 3875 §4.1.18), so "Transfer_Encoding" or "X_Forwarded_For" would
 *   reach the application as the field Aludel framed or wrote itself.
 * - With trustForwarded, X-Forwarded-For and Forwarded get this hop
 *   appended, while X-Forwarded-Proto and -Host keep the first hop's values
 *   (they describe the original request, and applications read them as one
 *   value, not a list).
 * - IPv4-mapped IPv6 client addresses ("::ffff:192.0.2.1", from a dual-stack
 *   listener) are given as IPv4, the form applications expect for IPv4 clients.
 */
import { isIP } from 'node:net';
import { InvalidRequestError } from '../errors.js';
import { forEachListElement, isFieldValueByte, isTchar, isToken } from '../text/char-classes.js';
import { isFieldName, lowerName } from '../text/field-names.js';
import { sameText } from '../text/same-text.js';
import { requestHeadText } from './h1-wire.js';

/**
 * Fields that describe one connection, never forwarded (RFC 9110 §7.6.1; the
 * obsolete Proxy-Connection and Keep-Alive from RFC 9112 §C.2.2; HTTP2-Settings
 * of the h2c upgrade, RFC 7540 §3.2.1, which node refuses to send on HTTP/2,
 * RFC 9113 §8.2.2; the proxy authentication fields, see above).
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set([
  'connection',
  'http2-settings',
  'proxy-connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
]);

export interface UpstreamRequestInput {
  method: string;
  /** The request-target as received (node's req.url). */
  url: string;
  /** node's req.rawHeaders: [name, value, name, value, ...] as sent. */
  rawHeaders: string[];
  clientAddress: string;
  /** Included in Forwarded's for= (RFC 7239 §6) when given. */
  clientPort?: number;
  proto: 'https';
  /** Whether the client is a proxy whose forwarding fields are believed. */
  trustForwarded: boolean;
  bodyFraming: 'none' | 'length' | 'chunked';
  /** Required with bodyFraming 'length'. */
  contentLength?: number;
  /** The Upgrade protocol(s) when tunnelling an Upgrade (WebSocket) request. */
  upgrade?: string;
  keepAlive: boolean;
}

/**
 * What the proxy does with a field, by its name: the fields it treats apart
 * (HOP_BY_HOP, framing, Expect, Host, the forwarding fields), found by
 * comparing the name in place (case-insensitively, RFC 9110 §5.1) with the
 * few names of its length. A Map of lowercased names cost more than
 * building the rest of the head: a name read from a head is a new string,
 * hashed on every lookup and compared in the runtime (bench/request-cost.ts,
 * docs/benchmarks.md).
 */
const OTHER = 0;
const HOP = 1;
const HOST = 2;
const CONTENT_LENGTH = 3;
const EXPECT = 4;
const XFF = 5;
const XFP = 6;
const XFH = 7;
const FORWARDED = 8;
const REAL_IP = 9;
type Role = typeof OTHER | typeof HOP | typeof HOST | typeof CONTENT_LENGTH | typeof EXPECT | typeof XFF | typeof XFP | typeof XFH | typeof FORWARDED | typeof REAL_IP;

/**
 * `name`'s role (OTHER for any field the proxy passes on as it is): a switch
 * on its length, then the few names of that length (a table of names by
 * length made V8 load them through its generic keyed-load stubs). HOP is
 * exactly HOP_BY_HOP (test/unit/forward-headers.test.ts checks it).
 */
export function fieldRole(name: string): Role {
  switch (name.length) {
    case 2: return isFieldName(name, 'te') ? HOP : OTHER;
    case 4: return isFieldName(name, 'host') ? HOST : OTHER;
    case 6: return isFieldName(name, 'expect') ? EXPECT : OTHER;
    case 7: return isFieldName(name, 'upgrade') || isFieldName(name, 'trailer') ? HOP : OTHER;
    case 9: return isFieldName(name, 'forwarded') ? FORWARDED : isFieldName(name, 'x-real-ip') ? REAL_IP : OTHER;
    case 10: return isFieldName(name, 'connection') || isFieldName(name, 'keep-alive') ? HOP : OTHER;
    case 14: return isFieldName(name, 'content-length') ? CONTENT_LENGTH : isFieldName(name, 'http2-settings') ? HOP : OTHER;
    case 15: return isFieldName(name, 'x-forwarded-for') ? XFF : OTHER;
    case 16: return isFieldName(name, 'x-forwarded-host') ? XFH : isFieldName(name, 'proxy-connection') ? HOP : OTHER;
    case 17: return isFieldName(name, 'x-forwarded-proto') ? XFP : isFieldName(name, 'transfer-encoding') ? HOP : OTHER;
    case 18: return isFieldName(name, 'proxy-authenticate') ? HOP : OTHER;
    case 19: return isFieldName(name, 'proxy-authorization') ? HOP : OTHER;
    default: return OTHER;
  }
}

/**
 * Whether `name` is among the fields a Connection field listed (RFC 9110
 * §7.6.1). A few options (nearly always one: keep-alive or close) are
 * compared in place; a long list is looked up by the lowercased name.
 */
function named(options: ReadonlySet<string>, name: string): boolean {
  if (options.size === 0) return false;
  if (options.size > 4) return options.has(lowerName(name));
  for (const option of options) if (isFieldName(name, option)) return true;
  return false;
}

const IPV4_MAPPED = '::ffff:';

/**
 * The complete request head for the upstream, "METHOD SP target SP HTTP/1.1"
 * through the final CRLFCRLF, to be written as latin1 (node decoded the
 * fields as latin1). Framing and Connection fields are Aludel's own, never the
 * client's: the body is re-framed as `bodyFraming` says. Throws
 * InvalidRequestError for anything that could split the head. Which fields
 * go is decided here; h1-wire.ts writes them.
 */
export function buildUpstreamRequestHead(input: UpstreamRequestInput): string {
  const { rawHeaders, trustForwarded } = input;
  if (!isToken(input.method)) throw new InvalidRequestError(`method ${JSON.stringify(input.method)} is not a token`);
  const target = requestTarget(input.method, input.url);
  const dropped = namingOptions(rawHeaders);

  let hostName = 'Host';
  let host: string | undefined;
  let priorFor: string | undefined;
  let priorProto: string | undefined;
  let priorHost: string | undefined;
  let priorForwarded: string | undefined;
  const fields: string[] = [];

  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const value = rawHeaders[i + 1]!;
    checkField(name, value);
    const role = fieldRole(name);
    if (role === HOST) {
      // RFC 9112 §3.2: more than one Host must be answered with 400.
      if (host !== undefined) throw new InvalidRequestError('more than one Host field');
      hostName = name;
      host = value;
      continue;
    }
    // Framing is Aludel's own; Expect: 100-continue is answered by Aludel.
    if (role === HOP || role === CONTENT_LENGTH || role === EXPECT || named(dropped, name)) continue;
    if (role === XFF || role === XFP || role === XFH || role === FORWARDED) {
      if (!trustForwarded) continue;
      if (role === XFF) priorFor = join(priorFor, value);
      else if (role === XFP) priorProto = join(priorProto, value);
      else if (role === XFH) priorHost = join(priorHost, value);
      else priorForwarded = join(priorForwarded, value);
      continue;
    }
    // '_' is no letter: the name has one whatever its case.
    if (name.includes('_')) continue;
    if (role === REAL_IP && !trustForwarded) continue;
    fields.push(name, value);
  }

  if (target.authority !== undefined) host = target.authority;
  const client = clientNode(input.clientAddress);
  const forwardedElement = `for=${forwardedNode(client, input.clientPort)};proto=${input.proto}${host ? `;host=${tokenOrQuoted(host)}` : ''}`;

  fields.push('X-Forwarded-For', priorFor ? `${priorFor}, ${client}` : client);
  fields.push('X-Forwarded-Proto', priorProto || input.proto);
  const forwardedHost = priorHost || host;
  if (forwardedHost) fields.push('X-Forwarded-Host', forwardedHost);
  fields.push('Forwarded', priorForwarded ? `${priorForwarded}, ${forwardedElement}` : forwardedElement);
  framingField(input, fields);
  if (input.upgrade !== undefined) {
    if (input.upgrade === '' || !isFieldValue(input.upgrade)) throw new InvalidRequestError(`Upgrade ${JSON.stringify(input.upgrade)} names no protocol`);
    fields.push('Connection', 'upgrade', 'Upgrade', input.upgrade);
  } else {
    fields.push('Connection', input.keepAlive ? 'keep-alive' : 'close');
  }
  return requestHeadText(input.method, target.path, hostName, host ?? '', fields);
}

/**
 * A copy of `i` to compare later requests with (sameUpstreamRequest), the
 * field list copied too: the caller's is not ours to keep. Written out
 * rather than spread ({ ...i, rawHeaders }): V8 (11.3, node 20) gives each
 * object a warmed-up spread copies and then adds to a map of its own, so
 * each connection's copy had a new one and sameUpstreamRequest's reads of
 * it went megamorphic. A literal's fields in one order share one map.
 */
export function copyOfUpstreamRequest(i: UpstreamRequestInput): UpstreamRequestInput {
  return {
    method: i.method, url: i.url, rawHeaders: i.rawHeaders.slice(), clientAddress: i.clientAddress, clientPort: i.clientPort, proto: i.proto,
    trustForwarded: i.trustForwarded, bodyFraming: i.bodyFraming, contentLength: i.contentLength, upgrade: i.upgrade, keepAlive: i.keepAlive,
  };
}

/**
 * Whether `a` and `b` give the same upstream head: buildUpstreamRequestHead
 * depends on its input alone (no clock, no state but clientNode's, which
 * maps an address to one node), so a head built for `a` is the head for
 * `b`, byte for byte. The requests on one keep-alive connection nearly
 * always repeat (same method, target, fields, client address and port), and
 * comparing them costs less than building and encoding the head again
 * (bench/request-cost.ts, docs/benchmarks.md). Field values are compared as
 * strings, so a field whose value differs in any byte gives a new head.
 */
export function sameUpstreamRequest(a: UpstreamRequestInput, b: UpstreamRequestInput): boolean {
  if (a.clientPort !== b.clientPort || a.url !== b.url || a.method !== b.method || a.clientAddress !== b.clientAddress) return false;
  if (a.trustForwarded !== b.trustForwarded || a.bodyFraming !== b.bodyFraming || a.contentLength !== b.contentLength) return false;
  if (a.upgrade !== b.upgrade || a.keepAlive !== b.keepAlive || a.proto !== b.proto) return false;
  const x = a.rawHeaders;
  const y = b.rawHeaders;
  // (An odd list, which no parser gives, is never found the same: its head is built anew.)
  if (x.length !== y.length || (x.length & 1) !== 0) return false;
  // Names by ===: the lane gives a name it has seen as the same string (lane-head.ts), which
  // === finds equal by reference at once. Values are new slices of each request's head.
  for (let i = 0; i < x.length; i += 2) if (x[i] !== y[i] || !sameText(x[i + 1]!, y[i + 1]!)) return false;
  return true;
}

/**
 * The upstream response's fields as they go to the client: hop-by-hop fields
 * and those its Connection names are removed, Transfer-Encoding always (node's
 * ServerResponse frames the body itself), Content-Length unless keepFraming
 * (the proxy then sends exactly that many bytes, so it stays, whatever
 * Connection says). Repeated fields such as Set-Cookie stay separate entries.
 */
export function filterResponseHeaders(headers: readonly string[], opts: { keepFraming: boolean }): string[] {
  const dropped = namingOptions(headers);
  const out: string[] = [];
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = headers[i]!;
    const role = fieldRole(name);
    if (role === CONTENT_LENGTH ? !opts.keepFraming : (role === HOP || named(dropped, name))) continue;
    out.push(name, headers[i + 1]!);
  }
  return out;
}

const NO_OPTIONS: ReadonlySet<string> = new Set();

/** The lowercase options of every Connection field (RFC 9110 §7.6.1). */
export function connectionOptions(headers: readonly string[]): ReadonlySet<string> {
  let options: Set<string> | undefined;
  for (let i = 0; i + 1 < headers.length; i += 2) {
    // Compared in place: no lowercased copy of every other name (twice per proxied request).
    const name = headers[i]!;
    if (!isFieldName(name, 'connection')) continue;
    forEachListElement(headers[i + 1]!, (option) => (options ??= new Set()).add(option));
  }
  return options ?? NO_OPTIONS;
}

/**
 * The Connection options that may name a field to remove besides the
 * hop-by-hop ones: connectionOptions, but a Connection of just keep-alive or
 * close (nearly every one) is passed over without a Set made: those options
 * name hop-by-hop fields, removed anyway.
 */
function namingOptions(headers: readonly string[]): ReadonlySet<string> {
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if (!isFieldName(headers[i]!, 'connection')) continue;
    const value = headers[i + 1]!;
    if (!isFieldName(value, 'keep-alive') && !isFieldName(value, 'close')) return connectionOptions(headers);
  }
  return NO_OPTIONS;
}

/** Fields repeated in a request combine into one comma-separated list (RFC 9110 §5.3). */
function join(previous: string | undefined, value: string): string {
  if (value === '') return previous ?? '';
  return previous ? `${previous}, ${value}` : value;
}

/**
 * Belt and braces: node's parser has already refused these, but a CR, LF or
 * NUL that got through would let the client write its own fields or a second
 * request into the upstream connection.
 */
function checkField(name: string, value: string): void {
  if (!isToken(name)) throw new InvalidRequestError(`header field name ${JSON.stringify(name)} is not a token`);
  if (!isFieldValue(value)) throw new InvalidRequestError(`control character in the value of header field ${name}`);
}

function isFieldValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    if (!isFieldValueByte(value.charCodeAt(i))) return false;
  }
  return true;
}

/** The target to send and, for absolute-form, the authority that replaces Host. */
function requestTarget(method: string, url: string): { path: string; authority?: string } {
  for (let i = 0; i < url.length; i++) {
    const code = url.charCodeAt(i);
    // request-target has no whitespace or controls (RFC 9112 §3.2).
    if (code <= 0x20 || code === 0x7f || code > 0xff) throw new InvalidRequestError('whitespace or control character in the request target');
  }
  if (url === '') throw new InvalidRequestError('empty request target');
  const scheme = url.startsWith('//', 5) ? 5 : url.startsWith('//', 6) ? 6 : -1;
  if (scheme < 0 || !/^https?:$/i.test(url.slice(0, scheme))) return { path: url };

  const start = scheme + 2;
  let end = start;
  while (end < url.length && url[end] !== '/' && url[end] !== '?' && url[end] !== '#') end++;
  const authority = url.slice(start, end);
  // RFC 9110 §4.2.1: an empty host is invalid; §4.2.4: userinfo is an error.
  if (authority === '' || authority.includes('@')) throw new InvalidRequestError(`request target ${JSON.stringify(url)} has no valid authority`);
  const rest = url.slice(end);
  // RFC 9112 §3.2.4: OPTIONS for the server as a whole becomes "*".
  if (rest === '' && method === 'OPTIONS') return { path: '*', authority };
  return { path: rest === '' || rest[0] !== '/' ? `/${rest}` : rest, authority };
}

/** The client as X-Forwarded-For gives it; "unknown" (RFC 7239 §6.2) when it is no IP address. */
function clientNode(address: string): string {
  if (address === lastClient.address) return lastClient.node;
  const unmapped = address.toLowerCase().startsWith(IPV4_MAPPED) && isIP(address.slice(IPV4_MAPPED.length)) === 4 ? address.slice(IPV4_MAPPED.length) : address;
  const node = isIP(unmapped) === 0 ? 'unknown' : unmapped;
  lastClient = { address, node, v6: isIP(node) === 6 };
  return node;
}

/**
 * The last client address seen and what it gives: a client's requests come
 * one after another on its connection (and many clients share an address),
 * and clientNode's and forwardedNode's isIP() regular expressions ran on
 * every request. A string comparison is cheaper (as isValidHost does).
 */
let lastClient = { address: '', node: 'unknown', v6: false };

/**
 * node = nodename [ ":" node-port ], IPv6 in brackets (RFC 7239 §6); a value
 * with ":" or "[" is not a token, so it is quoted (§4), e.g. for="[2001:db8::1]".
 */
function forwardedNode(client: string, port: number | undefined): string {
  // client is "unknown" (a token: no port with it) or an IP address (clientNode): digits, dots,
  // hex and colons, none of them '"' or '\\', so what tokenOrQuoted would make is known without
  // looking at each character (a string per request, looked at twice, was 2 k instructions).
  if (client === 'unknown') return client;
  const v6 = client === lastClient.node ? lastClient.v6 : isIP(client) === 6;
  if (v6) return port === undefined ? `"[${client}]"` : `"[${client}]:${port}"`;
  // An IPv4 address alone is a token; with ":" port it is not.
  return port === undefined ? client : `"${client}:${port}"`;
}

/** value = token / quoted-string (RFC 7239 §4, RFC 9110 §5.6.4). */
function tokenOrQuoted(value: string): string {
  // One look at each character: whether it is a token, and whether anything needs escaping.
  let token = value.length > 0;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) return escapedQuoted(value);
    if (token && !isTchar(c)) token = false;
  }
  return token ? value : `"${value}"`;
}

/** quoted-string with '"' and '\\' escaped as quoted-pairs (RFC 9110 §5.6.4). */
function escapedQuoted(value: string): string {
  let quoted = '"';
  for (const c of value) quoted += c === '"' || c === '\\' ? `\\${c}` : c;
  return `${quoted}"`;
}

/** The framing field of the body as re-framed (RFC 9112 §6.1, §6.2), added to `fields`; none without a body. */
function framingField(input: UpstreamRequestInput, fields: string[]): void {
  switch (input.bodyFraming) {
    case 'none':
      return;
    case 'chunked':
      fields.push('Transfer-Encoding', 'chunked');
      return;
    case 'length': {
      const length = input.contentLength;
      if (length === undefined || !Number.isSafeInteger(length) || length < 0) {
        throw new InvalidRequestError(`Content-Length ${String(length)} is not a non-negative integer`);
      }
      fields.push('Content-Length', String(length));
      return;
    }
  }
}

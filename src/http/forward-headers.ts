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
import { forEachListElement, isFieldValueByte, isToken } from '../text/char-classes.js';
import { isFieldName, lowerName } from '../text/field-names.js';

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

/** The forwarding fields, which the client may only set when trusted. */
const XFF = 'x-forwarded-for';
const XFP = 'x-forwarded-proto';
const XFH = 'x-forwarded-host';
const FORWARDED = 'forwarded';

const IPV4_MAPPED = '::ffff:';

/**
 * The complete request head for the upstream, "METHOD SP target SP HTTP/1.1"
 * through the final CRLFCRLF, to be written as latin1 (node decoded the
 * fields as latin1). Framing and Connection fields are Aludel's own, never the
 * client's: the body is re-framed as `bodyFraming` says. Throws
 * InvalidRequestError for anything that could split the head.
 */
export function buildUpstreamRequestHead(input: UpstreamRequestInput): string {
  const { rawHeaders, trustForwarded } = input;
  if (!isToken(input.method)) throw new InvalidRequestError(`method ${JSON.stringify(input.method)} is not a token`);
  const target = requestTarget(input.method, input.url);
  const dropped = connectionOptions(rawHeaders);

  let hostName = 'Host';
  let host: string | undefined;
  let priorFor: string | undefined;
  let priorProto: string | undefined;
  let priorHost: string | undefined;
  let priorForwarded: string | undefined;
  let fields = '';

  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const value = rawHeaders[i + 1]!;
    checkField(name, value);
    const lower = lowerName(name);
    if (lower === 'host') {
      // RFC 9112 §3.2: more than one Host must be answered with 400.
      if (host !== undefined) throw new InvalidRequestError('more than one Host field');
      hostName = name;
      host = value;
      continue;
    }
    // Framing is Aludel's own; Expect: 100-continue is answered by Aludel.
    if (HOP_BY_HOP.has(lower) || dropped.has(lower) || lower === 'content-length' || lower === 'expect') continue;
    if (lower === XFF || lower === XFP || lower === XFH || lower === FORWARDED) {
      if (!trustForwarded) continue;
      if (lower === XFF) priorFor = join(priorFor, value);
      else if (lower === XFP) priorProto = join(priorProto, value);
      else if (lower === XFH) priorHost = join(priorHost, value);
      else priorForwarded = join(priorForwarded, value);
      continue;
    }
    if (lower.includes('_')) continue;
    if (lower === 'x-real-ip' && !trustForwarded) continue;
    fields += `${name}: ${value}\r\n`;
  }

  if (target.authority !== undefined) host = target.authority;
  const client = clientNode(input.clientAddress);
  const forwardedElement = `for=${forwardedNode(client, input.clientPort)};proto=${input.proto}${host ? `;host=${tokenOrQuoted(host)}` : ''}`;

  let head = `${input.method} ${target.path} HTTP/1.1\r\n${host ? `${hostName}: ${host}` : `${hostName}:`}\r\n${fields}`;
  head += `X-Forwarded-For: ${priorFor ? `${priorFor}, ${client}` : client}\r\n`;
  head += `X-Forwarded-Proto: ${priorProto || input.proto}\r\n`;
  const forwardedHost = priorHost || host;
  if (forwardedHost) head += `X-Forwarded-Host: ${forwardedHost}\r\n`;
  head += `Forwarded: ${priorForwarded ? `${priorForwarded}, ${forwardedElement}` : forwardedElement}\r\n`;
  head += framingField(input);
  if (input.upgrade !== undefined) {
    if (input.upgrade === '' || !isFieldValue(input.upgrade)) throw new InvalidRequestError(`Upgrade ${JSON.stringify(input.upgrade)} names no protocol`);
    head += `Connection: upgrade\r\nUpgrade: ${input.upgrade}\r\n`;
  } else {
    head += input.keepAlive ? 'Connection: keep-alive\r\n' : 'Connection: close\r\n';
  }
  return `${head}\r\n`;
}

/**
 * The upstream response's fields as they go to the client: hop-by-hop fields
 * and those its Connection names are removed, Transfer-Encoding always (node's
 * ServerResponse frames the body itself), Content-Length unless keepFraming
 * (the proxy then sends exactly that many bytes, so it stays, whatever
 * Connection says). Repeated fields such as Set-Cookie stay separate entries.
 */
export function filterResponseHeaders(headers: string[], opts: { keepFraming: boolean }): string[] {
  const dropped = connectionOptions(headers);
  const out: string[] = [];
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = headers[i]!;
    const lower = lowerName(name);
    if (lower === 'content-length' ? !opts.keepFraming : (HOP_BY_HOP.has(lower) || dropped.has(lower))) continue;
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
  const v6 = client === lastClient.node ? lastClient.v6 : isIP(client) === 6;
  const name = v6 ? `[${client}]` : client;
  const node = port === undefined || client === 'unknown' ? name : `${name}:${port}`;
  return tokenOrQuoted(node);
}

/** value = token / quoted-string (RFC 7239 §4, RFC 9110 §5.6.4). */
function tokenOrQuoted(value: string): string {
  if (isToken(value)) return value;
  // Nothing to escape (the common case, "127.0.0.1:54321"): one string, not one per character.
  if (!value.includes('"') && !value.includes('\\')) return `"${value}"`;
  let quoted = '"';
  for (const c of value) quoted += c === '"' || c === '\\' ? `\\${c}` : c;
  return `${quoted}"`;
}

function framingField(input: UpstreamRequestInput): string {
  switch (input.bodyFraming) {
    case 'none':
      return '';
    case 'chunked':
      return 'Transfer-Encoding: chunked\r\n';
    case 'length': {
      const length = input.contentLength;
      if (length === undefined || !Number.isSafeInteger(length) || length < 0) {
        throw new InvalidRequestError(`Content-Length ${String(length)} is not a non-negative integer`);
      }
      return `Content-Length: ${length}\r\n`;
    }
  }
}

/**
 * What RFC 9112 requires of a request that node's parser (llhttp) leaves to
 * the server, checked once per request by serve and proxy before anything
 * else: a 400 for more than one Host or an invalid one, or none in HTTP/1.1 (§3.2), for a
 * Transfer-Encoding whose last coding is not chunked (§6.3), for a target in
 * none of the request-target forms, and for the asterisk-form target with
 * any method but OPTIONS (§3.2.4). Pure.
 */
import { isIP } from 'node:net';
import { NotImplementedRequestError } from '../errors.js';
import { isToken, trimOws } from '../text/char-classes.js';
import { isFieldName } from '../text/field-names.js';
import { sameText } from '../text/same-text.js';

/**
 * Host = uri-host [ ":" port ] (RFC 9110 §7.2, RFC 3986 §3.2.2): an IP-literal
 * in brackets, an IPv4 address or a reg-name of unreserved, pct-encoded and
 * sub-delims characters. So "a@b" (userinfo) and "a/b" are not hosts, and
 * neither is anything that could change the target once forwarded.
 */
const REG_NAME_AND_PORT = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*(?::[0-9]*)?$/;
const IP_LITERAL_AND_PORT = /^\[([^\]]*)\](?::[0-9]*)?$/;

/**
 * The last Host value found valid: a client sends the same one on every
 * request of a connection (and most clients the same one), and the three
 * regular expressions below were among serve's own costs in a profile of
 * 1 KiB keep-alive GETs. A string comparison of a short value is cheaper.
 */
let lastValidHost = '';

export function isValidHost(value: string): boolean {
  if (value !== '' && sameText(value, lastValidHost)) return true;
  if (!checkHost(value)) return false;
  lastValidHost = value;
  return true;
}

function checkHost(value: string): boolean {
  // A port is *DIGIT in the URI grammar, but TCP has 65535 of them (RFC 9293 §3.1).
  const port = /:([0-9]*)$/.exec(value);
  if (port !== null && port[1] !== '' && (port[1]!.length > 5 || Number(port[1]) > 65535)) return false;
  const literal = IP_LITERAL_AND_PORT.exec(value);
  if (literal !== null) return isIP(literal[1]!) === 6 || /^v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+$/.test(literal[1]!);
  return REG_NAME_AND_PORT.test(value);
}

/** The reason a request must be answered 400, or null. `rawHeaders` as node gives them ([name, value, ...]). */
export function requestProblem(method: string, target: string, rawHeaders: readonly string[]): string | null {
  // RFC 9110 §9.1: methods are case-sensitive, so "get" is not GET; nginx's parser takes only
  // upper-case letters, "_" and "-" and answers 400 otherwise, over HTTP/1.1 and HTTP/2 alike.
  // llhttp refuses such methods before a request exists; HTTP/2's :method is only checked to
  // be a token (nghttp2), and "get" went upstream, where a legacy application may take it for GET.
  if (!isUpperCaseMethod(method)) return `method ${JSON.stringify(method.slice(0, 20))} is not upper-case letters, "_" and "-" (RFC 9110 §9.1, as nginx parses methods)`;
  let hosts = 0;
  let host = '';
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    // Compared in place, not lowercased into a new string per request (isFieldName: RFC 9110 §5.1, names are case-insensitive).
    if (!isFieldName(rawHeaders[i]!, 'host')) continue;
    hosts++;
    host = rawHeaders[i + 1]!;
  }
  if (hosts > 1) return 'more than one Host field (RFC 9112 §3.2)';
  // An empty Host is what a client sends when the target has no authority (RFC 9112 §3.2).
  if (host !== '' && !isValidHost(host)) return `invalid Host ${JSON.stringify(host.slice(0, 100))} (RFC 9112 §3.2)`;
  // §6.3 item 4: a request whose Transfer-Encoding does not end in chunked has no knowable
  // length: 400 and close. llhttp refuses it too, but only after the request event, when
  // a proxy may already have sent the head on.
  const coding = finalCoding(rawHeaders);
  if (coding !== null && coding !== 'chunked') return `Transfer-Encoding ending in ${JSON.stringify(coding.slice(0, 40))}, not chunked (RFC 9112 §6.3)`;
  // §3.2: origin-form ("/..."), absolute-form ("scheme:..."), or "*"; authority-form is CONNECT's,
  // which node hands over apart. Anything else ('*"x', 'abc') is no request-target at all.
  if (!target.startsWith('/') && target !== '*' && !/^[A-Za-z][A-Za-z0-9+.-]*:/.test(target)) return `request-target ${JSON.stringify(target.slice(0, 40))} is in no form of RFC 9112 §3.2`;
  // §3.2.2: absolute-form names the target URI; a gateway to http(s) origins has no other scheme.
  if (!target.startsWith('/') && target !== '*') {
    const absolute = /^https?:\/\/([^/?#]*)/i.exec(target);
    if (absolute === null) return `absolute-form target ${JSON.stringify(target.slice(0, 40))} is not an http or https URI (RFC 9112 §3.2.2)`;
    // Its authority replaces Host (§3.2.2): it must be one a Host field could carry.
    if (!isValidHost(absolute[1]!)) return `absolute-form target with invalid authority ${JSON.stringify(absolute[1]!.slice(0, 100))} (RFC 9112 §3.2.2, RFC 3986 §3.2)`;
  }
  // RFC 9110 §7.6.1: Connection lists tokens, the names of fields that must not be forwarded. A
  // member that is no token ("x: X-Secret") names nothing a proxy could remove, yet a backend may
  // read it otherwise: refused rather than guessed at.
  const option = badConnectionOption(rawHeaders);
  if (option !== null) return `Connection option ${JSON.stringify(option.slice(0, 40))} is not a token (RFC 9110 §7.6.1)`;
  if (target === '*' && method !== 'OPTIONS') return `asterisk-form target with ${method.slice(0, 20)} (RFC 9112 §3.2.4: OPTIONS only)`;
  return null;
}

/** A method of upper-case letters, "_" and "-" only (nginx's ngx_http_parse_request_line and its HTTP/2 :method check). */
function isUpperCaseMethod(method: string): boolean {
  if (method === 'GET' || method === 'HEAD' || method === 'POST') return true;
  if (method === '') return false;
  for (let i = 0; i < method.length; i++) {
    const c = method.charCodeAt(i);
    if (!((c >= 0x41 && c <= 0x5a) || c === 0x5f || c === 0x2d)) return false;
  }
  return true;
}

/**
 * RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code
 * to any HTTP/1.1 request message that lacks a Host header field"; a higher
 * HTTP/1.x minor is read as 1.1 (RFC 9110 §2.5), and HTTP/1.0 may go without.
 * Checked here rather than by node (requireHostHeader, on by default), whose
 * own 400 never reaches the request handler, so that it gets the access-log
 * line nginx writes for every request it answers. The reason, or null.
 */
export function missingHost(httpVersionMajor: number, httpVersionMinor: number, rawHeaders: readonly string[]): string | null {
  if (httpVersionMajor !== 1 || httpVersionMinor < 1) return null;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.length === 4 && rawHeaders[i]!.toLowerCase() === 'host') return null;
  }
  return `HTTP/1.${httpVersionMinor} request without Host (RFC 9112 §3.2)`;
}

/**
 * Why a request must be answered 501 or 505 though its syntax is fine, or
 * null: a transfer coding other than chunked (RFC 9112 §6.1: a server that
 * does not understand one SHOULD answer 501; "gzip, chunked" would reach the
 * upstream as plain chunked, its gzip silently dropped), or HTTP/2.0 and up
 * (or 0.9) in an HTTP/1.x request line (RFC 9110 §15.6.6: 505). Run after
 * requestProblem, whose 400 covers a final coding other than chunked.
 */
export function unimplemented(httpVersionMajor: number, rawHeaders: readonly string[]): NotImplementedRequestError | null {
  if (httpVersionMajor !== 1) return new NotImplementedRequestError(505, `HTTP/${httpVersionMajor} in an HTTP/1.x request line`);
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.length !== 17 || rawHeaders[i]!.toLowerCase() !== 'transfer-encoding') continue;
    for (const member of rawHeaders[i + 1]!.split(',')) {
      const coding = member.trim().toLowerCase();
      if (coding !== '' && coding !== 'chunked') return new NotImplementedRequestError(501, `transfer coding ${JSON.stringify(coding.slice(0, 40))} not implemented (RFC 9112 §6.1)`);
    }
  }
  return null;
}

/** The last transfer coding named by the Transfer-Encoding fields (lowercased, parameters kept), or null without any. */
function finalCoding(rawHeaders: readonly string[]): string | null {
  let last: string | null = null;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.length !== 17 || rawHeaders[i]!.toLowerCase() !== 'transfer-encoding') continue;
    const codings = rawHeaders[i + 1]!.split(',').map((c) => c.trim()).filter((c) => c !== '');
    // An empty value names no coding (RFC 9110 §5.6.1 list rules): it leaves the last one as is.
    if (codings.length > 0) last = codings[codings.length - 1]!.toLowerCase();
    else if (last === null) last = '';
  }
  return last;
}

/** The first member of a Connection field that is not a token (empty members are allowed, RFC 9110 §5.6.1), or null. */
function badConnectionOption(rawHeaders: readonly string[]): string | null {
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (!isFieldName(rawHeaders[i]!, 'connection')) continue;
    for (const member of rawHeaders[i + 1]!.split(',')) {
      const option = trimOws(member);
      if (option !== '' && !isToken(option)) return option;
    }
  }
  return null;
}

/**
 * The status answering a request node's HTTP/1.1 parser (llhttp) refused,
 * in one place for serve and proxy (answerClientError, serve.ts):
 *
 * - a head over --max-header-size: 414 when the request line alone went
 *   over (RFC 9110 §15.5.15, as nginx answers a request line longer than its
 *   large_client_header_buffers), else 431 (RFC 6585 §5);
 * - a method llhttp does not know but that nginx's parser takes (upper-case
 *   letters, "_" and "-"): the front's own answer to it, serve's 405 with
 *   Allow as nginx's static module gives, the proxy's 501 (RFC 9110 §9.1: an
 *   origin that does not recognise a method SHOULD answer 501; nginx would
 *   forward it, which node's parser cannot);
 * - a request not received in time: 408 (RFC 9110 §15.5.9);
 * - anything else llhttp refuses: 400.
 */
import { InvalidRequestError } from '../errors.js';
import { overflowInRequestLine } from '../transport/head-line.js';

/** What a front answers a method llhttp does not know. */
export interface UnknownMethodAnswer {
  status: 405 | 501;
  /** The Allow field of a 405 (RFC 9110 §15.5.6: it MUST list the methods). */
  allow?: string;
}

/** The parts of a request line read from the bytes the parser failed on (for the access log). */
export interface RequestLine {
  method: string;
  target: string;
  /** HTTP/1.1 or HTTP/1.0, undefined when the line did not say (or not yet). */
  version: string | undefined;
}

export interface ParseErrorAnswer {
  status: number;
  /** Extra fields of the answer's head, [name, value, ...]. */
  fields: string[];
  /** For an unknown method: the request line, so it gets an access-log line as other refused requests do. */
  line?: RequestLine;
}

export type ParseError = Error & { code?: string; rawPacket?: Buffer; bytesParsed?: number };

const LF = 0x0a;

/** A request line with a method as nginx's parser takes one (ngx_http_parse_request_line: A-Z, "_", "-"). */
const UNKNOWN_METHOD_LINE = /^([A-Z_-]{1,64}) ([^ \r\n]*)(?: (HTTP\/\d\.\d)\r?$)?/;

/** The answer to `err`, a parse error on `conn` (its code one of llhttp's HPE_*, or node's request timeout). */
export function parseErrorAnswer(err: ParseError, conn: object, unknownMethod: UnknownMethodAnswer): ParseErrorAnswer {
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return { status: 408, fields: [] };
  const raw = err.rawPacket;
  if (raw === undefined) return { status: err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400, fields: [] };
  const at = Math.min(err.bytesParsed ?? raw.length, raw.length);
  if (err.code === 'HPE_HEADER_OVERFLOW') return { status: overflowInRequestLine(conn, raw, at) ? 414 : 431, fields: [] };
  if (err.code === 'HPE_INVALID_METHOD') {
    const line = unknownMethodLine(raw, at);
    if (line !== null) return { status: unknownMethod.status, fields: unknownMethod.allow !== undefined ? ['Allow', unknownMethod.allow] : [], line };
  }
  return { status: 400, fields: [] };
}

/**
 * The request line llhttp stopped in at byte `at` of `raw`, if its method is
 * a token nginx would take and a SP follows it; null otherwise (a lower-case
 * or otherwise malformed method is a 400 there too). The line starts after
 * the last LF before `at` (the end of the request before it on the
 * connection, or an empty line).
 */
export function unknownMethodLine(raw: Buffer, at: number): RequestLine | null {
  const start = at > 0 ? raw.lastIndexOf(LF, at - 1) + 1 : 0;
  let end = raw.indexOf(LF, start);
  if (end < 0) end = raw.length;
  const m = UNKNOWN_METHOD_LINE.exec(raw.toString('latin1', start, Math.min(end, start + 8192)));
  return m === null ? null : { method: m[1]!, target: m[2]!, version: m[3] };
}

/** A request line split as far as its shape allows: method SP target [SP version]. */
const LINE_PARTS = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) ([^ ]+)(?: (HTTP\/\d\.\d))?$/;

/**
 * The parts of `request`, a request line as received (transport/head-line.ts), for
 * the access log's method, url and proto; undefined when it does not have
 * a request line's shape (the whole text is logged as it came, nothing is
 * made up from it).
 */
export function requestLineParts(request: string | undefined): RequestLine | undefined {
  const m = request === undefined ? null : LINE_PARTS.exec(request);
  return m === null ? undefined : { method: m[1]!, target: m[2]!, version: m[3] };
}

/** Requests whose body node's parser refused while their handler had them (answerClientError, serve.ts). */
const refusedBodies = new WeakMap<object, { status: number; error: InvalidRequestError }>();

/**
 * Marks `req`, whose body `err` refused before its answer began: the client
 * gets `status` from answerClientError, and the request's own access-log
 * line says so (nginx logs "client sent invalid chunked body" requests as
 * 400), not what its handler made of the closed connection (the proxy's 499).
 */
export function refuseBody(req: object, status: number, err: ParseError): void {
  refusedBodies.set(req, { status, error: new InvalidRequestError(`${err.code ?? 'parse error'} in the body: ${err.message}`) });
}

/** The refusal of `req`'s body, when there was one (refuseBody). */
export function bodyRefusal(req: object): { status: number; error: InvalidRequestError } | undefined {
  return refusedBodies.get(req);
}

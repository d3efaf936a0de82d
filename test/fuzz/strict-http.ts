/**
 * A deliberately strict HTTP/1.1 request parser for the recording origin:
 * what a proxy forwards must be unambiguous to every parser behind it, so
 * anything RFC 9112 allows only as a recipient's leniency (bare LF, obs-fold,
 * repeated or listed Content-Length, CL with TE) counts as malformed here.
 * Incremental: feed() bytes as they arrive, get complete requests or a failure.
 */
import crypto from 'node:crypto';

export interface StrictRequest {
  method: string;
  target: string;
  version: string;
  /** [name, value] in order, names as sent. */
  fields: Array<[string, string]>;
  /** The raw head (request line through the empty line). */
  head: Buffer;
  /** "K.J" from ?fz= in the target or from X-Fz, else null. */
  marker: string | null;
}

/** The end of a request's body (streamed, never held: a proxy may forward a huge one). */
export interface StrictEnd {
  end: true;
  request: StrictRequest;
  bodyLength: number;
  /** First 16 hex digits of the body's sha256. */
  sha16: string;
  trailers: Array<[string, string]>;
}

export interface StrictFailure {
  error: string;
  /** The bytes that failed, from the start of the request. */
  raw: Buffer;
  /** Marker found anywhere in those bytes' head, for attribution. */
  marker: string | null;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** §5.5 of RFC 9110: field-value = *field-content; field-vchar = VCHAR / obs-text, with SP/HTAB inside. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const HOST = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=%]*|\[[0-9A-Fa-f:.]+\])(?::\d{0,5})?$/;
const MAX_HEAD = 128 * 1024;

/** §7.1.1 chunk-ext after the size, BWS allowed around ";" and "=". */
const CHUNK_EXT = /^(?:[ \t]*;[ \t]*[!#$%&'*+\-.^_`|~0-9A-Za-z]+(?:[ \t]*=[ \t]*(?:[!#$%&'*+\-.^_`|~0-9A-Za-z]+|"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"))?)*$/;

export function findMarker(text: string): string | null {
  // X-Fz is protected from byte mutations whole (CRLF included). A mutation can still add another
  // X-Fz line, copied from another request of the case: then the one the target's ?fz= also names
  // wins, else the first. The target's ?fz= can be extended by a byte inserted right after it, so it
  // must end there.
  const fields = [...text.matchAll(/\r\nX-Fz:[ \t]*((?:\d+|probe)\.s?\d+)\r\n/gi)].map((m) => m[1]!);
  const t = /[?&]fz=((?:\d+|probe)\.s?\d+)(?![\d.])/i.exec(text)?.[1] ?? null;
  if (fields.length === 0) return t;
  return t !== null && fields.includes(t) ? t : fields[0]!;
}

export function shortSha(b: Buffer): string {
  return crypto.createHash('sha256').update(b).digest('hex').slice(0, 16);
}

interface Body {
  req: StrictRequest;
  hash: crypto.Hash;
  length: number;
  trailers: Array<[string, string]>;
}

type State =
  | { at: 'head' }
  | { at: 'length'; body: Body; remaining: number }
  | { at: 'chunked'; body: Body; size: number | null; crlf: boolean; inTrailers: boolean };

export type StrictEvent = StrictRequest | StrictEnd | StrictFailure;

export class StrictRequestParser {
  private buf: Buffer = Buffer.alloc(0);
  /** Start of the current request in the stream (for failure reports). */
  private reqStart: Buffer[] = [];
  private state: State = { at: 'head' };
  failed = false;

  feed(chunk: Buffer): StrictEvent[] {
    const out: StrictEvent[] = [];
    if (this.failed) return out;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      const r = this.step();
      if (r === null) break;
      out.push(r);
      if ('error' in r) {
        this.failed = true;
        break;
      }
    }
    return out;
  }

  private fail(error: string): StrictFailure {
    const raw = Buffer.concat([...this.reqStart, this.buf]).subarray(0, 8192);
    return { error, raw, marker: findMarker(raw.toString('latin1')) };
  }

  private take(n: number): Buffer {
    const b = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    // Only the first bytes of a request are kept, for failure reports.
    if (this.reqStart.reduce((a, x) => a + x.length, 0) < 8192) this.reqStart.push(b.subarray(0, 8192));
    return b;
  }

  private eat(body: Body, n: number): void {
    body.hash.update(this.take(n));
    body.length += n;
  }

  /** One event, or null when more bytes are needed. */
  private step(): StrictEvent | null {
    const s = this.state;
    if (s.at === 'head') return this.head();
    if (s.at === 'length') {
      const n = Math.min(s.remaining, this.buf.length);
      if (n > 0) this.eat(s.body, n);
      s.remaining -= n;
      if (s.remaining > 0) return null;
      return this.finish(s.body);
    }
    return this.chunk(s);
  }

  private head(): StrictEvent | null {
    if (this.buf.length === 0) return null;
    const end = this.buf.indexOf('\r\n\r\n');
    const lfEnd = this.buf.indexOf('\n\n');
    if (lfEnd >= 0 && (end < 0 || lfEnd < end)) return this.fail('bare LF line end in head (RFC 9112 §2.2)');
    if (end < 0) return this.buf.length > MAX_HEAD ? this.fail('head longer than 128 KiB') : null;
    const headBuf = this.take(end + 4);
    const text = headBuf.toString('latin1', 0, end);
    const lines = text.split('\r\n');
    for (const l of lines) if (/[\r\n]/.test(l)) return this.fail('bare CR or LF in head (RFC 9112 §2.2)');
    const rl = /^(\S+) (\S+) (HTTP\/1\.[01])$/.exec(lines[0]!);
    if (!rl) return this.fail(`request-line not "method SP target SP HTTP/1.x" (RFC 9112 §3)`);
    const [, method, target, version] = rl as unknown as [string, string, string, string];
    if (!TOKEN.test(method)) return this.fail('method is not a token');
    if (!/^[\x21-\x7e]+$/.test(target)) return this.fail('request-target has non-VCHAR bytes (RFC 9112 §3.2)');
    const originForm = target.startsWith('/');
    const ok = originForm || /^https?:\/\//i.test(target) || (target === '*' && method === 'OPTIONS') || (method === 'CONNECT' && /^[^/]+:\d+$/.test(target));
    if (!ok) return this.fail(`request-target form not allowed for ${method} (RFC 9112 §3.2)`);
    const fields: Array<[string, string]> = [];
    for (const line of lines.slice(1)) {
      if (/^[ \t]/.test(line)) return this.fail('obs-fold (RFC 9112 §5.2)');
      const colon = line.indexOf(':');
      if (colon <= 0) return this.fail('field line without a name and colon');
      const name = line.slice(0, colon);
      const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
      if (!TOKEN.test(name)) return this.fail(`field name ${JSON.stringify(name)} is not a token (RFC 9112 §5.1)`);
      if (!FIELD_VALUE.test(value)) return this.fail(`field ${name} value has CTL bytes (RFC 9110 §5.5)`);
      fields.push([name, value]);
    }
    const all = (n: string): string[] => fields.filter(([k]) => k.toLowerCase() === n).map(([, v]) => v);
    const hosts = all('host');
    if (version === 'HTTP/1.1' && hosts.length !== 1) return this.fail(`${hosts.length} Host fields (RFC 9112 §3.2)`);
    if (hosts.length > 1) return this.fail('more than one Host (RFC 9112 §3.2)');
    if (hosts.length === 1 && !HOST.test(hosts[0]!)) return this.fail(`invalid Host ${JSON.stringify(hosts[0])} (RFC 9112 §3.2)`);
    const cl = all('content-length');
    const te = all('transfer-encoding');
    if (cl.length > 1) return this.fail('repeated Content-Length');
    if (cl.length === 1 && !/^\d{1,19}$/.test(cl[0]!)) return this.fail(`Content-Length ${JSON.stringify(cl[0])} (RFC 9112 §6.3)`);
    if (te.length > 0 && cl.length > 0) return this.fail('Content-Length with Transfer-Encoding (RFC 9112 §6.1)');
    if (te.length > 1 || (te.length === 1 && te[0]!.toLowerCase() !== 'chunked')) return this.fail(`Transfer-Encoding ${JSON.stringify(te)} (only one "chunked" accepted)`);
    if (te.length === 1 && version === 'HTTP/1.0') return this.fail('Transfer-Encoding in HTTP/1.0 (RFC 9112 §6.1)');
    const req: StrictRequest = { method, target, version, fields, head: headBuf, marker: findMarker(headBuf.toString('latin1')) };
    const body: Body = { req, hash: crypto.createHash('sha256'), length: 0, trailers: [] };
    if (te.length === 1) this.state = { at: 'chunked', body, size: null, crlf: false, inTrailers: false };
    else this.state = { at: 'length', body, remaining: cl.length === 1 ? Number(cl[0]) : 0 };
    // The head is reported as soon as it is complete: the body may never end.
    return req;
  }

  private chunk(s: Extract<State, { at: 'chunked' }>): StrictEvent | null {
    for (;;) {
      if (s.size !== null) {
        const n = Math.min(s.size, this.buf.length);
        if (n > 0) this.eat(s.body, n);
        s.size -= n;
        if (s.size > 0) return null;
        s.size = null;
        s.crlf = true;
      }
      if (s.crlf) {
        if (this.buf.length < 2) return null;
        if (this.take(2).toString('latin1') !== '\r\n') return this.fail('chunk-data not followed by CRLF (RFC 9112 §7.1)');
        s.crlf = false;
      }
      const eol = this.buf.indexOf('\r\n');
      const lf = this.buf.indexOf('\n');
      if (lf >= 0 && (eol < 0 || lf < eol)) return this.fail('bare LF in chunked framing');
      if (eol < 0) return this.buf.length > MAX_HEAD ? this.fail('chunk line longer than 128 KiB') : null;
      const line = this.take(eol + 2).toString('latin1', 0, eol);
      if (s.inTrailers) {
        if (line === '') return this.finish(s.body);
        const colon = line.indexOf(':');
        const name = colon > 0 ? line.slice(0, colon) : '';
        const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
        if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) return this.fail(`invalid trailer line ${JSON.stringify(line)}`);
        if (/^(content-length|transfer-encoding|host)$/i.test(name)) return this.fail(`framing field ${name} in trailers (RFC 9110 §6.5.1)`);
        s.body.trailers.push([name, value]);
        continue;
      }
      // 16 hex digits at most: a size past 2^64 cannot be meant.
      const m = /^([0-9A-Fa-f]{1,16})(.*)$/.exec(line);
      if (!m || !CHUNK_EXT.test(m[2]!)) return this.fail(`chunk-size line ${JSON.stringify(line.slice(0, 80))} (RFC 9112 §7.1)`);
      const size = parseInt(m[1]!, 16);
      if (size === 0) s.inTrailers = true;
      else s.size = size;
    }
  }

  private finish(body: Body): StrictEnd {
    this.state = { at: 'head' };
    this.reqStart = [];
    return { end: true, request: body.req, bodyLength: body.length, sha16: body.hash.digest('hex').slice(0, 16), trailers: body.trailers };
  }
}

/**
 * Splits what Aludel sent back into HTTP/1.1 responses (RFC 9112 §6.3 framing
 * from the response side): interim 1xx skipped, HEAD/204/304 without a body,
 * chunked, Content-Length, or to the close. The method of the i-th request is
 * needed for HEAD; for blindly mutated cases it is the generator's best guess.
 */

export interface Resp {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
  /** The response said Connection: close. */
  close: boolean;
}

export interface Parsed {
  responses: Resp[];
  /** Bytes after the last complete response. */
  rest: number;
  /** Not HTTP/1.x, or unframeable: the stream cannot be followed further. */
  error?: string;
  /** A 101 was seen: the rest belongs to another protocol. */
  upgraded: boolean;
}

function parseChunked(buf: Buffer, at: number): { body: Buffer; end: number } | 'incomplete' | 'error' {
  const parts: Buffer[] = [];
  let p = at;
  for (;;) {
    const eol = buf.indexOf('\r\n', p);
    if (eol < 0) return 'incomplete';
    const m = /^([0-9a-fA-F]+)/.exec(buf.toString('latin1', p, eol));
    if (!m) return 'error';
    const size = parseInt(m[1]!, 16);
    p = eol + 2;
    if (size === 0) {
      const end = buf.indexOf('\r\n\r\n', p - 2);
      return end < 0 ? 'incomplete' : { body: Buffer.concat(parts), end: end + 4 };
    }
    if (buf.length < p + size + 2) return 'incomplete';
    parts.push(buf.subarray(p, p + size));
    p += size + 2;
  }
}

export function parseResponses(buf: Buffer, methodOf: (i: number) => string | undefined, closed: boolean): Parsed {
  const responses: Resp[] = [];
  let p = 0;
  while (p < buf.length) {
    if (buf.length - p >= 5 && buf.toString('latin1', p, p + 5) !== 'HTTP/') return { responses, rest: buf.length - p, error: `not an HTTP response at byte ${p}`, upgraded: false };
    const end = buf.indexOf('\r\n\r\n', p);
    if (end < 0) break;
    const lines = buf.toString('latin1', p, end).split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]!);
    if (!m) return { responses, rest: buf.length - p, error: `bad status line ${JSON.stringify(lines[0])}`, upgraded: false };
    const status = Number(m[1]);
    const headers = new Map<string, string>();
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      if (c > 0) headers.set(l.slice(0, c).trim().toLowerCase(), l.slice(c + 1).trim());
    }
    const bodyAt = end + 4;
    if (status === 101) return { responses: [...responses, { status, headers, body: Buffer.alloc(0), close: true }], rest: 0, upgraded: true };
    if (status < 200) {
      p = bodyAt;
      continue;
    }
    const method = methodOf(responses.length);
    const close = /(^|,)\s*close\s*(,|$)/i.test(headers.get('connection') ?? '');
    let body: Buffer;
    let next: number;
    if (method === 'HEAD' || status === 204 || status === 304) {
      body = Buffer.alloc(0);
      next = bodyAt;
    } else if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) {
      const c = parseChunked(buf, bodyAt);
      if (c === 'error') return { responses, rest: buf.length - p, error: 'bad chunked response body', upgraded: false };
      if (c === 'incomplete') break;
      body = c.body;
      next = c.end;
    } else if (headers.has('content-length')) {
      const n = Number(headers.get('content-length'));
      if (!Number.isSafeInteger(n) || n < 0) return { responses, rest: buf.length - p, error: 'bad Content-Length in response', upgraded: false };
      if (buf.length < bodyAt + n) break;
      body = buf.subarray(bodyAt, bodyAt + n);
      next = bodyAt + n;
    } else {
      // Delimited by the close (RFC 9112 §6.3 item 8).
      if (!closed) break;
      body = buf.subarray(bodyAt);
      next = buf.length;
    }
    responses.push({ status, headers, body, close });
    p = next;
  }
  return { responses, rest: buf.length - p, upgraded: false };
}

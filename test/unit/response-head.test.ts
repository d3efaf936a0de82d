import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isInterim, parseResponseHead, parseResponseHeadIn, strictHead, type ResponseHead } from '../../src/http/response-head.js';
import { UpstreamResponseError } from '../../src/errors.js';

const LIMITS = { maxHeaderSize: 16 * 1024, maxHeaderCount: 100 };

function parse(text: string, method = 'GET', limits = LIMITS): ResponseHead | null {
  return parseResponseHead(Buffer.from(text, 'latin1'), limits, method);
}

function head(text: string, method = 'GET'): ResponseHead {
  const result = parse(text, method);
  assert.ok(result !== null, `incomplete: ${JSON.stringify(text)}`);
  return result;
}

function rejects(text: string, pattern: RegExp, method = 'GET', limits = LIMITS): void {
  assert.throws(
    () => parse(text, method, limits),
    (err: unknown) => err instanceof UpstreamResponseError && err.code === 'ERR_UPSTREAM_BAD_RESPONSE' && pattern.test(err.message),
    JSON.stringify(text),
  );
}

describe('parseResponseHead: valid heads', () => {
  it('parses an HTTP/1.1 head, leaving the body unconsumed', () => {
    const text = 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello';
    const h = head(text);
    assert.deepEqual(h, {
      version: '1.1',
      status: 200,
      reason: 'OK',
      headers: ['Content-Type', 'text/plain', 'Content-Length', '5'],
      headerBytes: text.length - 5,
      keepAlive: true,
      framing: { kind: 'length', length: 5 },
    });
  });

  it('parses HTTP/1.0, which is close-delimited and not kept alive by default', () => {
    const h = head('HTTP/1.0 404 Not Found\r\nServer: legacy\r\n\r\n');
    assert.equal(h.version, '1.0');
    assert.equal(h.status, 404);
    assert.equal(h.reason, 'Not Found');
    assert.deepEqual(h.framing, { kind: 'close' });
    assert.equal(h.keepAlive, false);
  });

  it('keeps an HTTP/1.0 connection alive only with Connection: keep-alive and a length', () => {
    assert.equal(head('HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n').keepAlive, true);
    assert.equal(head('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n').keepAlive, false);
    // Read-until-close framing can never be kept alive.
    assert.equal(head('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n').keepAlive, false);
  });

  it('honours Connection: close among other options, in any field', () => {
    assert.equal(head('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: foo\r\nConnection: bar , CLOSE\r\n\r\n').keepAlive, false);
    assert.equal(head('HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: foo, keep-alive\r\n\r\n').keepAlive, true);
  });

  it('accepts an empty reason with or without the SP before it', () => {
    for (const line of ['HTTP/1.1 204 ', 'HTTP/1.1 204']) {
      const h = head(`${line}\r\nX: y\r\n\r\n`);
      assert.equal(h.status, 204);
      assert.equal(h.reason, '');
      assert.deepEqual(h.headers, ['X', 'y']);
    }
  });

  it('keeps a reason with spaces, tabs and obs-text as sent', () => {
    assert.equal(head('HTTP/1.1 200 All\tgood  caf\xe9 \r\n\r\n').reason, 'All\tgood  caf\xe9 ');
  });

  it('parses a head without fields', () => {
    const h = head('HTTP/1.1 200 OK\r\n\r\n');
    assert.deepEqual(h.headers, []);
    assert.equal(h.headerBytes, 19);
  });

  it('keeps names as sent, strips OWS around values, keeps inner whitespace and repeated fields', () => {
    const h = head('HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie:b=2\r\nX-Empty:\r\nX-Pad: \t one  two \t\r\nContent-Length: 0\r\n\r\n');
    assert.deepEqual(h.headers, ['Set-Cookie', 'a=1', 'set-cookie', 'b=2', 'X-Empty', '', 'X-Pad', 'one  two', 'Content-Length', '0']);
  });

  it('accepts every tchar in names and obs-text in values', () => {
    const name = "!#$%&'*+-.^_`|~09azAZ";
    const h = head(`HTTP/1.1 200 OK\r\n${name}: \x80\xff"\\\r\nContent-Length: 0\r\n\r\n`);
    assert.deepEqual(h.headers.slice(0, 2), [name, '\x80\xff"\\']);
  });

  it('parses many headers up to the count limit', () => {
    const fields = Array.from({ length: 100 }, (_, i) => `X-H${i}: v${i}\r\n`).join('');
    const h = head(`HTTP/1.1 200 OK\r\n${fields}\r\n`);
    assert.equal(h.headers.length, 200);
    assert.equal(h.headers[198], 'X-H99');
    assert.equal(h.headers[199], 'v99');
  });

  it('collapses identical Content-Length copies into the first field', () => {
    for (const fields of ['Content-Length: 42, 42', 'Content-Length: 42\r\ncontent-length: 42', 'Content-Length: 42,42\r\nCONTENT-LENGTH: 042']) {
      const h = head(`HTTP/1.1 200 OK\r\n${fields}\r\nX: 1\r\n\r\n`);
      assert.deepEqual(h.framing, { kind: 'length', length: 42 }, fields);
      assert.deepEqual(h.headers, ['Content-Length', '42', 'X', '1'], fields);
    }
  });

  it('accepts Content-Length up to 2^53-1', () => {
    assert.deepEqual(head('HTTP/1.1 200 OK\r\nContent-Length: 9007199254740991\r\n\r\n').framing, { kind: 'length', length: Number.MAX_SAFE_INTEGER });
  });

  it('accepts a head exactly as large as maxHeaderSize', () => {
    const text = 'HTTP/1.1 200 OK\r\nX: 12345\r\n\r\n';
    const limits = { maxHeaderSize: text.length, maxHeaderCount: 10 };
    assert.equal(parse(`${text}body`, 'GET', limits)?.headerBytes, text.length);
  });

  it('reports the head length with pipelined bytes after it', () => {
    const first = 'HTTP/1.1 100 Continue\r\n\r\n';
    const h = head(`${first}HTTP/1.1 200 OK\r\n\r\n`);
    assert.equal(h.status, 100);
    assert.equal(h.headerBytes, first.length);
    assert.deepEqual(h.framing, { kind: 'none' });
  });
});

describe('parseResponseHead: incomplete heads', () => {
  it('returns null for every proper prefix of a valid head', () => {
    const text = 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX: y\r\n\r\n';
    for (let n = 0; n < text.length; n++) assert.equal(parse(text.slice(0, n)), null, JSON.stringify(text.slice(0, n)));
    assert.equal(head(text).headerBytes, text.length);
  });

  it('returns null while an incomplete head is within the size limit, and throws past it', () => {
    const limits = { maxHeaderSize: 64, maxHeaderCount: 10 };
    const start = 'HTTP/1.1 200 OK\r\nX-Long: ';
    assert.equal(parse(start + 'a'.repeat(64 - start.length), 'GET', limits), null);
    rejects(start + 'a'.repeat(65 - start.length), /larger than 64 bytes/, 'GET', limits);
  });

  it('throws for a complete head over the size limit even when it arrived at once', () => {
    const text = 'HTTP/1.1 200 OK\r\nX: 12345\r\n\r\n';
    rejects(text, /larger than 28 bytes/, 'GET', { maxHeaderSize: text.length - 1, maxHeaderCount: 10 });
  });
});

describe('parseResponseHead: framing (RFC 9112 §6.3)', () => {
  const cases: Array<[string, string, number, string, unknown]> = [
    ['HEAD response with a length', 'HEAD', 200, 'Content-Length: 100', { kind: 'none' }],
    ['HEAD response with chunked', 'HEAD', 200, 'Transfer-Encoding: chunked', { kind: 'none' }],
    ['103 Early Hints', 'GET', 103, 'Link: </a>', { kind: 'none' }],
    ['101 Switching Protocols', 'GET', 101, 'Upgrade: websocket', { kind: 'none' }],
    ['204 with a stray length', 'GET', 204, 'Content-Length: 10', { kind: 'none' }],
    ['304 with the length of the selected representation', 'GET', 304, 'Content-Length: 10', { kind: 'none' }],
    ['chunked', 'GET', 200, 'Transfer-Encoding: chunked', { kind: 'chunked' }],
    ['chunked, case-insensitive, after another coding', 'POST', 200, 'Transfer-Encoding: gzip, CHUNKED', { kind: 'chunked' }],
    ['chunked final across two fields', 'GET', 200, 'Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked', { kind: 'chunked' }],
    ['empty list elements ignored', 'GET', 200, 'Transfer-Encoding: , chunked ,', { kind: 'chunked' }],
    ['chunked not final: read until close', 'GET', 200, 'Transfer-Encoding: chunked, gzip', { kind: 'close' }],
    ['no chunked at all: read until close', 'GET', 200, 'Transfer-Encoding: gzip', { kind: 'close' }],
    ['Content-Length', 'GET', 500, 'Content-Length: 0', { kind: 'length', length: 0 }],
    ['nothing: read until close', 'GET', 200, 'X: y', { kind: 'close' }],
  ];
  for (const [title, method, status, fields, framing] of cases) {
    it(title, () => {
      assert.deepEqual(head(`HTTP/1.1 ${status} X\r\n${fields}\r\n\r\n`, method).framing, framing);
    });
  }

  it('is never kept alive when read until close', () => {
    assert.equal(head('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n').keepAlive, false);
    assert.equal(head('HTTP/1.1 200 OK\r\n\r\n').keepAlive, false);
    assert.equal(head('HTTP/1.1 304 Not Modified\r\n\r\n').keepAlive, true);
  });
});

describe('parseResponseHead: rejections', () => {
  const cases: Array<[string, string, RegExp]> = [
    ['bare LF endings', 'HTTP/1.1 200 OK\nContent-Length: 0\n\n', /bare LF/],
    ['a bare LF after one CRLF line', 'HTTP/1.1 200 OK\r\nX: y\n\r\n', /bare LF/],
    ['a bare CR inside a value', 'HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n', /control byte 0xd/],
    ['NUL in a value', 'HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n', /control byte 0x0/],
    ['DEL in a value', 'HTTP/1.1 200 OK\r\nX: a\x7fb\r\n\r\n', /control byte 0x7f/],
    ['a control byte in the reason', 'HTTP/1.1 200 O\x01K\r\n\r\n', /reason phrase/],
    ['a lowercase protocol name', 'http/1.1 200 OK\r\n\r\n', /status line/],
    ['HTTP/2.0', 'HTTP/2.0 200 OK\r\n\r\n', /status line/],
    ['HTTP/1.2', 'HTTP/1.2 200 OK\r\n\r\n', /unsupported version HTTP\/1\.2/],
    ['HTTP/0.9 style garbage', '<html>hello</html>\r\n\r\n', /status line/],
    ['an empty first line', '\r\nHTTP/1.1 200 OK\r\n\r\n', /status line/],
    ['two spaces after the version', 'HTTP/1.1  200 OK\r\n\r\n', /three digits/],
    ['a two-digit status', 'HTTP/1.1 20 OK\r\n\r\n', /status line|three digits/],
    ['a four-digit status', 'HTTP/1.1 2000 OK\r\n\r\n', /three digits followed by SP/],
    ['a status below 100', 'HTTP/1.1 099 Odd\r\n\r\n', /outside 100\.\.599/],
    ['a status above 599', 'HTTP/1.1 600 Odd\r\n\r\n', /outside 100\.\.599/],
    ['whitespace before the colon', 'HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello', /whitespace between header field name "Content-Length" and the colon/],
    ['a tab before the colon', 'HTTP/1.1 200 OK\r\nTransfer-Encoding\t: chunked\r\n\r\n', /whitespace between/],
    ['obs-fold', 'HTTP/1.1 200 OK\r\nX: a\r\n  b\r\n\r\n', /obsolete line folding/],
    ['whitespace after the status line', 'HTTP/1.1 200 OK\r\n X: a\r\n\r\n', /obsolete line folding/],
    ['a line without a colon', 'HTTP/1.1 200 OK\r\nno colon here\r\n\r\n', /not "<token>: <value>"/],
    ['an empty field name', 'HTTP/1.1 200 OK\r\n: value\r\n\r\n', /not "<token>: <value>"/],
    ['a non-token byte in a name', 'HTTP/1.1 200 OK\r\nX(y): z\r\n\r\n', /not "<token>: <value>"/],
    ['Transfer-Encoding with Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n', /both Transfer-Encoding and Content-Length/],
    ['Transfer-Encoding in HTTP/1.0', 'HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', /HTTP\/1\.0/],
    ['chunked twice', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n', /chunked applied twice/],
    ['an empty Transfer-Encoding', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n', /empty Transfer-Encoding/],
    ['a non-token coding', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: "chunked"\r\n\r\n', /not a list of codings/],
    ['differing Content-Length fields', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n', /conflicting Content-Length values 5 and 6/],
    ['a differing Content-Length list', 'HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n', /conflicting/],
    ['a signed Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n', /not a decimal number/],
    ['a hex Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n', /not a decimal number/],
    ['a fractional Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length: 5.0\r\n\r\n', /not a decimal number/],
    ['an empty Content-Length', 'HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n', /empty value/],
    ['an empty Content-Length list element', 'HTTP/1.1 200 OK\r\nContent-Length: 5,,5\r\n\r\n', /empty value/],
    ['a Content-Length of 2^53', 'HTTP/1.1 200 OK\r\nContent-Length: 9007199254740992\r\n\r\n', /exceeds 2\^53-1/],
    ['a huge Content-Length', `HTTP/1.1 200 OK\r\nContent-Length: ${'9'.repeat(400)}\r\n\r\n`, /exceeds 2\^53-1/],
  ];
  for (const [title, text, pattern] of cases) {
    it(title, () => rejects(text, pattern));
  }

  it('refuses Transfer-Encoding with Content-Length even where no body follows', () => {
    rejects('HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n', /both/, 'GET');
    rejects('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n', /both/, 'HEAD');
  });

  it('refuses an invalid Content-Length even where no body follows', () => {
    rejects('HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n', /not a decimal number/, 'HEAD');
    rejects('HTTP/1.1 204 No Content\r\nContent-Length: 1, 2\r\n\r\n', /conflicting/);
  });

  it('refuses more fields than maxHeaderCount', () => {
    const fields = Array.from({ length: 11 }, (_, i) => `X-${i}: v\r\n`).join('');
    rejects(`HTTP/1.1 200 OK\r\n${fields}\r\n`, /more than 10 header fields/, 'GET', { maxHeaderSize: 1024, maxHeaderCount: 10 });
  });

  it('refuses a bare LF before the head is complete, without waiting for more', () => {
    rejects('HTTP/1.1 200 OK\nX: 1', /bare LF/);
  });

  it('says what to do in its messages', () => {
    assert.throws(() => parse('HTTP/1.1 200 OK\r\nX : y\r\n\r\n'), /fix the upstream application/);
    assert.throws(
      () => parse('HTTP/1.1 200 OK\r\nX: 1234567890\r\n\r\n', 'GET', { maxHeaderSize: 20, maxHeaderCount: 10 }),
      /raise the upstream header size limit/,
    );
  });
});

describe('parseResponseHead: its quick ways answer as the strict reading', () => {
  const nginx = 'HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sun, 06 Dec 2026 22:10:00 GMT\r\nContent-Type: application/octet-stream\r\n' +
    'Content-Length: 1024\r\nLast-Modified: Sun, 06 Dec 2026 22:00:00 GMT\r\nConnection: keep-alive\r\nETag: "6574a2b0-400"\r\nAccept-Ranges: bytes\r\n\r\n';
  const heads = [
    nginx,
    'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello',
    'HTTP/1.0 404 Not Found\r\nServer: legacy\r\n\r\n',
    'HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n',
    'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: CLOSE\r\n\r\n',
    'HTTP/1.1 200 OK\r\nConnection: close\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: foo, keep-alive\r\n\r\n',
    'HTTP/1.1 204 \r\nX: y\r\n\r\n',
    'HTTP/1.1 204\r\nX: y\r\n\r\n',
    'HTTP/1.1 200 All\tgood  caf\xe9 \r\n\r\n',
    'HTTP/1.1 200 OK\r\n\r\n',
    'HTTP/1.1 200 OK\r\nX-Empty:\r\nX-Spaces: \t a b \t\r\nX-Obs: \xe9t\xe9\r\n\r\n',
    'HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n',
    'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n',
    'HTTP/1.1 200 OK\r\ncontent-length:  0012 \r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n',
    'HTTP/1.1 200 OK\r\nContent-Length: 999999999999999\r\n\r\n',
    'HTTP/1.1 100 Continue\r\n\r\n',
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n',
    'HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: "x"\r\n\r\n',
    'HTTP/1.1 599 Odd\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n',
  ];
  for (const text of heads) {
    for (const method of ['GET', 'HEAD']) {
      it(`${JSON.stringify(text.slice(0, 60))} to ${method}`, () => {
        const buf = Buffer.from(text, 'latin1');
        const strict = strictHead(buf, LIMITS, method);
        assert.deepEqual(parseResponseHead(buf, LIMITS, method), strict);
        // Again: now the last head parsed.
        assert.deepEqual(parseResponseHead(buf, LIMITS, method), strict);
      });
    }
  }

  it('gives the same bytes again the last head itself (a ResponseHead is never changed)', () => {
    const buf = Buffer.from(`${nginx}body`, 'latin1');
    const first = parseResponseHead(buf, LIMITS, 'GET')!;
    const again = parseResponseHead(Buffer.from(`${nginx}other body bytes`, 'latin1'), LIMITS, 'GET')!;
    assert.equal(again, first);
    // Not for another method, other limits or other bytes.
    assert.deepEqual(parseResponseHead(buf, LIMITS, 'HEAD')!.framing, { kind: 'none' });
    assert.deepEqual(parseResponseHead(buf, LIMITS, 'GET')!.framing, { kind: 'length', length: 1024 });
    rejects(`${nginx}body`, /more than 3 header fields/, 'GET', { maxHeaderSize: 1024, maxHeaderCount: 3 });
    assert.equal(parse(nginx.replace('22:10:00', '22:10:01'))!.headers[3], 'Sun, 06 Dec 2026 22:10:01 GMT');
    assert.equal(parse(nginx.slice(0, -2)), null);
  });
});

describe('parseResponseHeadIn', () => {
  const head = 'HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: keep-alive\r\n\r\n';
  const other = 'HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n';

  /** A reused answer room: `text` at its start, and what an earlier answer left behind it. */
  function room(text: string, leftOver: string): Buffer {
    const r = Buffer.alloc(4096, 0x78);
    r.write(text + leftOver, 'latin1');
    return r;
  }

  it('reads only the first `end` bytes: the last head\'s bytes left beyond them are not an answer', () => {
    const first = parseResponseHead(Buffer.from(`${head}body`, 'latin1'), LIMITS, 'GET')!;
    // The same head again, whole: the last head itself.
    assert.equal(parseResponseHeadIn(room(head, 'body'), head.length + 4, LIMITS, 'GET'), first);
    // Only its first 20 bytes came this time; the rest of the room still holds the last answer.
    const r = room(head, 'body');
    assert.equal(parseResponseHeadIn(r, 20, LIMITS, 'GET'), null);
    assert.equal(parseResponseHeadIn(r, head.length - 1, LIMITS, 'GET'), null);
    assert.equal(parseResponseHeadIn(r, head.length, LIMITS, 'GET'), first);
  });

  it('parses another head from its bytes alone, as parseResponseHead of a view of them', () => {
    parseResponseHead(Buffer.from(head, 'latin1'), LIMITS, 'GET');
    const r = room(other, `ok${head}`);
    assert.deepEqual(parseResponseHeadIn(r, other.length + 2, LIMITS, 'GET'), parseResponseHead(Buffer.from(`${other}ok`, 'latin1'), LIMITS, 'GET'));
    assert.equal(parseResponseHeadIn(r, other.length - 2, LIMITS, 'GET'), null);
    assert.throws(() => parseResponseHeadIn(room('HTTP/1.1 200 OK\nX: y\r\n\r\n', ''), 24, LIMITS, 'GET'), UpstreamResponseError);
  });
});

describe('isInterim', () => {
  it('is true for 1xx other than 101', () => {
    assert.deepEqual(
      [100, 101, 102, 103, 199, 200, 99].map((s) => isInterim(s)),
      [true, false, true, true, true, false, false],
    );
  });
});

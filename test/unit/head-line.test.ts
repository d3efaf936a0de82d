import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Duplex } from 'node:stream';
import { headLineAt, MAX_LINE, trackHeads, type HeadState } from '../../src/transport/head-line.js';
import { parseErrorAnswer } from '../../src/http/parse-error.js';

const B = (s: string): Buffer => Buffer.from(s, 'latin1');
const BETWEEN: HeadState = { at: 'between' };
/** The line and whether it ended, without where. */
const le = (r: { line: string | undefined; ended: boolean }): { line: string | undefined; ended: boolean } => ({ line: r.line, ended: r.ended });

describe('headLineAt: the request line of the head a byte is in, as far as it came', () => {
  it('a head that began the chunk: its first line, after any empty lines (RFC 9112 §2.2)', () => {
    const raw = 'GET /a HTTP/1.1\r\nBad field: y\r\n\r\n';
    assert.deepEqual(le(headLineAt(B(raw), raw.indexOf('Bad') + 3, BETWEEN, 1)), { line: 'GET /a HTTP/1.1', ended: true });
    assert.deepEqual(le(headLineAt(B('\r\n\r\nG\x01T /'), 5, { at: 'nothing' }, 1)), { line: 'G\x01T /', ended: false });
  });

  it('behind a head without a body in the same chunk: after its empty line', () => {
    const raw = 'GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nBad field\r\n\r\n';
    assert.deepEqual(le(headLineAt(B(raw), raw.indexOf('Bad') + 3, BETWEEN, 2)), { line: 'GET /2 HTTP/1.1', ended: true });
  });

  it('behind a Content-Length body in the same chunk: unknown, not the body\'s bytes', () => {
    const raw = 'POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab\r\nGET /2 HTTP/1.1\r\nBad field\r\n\r\n';
    assert.deepEqual(le(headLineAt(B(raw), raw.indexOf('Bad') + 3, BETWEEN, 2, true)), { line: undefined, ended: false });
    const glued = 'POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nabGET /2 HTTP/1.1\r\nBad field\r\n\r\n';
    assert.equal(headLineAt(B(glued), glued.indexOf('Bad') + 3, BETWEEN, 2, true).line, undefined);
    // The body ended in the chunk before: this chunk begins the next message.
    assert.equal(headLineAt(B('GET /3 HTTP/1.1\r\nBad\r\n'), 20, BETWEEN, 1, true).line, 'GET /3 HTTP/1.1');
  });

  it('a head begun in an earlier chunk: its line, continued while it was open', () => {
    assert.deepEqual(le(headLineAt(B('Bad field\r\n\r\n'), 3, { at: 'head', line: 'GET /s HTTP/1.1', ended: true }, 0)), { line: 'GET /s HTTP/1.1', ended: true });
    assert.deepEqual(le(headLineAt(B('b HTTP/1.1\r\nX'), 13, { at: 'head', line: 'GET /a', ended: false }, 0)), { line: 'GET /ab HTTP/1.1', ended: true });
    assert.deepEqual(le(headLineAt(B('zz'), 1, { at: 'body' }, 0)), { line: undefined, ended: true });
  });

  it('at most MAX_LINE of a line, not taken as whole', () => {
    const long = `GET /${'a'.repeat(MAX_LINE * 2)}`;
    const r = headLineAt(B(long), long.length, BETWEEN, 1);
    assert.equal(r.line!.length, MAX_LINE);
    assert.equal(r.ended, false);
    assert.deepEqual(le(headLineAt(B('more'), 4, { at: 'head', line: r.line, ended: false }, 0)), { line: r.line, ended: false });
    // Its end is still looked for past MAX_LINE: where, in the chunk it came in.
    assert.deepEqual(headLineAt(B('aa HTTP/1.1\r\nX'), 14, { at: 'head', line: r.line, ended: false }, 0), { line: r.line, ended: true, endsAt: 11 });
  });
});

describe('overflowInRequestLine: 414 or 431 for a head over --max-header-size, through node\'s own parser', () => {
  /**
   * The statuses parseErrorAnswer gives for the bytes `chunks` (each one read, as a TLS record
   * is) on a connection of a real http.Server with `maxHeaderSize`, tracked as front.ts tracks one.
   */
  function statusOf(chunks: string[], maxHeaderSize = 100): Promise<number> {
    const server = http.createServer({ maxHeaderSize }, (_req, res) => res.end('ok'));
    return new Promise((resolve) => {
      server.on('clientError', (err: Error, socket: object) => resolve(parseErrorAnswer(err, socket, { status: 501 }).status));
      const sock = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
      server.emit('connection', sock);
      trackHeads(sock as unknown as Parameters<typeof trackHeads>[0]);
      for (const c of chunks) sock.push(Buffer.from(c, 'latin1'));
    });
  }
  const long = 'a'.repeat(200);

  it('a request line over the limit: 414, whole, split anywhere, behind an earlier request', async () => {
    assert.equal(await statusOf([`GET /${long} HTTP/1.1\r\nHost: x\r\n\r\n`]), 414);
    assert.equal(await statusOf([`GET /${long}`, `${long} HTTP/1.1\r\n\r\n`]), 414);
    assert.equal(await statusOf(['GE', `T /${long}`, long]), 414);
    assert.equal(await statusOf([`GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /${long}`, long]), 414);
    assert.equal(await statusOf(['GET / HTTP/1.1\r\nHost: x\r\n\r\n', `GET /${long}`]), 414);
    // Over MAX_LINE (the part of a line kept for the log): still known to be the request line.
    assert.equal(await statusOf([`GET /${'a'.repeat(MAX_LINE + 10)}`, 'a'.repeat(100)], MAX_LINE + 50), 414);
  });

  it('a field line over the limit: 431, whole or split anywhere, also after a long request line', async () => {
    assert.equal(await statusOf([`GET / HTTP/1.1\r\nCookie: ${long}\r\n\r\n`]), 431);
    assert.equal(await statusOf(['GET / HTTP/1.1\r\nCook', `ie: ${long}`, long]), 431);
    assert.equal(await statusOf([`GET /${'a'.repeat(80)}`, ` HTTP/1.1\r\nX: ${long}\r\n\r\n`]), 431);
    // A request line longer than MAX_LINE that ended, then a field over the limit: 431.
    assert.equal(await statusOf([`GET /${'a'.repeat(MAX_LINE + 10)}`, ` HTTP/1.1\r\nX: ${'b'.repeat(MAX_LINE)}\r\n\r\n`], MAX_LINE + 200), 431);
  });
});

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { headLineAt, MAX_LINE, type HeadState } from '../../src/http/head-line.js';

const B = (s: string): Buffer => Buffer.from(s, 'latin1');
const BETWEEN: HeadState = { at: 'between' };

describe('headLineAt: the request line of the head a byte is in, as far as it came', () => {
  it('a head that began the chunk: its first line, after any empty lines (RFC 9112 §2.2)', () => {
    const raw = 'GET /a HTTP/1.1\r\nBad field: y\r\n\r\n';
    assert.deepEqual(headLineAt(B(raw), raw.indexOf('Bad') + 3, BETWEEN, 1), { line: 'GET /a HTTP/1.1', ended: true });
    assert.deepEqual(headLineAt(B('\r\n\r\nG\x01T /'), 5, { at: 'nothing' }, 1), { line: 'G\x01T /', ended: false });
  });

  it('behind a head without a body in the same chunk: after its empty line', () => {
    const raw = 'GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nBad field\r\n\r\n';
    assert.deepEqual(headLineAt(B(raw), raw.indexOf('Bad') + 3, BETWEEN, 2), { line: 'GET /2 HTTP/1.1', ended: true });
  });

  it('behind a Content-Length body in the same chunk: unknown, not the body\'s bytes', () => {
    const raw = 'POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab\r\nGET /2 HTTP/1.1\r\nBad field\r\n\r\n';
    assert.deepEqual(headLineAt(B(raw), raw.indexOf('Bad') + 3, BETWEEN, 2, true), { line: undefined, ended: false });
    const glued = 'POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nabGET /2 HTTP/1.1\r\nBad field\r\n\r\n';
    assert.equal(headLineAt(B(glued), glued.indexOf('Bad') + 3, BETWEEN, 2, true).line, undefined);
    // The body ended in the chunk before: this chunk begins the next message.
    assert.equal(headLineAt(B('GET /3 HTTP/1.1\r\nBad\r\n'), 20, BETWEEN, 1, true).line, 'GET /3 HTTP/1.1');
  });

  it('a head begun in an earlier chunk: its line, continued while it was open', () => {
    assert.deepEqual(headLineAt(B('Bad field\r\n\r\n'), 3, { at: 'head', line: 'GET /s HTTP/1.1', ended: true }, 0), { line: 'GET /s HTTP/1.1', ended: true });
    assert.deepEqual(headLineAt(B('b HTTP/1.1\r\nX'), 13, { at: 'head', line: 'GET /a', ended: false }, 0), { line: 'GET /ab HTTP/1.1', ended: true });
    assert.deepEqual(headLineAt(B('zz'), 1, { at: 'body' }, 0), { line: undefined, ended: true });
  });

  it('at most MAX_LINE of a line, not taken as whole', () => {
    const long = `GET /${'a'.repeat(MAX_LINE * 2)}`;
    const r = headLineAt(B(long), long.length, BETWEEN, 1);
    assert.equal(r.line!.length, MAX_LINE);
    assert.equal(r.ended, false);
    assert.deepEqual(headLineAt(B('more'), 4, { at: 'head', line: r.line, ended: false }, 0), { line: r.line, ended: false });
  });
});

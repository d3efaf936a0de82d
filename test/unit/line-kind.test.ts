import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { LINE_EMPTY, LINE_OTHER, LINE_REQUEST, LINE_TOKEN, lineKindAt, trackLines, type LineKind } from '../../src/http/line-kind.js';
import { parseErrorAnswer } from '../../src/http/parse-error.js';

/** The kind after feeding `chunks` one by one, as the connection's 'data' listener does. */
function after(...chunks: string[]): LineKind {
  let kind: LineKind = LINE_EMPTY;
  for (const c of chunks) kind = lineKindAt(Buffer.from(c, 'latin1'), c.length, kind);
  return kind;
}

describe('lineKindAt: which line of a head the parser is in', () => {
  it('a request line, whole or split anywhere, also behind an earlier request', () => {
    assert.equal(after('GET /aaaa'), LINE_REQUEST);
    assert.equal(after('GET /', 'aaaa', 'aaaa'), LINE_REQUEST);
    assert.equal(after('GE', 'T /a', 'aaa'), LINE_REQUEST);
    assert.equal(after('GET', ' ', 'aaa'), LINE_REQUEST);
    assert.equal(after('GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /aa', 'aaa'), LINE_REQUEST);
    assert.equal(after('GET / HTTP/1.1\r\nHost: x\r\n\r\n', 'GET /aa'), LINE_REQUEST);
    assert.equal(after('GE'), LINE_TOKEN);
  });

  it('a field line, whole or split anywhere, an obs-fold line, an empty line', () => {
    assert.equal(after('GET / HTTP/1.1\r\nCookie: a b'), LINE_OTHER);
    assert.equal(after('GET / HTTP/1.1\r\nCook', 'ie: aaaa', 'aaaa aaaa'), LINE_OTHER);
    assert.equal(after('GET / HTTP/1.1\r\nCookie:', ' aaa'), LINE_OTHER);
    assert.equal(after('GET / HTTP/1.1\r\nA: b\r\n', ' folded more'), LINE_OTHER);
    assert.equal(after('GET / HTTP/1.1\r\nA: b\r\n'), LINE_EMPTY);
    assert.equal(after(' GET /'), LINE_OTHER);
  });

  it('414 for a head over the limit in its request line, 431 in its fields (the chunk the parser failed in, and those before)', () => {
    const overflow = (conn: object, raw: string, at: number): number => parseErrorAnswer(
      Object.assign(new Error('Header overflow'), { code: 'HPE_HEADER_OVERFLOW', rawPacket: Buffer.from(raw, 'latin1'), bytesParsed: at }), conn, { status: 501 },
    ).status;
    assert.equal(overflow({}, `GET /${'a'.repeat(20)} HTTP/1.1\r\n`, 25), 414);
    assert.equal(overflow({}, `GET / HTTP/1.1\r\nX: ${'a'.repeat(20)}\r\n`, 39), 431);
    // Failed in a chunk that began inside the line (chunks are TLS records, 16 KiB at most): the chunks before decide.
    const conn = (...chunks: string[]): EventEmitter => {
      const c = Object.assign(new EventEmitter(), { parser: {} });
      trackLines(c);
      for (const chunk of chunks) c.emit('data', Buffer.from(chunk, 'latin1'));
      return c;
    };
    const long = 'a'.repeat(100);
    assert.equal(overflow(conn(`GET /${long}`), long, 100), 414);
    assert.equal(overflow(conn(`GET /${long}`, long), `${long} HTTP/1.1\r\n`, 100), 414);
    assert.equal(overflow(conn(`GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /${long}`), long, 100), 414);
    assert.equal(overflow(conn(`GET / HTTP/1.1\r\nCookie: ${long}`), long, 100), 431);
    assert.equal(overflow(conn(`GET / HTTP/1.1\r\nCookie: ${long}`, long), `${long}\r\n\r\n`, 101), 431);
    // Once node has handed the socket over (an upgrade), its bytes are not followed.
    const upgraded = conn('GET / HTTP/1.1\r\n');
    (upgraded as EventEmitter & { parser: unknown }).parser = null;
    upgraded.emit('data', Buffer.from('x'));
    assert.equal(upgraded.listenerCount('data'), 0);
  });
});

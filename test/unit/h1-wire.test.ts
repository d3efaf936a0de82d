/**
 * src/http/h1-wire.ts framedResponseHead: the last head it made is given
 * again for the same inputs, and any input that differs makes a new one, so
 * no byte of an earlier response's head is ever written for another.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { framedResponseHead, requestHead, requestHeadText, type HandlerHead } from '../../src/http/h1-wire.js';

const base: HandlerHead = {
  status: 200, reason: 'OK', method: 'GET', date: 'Mon, 01 Jan 2024 00:00:00 GMT', keepAliveSecs: 60,
  fields: ['Content-Type', 'text/plain', 'ETag', '"a"', 'Content-Length', 2],
};
const text = (h: HandlerHead): string => framedResponseHead(h).text;

describe('framedResponseHead', () => {
  it('the same inputs give the same head; each input that differs gives its own', () => {
    const first = text(base);
    assert.equal(first, 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: "a"\r\nContent-Length: 2\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\n');
    assert.equal(text({ ...base, fields: [...base.fields] }), first, 'equal fields in another list');
    const variants: Array<[Partial<HandlerHead>, RegExp]> = [
      [{ fields: ['Content-Type', 'text/plain', 'ETag', '"b"', 'Content-Length', 2] }, /ETag: "b"\r\n/],
      [{ fields: ['Content-Type', 'text/plain', 'ETag', '"a"', 'Content-Length', 3] }, /Content-Length: 3\r\n/],
      [{ fields: ['Content-Type', 'text/plain', 'ETag', '"a"'] }, /Transfer-Encoding: chunked\r\n/],
      [{ fields: ['Content-Type', 'text/plain', 'ETag', '"a"'], wholeLength: 7 }, /Content-Length: 7\r\n/],
      [{ date: 'Mon, 01 Jan 2024 00:00:01 GMT' }, /Date: Mon, 01 Jan 2024 00:00:01 GMT\r\n/],
      [{ keepAliveSecs: null }, /Connection: close\r\n\r\n$/],
      [{ keepAliveSecs: 5 }, /Keep-Alive: timeout=5\r\n/],
      [{ status: 404, reason: 'Not Found' }, /^HTTP\/1\.1 404 Not Found\r\n/],
      [{ reason: 'Fine' }, /^HTTP\/1\.1 200 Fine\r\n/],
    ];
    for (const [change, want] of variants) {
      assert.match(text({ ...base, ...change }), want, JSON.stringify(change));
      assert.equal(text(base), first, `back to the first after ${JSON.stringify(change)}`);
    }
    const head = framedResponseHead({ ...base, method: 'HEAD', fields: ['ETag', '"a"'] });
    assert.equal(head.body, false);
    assert.doesNotMatch(head.text, /Content-Length|Transfer-Encoding/, 'HEAD: no framing (RFC 9112 §6.3 rule 1)');
    assert.equal(framedResponseHead({ ...base, fields: ['ETag', '"a"'] }).chunked, true, 'the same fields for GET are chunked');
  });

  it('fixed fields first: the same head as one list of both, each fixed list its own, what either says of framing read as from one list', () => {
    const cases: Array<[Array<string | number>, Array<string | number>]> = [
      [['Content-Type', 'text/plain', 'ETag', '"a"'], ['Age', '3', 'Content-Length', 2]],
      [['Date', 'Sun, 31 Dec 2023 00:00:00 GMT', 'Connection', 'close'], ['Age', '3']],
      [['Transfer-Encoding', 'chunked'], ['Age', '3']],
      [['Transfer-Encoding', 'gzip'], ['Transfer-Encoding', 'chunked']],
      [['Connection', 'close'], ['Connection', 'keep-alive']],
      [['Content-Length', 9], []],
      [[], ['ETag', '"a"']],
    ];
    for (const [fixed, fields] of cases) {
      for (const method of ['GET', 'HEAD']) {
        const whole = framedResponseHead({ ...base, method, fields: [...fixed, ...fields] });
        const wholeCopy = { ...whole };
        const split = framedResponseHead({ ...base, method, fixed, fields });
        assert.deepEqual({ ...split }, wholeCopy, `${method} ${JSON.stringify(fixed)} then ${JSON.stringify(fields)}`);
      }
    }
    // Equal fixed lists that are not the same list are each made from their own fields; so is a list
    // given as fields after it was a fixed one.
    const one = ['ETag', '"x"'];
    const other = ['ETag', '"y"'];
    assert.match(text({ ...base, fixed: one, fields: ['Content-Length', 2] }), /ETag: "x"\r\n/);
    assert.match(text({ ...base, fixed: other, fields: ['Content-Length', 2] }), /ETag: "y"\r\n/);
    assert.match(text({ ...base, fixed: one, fields: ['Content-Length', 2] }), /ETag: "x"\r\n/);
    assert.doesNotMatch(text({ ...base, fields: ['Content-Length', 2] }), /ETag/, 'no fixed list: none of the last one\'s lines');
  });

  it('a list changed after the call does not change the head made from it', () => {
    const fields: Array<string | number> = ['ETag', '"c"', 'Content-Length', 1];
    const before = text({ ...base, fields });
    fields[1] = '"d"';
    assert.match(text({ ...base, fields }), /ETag: "d"\r\n/);
    assert.match(before, /ETag: "c"\r\n/);
  });
});

describe('requestHeadText', () => {
  it('writes the request line, Host first, the fields in order and the empty line', () => {
    assert.equal(
      requestHeadText('GET', '/a?b', 'host', 'example.com', ['Accept', '*/*', 'X-Empty', '']),
      'GET /a?b HTTP/1.1\r\nhost: example.com\r\nAccept: */*\r\nX-Empty: \r\n\r\n',
    );
  });

  it('writes an empty Host as "Host:" (RFC 9112 §3.2: no authority known)', () => {
    assert.equal(requestHeadText('OPTIONS', '*', 'Host', '', []), 'OPTIONS * HTTP/1.1\r\nHost:\r\n\r\n');
  });

  it('gives requestHead the same bytes', () => {
    assert.deepEqual(requestHead('GET', '/health', 'h:81', ['Connection', 'close']), Buffer.from('GET /health HTTP/1.1\r\nHost: h:81\r\nConnection: close\r\n\r\n', 'latin1'));
  });
});

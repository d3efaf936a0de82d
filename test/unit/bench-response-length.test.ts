import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { responseLength } from '../../bench/counted.js';

describe('bench: responseLength (request-cost.ts counts a batch done when every response is whole)', () => {
  const head = 'HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 5\r\n\r\n';
  const whole = Buffer.from(`${head}hello`, 'latin1');

  test('a whole response: its length, head and body', () => {
    assert.equal(responseLength(whole), whole.length);
  });

  test('a response cut anywhere, in its head or its body, is not whole yet', () => {
    for (let n = 0; n < whole.length; n++) assert.equal(responseLength(whole.subarray(0, n)), 0, `cut at ${n}`);
  });

  test('bytes past the response are not counted into it', () => {
    assert.equal(responseLength(Buffer.concat([whole, whole.subarray(0, 7)])), whole.length);
  });

  test('the field name in any case, the value with blanks around it', () => {
    const r = Buffer.from('HTTP/1.1 200 OK\r\ncontent-length:  2 \r\n\r\nab', 'latin1');
    assert.equal(responseLength(r), r.length);
    assert.equal(responseLength(r.subarray(0, r.length - 1)), 0);
  });

  test('a response that is not a 200 with a Content-Length throws rather than being misread as done', () => {
    assert.throws(() => responseLength(Buffer.from('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n', 'latin1')), /not a 200/);
    assert.throws(() => responseLength(Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', 'latin1')), /no Content-Length/);
    // A field whose name merely ends in content-length is not the length.
    assert.throws(() => responseLength(Buffer.from('HTTP/1.1 200 OK\r\nX-Content-Length: 3\r\n\r\nabc', 'latin1')), /no Content-Length/);
  });
});

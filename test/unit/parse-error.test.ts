import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseErrorAnswer, unknownMethodLine, type ParseError } from '../../src/http/parse-error.js';

function parseError(code: string, raw: string, at: number): ParseError {
  return Object.assign(new Error('Parse Error'), { code, rawPacket: Buffer.from(raw, 'latin1'), bytesParsed: at });
}

describe('parseErrorAnswer: the status of a request node\'s parser refused', () => {
  const serve = { status: 405, allow: 'GET, HEAD' } as const;
  const proxy = { status: 501 } as const;

  it('an unknown method nginx\'s parser would take: the front\'s answer (405 with Allow, or 501), with the request line for the access log', () => {
    const err = parseError('HPE_INVALID_METHOD', 'FOO /a?b HTTP/1.1\r\nHost: x\r\n\r\n', 1);
    assert.deepEqual(parseErrorAnswer(err, {}, serve), { status: 405, fields: ['Allow', 'GET, HEAD'], line: { method: 'FOO', target: '/a?b', version: 'HTTP/1.1' } });
    assert.deepEqual(parseErrorAnswer(err, {}, proxy), { status: 501, fields: [], line: { method: 'FOO', target: '/a?b', version: 'HTTP/1.1' } });
  });

  it('the failing request\'s line, not the one before it in the chunk (pipelining)', () => {
    const raw = 'GET / HTTP/1.1\r\nHost: x\r\n\r\nBREW-COFFEE /pot HTTP/1.0\r\n\r\n';
    assert.deepEqual(unknownMethodLine(Buffer.from(raw), raw.indexOf('BREW') + 1), { method: 'BREW-COFFEE', target: '/pot', version: 'HTTP/1.0' });
  });

  it('a method nginx refuses too is a 400: lower case, other bytes, no SP after it', () => {
    for (const raw of ['get / HTTP/1.1\r\n\r\n', 'G=T / HTTP/1.1\r\n\r\n', 'FOO\r\n\r\n', 'FOO', 'FO0 / HTTP/1.1\r\n']) {
      assert.equal(parseErrorAnswer(parseError('HPE_INVALID_METHOD', raw, 0), {}, serve).status, 400, JSON.stringify(raw));
    }
  });

  it('other parse errors: 400; node\'s request timeout: 408', () => {
    assert.equal(parseErrorAnswer(parseError('HPE_INVALID_HEADER_TOKEN', 'GET / HTTP/1.1\r\nA B: c\r\n', 18), {}, proxy).status, 400);
    assert.equal(parseErrorAnswer(Object.assign(new Error('timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), {}, proxy).status, 408);
  });
});

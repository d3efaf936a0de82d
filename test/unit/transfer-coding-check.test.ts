import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseResponseHead } from '../../src/http/response-head.js';
import { checkTransferCoding } from '../../src/proxy/upstream-exchange.js';
import { UpstreamResponseError } from '../../src/errors.js';

const LIMITS = { maxHeaderSize: 16 * 1024, maxHeaderCount: 100 };

function head(text: string) {
  const h = parseResponseHead(Buffer.from(text, 'latin1'), LIMITS, 'GET');
  assert.ok(h !== null);
  return h;
}

const CHUNKED = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';
const GZIP = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n';

// checkTransferCoding keeps the field list it last accepted: the same list again is not looked at.
describe('checkTransferCoding, the kept answer', () => {
  it('the same head bytes give the same list, accepted again', () => {
    const a = head(CHUNKED);
    checkTransferCoding(a);
    const again = head(CHUNKED);
    assert.equal(again.headers, a.headers);
    checkTransferCoding(again);
  });

  it('a head with other fields right after an accepted one is checked: refused', () => {
    checkTransferCoding(head(CHUNKED));
    assert.throws(() => checkTransferCoding(head(GZIP)), UpstreamResponseError);
    // And refused again: a refusal is never kept as accepted.
    assert.throws(() => checkTransferCoding(head(GZIP)), UpstreamResponseError);
  });

  it('another list than the accepted one is checked anew', () => {
    const a = head(CHUNKED);
    checkTransferCoding(a);
    const copy = { ...a, headers: ['Transfer-Encoding', 'gzip'] };
    assert.throws(() => checkTransferCoding(copy), UpstreamResponseError);
  });
});

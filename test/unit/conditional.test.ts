import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingHttpHeaders } from 'node:http';
import {
  evaluatePreconditions,
  mayHaveConditions,
  ifRangeAllows,
  makeEtag,
  parseEntityTags,
  parseHttpDate,
} from '../../src/http/conditional.js';

const LAST_MODIFIED = new Date('2024-03-05T10:20:30.000Z');
const LM_HTTP = 'Tue, 05 Mar 2024 10:20:30 GMT';
const ETAG = makeEtag({ size: 1234, mtimeMs: LAST_MODIFIED.getTime() + 999 });

function evaluate(headers: IncomingHttpHeaders, method = 'GET'): string {
  return evaluatePreconditions({ method, headers }, ETAG, LAST_MODIFIED);
}

describe('makeEtag', () => {
  it('uses nginx format: hex seconds, hex size', () => {
    assert.equal(makeEtag({ size: 1234, mtimeMs: 1_700_000_000_999 }), '"6553f100-4d2"');
    assert.equal(makeEtag({ size: 0, mtimeMs: 0 }), '"0-0"');
  });
});

describe('parseHttpDate', () => {
  it('accepts the three formats of §5.6.7', () => {
    const expected = Date.UTC(1994, 10, 6, 8, 49, 37);
    assert.equal(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT')?.getTime(), expected);
    assert.equal(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT')?.getTime(), expected);
    assert.equal(parseHttpDate('Sun Nov  6 08:49:37 1994')?.getTime(), expected);
  });

  it('rejects junk that Date.parse would accept', () => {
    for (const value of ['1', '2024', 'Tue, 30 Feb 2024 10:00:00 GMT', 'Tue, 05 Mar 2024 24:00:00 GMT', 'now', '']) {
      assert.equal(parseHttpDate(value), undefined, value);
    }
  });
});

describe('parseEntityTags', () => {
  it('keeps commas inside quotes and recognises weak tags', () => {
    assert.deepEqual(parseEntityTags('"a,b", W/"c" ,"d"'), [
      { weak: false, opaque: '"a,b"' },
      { weak: true, opaque: '"c"' },
      { weak: false, opaque: '"d"' },
    ]);
  });

  it('rejects malformed lists', () => {
    assert.equal(parseEntityTags('abc'), undefined);
    assert.equal(parseEntityTags('"abc'), undefined);
    assert.equal(parseEntityTags('"a""b"'), undefined);
  });
});

describe('evaluatePreconditions', () => {
  it('is ok without conditional headers', () => {
    assert.equal(evaluate({}), 'ok');
  });

  it('If-Match: strong comparison, * matches, failure is 412', () => {
    assert.equal(evaluate({ 'if-match': ETAG }), 'ok');
    assert.equal(evaluate({ 'if-match': `"x", ${ETAG}` }), 'ok');
    assert.equal(evaluate({ 'if-match': '*' }), 'ok');
    assert.equal(evaluate({ 'if-match': '"other"' }), 'precondition-failed');
    assert.equal(evaluate({ 'if-match': `W/${ETAG}` }), 'precondition-failed');
    assert.equal(evaluate({ 'if-match': 'garbage' }), 'precondition-failed');
  });

  it('If-Unmodified-Since: 412 when modified after, ignored when invalid or with If-Match', () => {
    assert.equal(evaluate({ 'if-unmodified-since': LM_HTTP }), 'ok');
    assert.equal(evaluate({ 'if-unmodified-since': 'Tue, 05 Mar 2024 10:20:29 GMT' }), 'precondition-failed');
    assert.equal(evaluate({ 'if-unmodified-since': 'yesterday' }), 'ok');
    assert.equal(
      evaluate({ 'if-match': ETAG, 'if-unmodified-since': 'Tue, 05 Mar 2024 10:20:29 GMT' }),
      'ok',
    );
  });

  it('If-None-Match: weak comparison, 304 for GET/HEAD, 412 otherwise', () => {
    assert.equal(evaluate({ 'if-none-match': ETAG }), 'not-modified');
    assert.equal(evaluate({ 'if-none-match': `W/${ETAG}` }), 'not-modified');
    assert.equal(evaluate({ 'if-none-match': `"a", ${ETAG}` }, 'HEAD'), 'not-modified');
    assert.equal(evaluate({ 'if-none-match': '*' }), 'not-modified');
    assert.equal(evaluate({ 'if-none-match': '"other"' }), 'ok');
    assert.equal(evaluate({ 'if-none-match': ETAG }, 'POST'), 'precondition-failed');
    assert.equal(evaluate({ 'if-none-match': 'garbage' }), 'ok');
  });

  it('If-Modified-Since: only without If-None-Match, only for GET/HEAD, 1 s resolution', () => {
    assert.equal(evaluate({ 'if-modified-since': LM_HTTP }), 'not-modified');
    assert.equal(evaluate({ 'if-modified-since': 'Tue, 05 Mar 2024 10:20:31 GMT' }), 'not-modified');
    assert.equal(evaluate({ 'if-modified-since': 'Tue, 05 Mar 2024 10:20:29 GMT' }), 'ok');
    assert.equal(evaluate({ 'if-modified-since': 'not a date' }), 'ok');
    assert.equal(evaluate({ 'if-modified-since': LM_HTTP }, 'POST'), 'ok');
    assert.equal(evaluate({ 'if-none-match': '"other"', 'if-modified-since': LM_HTTP }), 'ok');
    // Sub-second mtime must not make the file look newer than its own Last-Modified.
    const precise = new Date(LAST_MODIFIED.getTime() + 750);
    assert.equal(
      evaluatePreconditions({ method: 'GET', headers: { 'if-modified-since': LM_HTTP } }, ETAG, precise),
      'not-modified',
    );
  });

  it('If-Match failure wins over If-None-Match', () => {
    assert.equal(evaluate({ 'if-match': '"other"', 'if-none-match': ETAG }), 'precondition-failed');
  });
});

describe('ifRangeAllows', () => {
  it('allows when absent', () => {
    assert.equal(ifRangeAllows(undefined, ETAG, LAST_MODIFIED), true);
  });

  it('needs a strong etag match', () => {
    assert.equal(ifRangeAllows(ETAG, ETAG, LAST_MODIFIED), true);
    assert.equal(ifRangeAllows('"other"', ETAG, LAST_MODIFIED), false);
    assert.equal(ifRangeAllows(`W/${ETAG}`, ETAG, LAST_MODIFIED), false);
  });

  it('needs an exact date match', () => {
    assert.equal(ifRangeAllows(LM_HTTP, ETAG, LAST_MODIFIED), true);
    assert.equal(ifRangeAllows('Tue, 05 Mar 2024 10:20:31 GMT', ETAG, LAST_MODIFIED), false);
    assert.equal(ifRangeAllows('Tue, 05 Mar 2024 10:20:29 GMT', ETAG, LAST_MODIFIED), false);
    assert.equal(ifRangeAllows('garbage', ETAG, LAST_MODIFIED), false);
  });
});

describe('mayHaveConditions', () => {
  it('is true for any field that may be a precondition or a Range, in any case; false only when none can be', () => {
    for (const name of ['If-None-Match', 'if-match', 'IF-MODIFIED-SINCE', 'If-Unmodified-Since', 'If-Range', 'Range', 'range']) {
      assert.equal(mayHaveConditions(['Host', 'a', name, 'x']), true, name);
    }
    // Over-approximate: a name that merely starts like one is looked at the full way.
    assert.equal(mayHaveConditions(['Referer', 'https://a/']), true);
    assert.equal(mayHaveConditions(['Host', 'a', 'User-Agent', 'h2load', 'Accept', '*/*']), false);
    assert.equal(mayHaveConditions([':method', 'GET', ':path', '/', ':authority', 'a']), false);
    assert.equal(mayHaveConditions([]), false);
  });
});

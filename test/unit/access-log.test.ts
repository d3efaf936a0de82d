import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { combinedLine, requestId, timeLocal, type AccessFields } from '../../src/log/access-log.js';

const base: AccessFields = {
  id: 'abc', conn: 1, client: '192.0.2.7:51234', method: 'GET', url: '/a?b=1', host: 'h', userAgent: 'curl/8.0', referer: undefined,
  status: 200, bytes: 1234, ms: 12.5, upstream: 'http://127.0.0.1:8080', upstreamMs: 10,
};

describe('access log', () => {
  it('writes nginx combined plus request time, upstream, upstream header time and id', () => {
    const line = combinedLine(base, new Date(2026, 11, 3, 20, 15, 2));
    assert.match(line, /^192\.0\.2\.7 - - \[03\/Dec\/2026:20:15:02 [+-]\d{4}\] "GET \/a\?b=1 HTTP\/1\.1" 200 1234 "-" "curl\/8\.0" rt=0\.013 ua=http:\/\/127\.0\.0\.1:8080 uht=0\.010 id=abc$/);
  });

  it('gives IPv6 clients without the port, and "-" for what is missing', () => {
    const line = combinedLine({ ...base, client: '::1:443', upstream: undefined, upstreamMs: undefined, userAgent: undefined }, new Date());
    assert.match(line, /^::1 - - \[/);
    assert.match(line, /"-" "-" rt=0\.013 ua=- uht=- id=abc$/);
  });

  it('escapes quotes, backslashes and control bytes from the client, so a line cannot be forged', () => {
    const line = combinedLine({ ...base, userAgent: 'x" 200 "\\\n', url: '/\x01' }, new Date());
    assert.ok(!line.includes('\n'));
    assert.match(line, /"GET \/\\x01 HTTP\/1\.1"/);
    assert.match(line, /"x\\x22 200 \\x22\\x5C\\x0A"/);
  });

  it('a request refused at the parse stage: its request line as it came, escaped; "-" when none came', () => {
    const refused = { ...base, method: undefined, url: undefined, proto: undefined, request: 'G\x1bT /\x7f\xff HTTP/1.1' };
    assert.match(combinedLine(refused, new Date()), /"G\\x1BT \/\\x7F\\xFF HTTP\/1\.1" /);
    assert.match(combinedLine({ ...refused, request: undefined }, new Date()), / "-" /);
  });

  it('a char past 0xFF (not one byte) goes as its UTF-8 bytes, \\xHH each; DEL and C1 controls are escaped', () => {
    const line = combinedLine({ ...base, userAgent: '\u2028\u{1F600}\x7f\x9b' }, new Date());
    assert.match(line, /"\\xE2\\x80\\xA8\\xF0\\x9F\\x98\\x80\\x7F\\x9B"/);
    assert.doesNotMatch(line, /[^\x20-\x7e]/);
  });

  it('formats $time_local with the zone offset', () => {
    assert.match(timeLocal(new Date(2026, 0, 5, 1, 2, 3)), /^05\/Jan\/2026:01:02:03 [+-]\d{4}$/);
  });

  it('request ids are unique in a process', () => {
    const ids = new Set(Array.from({ length: 1000 }, () => requestId()));
    assert.equal(ids.size, 1000);
  });
});

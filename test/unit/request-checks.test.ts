import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isValidHost, missingHost, requestProblem } from '../../src/http/request-checks.js';

describe('request checks (RFC 9112 §3.2, §3.2.4)', () => {
  it('accepts names, IPv4, IPv6 literals, ports and the empty Host', () => {
    for (const h of ['example.com', 'a.b-c_d~e', 'example.com:8443', '127.0.0.1', '127.0.0.1:80', '[::1]', '[2001:db8::1]:443', 'xn--bcher-kva.example', 'a%20b', 'host:']) {
      assert.equal(isValidHost(h), true, h);
    }
    assert.equal(requestProblem('GET', '/', ['Host', '']), null);
  });

  it('refuses userinfo, paths, spaces, bad literals and bad ports', () => {
    for (const h of ['localhost:99999999', 'a:65536', 'a@b', 'a/b', 'a b', '[::1', '[zz::1]', 'a:80x', 'a:b:c', 'a?b', 'a#b', '%zz', '"a"', 'a\\b']) {
      assert.equal(isValidHost(h), false, h);
    }
    assert.match(requestProblem('GET', '/', ['Host', 'a@b'])!, /invalid Host "a@b"/);
  });

  it('the remembered last valid Host never lets an invalid one through, before or after it', () => {
    assert.equal(isValidHost('example.com:8443'), true);
    assert.equal(isValidHost('example.com:8443'), true, 'the same again (remembered)');
    assert.equal(isValidHost('example.com:84430'), false, 'a longer invalid one after it');
    assert.equal(isValidHost('a@b'), false);
    assert.equal(isValidHost('example.com:8443'), true, 'still valid after invalid ones');
    assert.equal(isValidHost(''), true, 'the empty Host');
    assert.equal(isValidHost('a b'), false, 'an invalid one after the empty Host');
    for (let i = 0; i < 3; i++) assert.match(requestProblem('GET', '/', ['Host', 'a@b'])!, /invalid Host/, `refused every time (${i})`);
  });

  it('the remembered Host is compared byte for byte, also as slices of a head (V8 sliced strings, 13 characters and more)', () => {
    const head = 'Host: localhost:43819\r\nHost: localhost:4381@\r\nHost: localhost:43819\r\n';
    const [valid, oneByteOff, again] = [head.slice(6, 21), head.slice(29, 44), head.slice(52, 67)];
    assert.equal(valid.length, oneByteOff.length);
    assert.equal(isValidHost(valid), true);
    assert.equal(isValidHost(oneByteOff), false, 'of the same length, its last byte not allowed');
    assert.equal(isValidHost(again), true, 'an equal value of another head');
    assert.equal(isValidHost('localhost:4381'), true, 'a prefix of the remembered one');
    assert.equal(isValidHost('@localhost:4381'), false, 'one that holds the remembered one');
  });

  it('a method of anything but upper-case letters, "_" and "-" is a 400 (RFC 9110 §9.1, as nginx parses methods)', () => {
    for (const m of ['GET', 'HEAD', 'POST', 'PROPFIND', 'M-SEARCH', 'FOO_BAR']) assert.equal(requestProblem(m, '/', ['Host', 'a']), null, m);
    for (const m of ['get', 'Get', 'gET', 'G1', 'G.T', '']) assert.match(requestProblem(m, '/', ['Host', 'a'])!, /is not upper-case letters/, JSON.stringify(m));
  });

  it('more than one Host is a 400, whatever the values', () => {
    assert.match(requestProblem('GET', '/', ['Host', 'a', 'host', 'a'])!, /more than one Host/);
  });

  it('a Transfer-Encoding must end in chunked (RFC 9112 §6.3 item 4), checked before a proxy forwards the head', () => {
    for (const te of ['chunked', 'Chunked', 'gzip, chunked', ' chunked ']) assert.equal(requestProblem('POST', '/', ['Host', 'a', 'Transfer-Encoding', te]), null, te);
    assert.equal(requestProblem('POST', '/', ['Host', 'a', 'Transfer-Encoding', 'gzip', 'transfer-encoding', 'chunked']), null, 'listed over two lines');
    for (const te of ['xchunked', 'identity', 'chunked, gzip', 'chunked;q=1', '"chunked"', '']) {
      assert.match(requestProblem('POST', '/', ['Host', 'a', 'Transfer-Encoding', te])!, /Transfer-Encoding ending in/, JSON.stringify(te));
    }
    assert.match(requestProblem('POST', '/', ['Host', 'a', 'Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'x'])!, /ending in "x"/, 'a second line naming another coding');
  });

  it('a request-target must be in one of the forms of §3.2', () => {
    for (const t of ['/', '/a?b', 'http://example.com/x', 'HTTPS://a:1/', '*']) assert.equal(requestProblem('OPTIONS', t, ['Host', 'a']), null, t);
    for (const t of ['*"XTTP/1.1', 'abc', '*x', '..', '1http://a/']) assert.match(requestProblem('GET', t, ['Host', 'a'])!, /in no form/, t);
  });

  it('asterisk-form only with OPTIONS', () => {
    assert.equal(requestProblem('OPTIONS', '*', ['Host', 'a']), null);
    assert.match(requestProblem('GET', '*', ['Host', 'a'])!, /asterisk-form/);
  });

  it('HTTP/1.1 (and a higher 1.x) without Host is refused; HTTP/1.0 and HTTP/2 are not asked for one; an empty Host is one', () => {
    assert.match(missingHost(1, 1, ['Accept', '*/*'])!, /HTTP\/1\.1 request without Host/);
    assert.match(missingHost(1, 2, [])!, /without Host/);
    assert.equal(missingHost(1, 1, ['HOST', 'a']), null);
    assert.equal(missingHost(1, 1, ['Host', '']), null);
    assert.equal(missingHost(1, 0, []), null);
    assert.equal(missingHost(2, 0, [':authority', 'a']), null);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isValidHost, requestProblem } from '../../src/http/request-checks.js';

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

  it('more than one Host is a 400, whatever the values', () => {
    assert.match(requestProblem('GET', '/', ['Host', 'a', 'host', 'a'])!, /more than one Host/);
  });

  it('asterisk-form only with OPTIONS', () => {
    assert.equal(requestProblem('OPTIONS', '*', ['Host', 'a']), null);
    assert.match(requestProblem('GET', '*', ['Host', 'a'])!, /asterisk-form/);
  });
});

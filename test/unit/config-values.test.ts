import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDuration, parseSize } from '../../src/config/duration.js';
import { parseListen } from '../../src/config/listen-address.js';
import { InvalidOptionError } from '../../src/errors.js';
import { alpnWire } from '../../src/tls/policy.js';

test('listen addresses, nginx style', () => {
  assert.deepEqual(parseListen('127.0.0.1:8443'), { host: '127.0.0.1', port: 8443 });
  assert.deepEqual(parseListen('[::1]:443'), { host: '::1', port: 443 });
  assert.deepEqual(parseListen(':8443'), { host: '0.0.0.0', port: 8443 });
  assert.deepEqual(parseListen('8443'), { host: '0.0.0.0', port: 8443 });
  assert.deepEqual(parseListen('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  for (const bad of ['localhost:8443', '127.0.0.1:70000', '1.2.3:80', 'nonsense', '[::1]', '']) {
    assert.throws(() => parseListen(bad), (e: unknown) => e instanceof InvalidOptionError && e.message.includes('--listen'), bad);
  }
});

test('durations and sizes', () => {
  assert.equal(parseDuration('--t', '500ms'), 500);
  assert.equal(parseDuration('--t', '10s'), 10_000);
  assert.equal(parseDuration('--t', '2m'), 120_000);
  assert.equal(parseDuration('--t', '1.5'), 1500);
  assert.throws(() => parseDuration('--idle-timeout', '10 parsecs'), /--idle-timeout/);
  assert.equal(parseSize('--s', '16k'), 16384);
  assert.equal(parseSize('--s', '1MiB'), 1048576);
  assert.equal(parseSize('--s', '10GiB'), 10 * 1024 ** 3);
  assert.equal(parseSize('--s', '2g'), 2 * 1024 ** 3);
  assert.equal(parseSize('--s', '100'), 100);
  assert.throws(() => parseSize('--max-header-size', 'big'), /--max-header-size/);
});

test('ALPN wire format (RFC 7301 3.1): length-prefixed names', () => {
  assert.deepEqual(alpnWire(['h2', 'http/1.1']), Buffer.from('\x02h2\x08http/1.1', 'latin1'));
  assert.throws(() => alpnWire(['']), RangeError);
  assert.throws(() => alpnWire(['x'.repeat(256)]), RangeError);
});

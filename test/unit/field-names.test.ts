/**
 * src/text/field-names.ts: lowerName, the lowercase of any name, kept or not;
 * isFieldName and its bytes form isFieldNameAt, one rule for both.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isFieldName, isFieldNameAt, lowerName } from '../../src/text/field-names.js';

describe('lowerName', () => {
  it('is toLowerCase of every name, the first time, again, and past the names it keeps', () => {
    for (let round = 0; round < 2; round++) {
      for (const n of ['Host', 'host', 'HOST', 'Content-Length', 'X-Forwarded-For', 'accept']) assert.equal(lowerName(n), n.toLowerCase());
    }
    for (let i = 0; i < 600; i++) {
      const n = `X-Name-${i}-AbC`;
      assert.equal(lowerName(n), n.toLowerCase());
      assert.equal(lowerName(n), n.toLowerCase());
    }
    assert.equal(lowerName('User-Agent'), 'user-agent');
  });
});

describe('isFieldName and isFieldNameAt', () => {
  const lowers = ['keep-alive', 'host', 'content-length', 'te', 'x_~^|`a9'];
  /** The rule, written out: a-z in either case, anything else only itself. */
  const expected = (c: number, want: number): boolean => c === want || (want >= 0x61 && want <= 0x7a && c === want - 0x20);

  it('agree with each other and the rule for every byte value at every position', () => {
    for (const lower of lowers) {
      for (let i = 0; i < lower.length; i++) {
        for (let c = 0; c < 256; c++) {
          const name = lower.slice(0, i) + String.fromCharCode(c) + lower.slice(i + 1);
          const bytes = Buffer.concat([Buffer.from('ab'), Buffer.from(name, 'latin1'), Buffer.from('yz')]);
          const want = expected(c, lower.charCodeAt(i));
          assert.equal(isFieldName(name, lower), want, `${JSON.stringify(name)} against ${lower}`);
          assert.equal(isFieldNameAt(bytes, 2, 2 + name.length, lower), want, `bytes ${JSON.stringify(name)} against ${lower}`);
        }
      }
    }
  });

  it('take every casing of a name, and no other length', () => {
    for (const lower of lowers) {
      const upper = lower.toUpperCase();
      for (const name of [lower, upper, [...lower].map((ch, i) => i % 2 === 0 ? ch.toUpperCase() : ch).join('')]) {
        const bytes = Buffer.from(name, 'latin1');
        assert.equal(isFieldName(name, lower), true, name);
        assert.equal(isFieldNameAt(bytes, 0, bytes.length, lower), true, name);
      }
      for (const name of [lower.slice(1), `${lower}a`, '']) {
        const bytes = Buffer.from(`${name}!!`, 'latin1');
        assert.equal(isFieldName(name, lower), false, name);
        assert.equal(isFieldNameAt(bytes, 0, name.length, lower), false, name);
      }
    }
  });
});

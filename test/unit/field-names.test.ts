/** src/text/field-names.ts lowerName: the lowercase of any name, kept or not. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { lowerName } from '../../src/text/field-names.js';

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

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { utcDate, wallNow } from '../../src/http/wall-clock.js';

describe('wallNow and utcDate (http/wall-clock.ts)', () => {
  it('wallNow reads as Date.now does, to the ms, on successive calls across a rebase', async () => {
    for (let i = 0; i < 30; i++) {
      const before = Date.now();
      const now = wallNow();
      const after = Date.now();
      // The reading carried forward is whole ms, as Date.now's: within a ms of the calls around it.
      assert.ok(Number.isInteger(now), `${now} is whole ms`);
      assert.ok(now >= before - 1 && now <= after + 1, `${before} <= ${now} <= ${after}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  it('utcDate is the current second\'s IMF-fixdate, and the next second\'s once it comes (the text is kept per second)', async () => {
    const seen = new Set<string>();
    const start = Date.now();
    // Over a second boundary: the text kept for one second is not given for the next.
    while (Date.now() < start + 1500) {
      const before = Date.now();
      const text = utcDate();
      const after = Date.now();
      const expected = [new Date(before - 1).toUTCString(), new Date(after + 1).toUTCString()];
      assert.ok(expected.includes(text), `${text} is one of ${expected.join(', ')}`);
      assert.match(text, /^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$/);
      seen.add(text);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(seen.size >= 2, `the text changed with the second: ${[...seen].join(', ')}`);
  });
});

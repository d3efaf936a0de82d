/**
 * test/support/loopback-port.ts: acceptsWithin waits for a server that binds
 * after it said it listens (pebble), where a single connect would be refused.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { accepts, acceptsWithin, freePort } from '../support/loopback-port.js';

test('acceptsWithin: a port that starts listening 300 ms later is found; accepts() alone says no at first', async () => {
  const port = await freePort();
  assert.equal(await accepts(port, 200), false, 'nothing listens yet');
  const server = net.createServer((c) => c.destroy());
  const later = setTimeout(() => server.listen(port, '127.0.0.1'), 300);
  try {
    assert.equal(await acceptsWithin(port, 5_000), true);
  } finally {
    clearTimeout(later);
    server.close();
  }
});

test('acceptsWithin: gives up at the deadline, or at once when the server is gone', async () => {
  const port = await freePort();
  const t0 = Date.now();
  assert.equal(await acceptsWithin(port, 300), false);
  assert.ok(Date.now() - t0 >= 300);
  const t1 = Date.now();
  assert.equal(await acceptsWithin(port, 5_000, () => false), false);
  assert.ok(Date.now() - t1 < 1_000);
});

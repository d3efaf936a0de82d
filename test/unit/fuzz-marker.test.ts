/** The fuzz checker's attribution of a request that reached the origin to the case request it came from. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { findMarker } from '../fuzz/strict-http.js';

test("a marker: X-Fz, else the target's fz= (ending there); with two X-Fz lines, the one the target also names", () => {
  assert.equal(findMarker('GET /a?fz=3.1 HTTP/1.1\r\nHost: x\r\nX-Fz: 3.1\r\n\r\n'), '3.1');
  assert.equal(findMarker('GET /a?fz=3.1 HTTP/1.1\r\nHost: x\r\n\r\n'), '3.1');
  assert.equal(findMarker('GET /a?fz=3.12x HTTP/1.1\r\nHost: x\r\n\r\n'), '3.12');
  assert.equal(findMarker('GET /a?fz=3.1.7 HTTP/1.1\r\nHost: x\r\n\r\n'), null, 'an fz= that a mutation extended names nothing');
  // A mutation copied another request's X-Fz line in front of this one's (the long run's false findings).
  assert.equal(findMarker('GET /a?fz=3.2 HTTP/1.1\r\nX-Fz: 3.1\r\nHost: x\r\nX-Fz: 3.2\r\n\r\n'), '3.2');
  assert.equal(findMarker('GET /a HTTP/1.1\r\nX-Fz: 3.1\r\nX-Fz: 3.2\r\n\r\n'), '3.1', 'no target marker: the first');
  assert.equal(findMarker('GET /a HTTP/1.1\r\nHost: x\r\n\r\n'), null);
});

/**
 * `aludel proxy`'s plain keep-alive GETs and HEADs go through the lane
 * (src/http/h1-lane.ts), not node's http.Server: what the client gets must
 * be byte for byte what node's server wrote for the same upstream answer.
 * Each upstream answer is fetched twice, on two connections: once by a
 * request the lane takes, once by the same request with a field given twice
 * (which the lane hands to node's server), each followed by a pipelined
 * "Connection: close" request that node's server answers and closes after.
 * Only the Date aludel generates may differ (the time it was written).
 *
 * The answers cover what the proxy's response writer does to a response:
 * the upstream's reason phrase and Date kept, a chunked body re-framed
 * (node adds Transfer-Encoding: chunked, RFC 9112 §7.1), 204 and 304 without
 * framing (RFC 9110 §6.4.1), HEAD, 103 Early Hints and 102 forwarded (RFC
 * 8297, RFC 2518), a body past the copy path's 64 KiB, and a 502 of
 * aludel's own that closes the connection.
 *
 * And a regression the lane made certain: a HEAD answered with a body (an
 * upstream's error) left those bytes in the pooled upstream connection.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { rawTls } from '../support/raw-http.js';
import { proxyOnRawOrigin } from '../support/raw-origin-proxy.js';

const BIG = 'b'.repeat(100 * 1024);

/** The origin's raw answer to each target; /gone closes the connection without one. */
const ANSWERS: Record<string, string> = {
  '/len': 'HTTP/1.1 200 Fine Thanks\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 2\r\nX-A: 1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nok',
  '/chunked': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n',
  '/no-content': 'HTTP/1.1 204 No Content\r\nX-B: 2\r\n\r\n',
  '/not-modified': 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\nContent-Length: 7\r\n\r\n',
  '/hints': 'HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi',
  '/processing': 'HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\npr',
  '/big': `HTTP/1.1 200 OK\r\nContent-Length: ${BIG.length}\r\n\r\n${BIG}`,
  '/close-delimited': 'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end',
};

const setup = proxyOnRawOrigin((sock, target) => {
  if (target === '/gone') sock.destroy();
  else if (target === '/close-delimited') sock.end(ANSWERS[target]!, 'latin1');
  else sock.write(ANSWERS[target] ?? ANSWERS['/len']!, 'latin1');
});

/** What the client got on one connection: `method target` (lane-shaped, or with a repeated field for node's server), then a closing GET. */
async function exchange(method: string, target: string, viaNode: boolean): Promise<string> {
  const extra = viaNode ? 'X-Twice: 1\r\nX-Twice: 2\r\n' : '';
  const raw = await rawTls(setup.p.port, setup.fx.certPem, `${method} ${target} HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n${extra}\r\nGET /len HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  // The Date aludel writes is the time of writing; the origin's own (1 Jan 2024) stays as it is.
  return raw.toString('latin1').replace(/\r\nDate: (?!Mon, 01 Jan 2024)[^\r]*/g, '\r\nDate: (now)');
}

describe('aludel proxy: an upstream\'s bytes past its answer', () => {
  test('a body sent to HEAD (RFC 9110 §9.3.2) is not read as the answer to the next request on that upstream connection', async () => {
    // The lane takes the GET in the same turn the HEAD's answer ended: it got the pooled upstream
    // connection with the HEAD's stray "ok" still in it, read that as its answer and sent a 502.
    const raw = await rawTls(setup.p.port, setup.fx.certPem, 'HEAD /len HTTP/1.1\r\nHost: x\r\n\r\nGET /len HTTP/1.1\r\nHost: x\r\n\r\nGET /len HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const statuses = [...raw.toString('latin1').matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    assert.deepEqual(statuses, ['200', '200', '200']);
    assert.ok(raw.toString('latin1').endsWith('\r\n\r\nok'));
  });
});

describe('aludel proxy: the lane answers as node\'s server', () => {
  for (const [method, target] of [
    ['GET', '/len'], ['HEAD', '/len'], ['GET', '/chunked'], ['HEAD', '/chunked'], ['GET', '/no-content'], ['GET', '/not-modified'],
    ['GET', '/hints'], ['GET', '/processing'], ['GET', '/big'], ['GET', '/close-delimited'], ['GET', '/gone'],
  ] as const) {
    test(`${method} ${target}: the same bytes as node's server wrote`, async () => {
      const lane = await exchange(method, target, false);
      const node = await exchange(method, target, true);
      assert.equal(lane, node);
      // The closing request behind was answered too, except after a response that closed the connection.
      if (target !== '/gone') assert.match(lane, /HTTP\/1\.1 200 Fine Thanks\r\n[^]*Connection: close\r\n\r\nok$/);
    });
  }
});

/**
 * The lane's wait between keep-alive requests (h1-lane.ts onTimeout): the
 * advertised timeout (--idle-timeout, `Keep-Alive: timeout=N`) and node's 1 s
 * buffer after it (HTTP_SERVER_KEEP_ALIVE_TIMEOUT_BUFFER), so that a client
 * which closes at the advertised timeout closes first. A request that comes
 * in that last second is answered on the same connection, as node's server
 * answers it.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import tls from 'node:tls';
import { serveArgs, startAludel } from '../support/aludel-process.js';
import { makeFixtures, type StandardFixtures } from '../support/fixtures.js';

let fx: StandardFixtures;
before(async () => {
  fx = await makeFixtures();
});
after(() => fx?.cleanup());

test('a keep-alive request sent past --idle-timeout but within its 1 s buffer is answered on the same connection, and the connection closes after the next wait (userspace TLS)', async () => {
  const server = await startAludel(serveArgs(fx, '--offload', 'userspace', '--idle-timeout', '1s'));
  try {
    const sock = tls.connect({ host: '127.0.0.1', port: server.port, servername: 'localhost', ca: fx.certPem });
    let received = '';
    let closedAt = 0;
    sock.on('data', (c: Buffer) => (received += c.toString('latin1')));
    const closed = new Promise<void>((resolve) => sock.once('close', () => { closedAt = performance.now(); resolve(); }));
    sock.on('error', () => undefined);
    await new Promise<void>((resolve) => sock.once('secureConnect', () => resolve()));
    const answers = (): number => received.split('HTTP/1.1 200 ').length - 1;
    const answered = async (n: number): Promise<void> => {
      const deadline = performance.now() + 5000;
      while (answers() < n && performance.now() < deadline && closedAt === 0) await new Promise((r) => setTimeout(r, 5));
      assert.equal(answers(), n, `answer ${n} came on the same connection (closed: ${closedAt !== 0})`);
    };
    sock.write(`GET /${fx.files.one.name} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    await answered(1);
    assert.match(received, /\r\nKeep-Alive: timeout=1\r\n/i);
    // Halfway into the buffer: the idle timeout (1 s) has fired, the connection is still open.
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(closedAt, 0, 'open 1.5 s after the answer (1 s timeout and its 1 s buffer)');
    sock.write(`GET /${fx.files.one.name} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    await answered(2);
    const lastAnswerAt = performance.now();
    await Promise.race([closed, new Promise((r) => setTimeout(r, 6000))]);
    assert.ok(closedAt !== 0, 'the idle connection was closed');
    const idle = closedAt - lastAnswerAt;
    assert.ok(idle >= 1900 && idle < 4000, `closed ${Math.round(idle)} ms after the last answer`);
  } finally {
    await server.stop();
  }
});

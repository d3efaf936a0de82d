/**
 * The proxy takes a small answer's body with its head into the upstream
 * connection's own buffer (answerRoom, src/proxy/upstream-exchange.ts) and
 * lends it to the lane's end() without a copy. The buffer goes back to the
 * connection only when the lane copied the body out at once (bodyCopied);
 * when the client does not read, the lane's connection holds the body until
 * written, and the connection must read its next answers elsewhere. Lent
 * wrongly, a later answer on the same upstream connection overwrites a body
 * still waiting to be written: the client gets another response's bytes.
 */
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { describe, test } from 'node:test';
import { proxyOnRawOrigin } from '../support/raw-origin-proxy.js';

/**
 * With the origin's head (41 bytes) just within the answer room (16 KiB), so
 * each answer comes whole with its head; with the lane's longer head, more
 * than one TLS record (16 KiB): the lane's end() cannot write head and body
 * at once (ktls-connection.ts writeWhole) and gives the body to its
 * connection's stream, which holds it while the client does not read.
 */
const SIZE = 16 * 1024 - 60;
const COUNT = 1500;

function bodyOf(i: number): string {
  return String.fromCharCode(0x41 + (i % 26)).repeat(SIZE);
}

const setup = proxyOnRawOrigin((sock, target) => {
  const i = Number(target.slice(3));
  sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${SIZE}\r\n\r\n${bodyOf(i)}`, 'latin1');
});

/** Pipelined GETs of /r/<i> for each i in `ids` on one connection, the last closing it; `held`: not read until it resolves. */
function pipelined(ids: number[], held: Promise<void> | null): Promise<string> {
  const requests = ids.map((i, n) => `GET /r/${i} HTTP/1.1\r\nHost: x\r\n${n === ids.length - 1 ? 'Connection: close\r\n' : ''}\r\n`).join('');
  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = tls.connect({ host: '127.0.0.1', port: setup.p.port, servername: 'localhost', ca: setup.fx.certPem }, () => {
      sock.write(requests);
      if (held !== null) {
        sock.pause();
        void held.then(() => sock.resume());
      }
    });
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    sock.on('error', reject);
  });
}

function assertBodies(text: string, ids: number[]): void {
  const bodies = text.split(/HTTP\/1\.1 200 OK\r\n[^]*?\r\n\r\n/).slice(1);
  assert.equal(bodies.length, ids.length);
  ids.forEach((id, n) => {
    const want = bodyOf(id);
    const got = bodies[n]!;
    let at = 0;
    while (at < want.length && got[at] === want[at]) at++;
    assert.ok(got === want, `answer ${n} (/r/${id}, ${got.length} bytes): ${JSON.stringify(got.slice(at, at + 8))} at byte ${at}, not ${JSON.stringify(want.slice(at, at + 8))}`);
  });
}

describe('aludel proxy: bodies lent from the upstream connection\'s buffer', () => {
  test('a client that reads late gets its own bodies while another client\'s answers come on the same upstream connections', async () => {
    // The first client does not read: the proxy's writes to it back up, and its lane connection
    // holds bodies until written. Meanwhile the second client's answers come through the pooled
    // upstream connections the first client's answers came on.
    let release!: () => void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    const late = Array.from({ length: COUNT }, (_, i) => i);
    const other = Array.from({ length: 200 }, (_, i) => 1000 + 13 * i);
    const lateText = pipelined(late, held);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const otherText = await pipelined(other, null);
    release();
    assertBodies(otherText, other);
    assertBodies(await lateText, late);
  });
});

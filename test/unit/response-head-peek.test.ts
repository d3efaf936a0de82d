/**
 * peekResponseHead (src/proxy/upstream-exchange.ts) against a fake upstream
 * socket: MSG_PEEK looks, recv takes. The head is taken exactly; a small
 * body the response writer will copy anyway comes along in the same recv
 * when it is there (TakeWithHead), and otherwise stays in the socket for
 * splice. One peek buffer serves every socket, so a head must be parsed in
 * the turn its bytes were peeked.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AGAIN } from '../../src/native/binding.js';
import { peekResponseHead, peekWholeHead } from '../../src/proxy/upstream-exchange.js';
import type { PlainSocket } from '../../src/transport/plain-socket.js';
import type { ResponseHead } from '../../src/http/response-head.js';

const LIMITS = { maxHeaderSize: 16 * 1024, maxHeaderCount: 100 };

/** A socket whose bytes arrive in the given parts, one more part each time readable() is awaited. */
class FakeSocket {
  private data: Buffer = Buffer.alloc(0);
  taken = 0;
  recvs = 0;
  /** readable() calls, and peeks that found nothing (a recv saying EAGAIN). */
  waits = 0;
  agains = 0;
  constructor(private readonly parts: Buffer[], private readonly onReadable: () => Promise<void> = () => Promise.resolve()) {
    this.data = parts.shift() ?? Buffer.alloc(0);
  }

  peekSome(buf: Buffer, length: number): number {
    const waiting = this.data.length - this.taken;
    if (waiting === 0) {
      this.agains++;
      return AGAIN;
    }
    this.recvs++;
    return this.data.copy(buf, 0, this.taken, this.taken + Math.min(length, waiting));
  }

  skip(n: number): void {
    assert.ok(n >= 0 && n <= this.data.length - this.taken, `skip ${n} of ${this.data.length - this.taken} waiting`);
    if (n > 0) this.recvs++;
    this.taken += n;
  }

  /** Level-triggered, as the poll is: at once while bytes are waiting, else once the next part has come. */
  async readable(): Promise<void> {
    this.waits++;
    if (this.data.length > this.taken) return;
    assert.ok(this.parts.length > 0, 'readable() awaited with nothing more to come');
    await this.onReadable();
    this.data = Buffer.concat([this.data, this.parts.shift()!]);
  }

  /** What is still in the socket. */
  left(): string {
    return this.data.subarray(this.taken).toString('latin1');
  }
}

function peek(sock: FakeSocket, take?: (head: ResponseHead) => number) {
  return peekResponseHead(sock as unknown as PlainSocket, 'GET', LIMITS, false, undefined, take);
}

const HEAD = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n';
const all = (head: ResponseHead): number => (head.framing.kind === 'length' ? head.framing.length : 0);

describe('peekResponseHead', () => {
  it('takes exactly the head when the writer takes no body: the body stays for splice', async () => {
    const sock = new FakeSocket([Buffer.from(`${HEAD}hello`)]);
    const { head, rest } = await peek(sock);
    assert.equal(head.status, 200);
    assert.equal(rest.length, 0);
    assert.equal(sock.left(), 'hello');
  });

  it('a small body that came with the head is taken in the same recv', async () => {
    const sock = new FakeSocket([Buffer.from(`${HEAD}hello`)]);
    const { head, rest } = await peek(sock, all);
    assert.equal(head.status, 200);
    assert.equal(rest.toString(), 'hello');
    assert.equal(sock.left(), '');
    assert.equal(sock.recvs, 2, 'one peek, one recv');
  });

  it('bytes past a body taken whole, or past a head that ends its answer, are taken with it: the rest is longer than the body', async () => {
    // A broken upstream's: left in the socket, the pooled connection gave them to the next request
    // as its answer (the pool's readiness had not reported them yet). Taken, the rest is longer
    // than the body, and the connection is not reused (relay, readBody).
    const sock = new FakeSocket([Buffer.from(`${HEAD}helloHTTP/1.1 200 OK`)]);
    const { rest } = await peek(sock, all);
    assert.equal(rest.toString(), 'helloHTTP/1.1 200 OK');
    assert.equal(sock.left(), '');
    const head = new FakeSocket([Buffer.from('HTTP/1.1 204 No Content\r\n\r\nstray')]);
    const answer = await peek(head, all);
    assert.equal(answer.head.status, 204);
    assert.equal(answer.rest.toString(), 'stray');
    // Without a writer's say (an upgrade's head), nothing past the head is taken.
    const upgrade = new FakeSocket([Buffer.from('HTTP/1.1 204 No Content\r\n\r\nstray')]);
    assert.equal((await peek(upgrade)).rest.length, 0);
    assert.equal(upgrade.left(), 'stray');
  });

  it('only the part of the body that is there is taken; the rest stays', async () => {
    const sock = new FakeSocket([Buffer.from(`${HEAD}he`), Buffer.from('llo')]);
    const { rest } = await peek(sock, all);
    assert.equal(rest.toString(), 'he');
    assert.equal(sock.left(), '');
  });

  it('a head in pieces, an interim response before it, then the body', async () => {
    const sock = new FakeSocket([Buffer.from('HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nConte'), Buffer.from('nt-Length: 5\r\n\r\nhello')]);
    const interim: number[] = [];
    const { head, rest } = await peekResponseHead(sock as unknown as PlainSocket, 'GET', LIMITS, false, (h) => interim.push(h.status), all);
    assert.deepEqual(interim, [103]);
    assert.equal(head.status, 200);
    assert.equal(rest.toString(), 'hello');
    assert.equal(sock.left(), '');
  });

  it('two sockets waiting at once: each head is parsed from its own bytes (one shared peek buffer)', async () => {
    // Both become readable in the same turn; each one's bytes are peeked and parsed before the other's peek.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const a = new FakeSocket([Buffer.alloc(0), Buffer.from('HTTP/1.1 200 A\r\nContent-Length: 1\r\n\r\na')], () => gate);
    const b = new FakeSocket([Buffer.alloc(0), Buffer.from('HTTP/1.1 404 B\r\nContent-Length: 2\r\n\r\nbb')], () => gate);
    const pa = peek(a, all);
    const pb = peek(b, all);
    release();
    const [ra, rb] = await Promise.all([pa, pb]);
    assert.equal(ra.head.reason, 'A');
    assert.equal(ra.rest.toString(), 'a');
    assert.equal(rb.head.reason, 'B');
    assert.equal(rb.rest.toString(), 'bb');
  });

  it('the first look waits for readiness: no recv that can only say EAGAIN right after the request went up', async () => {
    const sock = new FakeSocket([Buffer.alloc(0), Buffer.from(`${HEAD}hello`)]);
    const { rest } = await peek(sock, all);
    assert.equal(rest.toString(), 'hello');
    assert.equal(sock.agains, 0);
    assert.equal(sock.waits, 1);
    assert.equal(sock.recvs, 2, 'one peek, one recv');
  });

  it('an answer already there when the request went up is read after one wait (the poll reports it at once)', async () => {
    const sock = new FakeSocket([Buffer.from(`${HEAD}hello`)]);
    const { rest } = await peek(sock, all);
    assert.equal(rest.toString(), 'hello');
    assert.equal(sock.waits, 1);
    assert.equal(sock.agains, 0);
  });

  it('a head larger than --max-header-size is refused even when more bytes were peeked', async () => {
    const big = `HTTP/1.1 200 OK\r\nX: ${'a'.repeat(LIMITS.maxHeaderSize)}\r\nContent-Length: 0\r\n\r\n`;
    const sock = new FakeSocket([Buffer.from(big)]);
    await assert.rejects(peek(sock, all), /larger than 16384 bytes/);
  });

  it('a 101 to a request that asked for no upgrade is an invalid response (RFC 9110 §15.2.2); to one that did, the final answer', async () => {
    const switched = 'HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n';
    await assert.rejects(peek(new FakeSocket([Buffer.from(`${switched}${HEAD}hello`)]), all), (err: Error & { code?: string }) => err.code === 'ERR_UPSTREAM_BAD_RESPONSE' && /asked for no upgrade/.test(err.message));
    const { head } = await peekResponseHead(new FakeSocket([Buffer.from(switched)]) as unknown as PlainSocket, 'GET', LIMITS, true);
    assert.equal(head.status, 101);
  });
});

describe('peekWholeHead (the first look, in the turn readiness came)', () => {
  const whole = (sock: FakeSocket, take?: (head: ResponseHead) => number) => peekWholeHead(sock as unknown as PlainSocket, 'GET', LIMITS, take);

  it('a whole final head is taken as peekResponseHead takes it, with the body the writer allows', () => {
    const sock = new FakeSocket([Buffer.from(`${HEAD}hello`)]);
    const got = whole(sock, all);
    assert.ok(got !== null);
    assert.equal(got.head.status, 200);
    assert.equal(got.rest.toString(), 'hello');
    assert.equal(sock.left(), '');
    const spliced = new FakeSocket([Buffer.from(`${HEAD}hello`)]);
    assert.equal(whole(spliced)!.rest.length, 0);
    assert.equal(spliced.left(), 'hello');
  });

  it('the rest is a copy: a later peek into the shared buffer does not change it', () => {
    const a = whole(new FakeSocket([Buffer.from(`${HEAD}hello`)]), all)!;
    whole(new FakeSocket([Buffer.from(`${HEAD}HELLO`)]), all);
    assert.equal(a.rest.toString(), 'hello');
  });

  it('takes nothing and says null for no bytes, an incomplete head, an interim or a 101 answer: peekResponseHead then reads them as before', async () => {
    for (const first of ['', 'HTTP/1.1 200 OK\r\nConte', 'HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n']) {
      const sock = new FakeSocket([Buffer.from(first), Buffer.from(first.startsWith('HTTP/1.1 101') ? '' : `${first === 'HTTP/1.1 200 OK\r\nConte' ? 'nt-Length: 5\r\n\r\n' : HEAD}hello`)]);
      assert.equal(whole(sock, all), null, JSON.stringify(first));
      assert.equal(sock.left(), first, 'nothing taken');
      if (first.startsWith('HTTP/1.1 101')) {
        await assert.rejects(peek(sock, all), /101 Switching Protocols to a request that asked for no upgrade/);
        continue;
      }
      const { head, rest } = await peek(sock, all);
      assert.equal(head.status, 200);
      assert.equal(rest.toString(), 'hello');
    }
  });

  it('null at the FIN, and peekResponseHead then says the upstream closed', async () => {
    const sock = new FakeSocket([Buffer.alloc(0)]);
    Object.assign(sock, { peekSome: () => 0, readable: () => Promise.resolve() });
    assert.equal(whole(sock, all), null);
    await assert.rejects(peek(sock, all), /upstream closed the connection/);
  });
});

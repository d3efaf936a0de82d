/**
 * A tunnel whose upstream -> client direction goes by splice (kTLS TX, a
 * plain upstream: src/proxy/tunnel.ts) and whose upstream answers, then
 * resets (redis' "-ERR Protocol error" closed over bytes it left unread, RFC
 * 9293 §3.10.7.4). The reset can be met first by the splice out of the
 * upstream rather than by a write to it: that is still the upstream's
 * failure, and the client must get the answer and a lingering close, not a
 * destroy (whose RST over the client's unread bytes makes a client that is
 * still writing drop the answer unread). The client here is a stand-in for
 * a kTLS connection: what is spliced into it is read from the pipe.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { after, describe, it } from 'node:test';
import { loadAddon, type Native } from '../../src/native/binding.js';
import { PipePool } from '../../src/transport/pipe-pool.js';
import { PlainSocket } from '../../src/transport/plain-socket.js';
import { isUpstreamFailure, tunnel } from '../../src/proxy/tunnel.js';
import { beingClosed } from '../../src/http/front.js';
import type { SecureConnection } from '../../src/tls/types.js';
import type { UpstreamStream } from '../../src/proxy/upstream-stream.js';
import type { Logger } from '../../src/log/logger.js';

const addon = loadAddon();
const servers: net.Server[] = [];

after(() => {
  for (const s of servers) s.close();
});

/** A backend that writes `answer`, then resets the connection (no FIN: SO_LINGER 0, as a close over unread bytes). */
async function answerThenReset(answer: string): Promise<number> {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    s.write(answer, () => setTimeout(() => s.resetAndDestroy(), 50));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as net.AddressInfo).port;
}

/** The upstream side of a plain connection, as connectUpstream makes it (plain: splice out of it). */
function plainUpstream(sock: PlainSocket): UpstreamStream {
  return {
    plain: sock,
    read: () => sock.read(),
    readInto: (buf: Buffer) => sock.readInto(buf),
    write: (buf: Buffer) => sock.write(buf),
    endWrite: () => sock.endWrite(),
    destroy: (err?: Error) => sock.destroy(err),
    get destroyed() { return sock.destroyed; },
    setIdleTimeout: (ms: number, error: () => Error) => sock.setIdleTimeout(ms, error),
    isIdleAlive: () => sock.idleAlive(false),
    afterAnswer: () => sock.afterAnswer(),
  } as UpstreamStream;
}

/** A client connection with kTLS TX as the tunnel sees it: spliceFromPipe takes the bytes into `got`. A client that sends nothing yet. */
function ktlsClient(): { conn: SecureConnection; got: () => string } {
  const chunks: Buffer[] = [];
  const conn = new Duplex({ allowHalfOpen: true, read: () => undefined, write: (_c, _e, cb) => cb() }) as unknown as SecureConnection;
  Object.assign(conn, {
    id: 1,
    tls: { ktlsTx: true, ktlsRx: false },
    async spliceFromPipe(pipeRead: number, length: number): Promise<void> {
      const buf = Buffer.alloc(length);
      let off = 0;
      while (off < length) off += fs.readSync(pipeRead, buf, off, length - off, null);
      chunks.push(buf);
    },
  });
  return { conn, got: () => Buffer.concat(chunks).toString() };
}

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined, debug: () => undefined } as unknown as Logger;

describe('tunnel by splice, an upstream that answers and resets', { skip: addon instanceof Error ? 'the addon is not built' : false }, () => {
  it('the reset met by the splice is the upstream\'s failure: the client gets the answer and a lingering close, not a destroy', async () => {
    const native = addon as Native;
    const port = await answerThenReset('-ERR Protocol error\r\n');
    const sock = await PlainSocket.connect(native, { host: '127.0.0.1', port, timeoutMs: 5000, onTimeout: () => new Error('connect timeout') });
    const { conn, got } = ktlsClient();
    const err = await tunnel({ conn, upstream: plainUpstream(sock), pipes: new PipePool(native), log: quiet }).then(
      () => assert.fail('the tunnel ended cleanly over a reset'),
      (e: Error & { code?: string }) => e,
    );
    try {
      assert.equal(err.code, 'ECONNRESET', err.message);
      assert.equal(got(), '-ERR Protocol error\r\n');
      assert.ok(isUpstreamFailure(err), 'the upstream\'s failure (a warning in the tunnel\'s line), not the client\'s going');
      // Destroyed at once, the client's connection resets over its unread bytes.
      assert.equal(conn.destroyed, false, 'the client connection is not destroyed');
      assert.ok(beingClosed(conn), 'the client connection is closed with a linger');
      assert.ok(conn.writableEnded, 'our close_notify follows the answer');
    } finally {
      conn.destroy();
    }
  });
});

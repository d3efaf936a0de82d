/**
 * What an idle keep-alive connection keeps on the HTTP/1.1 front: once its
 * response is out and closed, neither the ServerResponse nor its request may
 * stay reachable (the front's request tracking held both, about 2 KiB of V8
 * heap per idle connection), and the front still counts the connection until
 * it closes. A real http.Server behind httpFront, on plain sockets over
 * loopback (the front takes any Duplex as its connection).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, test } from 'node:test';
import v8 from 'node:v8';
import vm from 'node:vm';
import { httpFront, type Front } from '../../src/http/front.js';
import type { SecureConnection } from '../../src/tls/types.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

let listener: net.Server;
let front: Front;
let port = 0;
const responses: Array<WeakRef<http.ServerResponse>> = [];
const requests: Array<WeakRef<http.IncomingMessage>> = [];

before(async () => {
  const server = http.createServer({ keepAliveTimeout: 60_000 });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    responses.push(new WeakRef(res));
    requests.push(new WeakRef(req));
    res.end('ok');
  });
  front = httpFront(server);
  listener = net.createServer((sock) => front.accept(sock as unknown as SecureConnection));
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  port = (listener.address() as net.AddressInfo).port;
});
after(() => new Promise<void>((resolve) => listener.close(() => resolve())));

/** Sends one GET on `sock` and resolves once its whole (2-byte) response is in. */
function get(sock: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    let got = '';
    const onData = (d: Buffer): void => {
      got += d.toString('latin1');
      if (/\r\n\r\nok$/.test(got)) {
        sock.off('data', onData);
        resolve();
      }
    };
    sock.on('data', onData);
    sock.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');
  });
}

/** Collects until every reference is gone (node lets go of a request a few ticks after its response). */
async function collected(refs: Array<WeakRef<object>>): Promise<boolean> {
  for (let i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 10));
    gc();
    if (refs.every((r) => r.deref() === undefined)) return true;
  }
  return false;
}

test('an idle keep-alive connection holds neither its last response nor its request', async () => {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  try {
    await get(sock);
    await get(sock);
    assert.equal(responses.length, 2);
    assert.equal(front.connections, 1, 'the connection is still open and counted');
    assert.ok(await collected(responses), 'the responses were collected while the connection idles');
    assert.ok(await collected(requests), 'the requests were collected while the connection idles');
    // Still a working keep-alive connection: the next request is answered on it.
    await get(sock);
  } finally {
    sock.destroy();
  }
  for (let i = 0; i < 100 && front.connections > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(front.connections, 0, 'the closed connection left the front');
});

/**
 * Objects that hot code reads the same fields of, per request, must share
 * one hidden class (V8's map): an inline cache that sees more than four maps
 * goes megamorphic (a stub-cache probe per read), and optimised code made for
 * one map is dropped when another comes ("wrong map"). V8 11.3 (node 20)
 * gives each object that a warmed-up object spread copies and then adds to a
 * map of its own, so these are made by literals, or once: the lane's
 * options (front.ts), the proxy's remembered upstream request
 * (copyOfUpstreamRequest), the last response head's inputs (copyOfHead),
 * the cache's entries (entryOf), whole and partial, the heads of followed
 * fills that reuse() reads (timingOf).
 * Each test fails with the spread put back.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { test } from 'node:test';
import v8 from 'node:v8';
import { copyOfUpstreamRequest, type UpstreamRequestInput } from '../../src/http/forward-headers.js';
import { copyOfHead, type HandlerHead } from '../../src/http/h1-wire.js';
import { httpFront } from '../../src/http/front.js';
import { entryOf, type StoredResponse } from '../../src/cache/store.js';
import { newExchange, type ExchangeRequest, type ExchangeResponse } from '../../src/http/exchange.js';
import { detachedExchange, type ProxyExchange } from '../../src/proxy/forward.js';
import { timingOf } from '../../src/cache/cache.js';
import type { FillHead } from '../../src/cache/fill.js';
import type { SecureConnection } from '../../src/tls/types.js';

// %HaveSameMap in a function compiled after the flag is set.
v8.setFlagsFromString('--allow-natives-syntax');
// eslint-disable-next-line @typescript-eslint/no-implied-eval
const haveSameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;

/** How many of `xs` have a map other than the first's. */
function otherMaps(xs: object[]): number {
  return xs.filter((x) => !haveSameMap(xs[0]!, x)).length;
}

// More than the first few copies: a spread's copies shared one map until its IC warmed up (8 here).
const COPIES = 40;

test('the upstream requests the proxy keeps to compare with share one map', () => {
  const copies = [];
  for (let i = 0; i < COPIES; i++) {
    const input: UpstreamRequestInput = {
      method: 'GET', url: `/f${i}`, rawHeaders: ['Host', 'a', 'Accept', `x/${i}`], clientAddress: '127.0.0.1', clientPort: 1000 + i, proto: 'https',
      trustForwarded: false, bodyFraming: 'none', contentLength: undefined, keepAlive: true,
    };
    const c = copyOfUpstreamRequest(input);
    assert.deepEqual(c.rawHeaders, input.rawHeaders);
    assert.notEqual(c.rawHeaders, input.rawHeaders, 'the field list is copied, not shared');
    copies.push(c);
  }
  assert.equal(otherMaps(copies), 0);
});

test('the response heads framedResponseHead keeps to compare with share one map', () => {
  const copies = [];
  for (let i = 0; i < COPIES; i++) {
    const h: HandlerHead = { status: 200, reason: 'OK', fields: ['Content-Type', 'text/plain'], method: 'GET', date: `Thu, 01 Jan 1970 00:00:${String(i % 60).padStart(2, '0')} GMT`, keepAliveSecs: 5, wholeLength: i };
    const c = copyOfHead(h);
    assert.deepEqual(c.fields, h.fields);
    assert.notEqual(c.fields, h.fields, 'the field list is copied, not shared');
    copies.push(c);
  }
  assert.equal(otherMaps(copies), 0);
});

test("the front makes the lane's options once, not once per connection", async () => {
  let made = 0;
  const lane = {
    // Read once per copy of the options: the count of copies made.
    get maxHeaderSize(): number {
      made++;
      return 16 * 1024;
    },
    idleTimeoutMs: 5_000, headersTimeoutMs: 5_000, silent: () => undefined, takes: () => true,
    handle: (_req: unknown, res: { setHeader(n: string, v: number): void; end(b: string): void }) => {
      res.setHeader('Content-Length', 2);
      res.end('ok');
    },
  };
  const front = httpFront(http.createServer(), lane as never);
  const listener = net.createServer((sock) => front.accept(sock as unknown as SecureConnection));
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const port = (listener.address() as net.AddressInfo).port;
  const socks: net.Socket[] = [];
  try {
    for (let i = 0; i < 12; i++) {
      const sock = net.connect(port, '127.0.0.1');
      socks.push(sock);
      const got = await new Promise<string>((resolve, reject) => {
        let text = '';
        sock.on('data', (d: Buffer) => {
          text += d.toString('latin1');
          if (text.endsWith('\r\n\r\nok')) resolve(text);
        });
        sock.on('error', reject);
        sock.write('GET / HTTP/1.1\r\nHost: a\r\n\r\n');
      });
      assert.match(got, /^HTTP\/1\.1 200 /, 'the lane answered');
    }
    assert.equal(made, 1, `12 connections: the options were copied ${made} times`);
  } finally {
    for (const s of socks) s.destroy();
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  }
});

test("the cache's entries share one map, whole and partial, however their stored fields came", () => {
  const entries = [];
  for (let i = 0; i < COPIES; i++) {
    // As commit() and load() get them: extra fields, ranges absent, or given.
    const r: StoredResponse & { v?: number } = {
      v: 1, key: `https://h/${i}`, vary: i % 3 === 0 ? { accept: 'x' } : null, status: 200, reason: 'OK', headers: ['Content-Type', 'text/plain'], length: 10 + i,
      requestTime: 1000 + i, responseTime: 1001 + i, initialAge: 0, ...(i % 4 === 1 ? { ranges: [[0, 5]] as Array<[number, number]> } : {}),
    };
    const e = entryOf(r, `${i}`.padStart(32, '0'), `/c/${i}.body`, 60, 100 + i);
    assert.equal(e.length, 10 + i);
    assert.deepEqual(e.ranges, i % 4 === 1 ? [[0, 5]] : undefined);
    assert.equal((e as { v?: number }).v, undefined, 'only the stored fields');
    entries.push(e);
  }
  assert.equal(otherMaps(entries), 0);
});

test("the heads of followed fills that reuse() reads share one map", () => {
  const timings = [];
  for (let i = 0; i < COPIES; i++) {
    // As a fill's head comes (fill.ts), vary absent or given.
    const head: FillHead = {
      key: `https://h/${i}`, vary: i % 3 === 0 ? { accept: 'x' } : null, status: 200, reason: 'OK', headers: ['Cache-Control', `max-age=${i}`],
      requestTime: 1000 + i, responseTime: 1001 + i, initialAge: i % 2,
    };
    const t = timingOf(head, 60 + i);
    assert.deepEqual([t.status, t.headers, t.lifetime, t.initialAge, t.responseTime], [200, head.headers, 60 + i, i % 2, 1001 + i]);
    timings.push(t);
  }
  assert.equal(otherMaps(timings), 0);
});

test("the cache's detached requests copy the exchange with the map of a client's exchange", () => {
  const copies: object[] = [];
  for (let i = 0; i < COPIES; i++) {
    // As http-proxy.ts proxyExchange makes a client's: newExchange, then lease and reusable.
    const req = { rawHeaders: ['Host', 'a'], socket: {}, method: 'GET', url: `/${i}` } as unknown as ExchangeRequest;
    const x = newExchange(req, {} as ExchangeResponse) as ProxyExchange;
    x.lease = null;
    x.reusable = false;
    x.bytes = 10 + i;
    x.cache = 'stale';
    const own = detachedExchange(x);
    assert.equal(own.req, x.req);
    assert.equal(own.fields, x.fields);
    assert.deepEqual([own.bytes, own.bodyPath, own.cache, own.lease, own.reusable], [0, 'none', null, null, false], 'counters and outcome of its own');
    if (i === 0) copies.push(x);
    copies.push(own);
  }
  assert.equal(otherMaps(copies), 0);
});

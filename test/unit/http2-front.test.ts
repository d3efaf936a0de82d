/**
 * The pieces of the HTTP/2 front that need no network: the rapid-reset
 * budget, the header-list size as RFC 9113 counts it, the node:http2
 * options the limits map to, ALPN lists and dispatch, the access log's
 * protocol, and the --http2 settings as every command parses them.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { resolveProxySettings, resolveServeSettings } from '../../src/cli/proxy-options.js';
import { alpnFront, httpAlpn } from '../../src/http/alpn-front.js';
import type { Front } from '../../src/http/front.js';
import { H2_FIXED, h2ServerOptions, headerListSize, ResetBudget, resetBudgetFor } from '../../src/http/h2-defences.js';
import { combinedLine, type AccessFields } from '../../src/log/access-log.js';
import type { SecureConnection } from '../../src/tls/types.js';

describe('ResetBudget (CVE-2023-44487)', () => {
  test('a burst passes, the next one fails, and time refills it at the rate', () => {
    let now = 0;
    const b = new ResetBudget(10, 5, () => now);
    for (let i = 0; i < 10; i++) assert.equal(b.spend(), true, `reset ${i + 1}`);
    assert.equal(b.spend(), false, 'the 11th at once');
    now += 1000; // 5 more
    for (let i = 0; i < 5; i++) assert.equal(b.spend(), true);
    assert.equal(b.spend(), false);
    assert.equal(b.spent, 17);
  });

  test('a client resetting now and then never runs out', () => {
    let now = 0;
    const b = new ResetBudget(4, 2, () => now);
    for (let i = 0; i < 1000; i++) {
      now += 600; // slower than 2 a second
      assert.equal(b.spend(), true, `reset ${i}`);
    }
  });

  test('the refill never exceeds the burst', () => {
    let now = 0;
    const b = new ResetBudget(3, 100, () => now);
    now += 60_000;
    for (let i = 0; i < 3; i++) assert.equal(b.spend(), true);
    assert.equal(b.spend(), false);
  });

  test('the default budget is twice the concurrent streams, at nghttp2s rate, below nghttp2s own burst of 1000', () => {
    const b = resetBudgetFor({ maxConcurrentStreams: 128, maxHeaderSize: 16384, idleTimeoutMs: 60_000 });
    assert.deepEqual(b, { burst: 256, perSecond: 33 });
    assert.ok(b.burst < 1000);
  });
});

test('headerListSize counts name + value + 32 per field (RFC 9113 §6.5.2)', () => {
  assert.equal(headerListSize([]), 0);
  assert.equal(headerListSize([':path', '/', 'x-a', 'bb']), 5 + 1 + 32 + 3 + 2 + 32);
  assert.equal(headerListSize(['x', 'é']), 1 + 2 + 32, 'octets, not characters');
});

test('h2ServerOptions: the settings sent and the limits node enforces', () => {
  const o = h2ServerOptions({ maxConcurrentStreams: 64, maxHeaderSize: 8192, idleTimeoutMs: 1000 });
  assert.equal(o.settings?.maxConcurrentStreams, 64);
  assert.equal(o.settings?.maxHeaderListSize, 8192);
  assert.equal(o.settings?.headerTableSize, 4096);
  assert.equal(o.settings?.enablePush, false);
  assert.equal(o.maxHeaderListPairs, H2_FIXED.maxHeaderListPairs);
  assert.equal(o.maxSessionMemory, 10);
  assert.equal(o.maxSettings, 32);
  assert.equal(o.maxOutstandingPings, 10);
  assert.equal((o as { maxSessionInvalidFrames?: number }).maxSessionInvalidFrames, 100);
  assert.equal((o as { maxSessionRejectedStreams?: number }).maxSessionRejectedStreams, 100);
});

describe('ALPN', () => {
  test('h2 first when on (server preference), http/1.1 alone when off', () => {
    assert.deepEqual(httpAlpn(true), ['h2', 'http/1.1']);
    assert.deepEqual(httpAlpn(false), ['http/1.1']);
  });

  test('alpnFront hands each connection to the front of its protocol, drains both, counts both', async () => {
    const seen: string[] = [];
    const drained: string[] = [];
    const front = (name: string, n: number): Front => ({
      accept: (conn) => void seen.push(`${name}:${conn.id}`),
      drain: async () => void drained.push(name),
      connections: n,
    });
    const f = alpnFront(front('h1', 2), front('h2', 3));
    const conn = (id: number, alpn: string | null): SecureConnection => ({ id, tls: { alpn } }) as unknown as SecureConnection;
    f.accept(conn(1, 'h2'));
    f.accept(conn(2, 'http/1.1'));
    f.accept(conn(3, null));
    assert.deepEqual(seen, ['h2:1', 'h1:2', 'h1:3']);
    await f.drain();
    assert.deepEqual(drained.sort(), ['h1', 'h2']);
    assert.equal(f.connections, 5);
  });
});

test('the combined access-log line names the protocol', () => {
  const f: AccessFields = { id: 'x', conn: 1, client: '127.0.0.1:5', method: 'GET', url: '/a', host: 'h', userAgent: undefined, referer: undefined, status: 200, bytes: 3, ms: 1 };
  assert.match(combinedLine({ ...f, proto: 'HTTP/2.0' }, new Date(0)), /"GET \/a HTTP\/2\.0" 200 3/);
  assert.match(combinedLine(f, new Date(0)), /"GET \/a HTTP\/1\.1" 200 3/);
});

describe('--http2 and --http2-max-concurrent-streams settings', () => {
  let dir: string;
  let cert: string;
  let key: string;
  before(async () => {
    dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-h2-settings-'));
    cert = path.join(dir, 'cert.pem');
    key = path.join(dir, 'key.pem');
    for (const f of [cert, key]) await fs.promises.writeFile(f, 'pem\n');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string): string => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, text);
    return p;
  };

  test('defaults: on, 128 streams (serve and proxy)', async () => {
    const s = await resolveServeSettings({ cert, key, root: dir });
    assert.equal(s.http2, true);
    assert.equal(s.http2MaxConcurrentStreams, 128);
    const p = await resolveProxySettings('http', { cert, key, to: ['http://127.0.0.1:8080'] });
    assert.equal(p.http2, true);
  });

  test('flags: on/off; a bad value is named with what is expected', async () => {
    assert.equal((await resolveServeSettings({ cert, key, root: dir, http2: 'off' })).http2, false);
    assert.equal((await resolveServeSettings({ cert, key, root: dir, http2: 'on', http2MaxConcurrentStreams: '16' })).http2MaxConcurrentStreams, 16);
    await assert.rejects(resolveServeSettings({ cert, key, root: dir, http2: 'maybe' }), /--http2: expected on or off/);
    await assert.rejects(resolveServeSettings({ cert, key, root: dir, http2MaxConcurrentStreams: '0' }), /--http2-max-concurrent-streams: expected a whole number of at least 1/);
    // The proxy checks it too (its HTTP/2 side is not wired: it still offers http/1.1 only).
    await assert.rejects(resolveProxySettings('http', { cert, key, to: ['http://127.0.0.1:8080'], http2: 'yes' }), /--http2: expected on or off/);
  });

  test('config files: YAML off/on and JSON booleans; flags win; tcp refuses it', async () => {
    const yaml = file('serve.yaml', `cert: cert.pem\nkey: key.pem\nroot: .\nhttp2: off\nhttp2-max-concurrent-streams: 32\n`);
    const s = await resolveServeSettings({ config: yaml });
    assert.equal(s.http2, false);
    assert.equal(s.http2MaxConcurrentStreams, 32);
    assert.equal((await resolveServeSettings({ config: yaml, http2: 'on' })).http2, true, 'the flag wins');
    const json = file('serve.json', JSON.stringify({ cert, key, root: dir, http2: false }));
    assert.equal((await resolveServeSettings({ config: json })).http2, false);
    const bad = file('bad.yaml', `cert: cert.pem\nkey: key.pem\nroot: .\nhttp2: 2\n`);
    await assert.rejects(resolveServeSettings({ config: bad }), /config .*bad\.yaml: http2: expected on or off/);
    const tcp = file('tcp.yaml', `cert: cert.pem\nkey: key.pem\nlisten: 127.0.0.1:9000\nto: 127.0.0.1:5432\nhttp2: on\n`);
    await assert.rejects(resolveProxySettings('tcp', { config: tcp }), /http2: applies to aludel proxy \(HTTP\) only/);
  });
});

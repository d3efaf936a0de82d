/**
 * traffic-stats.ts: bodies, cache outcomes and handshakes are counted in
 * plain numbers and folded into the prom-client counters when those are
 * read; every read must see every one, once.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TrafficStats } from '../../src/metrics/traffic-stats.js';
import type { SecureConnection } from '../../src/tls/types.js';

function conn(ktlsTx: boolean, ktlsRx: boolean): SecureConnection {
  return { tls: { ktlsTx, ktlsRx } } as unknown as SecureConnection;
}

describe('traffic stats', () => {
  it('bodies and their bytes, by path and crypto site, in the snapshot and the registry, read after read', async () => {
    const stats = new TrafficStats();
    stats.body(conn(false, false), 'write', 1024);
    stats.body(conn(false, false), 'write', 1024);
    stats.body(conn(true, false), 'sendfile', 5000);
    stats.body(conn(true, true), 'none', 0);
    let snap = await stats.snapshot();
    assert.deepEqual(snap.bodies, { sendfile: { bodies: 1, bytes: 5000 }, splice: { bodies: 0, bytes: 0 }, write: { bodies: 2, bytes: 2048 }, none: { bodies: 1, bytes: 0 } });
    // Counted once: a second read adds nothing, later bodies add to what is there.
    stats.body(conn(false, true), 'splice', 7);
    snap = await stats.snapshot();
    assert.deepEqual(snap.bodies, { sendfile: { bodies: 1, bytes: 5000 }, splice: { bodies: 1, bytes: 7 }, write: { bodies: 2, bytes: 2048 }, none: { bodies: 1, bytes: 0 } });
    stats.body(conn(false, false), 'write', 10);
    const text = await stats.registry.metrics();
    assert.match(text, /aludel_bodies_total\{path="write",tx="user",rx="user"\} 3\n/);
    assert.match(text, /aludel_body_bytes_total\{path="write",tx="user",rx="user"\} 2058\n/);
    assert.match(text, /aludel_body_bytes_total\{path="splice",tx="user",rx="kernel"\} 7\n/);
    assert.match(text, /aludel_bodies_total\{path="none",tx="kernel",rx="kernel"\} 1\n/);
  });

  it('cache responses and their bytes, by outcome, in the snapshot and the registry, read after read', async () => {
    const stats = new TrafficStats();
    for (let i = 0; i < 3; i++) stats.cache('hit', 1024);
    stats.cache('miss', 5);
    stats.cache('stale-if-error', 0);
    let snap = await stats.snapshot();
    assert.equal(snap.cache.responses.hit, 3);
    assert.equal(snap.cache.bytes.hit, 3072);
    assert.equal(snap.cache.responses.miss, 1);
    assert.equal(snap.cache.bytes.miss, 5);
    assert.equal(snap.cache.responses['stale-if-error'], 1);
    assert.equal(snap.cache.responses.bypass, 0);
    // Counted once: a second read adds nothing, later responses add to what is there.
    snap = await stats.snapshot();
    assert.equal(snap.cache.responses.hit, 3);
    stats.cache('hit', 1);
    const text = await stats.registry.metrics();
    assert.match(text, /aludel_cache_responses_total\{outcome="hit"\} 4\n/);
    assert.match(text, /aludel_cache_body_bytes_total\{outcome="hit"\} 3073\n/);
    assert.match(text, /aludel_cache_responses_total\{outcome="stale-if-error"\} 1\n/);
    assert.equal((await stats.snapshot()).cache.responses.hit, 4);
  });

  it('every outcome and every body path counted under its own label (bodyPathIndex, cacheOutcomeIndex)', async () => {
    const stats = new TrafficStats();
    const outcomes = ['hit', 'revalidated', 'collapsed', 'miss', 'stale', 'bypass', 'stale-while-revalidate', 'stale-if-error'] as const;
    const paths = ['sendfile', 'splice', 'write', 'none'] as const;
    // The i-th counted i + 1 times: an index given to the wrong label shows as a wrong count.
    outcomes.forEach((o, i) => { for (let n = 0; n <= i; n++) stats.cache(o, 10); });
    paths.forEach((p, i) => { for (let n = 0; n <= i; n++) stats.body(conn(false, false), p, 3); });
    const snap = await stats.snapshot();
    outcomes.forEach((o, i) => {
      assert.equal(snap.cache.responses[o], i + 1, o);
      assert.equal(snap.cache.bytes[o], 10 * (i + 1), o);
    });
    paths.forEach((p, i) => assert.deepEqual(snap.bodies[p], { bodies: i + 1, bytes: 3 * (i + 1) }, p));
    const text = await stats.registry.metrics();
    outcomes.forEach((o, i) => assert.match(text, new RegExp(`aludel_cache_responses_total\\{outcome="${o}"\\} ${i + 1}\n`)));
    paths.forEach((p, i) => assert.match(text, new RegExp(`aludel_bodies_total\\{path="${p}",tx="user",rx="user"\\} ${i + 1}\n`)));
  });

  it('handshakes by version and cipher, connections by crypto site and kernel modes, read after read', async () => {
    const stats = new TrafficStats();
    const hs = (version: string, cipher: string, ktlsTx: boolean, kernel: { txConf: string; rxConf: string } | null): SecureConnection =>
      ({ tls: { engine: 'system-openssl', version, cipher, ktlsTx, ktlsRx: false, kernel } }) as unknown as SecureConnection;
    const a = hs('TLSv1.3', 'TLS_AES_128_GCM_SHA256', false, null);
    const b = hs('TLSv1.2', 'ECDHE-ECDSA-AES128-GCM-SHA256', true, { txConf: 'sw', rxConf: 'none' });
    // Alternating, so the children kept from the last handshake are replaced and found again.
    for (const c of [a, a, b, a, b, a]) stats.handshake(c, 1.5);
    stats.handshakeFailed(Object.assign(new Error('x'), { code: 'ECONNRESET' }));
    let snap = await stats.snapshot();
    assert.deepEqual(snap.handshakes, { ok: 6, failed: 1 });
    assert.deepEqual(snap.connections, { total: 6, kernelTx: 2, kernelRx: 0 });
    // Counted once: a second read adds nothing.
    snap = await stats.snapshot();
    assert.deepEqual(snap.handshakes, { ok: 6, failed: 1 });
    stats.handshake(b, 0.5);
    const text = await stats.registry.metrics();
    assert.match(text, /aludel_handshakes_total\{version="TLSv1.3",cipher="TLS_AES_128_GCM_SHA256",result="ok"\} 4\n/);
    assert.match(text, /aludel_handshakes_total\{version="TLSv1.2",cipher="ECDHE-ECDSA-AES128-GCM-SHA256",result="ok"\} 3\n/);
    assert.match(text, /aludel_connections_total\{tx="user",rx="user"\} 4\n/);
    assert.match(text, /aludel_connections_total\{tx="kernel",rx="user"\} 3\n/);
    assert.match(text, /aludel_connections_kernel_tls_total\{tx_conf="sw",rx_conf="none"\} 3\n/);
    assert.match(text, /aludel_handshake_duration_seconds_count\{version="TLSv1.2"\} 3\n/);
    assert.deepEqual((await stats.snapshot()).handshakes, { ok: 7, failed: 1 });
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { clientCpuTable, parseH2loadRequests, parseWorkersTests, plan, sameRoundRatios, withTlsStat, workersTable, workerShares, WORKERS_TESTS, type WorkersPoint, type WorkersResult } from '../../bench/workers.js';

describe('bench --workers: h2load summary', () => {
  test('the "requests:" line gives done and succeeded (2xx/3xx) counts', () => {
    const out = ['starting benchmark...', 'finished in 512.30ms, 124.93 req/s, 150.39KB/s', 'requests: 64 total, 64 started, 62 done, 61 succeeded, 3 failed, 2 errored, 0 timeout', 'status codes: 61 2xx, 0 3xx, 1 4xx, 0 5xx', ''].join('\n');
    assert.deepEqual(parseH2loadRequests(out), { done: 62, succeeded: 61 });
  });

  test('output without the line (h2load could not connect) is refused, not read as 0 requests', () => {
    assert.throws(() => parseH2loadRequests('client could not connect to host\n'), /no "requests:" line/);
  });
});

describe('bench --workers: worker CPU split', () => {
  test('with a primary, its own CPU is left out and the workers\' shares sum to 1, largest first', () => {
    const before = new Map([[10, 1], [11, 2], [12, 2]]);
    const after = new Map([[10, 1.5], [11, 5], [12, 3]]);
    assert.deepEqual(workerShares({ pid: 10 }, before, after), [0.75, 0.25]);
  });

  test('one process is its own only worker; no CPU used gives no split', () => {
    assert.deepEqual(workerShares({ pid: 10 }, new Map([[10, 1]]), new Map([[10, 2]])), [1]);
    assert.deepEqual(workerShares({ pid: 10 }, new Map([[10, 1], [11, 1]]), new Map([[10, 1], [11, 1]])), []);
  });
});

describe('bench --workers: same-round ratios', () => {
  const point = (round: number, requestsPerSec: number): WorkersPoint => ({
    round, test: 'rps', front: 'aludel-serve', workers: 1, requests: 1, errors: 0, requestsPerSec, cpuS: 0, cpuMsPer1kRequests: null, cpuPerGB: null, workerCpuShares: [],
  });

  test('ratios pair points of the same round only; median, min and max over rounds', () => {
    const a = [point(0, 200), point(1, 300), point(2, 100)];
    const b = [point(2, 100), point(0, 100), point(1, 100)];
    assert.deepEqual(sameRoundRatios(a, b), { median: 2, min: 1, max: 3, n: 3 });
  });

  test('throughput points compare bytes per second, not requests', () => {
    const bulk = (round: number, requestsPerSec: number, bytesPerSec: number): WorkersPoint => ({ ...point(round, requestsPerSec), test: 'throughput', bytesPerSec });
    // Same requests per second, twice the bytes: the ratio follows the bytes.
    assert.deepEqual(sameRoundRatios([bulk(0, 10, 4e8)], [bulk(0, 10, 2e8)]), { median: 2, min: 2, max: 2, n: 1 });
  });

  test('a round missing on one side or a zero denominator gives no ratio', () => {
    assert.deepEqual(sameRoundRatios([point(0, 5), point(1, 5)], [point(0, 0)]), { median: null, min: null, max: null, n: 0 });
  });
});

describe('bench --workers --reuse-port: the table', () => {
  const p = (front: WorkersPoint['front'], workers: number, reusePort: boolean, round: number, requestsPerSec: number, shares: number[]): WorkersPoint => ({
    round, test: 'rps', front, workers, reusePort, requests: 1, errors: 0, requestsPerSec, cpuS: 0, cpuMsPer1kRequests: null, cpuPerGB: null, workerCpuShares: shares,
  });
  const result = (points: WorkersPoint[]): WorkersResult => ({
    mode: 'quick', offload: 'userspace', seconds: 3, idleConnections: 10, points,
    environment: { cpus: 2 } as WorkersResult['environment'],
  });

  test('a reuseport row compares with the shared socket and with nginx\'s reuseport, same round; shared rows never mix in reuseport points', () => {
    const points = [0, 1, 2].flatMap((r) => [
      p('aludel-serve', 1, false, r, 100, [1]),
      p('aludel-serve', 2, false, r, 150, [1, 0]),
      p('aludel-serve', 2, true, r, 180 + r * 30, [0.5, 0.5]),
      p('nginx-direct', 2, false, r, 300, [0.6, 0.4]),
      p('nginx-direct', 2, true, r, 360, [0.55, 0.45]),
    ]);
    const rows = workersTable(result(points)).split('\n');
    assert.match(rows[0]!, /reuseport \/ shared \|$/);
    const rp = rows.find((r) => r.startsWith('| rps | aludel-serve | 2, reuseport |'))!;
    const cells = rp.split('|').map((c) => c.trim());
    // 210/360 median vs nginx reuseport; 210/100 vs 1 worker; 210/150 vs shared.
    assert.equal(cells[7], '50 % (50 %)');
    assert.match(cells[8]!, /^0\.583 /);
    assert.match(cells[9]!, /^2\.1 /);
    assert.match(cells[10]!, /^1\.4 /);
    const shared = rows.find((r) => r.startsWith('| rps | aludel-serve | 2 |'))!.split('|').map((c) => c.trim());
    assert.equal(shared[4], '150', 'the shared row\'s median is of shared points only');
    assert.equal(shared[7], '100 % (100 %)', 'one worker took everything');
    assert.equal(shared[10], '');
  });

  test('without reuseport points there is no reuseport column', () => {
    const rows = workersTable(result([p('aludel-serve', 1, false, 0, 100, [1])])).split('\n');
    assert.doesNotMatch(rows[0]!, /reuseport/);
  });
});

describe('bench --workers --tests', () => {
  test('no option: every test; a list keeps the run order, whatever order it was given in', () => {
    assert.deepEqual(parseWorkersTests(undefined), [...WORKERS_TESTS]);
    assert.deepEqual(parseWorkersTests('handshakes-rsa'), ['handshakes-rsa']);
    assert.deepEqual(parseWorkersTests(' idle, rps ,handshakes-rsa'), ['rps', 'handshakes-rsa', 'idle']);
  });

  test('in the kTLS VM the default leaves out idle and handshakes-rsa (server starts cost minutes there); named, they run', () => {
    assert.deepEqual(parseWorkersTests(undefined, true), ['rps', 'throughput', 'handshakes']);
    assert.deepEqual(parseWorkersTests('idle,handshakes-rsa', true), ['handshakes-rsa', 'idle']);
  });

  test('an unknown or empty list is refused with the known names', () => {
    assert.throws(() => parseWorkersTests('rps,handshake'), /unknown handshake \(known with --workers: rps, throughput, handshakes, handshakes-rsa, idle\)/);
    assert.throws(() => parseWorkersTests(' , '), /no test named/);
  });
});

describe('bench --workers: the kTLS VM plan', () => {
  test('emulated points are smaller than native ones (8 rps connections, 1 MiB bulk, 16 handshake clients, RSA-2048, 200 idle connections) and longer (5 s)', () => {
    assert.deepEqual(plan(false, 3, true), { seconds: 5, rounds: 3, idleConnections: 200, connections: 8, handshakeClients: 16, bulkBytes: 1024 * 1024, rsaKey: 'rsa:2048' });
    assert.equal(plan(false, 3).rsaKey, 'rsa:4096');
    assert.equal(plan(false, 3).bulkBytes, 10 * 1024 * 1024);
    assert.equal(plan(false, 3).handshakeClients, 64);
  });
});

describe('bench --workers: kTLS proven per point', () => {
  const point: WorkersPoint = { round: 0, test: 'rps', front: 'aludel-serve', workers: 2, requests: 10, errors: 0, requestsPerSec: 5, cpuS: 1, cpuMsPer1kRequests: null, cpuPerGB: null, workerCpuShares: [] };
  const reads = (...values: Array<Record<string, number> | null>): (() => Promise<Record<string, number> | null>) => {
    let i = 0;
    return () => Promise.resolve(values[i++] ?? null);
  };

  test('a kernel point whose TlsTxSw rose keeps its deltas', async () => {
    const p = await withTlsStat('kernel', 'rps x', () => Promise.resolve(point), reads({ TlsTxSw: 3, TlsRxSw: 0 }, { TlsTxSw: 67, TlsRxSw: 0 }));
    assert.deepEqual(p.tlsStatDelta, { TlsTxSw: 64, TlsRxSw: 0 });
  });

  test('a kernel point whose TX counters did not rise is an error, not a result', async () => {
    await assert.rejects(withTlsStat('kernel', 'rps aludel-serve x2 #1', () => Promise.resolve(point), reads({ TlsTxSw: 3 }, { TlsTxSw: 3 })), /rps aludel-serve x2 #1: .*did not rise.*not run on kernel TLS/);
  });

  test('a kernel point without tls_stat is an error; a userspace one is a result either way', async () => {
    await assert.rejects(withTlsStat('kernel', 'x', () => Promise.resolve(point), reads(null, null)), /no \/proc\/net\/tls_stat/);
    assert.equal((await withTlsStat('userspace', 'x', () => Promise.resolve(point), reads(null, null))).tlsStatDelta, undefined);
    assert.deepEqual((await withTlsStat('userspace', 'x', () => Promise.resolve(point), reads({ TlsTxSw: 1 }, { TlsTxSw: 1 }))).tlsStatDelta, { TlsTxSw: 0 });
  });
});

describe('bench --workers: client/server CPU split of the handshake tests', () => {
  const hs = (test: WorkersPoint['test'], workers: number, round: number, clientCpuS: number | undefined, cpuS: number): WorkersPoint => ({
    round, test, front: 'nginx-direct', workers, requests: 1000, errors: 0, requestsPerSec: 100, cpuS, cpuMsPer1kRequests: null, cpuPerGB: null, workerCpuShares: [], ...(clientCpuS !== undefined ? { clientCpuS } : {}),
  });
  const result = (points: WorkersPoint[]): WorkersResult => ({ mode: 'quick', offload: 'userspace', seconds: 3, idleConnections: 10, points, environment: { cpus: 2 } as WorkersResult['environment'] });

  test('client CPU per 1k handshakes and its share of client + server, median over rounds, per test and workers', () => {
    const rows = clientCpuTable(result([hs('handshakes-rsa', 1, 0, 0.1, 0.9), hs('handshakes-rsa', 1, 1, 0.3, 0.7), hs('handshakes-rsa', 1, 2, 0.2, 0.8), hs('handshakes', 2, 0, 1, 1)])).split('\n');
    // Rows follow the tests' order (handshakes, then handshakes-rsa), not the points'.
    assert.deepEqual(rows.slice(2), ['| handshakes | nginx-direct | 2 | 1000 | 50 % |', '| handshakes-rsa | nginx-direct | 1 | 200 | 20 % |']);
  });

  test('no handshake point with a client CPU gives no table, and workersTable then adds none', () => {
    const r = result([hs('handshakes', 1, 0, undefined, 1)]);
    assert.equal(clientCpuTable(r), '');
    assert.doesNotMatch(workersTable(r), /client \(h2load\)/);
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sameRoundRatios, type CopyPathPoint } from '../../bench/copy-path.js';

const point = (round: number, front: string, connections: number, mbps: number, cpuPerGB: number | null): CopyPathPoint => ({ round, front, connections, bytesPerSec: mbps * 1e6, cpuS: 1, cpuPerGB, errors: 0 });

describe('bench --copy-path: same-round ratios', () => {
  test('each Aludel front over nginx-proxy of the same round and connection count; the median of those', () => {
    const points = [
      point(0, 'nginx-proxy', 8, 400, 1.5), point(0, 'aludel-proxy', 8, 200, 3), point(0, 'aludel-proxy', 1, 100, 1),
      point(1, 'aludel-proxy', 8, 400, 1.5), point(1, 'nginx-proxy', 8, 200, 3),
      point(2, 'nginx-proxy', 8, 100, 1), point(2, 'aludel-proxy', 8, 100, null),
    ];
    const r = sameRoundRatios(points, ['aludel-proxy'], [8, 1]);
    const get = (conns: number, what: string) => r.find((x) => x.connections === conns && x.what === what)!;
    assert.deepEqual(get(8, 'throughput').ratios, [0.5, 2, 1]);
    assert.equal(get(8, 'throughput').median, 1);
    // A point without CPU/GB is left out, not counted as 0.
    assert.deepEqual(get(8, 'CPU/GB').ratios, [2, 0.5]);
    // No nginx point at 1 connection: no ratio rather than a wrong one.
    assert.deepEqual(get(1, 'throughput').ratios, []);
    assert.equal(get(1, 'throughput').median, null);
  });
});

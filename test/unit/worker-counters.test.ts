/**
 * What the primary sums at a scrape (worker-counters.ts): an exited worker's
 * counters and histograms are kept once, its gauges are not, and a worker
 * that did not answer counts with its last answer.
 */
import assert from 'node:assert/strict';
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import { describe, test } from 'node:test';
import { addCounters, WorkerCounters, type Metrics } from '../../src/cli/worker-counters.js';

type Metric = MetricObjectWithValues<MetricValue<string>>;

function worker(connections: number, open: number, slow: number): Metrics {
  return [
    { name: 'conns_total', help: 'h', type: 'counter', aggregator: 'sum', values: [{ value: connections, labels: { tx: 'user', rx: 'user' } }] },
    { name: 'open', help: 'h', type: 'gauge', aggregator: 'sum', values: [{ value: open, labels: {} }] },
    {
      name: 'ms', help: 'h', type: 'histogram', aggregator: 'sum',
      values: [
        { value: connections - slow, labels: { le: 0.01 }, metricName: 'ms_bucket' },
        { value: connections, labels: { le: '+Inf' }, metricName: 'ms_bucket' },
        { value: connections, labels: {}, metricName: 'ms_count' },
      ],
    },
    { name: 'start_time', help: 'h', type: 'gauge', aggregator: 'omit', values: [{ value: 5, labels: {} }] },
  ] as unknown as Metric[];
}

async function summed(lists: Metrics[]): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const m of await AggregatorRegistry.aggregate(lists).getMetricsAsJSON()) {
    for (const v of m.values) out[`${(v as { metricName?: string }).metricName ?? m.name}${JSON.stringify(v.labels)}`] = v.value;
  }
  return out;
}

describe('worker-counters', () => {
  test('addCounters sums counters and histogram series by labels (in any order), drops gauges, changes neither input', () => {
    const a = worker(3, 1, 1);
    const b = worker(4, 2, 0);
    (b[0]!.values[0]!.labels as Record<string, string>) = { rx: 'user', tx: 'user' };
    const sum = addCounters(a, b);
    assert.deepEqual(sum.map((m) => m.name), ['conns_total', 'open', 'ms', 'start_time'], 'what `into` had stays');
    assert.equal(sum[0]!.values[0]!.value, 7);
    assert.deepEqual(sum[2]!.values.map((v) => v.value), [6, 7, 7]);
    assert.equal(a[0]!.values[0]!.value, 3, 'inputs unchanged');
    assert.deepEqual(addCounters([], b).map((m) => m.name), ['conns_total', 'ms'], 'no gauge, nothing not summed');
  });

  test('a dead worker\'s counts stay in the sum; a silent one counts with its last answer; a late answer after exit is the caller\'s to drop', async () => {
    const c = new WorkerCounters();
    c.answered(1, worker(10, 2, 1));
    c.answered(2, worker(5, 1, 0));
    assert.equal((await summed(c.toSum()))['conns_total{"tx":"user","rx":"user"}'], 15);
    c.exited(1);
    c.exited(1);
    let s = await summed(c.toSum());
    assert.equal(s['conns_total{"tx":"user","rx":"user"}'], 15, 'kept once');
    assert.equal(s['open{}'], 1, 'the dead worker\'s gauge is gone');
    assert.equal(s['ms_count{}'], 15);
    c.answered(3, worker(2, 1, 0));
    s = await summed(c.toSum());
    assert.equal(s['conns_total{"tx":"user","rx":"user"}'], 17, 'its replacement adds to it');
    c.exited(undefined);
    c.exited(99);
    assert.equal((await summed(c.toSum()))['conns_total{"tx":"user","rx":"user"}'], 17);
  });
});

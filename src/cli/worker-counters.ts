/**
 * --workers N --admin: what the primary sums at a scrape, so that a summed
 * counter never goes backwards while the primary runs. Prometheus counters
 * "can only increase or be reset to zero on restart" (prometheus.io, Metric
 * types): rate() and increase() read any decrease as a reset and count the
 * whole new value as an increase, a false spike on every dashboard. Summing
 * only the workers that answer would drop:
 * - a worker that died (kill -9, a crash) and was restarted: its replacement
 *   starts from zero. Its last answer's counters are kept ("retired") and
 *   added to every later sum, as nginx's stub_status counters live in shared
 *   memory and outlive a worker. Counts it made after the last scrape are
 *   lost (it cannot be asked any more): the sum stays monotonic, a little low.
 * - a worker that did not answer in time (stopped, busy): its last answer
 *   stands in for it, gauges included (it still holds its connections).
 * Only counters and histograms summed across workers (aggregator 'sum') are
 * retired: a dead worker's gauges (open connections, memory) are gone with it.
 */
import type { MetricObjectWithValues, MetricValue } from 'prom-client';

export type Metrics = Array<MetricObjectWithValues<MetricValue<string>>>;
type Value = MetricValue<string> & { metricName?: string };

/** Monotonic series: a histogram's buckets, sum and count only grow too. */
function isRetired(m: Metrics[number]): boolean {
  const type = String(m.type);
  return (type === 'counter' || type === 'histogram') && (m as { aggregator?: string }).aggregator === 'sum';
}

/** The series a value belongs to: its sample name (histograms: _bucket, _sum, _count) and its labels, in any order. */
function seriesKey(v: Value): string {
  return `${v.metricName ?? ''}\u0000${JSON.stringify(Object.entries(v.labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))}`;
}

/** `into` plus the counters and histograms of `from`, series by series (neither is changed). */
export function addCounters(into: Metrics, from: Metrics): Metrics {
  const out = new Map(into.map((m) => [m.name, { ...m, values: m.values.map((v) => ({ ...v })) }]));
  for (const m of from) {
    if (!isRetired(m)) continue;
    let have = out.get(m.name);
    if (have === undefined) out.set(m.name, (have = { ...m, values: [] }));
    const byKey = new Map(have.values.map((v) => [seriesKey(v), v]));
    for (const v of m.values) {
      const same = byKey.get(seriesKey(v));
      if (same) same.value += v.value;
      else have.values.push({ ...v });
    }
  }
  return [...out.values()];
}

export class WorkerCounters {
  /** Each live worker's last answer, by pid. */
  private readonly last = new Map<number, Metrics>();
  /** The counters of every worker that has exited, summed. */
  private retired: Metrics = [];

  /** A live worker's answer to a scrape. */
  answered(pid: number, metrics: Metrics): void {
    this.last.set(pid, metrics);
  }

  /** The worker has exited: its last counters are kept for good. */
  exited(pid: number | undefined): void {
    if (pid === undefined) return;
    const m = this.last.get(pid);
    if (m === undefined) return;
    this.last.delete(pid);
    this.retired = addCounters(this.retired, m);
  }

  /** What to sum now: each live worker's last answer (this scrape's where it answered), and the retired counters. */
  toSum(): Metrics[] {
    return [...this.last.values(), ...(this.retired.length > 0 ? [this.retired] : [])];
  }
}

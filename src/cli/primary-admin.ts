/**
 * The admin listener of --workers N: held by the primary, answering with the
 * workers' numbers. At each scrape the primary asks every worker for its
 * registry over IPC (registry.getMetricsAsJSON()) and sums them with
 * prom-client's AggregatorRegistry.aggregate(), which applies each metric's
 * aggregator (counters and most gauges summed; aludel_upstream_up the
 * minimum; process start time and version info not summed). So /metrics
 * reads as one server's, as with one process. A worker that does not answer
 * within 2 s counts with its last answer, and an exited worker's counters
 * stay in the sum (worker-counters.ts): no counter goes backwards.
 */
import { AggregatorRegistry, Gauge, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { Logger } from '../log/logger.js';
import { closingAnswer } from '../http/h1-wire.js';
import { metricsText, serveAdmin, VERSION, type AdminPurgeResult, type AdminServer } from '../metrics/admin-server.js';
import { readKernelTlsStat } from '../metrics/kernel-tls-stat.js';
import type { ManagedCertificateStatus } from '../tls/acme/acme-manager.js';

export interface WorkerMetricsSource {
  workerMetrics(): Promise<unknown[][]>;
  readonly workerPids: number[];
}

export interface WorkerAdminOptions {
  host: string;
  port: number;
  command: 'serve' | 'proxy' | 'tcp';
  listen: string;
  source: WorkerMetricsSource;
  /** --acme-domain: the primary orders and renews, so /status shows its managed certificates. */
  acme?: () => ManagedCertificateStatus[];
  log: Logger;
  /** --cache: POST /purge, passed to a worker (cache-relay.ts). */
  purge?: (url: string) => Promise<AdminPurgeResult>;
}

type Metrics = Array<MetricObjectWithValues<MetricValue<string>>>;

/** Sum of a metric's values over its labels, optionally those whose label `key` is `value`. */
function total(metrics: Metrics, name: string, key?: string, value?: string): number {
  const m = metrics.find((x) => x.name === name);
  if (m === undefined) return 0;
  return m.values.filter((v) => key === undefined || (v.labels as Record<string, unknown>)[key] === value).reduce((n, v) => n + v.value, 0);
}

/** One upstream across the workers: in rotation everywhere (`up`), and in how many of the workers that report it. */
export interface UpstreamAcross {
  url: string;
  up: boolean;
  workersUp: number;
  workers: number;
}

/**
 * Each worker keeps its own health state (passive failures and active checks
 * run per process), so an upstream can be down in one worker and up in
 * another; `up` is true only where every reporting worker has it in rotation,
 * as aludel_upstream_up's minimum on /metrics.
 */
export function upstreamsAcross(perWorker: readonly Metrics[]): UpstreamAcross[] {
  const by = new Map<string, Omit<UpstreamAcross, 'up'>>();
  for (const metrics of perWorker) {
    for (const v of metrics.find((m) => m.name === 'aludel_upstream_up')?.values ?? []) {
      const url = String((v.labels as Record<string, unknown>).upstream);
      const u = by.get(url) ?? { url, workersUp: 0, workers: 0 };
      u.workers++;
      if (v.value === 1) u.workersUp++;
      by.set(url, u);
    }
  }
  return [...by.values()].map((u) => ({ url: u.url, up: u.workersUp === u.workers, workersUp: u.workersUp, workers: u.workers }));
}

/** aludel_upstream_errors_total summed over the workers, keyed as one process's /status keys it ("URL CODE"). */
function upstreamErrors(metrics: Metrics): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of metrics.find((m) => m.name === 'aludel_upstream_errors_total')?.values ?? []) {
    const l = v.labels as Record<string, unknown>;
    out[`${String(l.upstream)} ${String(l.code)}`] = v.value;
  }
  return out;
}

async function aggregated(o: WorkerAdminOptions, perWorker?: unknown[][]): Promise<Registry> {
  const registry = AggregatorRegistry.aggregate<typeof Registry.PROMETHEUS_CONTENT_TYPE>(perWorker ?? (await o.source.workerMetrics()));
  // How many workers answer the primary now (fewer than --workers while one restarts).
  const own = new Registry();
  new Gauge({ name: 'aludel_workers', help: 'Worker processes running (--workers)', registers: [own] }).set(o.source.workerPids.length);
  return Registry.merge([registry, own]);
}

export async function startWorkerAdmin(o: WorkerAdminOptions): Promise<AdminServer> {
  return serveAdmin({ ...o, closingAnswer }, {
    purge: o.purge,
    metrics: async () => metricsText(await aggregated(o)),
    status: async (admin) => {
      const perWorker = await o.source.workerMetrics();
      const [metrics, kernelTls] = await Promise.all([(await aggregated(o, perWorker)).getMetricsAsJSON() as Promise<Metrics>, readKernelTlsStat()]);
      return {
        version: VERSION,
        command: o.command,
        pid: process.pid,
        workers: o.source.workerPids,
        uptimeSeconds: Math.round(process.uptime()),
        listen: o.listen,
        admin,
        connections: {
          open: total(metrics, 'aludel_connections_open'),
          total: total(metrics, 'aludel_connections_total'),
          kernelTx: total(metrics, 'aludel_connections_total', 'tx', 'kernel'),
          kernelRx: total(metrics, 'aludel_connections_total', 'rx', 'kernel'),
        },
        handshakes: { ok: total(metrics, 'aludel_handshakes_total', 'result', 'ok'), failed: total(metrics, 'aludel_handshakes_total', 'result', 'failed') },
        ...(o.command === 'serve' ? {} : { upstreams: upstreamsAcross(perWorker as Metrics[]), upstreamErrors: upstreamErrors(metrics) }),
        kernelTls,
        ...(o.acme ? { acme: o.acme() } : {}),
      };
    },
  });
}

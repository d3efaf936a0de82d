/**
 * The admin listener (--admin, off unless given): plain HTTP for a local
 * Prometheus and for people. GET /metrics is the Prometheus text exposition
 * of this process's registry (traffic, handshakes, upstreams, process and
 * Node.js metrics) plus the kernel's /proc/net/tls_stat read at scrape time;
 * GET /status is the same picture as JSON, with the offload decision and
 * upstream health. Read-only: anything but GET/HEAD is 405.
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { Logger } from '../log/logger.js';
import type { OffloadDecision, SecureServer } from '../tls/types.js';
import { isLoopback } from '../config/loopback.js';
import { answerParseErrors, capSideListener, listenSideServer, sideServerOptions, type ClosingAnswer } from '../transport/side-listener.js';
import { kernelTlsRegistry, readKernelTlsStat, type KernelTlsStat } from './kernel-tls-stat.js';
import type { TrafficStats, TrafficTotals } from './traffic-stats.js';
import type { ManagedCertificateStatus } from '../tls/acme/acme-manager.js';
import { PurgeIncompleteError } from '../errors.js';

/**
 * What /metrics and /status read of an upstream group (proxy/upstream-group.ts
 * has it): each peer's health, as nginx's upstream status shows it. Declared
 * here, by its reader, so the metrics stay below the proxy they describe.
 */
export interface UpstreamHealthView {
  readonly peers: ReadonlyArray<{ upstream: { url: string }; fails: number; downUntil: number; activeDown: boolean }>;
  isUp(p: UpstreamHealthView['peers'][number], now: number): boolean;
}

export interface AdminOptions {
  host: string;
  port: number;
  command: 'serve' | 'proxy' | 'tcp';
  /** The listeners: their engine and their connection count. */
  server: Pick<SecureServer, 'offload' | 'connectionCount'>;
  /** The TLS listener's bound address, for /status. */
  listen: string;
  stats: TrafficStats;
  /** The upstreams of `aludel proxy` / `aludel tcp` in force (a reload replaces them); null for `aludel serve`. */
  group: (() => UpstreamHealthView) | null;
  /** `aludel proxy --cache`: removes every stored variant of an absolute URL, returns how many and the files it could not delete. */
  purge?: (url: string) => AdminPurgeResult | Promise<AdminPurgeResult>;
  /** --acme-domain: each managed certificate's expiry, next renewal and last error. */
  acme?: () => ManagedCertificateStatus[];
  /** The answer to a request node's parser refuses (http/h1-wire.ts closingAnswer: metrics/ sits below http/). */
  closingAnswer: ClosingAnswer;
  log: Logger;
}

export interface AdminServer {
  address: string;
  port: number;
  close(): Promise<void>;
}

/** dist/src/metrics/admin-server.js -> package.json */
export const VERSION = (JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;


/**
 * prom-client's process and Node.js metrics (standard names: process_*,
 * nodejs_*), less three gauges named like counters that `promtool check
 * metrics` rejects (prometheus/client_js#283); their by-type siblings remain:
 * sum without (type) (nodejs_active_handles) gives the same total.
 */
function registerProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);
}

/** Gauges read from live state when scraped: nothing to update on the hot path. */
function registerStateGauges(o: Pick<AdminOptions, 'stats' | 'server' | 'group'>): void {
  const registers = [o.stats.registry];
  new Gauge({
    name: 'aludel_connections_open',
    help: 'Client connections open now, handshaking ones included',
    registers,
    collect() {
      this.set(o.server.connectionCount);
    },
  });
  const current = o.group;
  if (current === null) return;
  new Gauge({
    name: 'aludel_upstream_up',
    help: 'Whether the upstream is in rotation (1) or marked down by passive or active health checks (0)',
    labelNames: ['upstream'],
    registers,
    // Summed over --workers by the primary: each worker has its own health state; down in one is shown as down.
    aggregator: 'min',
    collect() {
      const now = Date.now();
      const group = current();
      this.reset();
      for (const p of group.peers) this.set({ upstream: p.upstream.url }, group.isUp(p, now) ? 1 : 0);
    },
  });
}

/** A registry's text exposition with the host's /proc/net/tls_stat counters, read now. */
export async function metricsText(own: Registry): Promise<{ body: string; type: string }> {
  const k = await readKernelTlsStat();
  const registry = k.available ? Registry.merge([own, kernelTlsRegistry(k.counters)]) : own;
  return { body: await registry.metrics(), type: registry.contentType };
}

/** GET /status. */
export interface AdminStatus {
  version: string;
  command: AdminOptions['command'];
  pid: number;
  uptimeSeconds: number;
  listen: string;
  admin: string;
  offload: OffloadDecision;
  connections: { open: number } & TrafficTotals['connections'];
  handshakes: TrafficTotals['handshakes'];
  bodies: TrafficTotals['bodies'];
  /** proxy and tcp only */
  upstreams?: Array<{ url: string; up: boolean; fails: number; downUntil: string | null; activeCheckFailed: boolean }>;
  upstreamErrors?: TrafficTotals['upstreamErrors'];
  kernelTls: KernelTlsStat;
  /** --acme-domain only. */
  acme?: ManagedCertificateStatus[];
}

async function status(o: AdminOptions, admin: string): Promise<AdminStatus> {
  const [totals, kernelTls] = await Promise.all([o.stats.snapshot(), readKernelTlsStat()]);
  const now = Date.now();
  const group = o.group?.() ?? null;
  return {
    version: VERSION,
    command: o.command,
    pid: process.pid,
    uptimeSeconds: Math.round(process.uptime()),
    listen: o.listen,
    admin,
    offload: o.server.offload,
    connections: { open: o.server.connectionCount, ...totals.connections },
    handshakes: totals.handshakes,
    bodies: totals.bodies,
    ...(group === null
      ? {}
      : {
          upstreams: group.peers.map((p) => ({
            url: p.upstream.url,
            up: group.isUp(p, now),
            fails: p.fails,
            downUntil: p.downUntil > now ? new Date(p.downUntil).toISOString() : null,
            activeCheckFailed: p.activeDown,
          })),
          upstreamErrors: totals.upstreamErrors,
        }),
    kernelTls,
    ...(o.acme ? { acme: o.acme() } : {}),
  };
}

function reply(req: http.IncomingMessage, res: http.ServerResponse, code: number, type: string, body: string, extra: http.OutgoingHttpHeaders = {}): void {
  // For HEAD, node sends the headers (Content-Length included) and drops the body.
  res.writeHead(code, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...extra }).end(req.method === 'HEAD' ? undefined : body);
}

/**
 * POST /purge?url=<absolute URL>: drops every cached variant of it (as nginx cache_purge / Varnish ban users expect).
 * With --workers N the primary asks a worker (cache-relay.ts): an answer that fails is a 503.
 */
async function purgeRequest(req: http.IncomingMessage, res: http.ServerResponse, purge: (url: string) => AdminPurgeResult | Promise<AdminPurgeResult>, log: Logger): Promise<void> {
  const target = new URL(req.url ?? '/', 'http://admin.invalid').searchParams.get('url');
  if (target === null || !URL.canParse(target)) {
    reply(req, res, 400, 'text/plain; charset=utf-8', 'give the absolute URL to purge: POST /purge?url=https://host/path\n');
    return;
  }
  let r: AdminPurgeResult;
  try {
    r = await purge(target);
  } catch (err) {
    reply(req, res, 503, 'text/plain; charset=utf-8', `the purge did not happen: ${(err as Error).message}\n`);
    return;
  }
  const { purged, undeleted } = r;
  if (undeleted.length > 0) {
    // A purge removes content (a leaked file, a takedown): files left on disk would be served again after a restart, so it is a failure, not a 200.
    log.error({ url: target, purged, undeleted }, 'cache purge (admin) failed: files could not be deleted');
    const error = new PurgeIncompleteError('the workers').message;
    reply(req, res, 500, 'application/json', `${JSON.stringify({ url: target, purged, error, undeleted })}\n`);
    return;
  }
  log.info({ url: target, purged }, 'cache purge (admin)');
  reply(req, res, purged > 0 ? 200 : 404, 'application/json', `${JSON.stringify({ url: target, purged })}\n`);
}

/**
 * Who sent a request from a web page: its Origin, else its Sec-Fetch-Site;
 * null for a request no browser page made (curl, a deploy hook, a script).
 * A browser sends Origin with every POST (Fetch standard, "append a request
 * `Origin` header"), and a page may POST to any address without asking
 * (a "simple" request, no CORS preflight): any page the admin's browser
 * opens could otherwise empty the cache through a loopback admin listener,
 * and a DNS-rebinding page even looks same-origin. Caddy's admin API refuses
 * such requests the same way (enforce_origin).
 */
function webPageOrigin(req: http.IncomingMessage): string | null {
  const origin = req.headers.origin;
  if (origin !== undefined) return origin;
  const site = req.headers['sec-fetch-site'];
  return site !== undefined && site !== 'none' ? `Sec-Fetch-Site: ${site}` : null;
}

function refuseWebPage(req: http.IncomingMessage, res: http.ServerResponse, page: string, log: Logger): void {
  log.warn({ origin: page.slice(0, 200), url: (req.url ?? '').slice(0, 200) }, 'admin: POST /purge from a web page refused (403): purges come from curl or scripts, which send no Origin');
  reply(req, res, 403, 'text/plain; charset=utf-8', 'refused: this request came from a web page (Origin or Sec-Fetch-Site); purge with curl or a script\n');
}

/**
 * Whether `host`, a request's Host, names this machine's loopback: an IP
 * literal in 127.0.0.0/8 or ::1, or "localhost" and its subdomains (RFC 6761
 * §6.3: they resolve to loopback, never through DNS), with any port. No Host
 * at all (HTTP/1.0) is taken: every browser sends one.
 *
 * A listener on loopback answers only these. Otherwise a web page whose own
 * name an attacker points at 127.0.0.1 after it loaded (DNS rebinding) reads
 * /metrics and /status as same-origin: traffic figures and upstream URLs.
 * Caddy's admin API checks Host the same way on a loopback listener.
 */
export function loopbackHost(host: string | undefined): boolean {
  if (host === undefined) return true;
  let name = host.toLowerCase();
  if (name.startsWith('[')) name = name.slice(1, name.indexOf(']') >>> 0);
  else if (name.indexOf(':') === name.lastIndexOf(':')) name = name.split(':', 1)[0]!;
  if (name.endsWith('.')) name = name.slice(0, -1);
  return name === 'localhost' || name.endsWith('.localhost') || isLoopback(name);
}

function refuseHost(req: http.IncomingMessage, res: http.ServerResponse, log: Logger): void {
  log.info({ host: (req.headers.host ?? '').slice(0, 200), url: (req.url ?? '').slice(0, 200) }, 'admin: a Host that is not loopback refused (403) on a loopback listener (DNS rebinding)');
  reply(req, res, 403, 'text/plain; charset=utf-8', 'refused: this listener is on loopback and answers Host 127.0.0.1, [::1] or localhost only\n');
}

/** What an admin listener answers: /metrics and /status bodies, and an optional purge. */
export interface AdminAnswers {
  metrics(): Promise<{ body: string; type: string }>;
  status(admin: string): Promise<unknown>;
  purge?: (url: string) => AdminPurgeResult | Promise<AdminPurgeResult>;
}

/** A purge's outcome (the cache's PurgeResult, cache/store.ts; metrics/ sits below cache/, so restated here). */
export interface AdminPurgeResult {
  purged: number;
  /** Files unlink(2) refused (EROFS, EACCES): the purge failed for them. */
  undeleted: Array<{ file: string; code: string; detail: string }>;
}

/** Starts the admin listener; resolves once it is bound and logged. */
export async function startAdmin(o: AdminOptions): Promise<AdminServer> {
  registerAdminMetrics(o);
  return serveAdmin({ host: o.host, port: o.port, closingAnswer: o.closingAnswer, log: o.log }, { metrics: () => metricsText(o.stats.registry), status: (admin) => status(o, admin), purge: o.purge });
}

/**
 * The metrics the admin listener shows besides the traffic counters: process
 * and Node.js metrics and the gauges read at scrape time. A worker of
 * --workers registers them too, so the primary's listener can sum them.
 */
export function registerAdminMetrics(o: Pick<AdminOptions, 'stats' | 'server' | 'group'>): void {
  registerProcessMetrics(o.stats.registry);
  registerStateGauges(o);
}

/** The HTTP side of an admin listener, whichever process's numbers it answers with. */
export async function serveAdmin(o: Pick<AdminOptions, 'host' | 'port' | 'closingAnswer' | 'log'>, a: AdminAnswers): Promise<AdminServer> {
  let admin = '';
  let onLoopback = isLoopback(o.host);
  // A scrape is one request: 10 s for it, as the redirect listener's.
  const server = http.createServer(sideServerOptions(10_000), (req, res) => {
    if (onLoopback && !loopbackHost(req.headers.host)) return refuseHost(req, res, o.log);
    const path = (req.url ?? '/').split('?', 1)[0];
    if (req.method === 'POST' && path === '/purge' && a.purge) {
      const page = webPageOrigin(req);
      if (page !== null) return refuseWebPage(req, res, page, o.log);
      void purgeRequest(req, res, a.purge, o.log);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      const allow = a.purge ? 'GET, HEAD (POST for /purge)' : 'GET, HEAD';
      reply(req, res, 405, 'text/plain; charset=utf-8', `method not allowed: the admin listener takes ${allow}\n`, { Allow: a.purge && path === '/purge' ? 'POST' : 'GET, HEAD' });
      return;
    }
    const answer =
      path === '/metrics'
        ? a.metrics()
        : path === '/status'
          ? a.status(admin).then((s) => ({ body: `${JSON.stringify(s, null, 2)}\n`, type: 'application/json' }))
          : null;
    if (answer === null) {
      reply(req, res, 404, 'text/plain; charset=utf-8', 'not found: try /metrics (Prometheus) or /status (JSON)\n');
      return;
    }
    answer.then(
      ({ body, type }) => reply(req, res, 200, type, body),
      (err: unknown) => {
        o.log.error({ err, url: req.url }, 'admin request failed');
        reply(req, res, 500, 'text/plain; charset=utf-8', 'internal error; see the aludel log\n');
      },
    );
  });
  capSideListener(server, 'admin listener', o.log);
  answerParseErrors(server, o.closingAnswer);
  await listenSideServer(server, '--admin', o.host, o.port);
  const bound = server.address() as net.AddressInfo;
  admin = `${bound.address}:${bound.port}`;
  onLoopback = isLoopback(bound.address);
  if (onLoopback) o.log.info({ admin }, 'admin listening');
  else {
    o.log.warn(
      { admin, warning: 'not a loopback address: /metrics and /status show traffic, upstreams and the TLS set-up to anyone who can reach it; bind 127.0.0.1 or firewall the port' },
      'admin listening',
    );
  }
  return {
    address: bound.address,
    port: bound.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * `aludel proxy` (HTTP/1.1 reverse proxy) and `aludel tcp` (any TCP protocol):
 * a kTLS listener in front of legacy upstreams. Settings come validated from
 * resolveProxySettings(); this file only wires the pieces and reports.
 */
import type { Command } from 'commander';
import { createLogger, type Logger } from '../log/logger.js';
import type { ProxySettings } from '../config/proxy-settings.js';
import { loadAddon, type Native } from '../native/binding.js';
import { createHttpProxy } from '../proxy/http-proxy.js';
import { httpAlpn } from '../http/alpn-front.js';
import { closingAnswer } from '../http/h1-wire.js';
import { createTcpProxy } from '../proxy/tcp-proxy.js';
import { startAdmin, type AdminServer } from '../metrics/admin-server.js';
import { TrafficStats } from '../metrics/traffic-stats.js';
import { HttpCache } from '../cache/cache.js';
import type { PurgeResult } from '../cache/store.js';
import { CacheDirectoryError } from '../errors.js';
import { UpstreamGroup } from '../proxy/upstream-group.js';
import { UpstreamTlsContexts } from '../tls/upstream-client.js';
import { probeCapabilities } from '../offload/capabilities.js';
import { addProxyOptions, resolveProxySettings } from './proxy-options.js';
import { LISTENER_RESTART, reportFatal, startRedirectFor } from './serve-command.js';
import { Listeners } from './listeners.js';
import { Serving, type Generation } from './serving.js';
import { handleServingSignals } from './signals.js';
import { AccessLog } from '../log/access-log.js';
import { runPrimary, startsWorkers } from './primary.js';
import { attachWorker, reportWorkerReady } from './worker-link.js';
import { firstOrOnly, workerRole, type WorkerRole } from './worker-protocol.js';
import { WorkerCachePeers } from './cache-relay.js';
import { useHeldFiles, withHeldFiles } from '../config/held-files.js';
import { asStarted, HeldConfig, restartOnlyJson, startConfigText } from './held-config.js';
import { acmeCloser, prepareAcme, startAcme, workerAcme } from './acme-setup.js';

export interface RunningProxy {
  listeners: Listeners;
  serving: Serving<ProxySettings>;
  stats: TrafficStats;
  admin: AdminServer | null;
  /** The shared cache (--cache); its purge(url) is what an admin interface calls. */
  cache: HttpCache | null;
  log: Logger;
  /** The bound addresses, in --listen order. */
  addresses: string[];
}

/** What a reload cannot change in a running proxy: the sockets, the engine, the files held open. */
const PROXY_RESTART: ReadonlyArray<keyof ProxySettings> = [...LISTENER_RESTART, 'cache'];

/** `worker`: this process is one of --workers N (worker-link.ts); null: the one process. */
export async function runProxy(s: ProxySettings, load: (configText?: string) => Promise<ProxySettings> = () => Promise.resolve(s), worker: WorkerRole | null = null): Promise<RunningProxy> {
  const log = createLogger({ level: s.logLevel });
  // Before the listeners: they load the managed pairs (stand-ins until issued) with the others.
  // A worker orders nothing: the primary does, and says when a new pair is stored (worker-link.ts).
  const acme = worker === null ? await prepareAcme(s, log, () => listeners.reconfigure(serving.settings)) : null;
  // ALPN names an application protocol: h2 and http/1.1 for the HTTP proxy (--http2), none for raw TCP.
  const listeners = new Listeners(s, log, s.mode === 'http' ? (t) => httpAlpn(t.http2 ?? true) : [], firstOrOnly(worker));
  // Upstream sockets use the addon when it loaded (even if the system OpenSSL did not:
  // the node:tls fallback then copies bodies, since only kTLS connections can splice).
  const addon = loadAddon();
  const native = addon instanceof Error ? null : addon;
  const stats = new TrafficStats();
  let cache: HttpCache | null = null;
  if (s.cache !== null) {
    try {
      // A worker of several shares the directory with the others, through the primary (cache-relay.ts).
      const peers = worker !== null && s.workers > 1 ? new WorkerCachePeers() : null;
      cache = await HttpCache.open({ dir: s.cache.dir, maxBytes: s.cache.maxBytes, cookies: s.cache.cookies, staleIfError: s.cache.staleIfErrorMs / 1000, targeted: s.cache.targeted, log, peers, peerWaitMs: s.upstreamHeadersTimeoutMs, linkCount: bodyLinkCount(native) });
    } catch (err) {
      throw new CacheDirectoryError(s.cache.dir, err);
    }
  }
  const access = new AccessLog({ ...s.accessLog, log });
  let group: UpstreamGroup | null = null;
  let admin: AdminServer | null = null;
  let redirect: Awaited<ReturnType<typeof startRedirectFor>> = null;
  const build = async (next: ProxySettings, previous: ProxySettings | null): Promise<Generation<ProxySettings>> => {
    if (previous !== null) listeners.reconfigure(next);
    log.level = next.logLevel;
    const systemTls = upstreamTlsContexts(next, log);
    systemTls?.prepare(next.upstreams); // throws before anything of the new settings serves
    const g = new UpstreamGroup({ native, systemTls, upstreams: next.upstreams, health: next.healthCheck, connectTimeoutMs: next.connectTimeoutMs, keepAlive: next.keepAlive, log });
    group = g;
    const front = next.mode === 'http'
      ? createHttpProxy({ settings: next, group: g, native, stats, cache, log, access })
      : createTcpProxy({ group: g, native, stats, upstreamIdleTimeoutMs: next.upstreamIdleTimeoutMs, idleTimeoutMs: next.idleTimeoutMs, log });
    return { settings: next, front, retire: () => g.close() };
  };
  const serving = new Serving<ProxySettings>({
    servers: listeners.servers, log, stats, load, build,
    restartKeys: PROXY_RESTART, restartKeysWarning: worker === null, access, others: () => [admin, redirect, acmeCloser(acme)], stoppedMessage: 'proxy stopped',
  }, await build(s, null));
  if (worker !== null) {
    // The primary holds the admin and redirect listeners, and says 'proxying' once every worker is ready.
    const addresses = await attachWorker(worker, s, {
      listeners, stats, group: () => group!, log,
      acme: workerAcme(s, listeners, log, () => listeners.reconfigure(serving.settings)),
      // The text and files the primary checked, not the files as they are now (worker-link.ts).
      reload: (text, files) => void serving.reload(() => load(text ?? undefined), (run) => withHeldFiles(files, run)),
    });
    log.info({ worker: worker.index, listen: addresses[0], addresses, mode: s.mode }, 'worker listening');
    return { listeners, serving, stats, admin, cache, log, addresses };
  }
  const addresses = await listeners.listen(s, log);
  if (s.mode === 'http') redirect = await startRedirectFor(s, addresses, log, acme?.http01);
  const purge = cache === null ? undefined : (url: string): PurgeResult => cache!.purge(url);
  admin = s.admin === null ? null : await startAdmin({ ...s.admin, command: s.mode === 'http' ? 'proxy' : 'tcp', server: listeners, listen: addresses.join(' '), stats, group: () => group!, purge, closingAnswer, acme: acme ? () => acme.status() : undefined, log });
  startAcme(acme, s, listeners, log);
  log.info({ listen: addresses[0], addresses, mode: s.mode, upstreams: s.upstreams.map((u) => u.url), cache: s.cache }, 'proxying');
  return { listeners, serving, stats, admin, cache, log, addresses };
}

/** The addon's fstat st_nlink for the cache's kept body descriptors; undefined (fs.fstatSync) without it or in an older build. */
function bodyLinkCount(native: Native | null): ((fd: number) => number) | undefined {
  const f = native?.linkCount;
  return f === undefined ? undefined : (fd) => f.call(native, fd);
}

/**
 * TLS upstreams go on the system OpenSSL where it is loaded: on kTLS (bodies
 * spliced) where the kernel has TLS and --offload is not userspace, else in
 * user space on OpenSSL (bodies copied without node:tls). One set of
 * contexts per configuration, so a reload re-reads CA files and tries
 * upstreams given up on again.
 */
function upstreamTlsContexts(s: ProxySettings, log: Logger): UpstreamTlsContexts | null {
  if (!s.upstreams.some((u) => u.tls !== null)) return null;
  const caps = probeCapabilities();
  if (caps.native === null) return null;
  return new UpstreamTlsContexts(caps.native, log, s.offload !== 'userspace' && caps.kernelProblem === null);
}

export function registerProxyCommands(program: Command): void {
  const commands = [
    { name: 'proxy', mode: 'http' as const, description: 'HTTPS reverse proxy (kTLS, bodies by splice) in front of HTTP or legacy HTTPS upstreams' },
    { name: 'tcp', mode: 'tcp' as const, description: 'TLS termination (kTLS, splice) in front of any TCP service' },
  ];
  for (const c of commands) {
    const cmd = program.command(c.name).description(c.description);
    addProxyOptions(cmd, c.mode).action(async (flags: Record<string, unknown>) => {
      try {
        const role = workerRole(process.env);
        // A worker reads its certificate and ticket key files from the primary's copy while it starts (held-files.ts).
        useHeldFiles(role !== null);
        // Read once: the primary keeps the very text it validated (held-config.ts).
        const text = await startConfigText(flags.config as string | undefined, role);
        const s = asStarted(await resolveProxySettings(c.mode, flags, text), PROXY_RESTART, role);
        if (startsWorkers(s, role)) {
          const check = (t: string): Promise<unknown> => resolveProxySettings(c.mode, flags, t);
          const primary = await runPrimary(s, text === undefined ? null : new HeldConfig(flags.config as string, text, check, restartOnlyJson(s, PROXY_RESTART)), () => resolveProxySettings(c.mode, flags));
          handleServingSignals(primary.log, primary);
          return;
        }
        const running = await runProxy(s, (t) => resolveProxySettings(c.mode, flags, t), role);
        handleServingSignals(running.log, running.serving, role !== null);
        if (role !== null) reportWorkerReady(running.addresses, running.listeners);
      } catch (err) {
        reportFatal(err);
      }
    });
  }
}

/**
 * `aludel proxy` (HTTP/1.1 reverse proxy) and `aludel tcp` (any TCP protocol):
 * a kTLS listener in front of legacy upstreams. Settings come validated from
 * resolveProxySettings(); this file only wires the pieces and reports.
 */
import type { Command } from 'commander';
import { createLogger, type Logger } from '../log/logger.js';
import type { ProxySettings } from '../config/proxy-settings.js';
import { loadAddon } from '../native/binding.js';
import { createKtlsServer } from '../tls/create-server.js';
import { resolveHwPolicy } from '../tls/hw-offload-policy.js';
import type { SecureServer } from '../tls/types.js';
import { startHttpProxy } from '../proxy/http-proxy.js';
import { startTcpProxy } from '../proxy/tcp-proxy.js';
import { startAdmin, type AdminServer } from '../metrics/admin-server.js';
import { TrafficStats } from '../metrics/traffic-stats.js';
import { HttpCache } from '../cache/cache.js';
import { CacheDirectoryError } from '../errors.js';
import { UpstreamGroup } from '../proxy/upstream-group.js';
import { addProxyOptions, resolveProxySettings } from './proxy-options.js';
import { logHwPolicy, logOffload, reportFatal } from './serve-command.js';
import { handleServingSignals } from './signals.js';

export interface RunningProxy {
  server: SecureServer;
  group: UpstreamGroup;
  stats: TrafficStats;
  admin: AdminServer | null;
  /** The shared cache (--cache); its purge(url) is what an admin interface calls. */
  cache: HttpCache | null;
  log: Logger;
  address: string;
  port: number;
  close(): Promise<void>;
}

export async function runProxy(s: ProxySettings): Promise<RunningProxy> {
  const log = createLogger({ level: s.logLevel });
  const hw = resolveHwPolicy(s.offloadPolicy, s.listen.host, s.offload, { minVersion: s.tlsMin, maxVersion: s.tlsMax, cipherList: s.ciphers ?? undefined });
  const server = createKtlsServer({
    certFile: s.cert,
    keyFile: s.key,
    offload: s.offload,
    ...hw.tls,
    cipherSuites: s.ciphersuites ?? undefined,
    // ALPN names an application protocol: http/1.1 for the HTTP proxy, none for raw TCP.
    alpn: s.mode === 'http' ? ['http/1.1'] : [],
    handshakeTimeoutMs: s.handshakeTimeoutMs,
    log,
  });
  // Upstream sockets use the addon when it loaded (even if the system OpenSSL did not:
  // the node:tls fallback then copies bodies, since only kTLS connections can splice).
  const addon = loadAddon();
  const native = addon instanceof Error ? null : addon;
  const group = new UpstreamGroup({ native, upstreams: s.upstreams, health: s.healthCheck, connectTimeoutMs: s.connectTimeoutMs, keepAlive: s.keepAlive, log });
  const stats = new TrafficStats();
  let cache: HttpCache | null = null;
  if (s.cache !== null) {
    try {
      cache = await HttpCache.open({ dir: s.cache.dir, maxBytes: s.cache.maxBytes, log });
    } catch (err) {
      group.close();
      throw new CacheDirectoryError(s.cache.dir, err);
    }
  }
  if (s.mode === 'http') startHttpProxy({ server, settings: s, group, native, stats, cache, log });
  else startTcpProxy({ server, group, native, stats, upstreamIdleTimeoutMs: s.upstreamIdleTimeoutMs, log });
  const bound = await server.listen({ host: s.listen.host, port: s.listen.port, reusePort: s.reusePort });
  const address = `${bound.address}:${bound.port}`;
  logOffload(log, server.offload, address);
  logHwPolicy(log, hw, address);
  const purge = cache === null ? undefined : (url: string): number => cache!.purge(url);
  const admin = s.admin === null ? null : await startAdmin({ ...s.admin, command: s.mode === 'http' ? 'proxy' : 'tcp', server, listen: address, stats, group, purge, log });
  log.info({ listen: address, mode: s.mode, upstreams: s.upstreams.map((u) => u.url), cache: s.cache }, 'proxying');
  return {
    server, group, stats, admin, cache, log, address: bound.address, port: bound.port,
    async close() {
      group.close();
      await Promise.all([server.close(), admin?.close()]);
      log.info({ totals: await stats.snapshot() }, 'proxy stopped');
    },
  };
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
        const running = await runProxy(await resolveProxySettings(c.mode, flags));
        const stop = (signal: string): void => {
          running.log.info({ signal }, 'shutting down');
          void running.close().then(() => process.exit(0));
        };
        handleServingSignals(running.log, stop);
      } catch (err) {
        reportFatal(err);
      }
    });
  }
}

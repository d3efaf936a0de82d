import { createLogger, type Logger } from '../log/logger.js';
import type { HttpServerSettings, ListenerSettings, ServeSettings } from '../config/proxy-settings.js';
import { AludelError } from '../errors.js';
import { createServe } from '../http/serve.js';
import { startRedirect } from '../http/redirect.js';
import { AccessLog } from '../log/access-log.js';
import { startAdmin, type AdminServer } from '../metrics/admin-server.js';
import { TrafficStats } from '../metrics/traffic-stats.js';
import { describeHwPolicy, resolveHwPolicy, type HwPolicyDecision } from '../tls/hw-offload-policy.js';
import type { OffloadDecision, SecureServer } from '../tls/types.js';
import { Serving, type Generation } from './serving.js';
import { Listeners } from './listeners.js';

/** One line that says where the crypto of this listener runs, and why. */
export function describeOffload(d: OffloadDecision): string {
  const lib = d.openssl ? `${d.openssl.version}` : 'node:tls (bundled OpenSSL)';
  if (d.ktls) return `crypto: kernel TLS (kTLS) wherever the negotiated suite allows; TLS library ${lib}`;
  if (d.requested === 'userspace') return `crypto: userspace (--offload userspace); TLS library ${lib}`;
  return `crypto: userspace; kTLS unavailable: ${d.reason ?? 'unknown reason'}; TLS library ${lib}`;
}

export function logOffload(log: Logger, d: OffloadDecision, address: string): void {
  const fields = { listen: address, offload: d.requested, ktls: d.ktls, engine: d.engine, openssl: d.openssl?.version ?? null, libssl: d.openssl?.libssl ?? null };
  // One warning, once, when auto had to fall back (the connections then say "user" in every line).
  if (d.requested === 'auto' && !d.ktls) log.warn({ ...fields, reason: d.reason }, describeOffload(d));
  else log.info(fields, describeOffload(d));
}

/** Under prefer-hw, one line saying whether the listener was narrowed to what the NIC takes, and why. */
export function logHwPolicy(log: Logger, d: HwPolicyDecision, address: string): void {
  if (d.policy === 'default') return;
  const interfaces = d.interfaces.map((i) => ({ name: i.name, tlsTx: i.tlsTx }));
  log.info({ listen: address, offloadPolicy: d.policy, preferHw: d.preferHw, interfaces, tlsMin: d.tls.minVersion, tlsMax: d.tls.maxVersion, reasons: d.reasons }, describeHwPolicy(d));
}

export interface RunningServe {
  listeners: Listeners;
  serving: Serving<ServeSettings>;
  /** The bound addresses, in --listen order. */
  addresses: string[];
  log: Logger;
  stats: TrafficStats;
  admin: AdminServer | null;
}

/** Settings a reload cannot change in a running listener (the sockets, the engine, the files held open). */
export const LISTENER_RESTART: ReadonlyArray<keyof (ListenerSettings & HttpServerSettings)> = ['listen', 'reusePort', 'admin', 'offload', 'offloadPolicy', 'maxConnections', 'accessLog', 'redirectHttp'];

/** --redirect-http: plain HTTP answered with a 308 to the first TLS address's port. */
export async function startRedirectFor(s: HttpServerSettings, addresses: readonly string[], log: Logger): Promise<Awaited<ReturnType<typeof startRedirect>> | null> {
  if (s.redirectHttp === null) return null;
  const first = addresses[0]!;
  return startRedirect({ ...s.redirectHttp, httpsPort: Number(first.slice(first.lastIndexOf(':') + 1)), log });
}


export async function runServe(s: ServeSettings, load: () => Promise<ServeSettings> = () => Promise.resolve(s)): Promise<RunningServe> {
  const log = createLogger({ level: s.logLevel });
  const listeners = new Listeners(s, log);
  const stats = new TrafficStats();
  const access = new AccessLog({ ...s.accessLog, log });
  let admin: AdminServer | null = null;
  let redirect: Awaited<ReturnType<typeof startRedirect>> | null = null;
  const build = async (next: ServeSettings, previous: ServeSettings | null): Promise<Generation<ServeSettings>> => {
    if (previous !== null) listeners.reconfigure(next);
    log.level = next.logLevel;
    const front = await createServe({
      stats, root: next.root, log, access,
      idleTimeoutMs: next.idleTimeoutMs, headersTimeoutMs: next.headersTimeoutMs, maxHeaderSize: next.maxHeaderSize,
    });
    return { settings: next, front, retire: () => undefined };
  };
  const serving = new Serving<ServeSettings>({
    servers: listeners.servers, log, stats, load, build,
    restartKeys: LISTENER_RESTART, access, others: () => [admin, redirect], stoppedMessage: 'stopped',
  }, await build(s, null));
  const addresses = await listeners.listen(s, log);
  redirect = await startRedirectFor(s, addresses, log);
  admin = s.admin === null ? null : await startAdmin({ ...s.admin, command: 'serve', server: listeners, listen: addresses.join(' '), stats, group: null, log });
  log.info({ listen: addresses[0], addresses, root: s.root }, 'serving files over HTTPS');
  return { listeners, serving, addresses, log, stats, admin };
}

/** For the CLI: a failure the user can act on prints its message alone; anything else, its stack. */
export function reportFatal(err: unknown): never {
  const code = (err as { code?: string })?.code;
  if (err instanceof AludelError || code === 'ERR_TLS_CONTEXT' || code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
    const e = err as Error & { opensslErrors?: string[] };
    process.stderr.write(`aludel: ${e.message}\n`);
    for (const line of e.opensslErrors ?? []) process.stderr.write(`  openssl: ${line}\n`);
  } else {
    process.stderr.write(`aludel: ${(err as Error)?.stack ?? String(err)}\n`);
  }
  process.exit(2);
}

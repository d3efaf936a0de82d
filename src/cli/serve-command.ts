import { createLogger, type Logger } from '../log/logger.js';
import type { HttpServerSettings, ListenerSettings, ServeSettings } from '../config/proxy-settings.js';
import { AludelError } from '../errors.js';
import { createServe } from '../http/serve.js';
import { startRedirect } from '../http/redirect.js';
import { AccessLog } from '../log/access-log.js';
import { startAdmin, type AdminServer } from '../metrics/admin-server.js';
import { TrafficStats } from '../metrics/traffic-stats.js';
import { Serving, type Generation } from './serving.js';
import { Listeners } from './listeners.js';
import { httpAlpn } from '../http/alpn-front.js';
import { closingAnswer } from '../http/h1-wire.js';
import { withHeldFiles } from '../config/held-files.js';
import { attachWorker } from './worker-link.js';
import { firstOrOnly, type WorkerRole } from './worker-protocol.js';
import { acmeCloser, prepareAcme, startAcme, workerAcme } from './acme-setup.js';
import type { Http01Responder } from '../tls/acme/http01.js';

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
export const LISTENER_RESTART: ReadonlyArray<keyof (ListenerSettings & HttpServerSettings)> = ['listen', 'reusePort', 'admin', 'offload', 'offloadPolicy', 'maxConnections', 'accessLog', 'redirectHttp', 'workers', 'acme'];

/** --redirect-http: plain HTTP answered with a 308 to the first TLS address's port. */
export async function startRedirectFor(s: HttpServerSettings, addresses: readonly string[], log: Logger, http01?: Http01Responder): Promise<Awaited<ReturnType<typeof startRedirect>> | null> {
  if (s.redirectHttp === null) return null;
  const first = addresses[0]!;
  return startRedirect({ ...s.redirectHttp, httpsPort: Number(first.slice(first.lastIndexOf(':') + 1)), log, http01 });
}


/** `worker`: this process is one of --workers N (worker-link.ts); null: the one process. */
export async function runServe(s: ServeSettings, load: (configText?: string) => Promise<ServeSettings> = () => Promise.resolve(s), worker: WorkerRole | null = null): Promise<RunningServe> {
  const log = createLogger({ level: s.logLevel });
  // Before the listeners: they load the managed pairs (stand-ins until issued) with the others.
  // A worker orders nothing: the primary does, and says when a new pair is stored (worker-link.ts).
  const acme = worker === null ? await prepareAcme(s, log, () => listeners.reconfigure(serving.settings)) : null;
  // --http2 decides what ALPN offers; a reload may change it (new handshakes only).
  const listeners = new Listeners(s, log, (t) => httpAlpn(t.http2 ?? true), firstOrOnly(worker));
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
      http2MaxConcurrentStreams: next.http2MaxConcurrentStreams,
    });
    // Once drained, nothing serves from its root: its descriptors may close (served-root.ts).
    return { settings: next, front, retire: () => front.retire() };
  };
  const serving = new Serving<ServeSettings>({
    servers: listeners.servers, log, stats, load, build,
    restartKeys: LISTENER_RESTART, restartKeysWarning: worker === null, access, others: () => [admin, redirect, acmeCloser(acme)], stoppedMessage: 'stopped',
  }, await build(s, null));
  if (worker !== null) {
    // The primary holds the admin and redirect listeners, and says 'serving files over HTTPS' once every worker is ready.
    const addresses = await attachWorker(worker, s, {
      listeners, stats, group: null, log,
      acme: workerAcme(s, listeners, log, () => listeners.reconfigure(serving.settings)),
      // The text and files the primary checked, not the files as they are now (worker-link.ts).
      reload: (text, files) => void serving.reload(() => load(text ?? undefined), (run) => withHeldFiles(files, run)),
    });
    log.info({ worker: worker.index, listen: addresses[0], addresses, root: s.root }, 'worker listening');
    return { listeners, serving, addresses, log, stats, admin };
  }
  const addresses = await listeners.listen(s, log);
  redirect = await startRedirectFor(s, addresses, log, acme?.http01);
  admin = s.admin === null ? null : await startAdmin({ ...s.admin, command: 'serve', server: listeners, listen: addresses.join(' '), stats, group: null, closingAnswer, acme: acme ? () => acme.status() : undefined, log });
  startAcme(acme, s, listeners, log);
  log.info({ listen: addresses[0], addresses, root: s.root, alpn: httpAlpn(s.http2) }, 'serving files over HTTPS');
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

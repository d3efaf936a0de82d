/**
 * A serving process (serve, proxy, tcp) over its life: the listener hands
 * each connection to the current front; SIGHUP reloads (new settings and
 * certificates for new connections, the old front drained and retired);
 * SIGTERM/SIGINT stop gracefully within --shutdown-timeout; SIGQUIT stops at
 * once; SIGUSR1 reopens the access log. Every signal is logged. The signal
 * wiring is in signals.ts; this file is what the signals do.
 */
import type { Logger } from '../log/logger.js';
import type { TrafficStats } from '../metrics/traffic-stats.js';
import { onSecureConnections } from '../http/serve.js';
import type { Front } from '../http/front.js';
import type { SecureServer } from '../tls/types.js';
import type { AccessLog } from '../log/access-log.js';
import type { ListenerSettings } from '../config/proxy-settings.js';
import { keepValues } from './held-config.js';

/** How long the connections cut at the end may take to write their last lines (close()). */
const CUT_LINES_MS = 1_000;

/** Resolves when `p` settles or after `ms`, whichever is first; never rejects. */
function settledWithin(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => { timer = setTimeout(resolve, ms); });
  return Promise.race([p.then(() => undefined, () => undefined), late]).finally(() => clearTimeout(timer));
}

/** One set of settings in force: its front and what to release once it is drained. */
export interface Generation<S> {
  settings: S;
  front: Front;
  /** Releases what only this generation used (upstream pools, timers). */
  retire(): void;
}

export interface ServingOptions<S extends ListenerSettings> {
  /** One per --listen address, all serving the same fronts. */
  servers: readonly SecureServer[];
  log: Logger;
  stats: TrafficStats;
  /** Reads the settings again: the config file, then the flags given at start. Throws when invalid. */
  load(): Promise<S>;
  /** Applies settings to new connections (certificates included). Throws, changing nothing, when they cannot be applied. */
  build(next: S, previous: S | null): Promise<Generation<S>>;
  /** The settings that only take effect on a restart (the sockets, the engine, files held open). */
  restartKeys: ReadonlyArray<keyof S>;
  /** Whether a reload that changes one of them says so (false in a worker: its primary says it once for all). Default true. */
  restartKeysWarning?: boolean;
  /** Reopened on SIGUSR1, closed last. */
  access: AccessLog;
  /** The other listeners (admin, --redirect-http; null when off), closed after the connections. */
  others(): ReadonlyArray<{ close(): Promise<void> } | null>;
  /** The last log line, with the totals ("proxy stopped", "stopped"). */
  stoppedMessage: string;
}

/** The names of `keys` whose values differ, for the reload warning. */
export function changed<S extends object>(a: S, b: S, keys: ReadonlyArray<keyof S>): string[] {
  return keys.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k])).map(String);
}

export class Serving<S extends ListenerSettings> {
  private current: Generation<S>;
  /** Generations replaced by a reload, still finishing their connections. */
  private readonly retiring = new Set<Promise<void>>();
  private reloading: Promise<void> | null = null;
  private stopping = false;

  constructor(private readonly o: ServingOptions<S>, first: Generation<S>) {
    this.current = first;
    for (const server of o.servers) onSecureConnections(server, o.log, o.stats, (conn) => this.current.front.accept(conn));
  }

  /** Live connections over every listener. */
  get connections(): number {
    return this.o.servers.reduce((n, s) => n + s.connectionCount, 0);
  }

  get settings(): S {
    return this.current.settings;
  }

  /**
   * SIGHUP: the new settings serve new connections; connections in flight
   * finish on the old ones, whose front is then retired. Invalid settings or
   * certificates are logged and the old ones stay. A HUP during a reload
   * waits for it and reloads again (the files may have changed since).
   * `load`: where the settings come from, the options' load() by default
   * (a worker's reload loads the text its primary checked, worker-link.ts);
   * `around`: runs this reload, once its turn came (a worker's reads the
   * primary's copy of the files, held-files.ts withHeldFiles).
   */
  async reload(load: () => Promise<S> = this.o.load, around: (run: () => Promise<void>) => Promise<void> = (run) => run()): Promise<void> {
    if (this.stopping) return;
    while (this.reloading) await this.reloading;
    this.reloading = around(() => this.reloadOnce(load)).finally(() => { this.reloading = null; });
    return this.reloading;
  }

  private async reloadOnce(load: () => Promise<S>): Promise<void> {
    const { log } = this.o;
    let next: Generation<S>;
    try {
      const loaded = await load();
      const kept = changed(this.current.settings, loaded, this.o.restartKeys);
      const say = this.o.restartKeysWarning === false ? log.debug.bind(log) : log.warn.bind(log);
      if (kept.length > 0) say({ settings: kept }, `reload: ${kept.join(', ')} changed; these take effect only on a restart, and the current values stay`);
      // As the line says: the new generation runs with the current values (a changed --offload-policy
      // reached the TLS contexts, and the settings in force named addresses nobody listened on), as a
      // worker restarted after this reload starts with them (held-config.ts, WORKER_STARTED_ENV).
      next = await this.o.build(keepValues(loaded, this.current.settings, this.o.restartKeys), this.current.settings);
    } catch (err) {
      log.error({ error: (err as { code?: string }).code ?? 'ERR_UNKNOWN', detail: (err as Error).message }, 'reload failed: still serving with the previous settings and certificates');
      return;
    }
    const old = this.current;
    this.current = next;
    this.retire(old);
    log.info({ retiring: old.front.connections }, 'reloaded: new connections use the new settings; connections in flight finish on the old ones');
  }

  private retire(g: Generation<S>): void {
    const done = g.front.drain().then(() => g.retire());
    this.retiring.add(done);
    void done.finally(() => this.retiring.delete(done));
  }

  /**
   * SIGTERM/SIGINT: no new connection; idle keep-alive connections close at
   * once, the rest after their response (Connection: close); whatever is
   * left at the deadline is cut. Resolves when everything is closed.
   */
  async stop(signal: string): Promise<void> {
    if (this.stopping) {
      this.o.log.info({ signal }, 'already stopping');
      return;
    }
    this.stopping = true;
    const deadlineMs = this.current.settings.shutdownTimeoutMs;
    for (const server of this.o.servers) server.stopAccepting();
    this.o.log.info({ signal, deadlineMs, connections: this.connections }, 'stopping: new connections refused, requests in flight finish');
    let timer: NodeJS.Timeout | undefined;
    const drained = Promise.all([this.current.front.drain(), ...this.retiring]).then(() => true);
    const late = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), deadlineMs); });
    const clean = await Promise.race([drained, late]);
    clearTimeout(timer);
    if (!clean) this.o.log.warn({ deadlineMs, cut: this.connections }, 'shutdown deadline reached: closing the connections still open');
    await this.close();
  }

  /** SIGQUIT, or the end of stop(): everything closed now. */
  async close(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.o.servers.map((s) => s.close()));
    // The connections just cut write their own lines (a tunnel's 'tunnel failed', a request's
    // access line) a few ticks later, once their 'close' has gone round: wait for the fronts to
    // settle, briefly, so that the process does not exit with those lines unwritten.
    await settledWithin(Promise.all([this.current.front.drain(), ...this.retiring]), CUT_LINES_MS);
    this.current.retire();
    await Promise.all(this.o.others().map((x) => x?.close()));
    this.o.access.close();
    this.o.log.info({ totals: await this.o.stats.snapshot() }, this.o.stoppedMessage);
  }

  reopenLogs(): void {
    this.o.access.reopen();
  }
}

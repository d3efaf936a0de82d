/**
 * --workers N (N > 1; or auto, the default, with several CPUs): the primary
 * process. It binds every --listen address (once, or once per worker with
 * --reuse-port), forks N workers of the same command line that inherit
 * those sockets and accept on them
 * (docs/data-plane.md says why one shared socket by default; with
 * --reuse-port each worker gets sockets of its own, as nginx's `reuseport`),
 * hands them the session ticket keys and rotates them,
 * restarts a worker that dies (restart-backoff.ts), holds the admin and
 * --redirect-http listeners, orders and renews the --acme-domain
 * certificates (the workers get the pending challenges and are told to take
 * each new pair into service), and passes signals on:
 * - HUP: the primary reads --config and the files it names first, and checks
 *   them as a worker would; a mistake is one line and no worker is told (as
 *   nginx's master keeps its workers when a new configuration fails). When
 *   they load, every worker reloads with the very text the primary checked,
 *   sent over the IPC channel (a 'reload' message, not a signal: a worker
 *   reading the file itself would take an edit made after the check), and a
 *   worker the primary restarts starts from the same copy (held-config.ts);
 *   a HUP sent to a worker directly is ignored there (signals.ts);
 * - TERM/INT: every worker stops gracefully; the primary waits for all of them;
 * - QUIT: every worker stops at once;
 * - USR1: every worker reopens its access log (and no inspector opens anywhere).
 * The primary never accepts a TLS connection.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createLogger, type Logger } from '../log/logger.js';
import type { HttpServerSettings, ListenerSettings } from '../config/proxy-settings.js';
import { AludelError } from '../errors.js';
import { loadAddon, type Native } from '../native/binding.js';
import { generateTicketKey, rotateTicketKeys, TICKET_KEY_ROTATION_MS } from '../tls/ticket-keys.js';
import { deathsInRow, restartDelayMs } from './restart-backoff.js';
import { FIRST_LISTEN_FD, isToPrimary, WORKER_ENV, WORKER_FDS_ENV, withoutInspectFlags, workersToStart, type ToWorker, type WorkerRole } from './worker-protocol.js';
import { startRedirectFor } from './serve-command.js';
import { acmeCloser, prepareAcme, startAcme } from './acme-setup.js';
import type { AcmeManager } from '../tls/acme/acme-manager.js';
import { formatAddress, listenError, Listeners } from './listeners.js';
import { startWorkerAdmin, type WorkerMetricsSource } from './primary-admin.js';
import type { SignalTargets } from './signals.js';
import { CacheRelay } from './cache-relay.js';
import { WorkerCounters, type Metrics } from './worker-counters.js';
import { noteCarried, recordReads, WORKER_FILES_ENV, type Recorded } from '../config/held-files.js';
import type { ProxySettings } from '../config/proxy-settings.js';
import { planCertificates } from '../tls/certificates.js';
import { readTicketKeyFiles } from '../tls/ticket-keys.js';
import { silentLogger } from '../log/logger.js';
import { WORKER_CONFIG_ENV, WORKER_STARTED_ENV, type HeldConfig } from './held-config.js';
import type { PurgeResult } from '../cache/store.js';

type PrimarySettings = ListenerSettings & Partial<Pick<HttpServerSettings, 'redirectHttp' | 'acme'>> & { mode: 'serve' | 'http' | 'tcp' };

/** After --shutdown-timeout, how long the primary still waits for a worker before SIGKILL (its own exit takes a moment). */
const STOP_GRACE_MS = 5_000;

interface Slot {
  index: number;
  child: ChildProcess | null;
  startedAt: number;
  deaths: number;
  /** Its signal handlers are installed and it serves: reloads and USR1 may be passed on (worker-link.ts, reportWorkerReady). */
  ready: boolean;
  /** A reload loaded while it was starting: sent once it is ready (it may have started from the text before the change). */
  reloadPending: boolean;
  timer: NodeJS.Timeout | null;
  /** Said in its 'ready': its TLS engine answers TLS-ALPN-01. */
  answersTlsAlpn01: boolean;
  /** Primary.certificates when it was forked: a pair stored since may have come before it listened for the news. */
  certificatesAtSpawn: number;
}

/**
 * The listening sockets, per worker slot: `slots[i]` holds one descriptor
 * per --listen address, in order, for worker i + 1.
 * - By default each address is bound once and every slot shares that socket
 *   (docs/data-plane.md, "One shared accepting socket").
 * - With --reuse-port each slot gets sockets of its own, bound with
 *   SO_REUSEPORT to the same port, and the kernel hashes each new connection
 *   to one of them (nginx's `listen ... reuseport`). The primary keeps every
 *   copy open, as nginx's master does, so the connections queued on a dead
 *   worker's socket wait for its replacement instead of being reset.
 */
interface BoundListeners {
  slots: number[][];
  addresses: string[];
}

function bindListeners(native: Native, s: ListenerSettings): BoundListeners {
  // One set of sockets for all workers, or one set per worker.
  const sets = s.reusePort ? s.workers : 1;
  const slots: number[][] = Array.from({ length: sets }, () => []);
  const addresses: string[] = [];
  for (const { host, port } of s.listen) {
    // --listen host:0: the first socket picks the port; the others of the group bind that one.
    let bound = port;
    for (const fds of slots) {
      let fd: number;
      try {
        fd = native.listenTcp(host, bound, 511, s.reusePort);
      } catch (err) {
        for (const f of slots.flat()) native.closeFd(f);
        throw listenError(host, port, err as Error);
      }
      fds.push(fd);
      bound = native.getSockName(fd).port;
    }
    const a = native.getSockName(slots[0]!.at(-1)!);
    addresses.push(formatAddress(a.address, a.port));
  }
  return { slots: s.reusePort ? slots : Array.from({ length: s.workers }, () => slots[0]!), addresses };
}

/** What a primary is made of: its settings and what runPrimary prepared before it. */
export interface PrimaryParts {
  settings: PrimarySettings;
  log: Logger;
  native: Native;
  bound: BoundListeners;
  /** The line logged once every worker is ready. */
  readyMessage: string;
  acme: AcmeManager | null;
  /** --config: the text a worker starts from (held-config.ts); null without --config. */
  config: HeldConfig | null;
  /** What the start-up check read (checkAndRecord): the workers start from exactly those bytes. */
  startFiles: Recorded;
  /**
   * Without --config: the settings resolved again from the command line, as
   * a worker's reload resolves them; the files they carry (--upstream-ca)
   * are read again (null: `settings` as started).
   */
  resolveAgain: (() => Promise<ListenerSettings>) | null;
}

export class Primary implements SignalTargets, WorkerMetricsSource {
  private readonly slots: Slot[];
  private stopping = false;
  private ticketKeys: Buffer[] | null;
  private rotation: NodeJS.Timeout | null = null;
  private readonly others: Array<{ close(): Promise<void> } | null> = [];
  private announced = false;
  /** The reload (HUP) in progress, if any: the next one waits for it. */
  private reloading: Promise<void> = Promise.resolve();
  private readonly exited = new Set<() => void>();
  private metricsId = 0;
  private readonly metricsWaiters = new Map<number, { want: number; got: number; done(): void }>();
  /** The workers' last answers and the counters of those that exited: /metrics never goes backwards (worker-counters.ts). */
  private readonly counters = new WorkerCounters();
  /** How many new --acme-domain pairs were stored (issued or renewed) since start. */
  private certificates = 0;
  private announce: (answersTlsAlpn01: boolean) => void = () => undefined;
  /** Every worker has been ready once (the start-up line is logged): whether all of them answer TLS-ALPN-01. */
  readonly allReady = new Promise<boolean>((resolve) => {
    this.announce = resolve;
  });
  /** --cache: the workers' cache events and fill locks (cache-relay.ts). */
  private readonly cacheRelay: CacheRelay;
  /** The settings whose files were last held (start, the last HUP that loaded). */
  private filesOf: ListenerSettings;
  /** The certificate, key, ticket key and --upstream-ca files of the last load that succeeded, for WORKER_FILES_ENV (held-files.ts); null: read by path. */
  private heldFiles: string | null = null;

  private readonly s: PrimarySettings;
  readonly log: Logger;
  private readonly native: Native;
  private readonly bound: BoundListeners;
  private readonly readyMessage: string;
  private readonly acme: AcmeManager | null;
  private readonly config: HeldConfig | null;
  private readonly resolveAgain: (() => Promise<ListenerSettings>) | null;

  constructor(o: PrimaryParts) {
    const { settings: s, log, acme } = o;
    this.s = s;
    this.log = log;
    this.native = o.native;
    this.bound = o.bound;
    this.readyMessage = o.readyMessage;
    this.acme = acme;
    this.config = o.config;
    this.resolveAgain = o.resolveAgain;
    this.slots = Array.from({ length: s.workers }, (_, i) => ({ index: i + 1, child: null, startedAt: 0, deaths: 0, ready: false, reloadPending: false, timer: null, certificatesAtSpawn: 0, answersTlsAlpn01: false }));
    // Whichever worker the CA reaches must know the challenge: every change goes to all of them (worker-link.ts).
    acme?.challenges.watch((change) => this.broadcast({ type: 'acme-challenge', ...change }));
    // --ticket-keys files are read by each worker (and re-read on HUP); otherwise one ring for all, made here.
    this.ticketKeys = s.ticketKeyFiles.length > 0 ? null : [generateTicketKey()];
    this.cacheRelay = new CacheRelay(() => this.slots.flatMap((w) => (w.child === null ? [] : [w.child])), log);
    this.filesOf = s;
    this.keepFiles(s, o.startFiles);
  }

  /** The bytes of a load that succeeded (checkAndRecord's), for the workers forked from now on and the reloads passed on. */
  private keepFiles(s: ListenerSettings, files: Recorded): void {
    this.filesOf = s;
    this.heldFiles = files.text;
    if (files.text === null) this.log.info('the certificate, ticket key and upstream CA files are too large to hand to the workers: a restarted worker reads them from disk');
    else if (files.leftOut.length > 0) this.log.info({ files: files.leftOut }, 'these upstream CA files are too large to hand to the workers with the certificates: a worker reads them from disk');
  }

  /**
   * HUP: checks `s` as a worker would (checkAndRecord, which throws its
   * error) and holds the bytes that check read, as the start does: one read
   * of each file, and the workers get exactly the bytes checked.
   */
  private checkAndHold(s: ListenerSettings): void {
    this.keepFiles(s, checkAndRecord(s));
  }

  /**
   * --acme-domain: a new pair stored. Reads the certificate, key and
   * --ticket-keys files of `s` again and holds their bytes (with the
   * --upstream-ca bytes the settings carry) for the workers forked from now
   * on. When they do not load, the previous copy is kept, as a worker's
   * reload keeps its previous certificates.
   */
  private holdFiles(s: ListenerSettings): void {
    try {
      this.keepFiles(s, recordReads(() => {
        planCertificates(s.certificates);
        readTicketKeyFiles(s.ticketKeyFiles, silentLogger);
        holdCarriedFiles(s);
      }));
    } catch (err) {
      const kept = this.heldFiles === null ? 'a restarted worker reads them from disk' : 'a restarted worker starts from the copy of the last load that succeeded';
      this.log.warn({ detail: (err as Error).message }, `the certificate or ticket key files do not load; ${kept}`);
    }
  }

  /** The bound --listen addresses, in order. */
  get addresses(): string[] {
    return this.bound.addresses;
  }

  get workerPids(): number[] {
    return this.slots.flatMap((w) => (w.child?.pid === undefined ? [] : [w.child.pid]));
  }

  /** Forks the workers, from the bytes the start-up check read (runPrimary: checkAndRecord), not a second read. */
  start(): void {
    for (const w of this.slots) this.spawn(w);
    if (this.ticketKeys !== null) {
      this.rotation = setInterval(() => this.rotateTicketKeys(), TICKET_KEY_ROTATION_MS);
      this.rotation.unref();
    }
  }

  /** The admin and redirect listeners, closed after the workers. */
  hold(listener: { close(): Promise<void> } | null): void {
    this.others.push(listener);
  }

  private spawn(w: Slot): void {
    w.timer = null;
    w.ready = false;
    // A reload marked for the worker this one replaces (it died starting) is not this one's: it starts
    // from the text and files checked last (below), and a reload checked from now on marks it anew.
    w.reloadPending = false;
    w.startedAt = Date.now();
    w.certificatesAtSpawn = this.certificates;
    const fds = this.bound.slots[w.index - 1]!;
    const env: NodeJS.ProcessEnv = { ...process.env, [WORKER_ENV]: String(w.index), [WORKER_FDS_ENV]: fds.map((_, i) => FIRST_LISTEN_FD + i).join(',') };
    const nodeOptions = withoutInspectFlags(process.env.NODE_OPTIONS);
    if (nodeOptions === undefined) delete env.NODE_OPTIONS;
    else env.NODE_OPTIONS = nodeOptions;
    // The configuration last loaded, not the file as it is now (nginx's master respawns from memory).
    // Its restart-only settings (listen, ...) as every other worker's, whatever a reload loaded since.
    if (this.config === null) {
      delete env[WORKER_CONFIG_ENV];
      delete env[WORKER_STARTED_ENV];
    } else {
      env[WORKER_CONFIG_ENV] = this.config.text;
      env[WORKER_STARTED_ENV] = this.config.startedRestartOnly;
    }
    if (this.heldFiles === null) delete env[WORKER_FILES_ENV];
    else env[WORKER_FILES_ENV] = this.heldFiles;
    // execArgv []: no --inspect (or anything else node was started with) reaches a worker.
    const child = fork(process.argv[1]!, process.argv.slice(2), { env, execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...fds] });
    w.child = child;
    this.log.info({ worker: w.index, workerPid: child.pid }, 'worker started');
    child.on('message', (m: unknown) => this.onMessage(w, child, m));
    child.on('message', (m: unknown) => this.cacheRelay.onMessage(child, m));
    child.on('error', (err) => {
      // fork(2) itself failed (EAGAIN, ENOMEM): no 'exit' will follow, so it counts as a death here.
      if (child.pid === undefined) {
        this.log.error({ worker: w.index, err: err.message }, 'cannot start a worker');
        this.onExit(w, child, null, null);
      } else {
        // A failed send to a dying worker: its 'exit' follows and says what happened.
        this.log.debug({ worker: w.index, err: err.message }, 'worker channel error');
      }
    });
    child.once('exit', (code, signal) => this.onExit(w, child, code, signal));
  }

  private onMessage(w: Slot, child: ChildProcess, m: unknown): void {
    if (!isToPrimary(m)) return;
    if (m.type === 'hello') {
      this.send(child, { type: 'start', ticketKeys: this.ticketKeys?.map((k) => k.toString('base64')) ?? null, challenges: this.acme?.challenges.snapshot() ?? [] });
      // It may have loaded the pair before a new one was stored, and the news came before it listened.
      if (w.certificatesAtSpawn !== this.certificates) this.send(child, { type: 'certificates' });
    } else if (m.type === 'ready') {
      w.ready = true;
      w.answersTlsAlpn01 = m.answersTlsAlpn01;
      if (w.reloadPending) this.sendReload(child);
      w.reloadPending = false;
      this.log.info({ worker: w.index, workerPid: child.pid }, 'worker ready');
      if (!this.announced && this.slots.every((x) => x.ready)) {
        this.announced = true;
        this.log.info({ listen: this.addresses[0], addresses: this.addresses, workers: this.slots.length, workerPids: this.workerPids }, this.readyMessage);
        this.announce(this.slots.every((x) => x.answersTlsAlpn01));
      }
    } else {
      // A late answer of a worker that has exited must not bring its counts back beside the retired ones.
      if (w.child !== child || child.pid === undefined) return;
      this.counters.answered(child.pid, m.metrics as Metrics);
      const waiter = this.metricsWaiters.get(m.id);
      if (waiter === undefined) return;
      if (++waiter.got === waiter.want) waiter.done();
    }
  }

  private onExit(w: Slot, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (w.child === child) w.child = null;
    this.cacheRelay.workerExited(child.pid);
    this.counters.exited(child.pid);
    for (const notify of [...this.exited]) notify();
    if (this.stopping) {
      this.log.info({ worker: w.index, workerPid: child.pid, code, signal }, 'worker stopped');
      return;
    }
    if (!this.announced) {
      // Before every worker ever served, a death is a start-up failure (a certificate OpenSSL refuses,
      // --offload kernel without kTLS): fail as one process would, rather than restart forever.
      this.log.error({ worker: w.index, workerPid: child.pid, code, signal }, 'a worker failed to start (its error is above): stopping');
      void this.shutdown('SIGTERM', STOP_GRACE_MS).then(() => process.exit(2));
      return;
    }
    w.deaths = deathsInRow(w.deaths, Date.now() - w.startedAt);
    const delayMs = restartDelayMs(w.deaths);
    const why = signal !== null ? `killed by ${signal}` : `exited with status ${code}`;
    this.log.error({ worker: w.index, workerPid: child.pid, code, signal, deathsInRow: w.deaths, restartInMs: delayMs }, `worker ${why}; restarting it in ${delayMs} ms`);
    w.timer = setTimeout(() => this.spawn(w), delayMs);
  }

  private send(child: ChildProcess, m: ToWorker): void {
    if (child.connected) child.send(m, (err) => err && this.log.debug({ workerPid: child.pid, err: err.message }, 'message to a worker not delivered'));
  }

  private rotateTicketKeys(): void {
    if (this.ticketKeys === null) return;
    this.ticketKeys = rotateTicketKeys(this.ticketKeys, generateTicketKey());
    this.broadcast({ type: 'ticket-keys', keys: this.ticketKeys.map((k) => k.toString('base64')) });
    this.log.info({ workers: this.workerPids.length }, 'session ticket keys rotated: new tickets under a new key; the previous key still resumes sessions');
  }

  private broadcast(m: ToWorker): void {
    for (const w of this.slots) if (w.child) this.send(w.child, m);
  }

  /** --acme-domain: a new pair is in the storage directory; every worker takes it into service as on HUP (new handshakes only). */
  certificatesStored(): void {
    this.certificates++;
    this.holdFiles(this.filesOf);
    this.broadcast({ type: 'certificates' });
  }

  /** --cache: the admin listener's POST /purge, through a worker (cache-relay.ts). */
  purgeCache(url: string): Promise<PurgeResult> {
    return this.cacheRelay.purge(url);
  }

  /**
   * Every live worker's registry as JSON (for the admin listener), and the
   * counters of the workers that exited; a worker that does not answer in 2 s
   * counts with its last answer (worker-counters.ts).
   */
  workerMetrics(): Promise<unknown[][]> {
    const live = this.slots.flatMap((w) => (w.child?.connected ? [w.child] : []));
    if (live.length === 0) return Promise.resolve(this.counters.toSum());
    const id = ++this.metricsId;
    return new Promise((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.metricsWaiters.delete(id);
        resolve(this.counters.toSum());
      };
      const waiter = { want: live.length, got: 0, done: finish };
      const timer = setTimeout(finish, 2_000);
      this.metricsWaiters.set(id, waiter);
      for (const child of live) this.send(child, { type: 'metrics', id });
    });
  }

  /** TERM, INT, QUIT, KILL: to every worker (one still starting just ends: it serves nothing yet). */
  private signalWorkers(signal: NodeJS.Signals): void {
    for (const w of this.slots) w.child?.kill(signal);
  }

  /** USR1: only to ready workers (see Slot.ready). */
  private signalReadyWorkers(signal: 'SIGUSR1'): void {
    for (const w of this.slots) if (w.child && w.ready) w.child.kill(signal);
  }

  /** The text and files checked last (null: no --config): what a worker's reload applies, as a restarted worker's start (worker-protocol.ts, 'reload'). */
  private sendReload(child: ChildProcess): void {
    this.send(child, { type: 'reload', config: this.config?.text ?? null, files: this.heldFiles });
  }

  /**
   * HUP. One at a time, in the order they came: two checks running side by
   * side could keep the older text last while the workers apply the newer.
   */
  reload(): Promise<void> {
    this.reloading = this.reloading.then(() => this.reloadOnce());
    return this.reloading;
  }

  private async reloadOnce(): Promise<void> {
    if (this.stopping) return;
    const loaded = await this.checkReload();
    if (this.stopping || !loaded) return;
    this.log.info({ workers: this.workerPids }, 'reload: passing the checked settings to every worker');
    for (const w of this.slots) {
      if (w.child && w.ready) this.sendReload(w.child);
      else if (w.child) w.reloadPending = true;
    }
  }

  /**
   * HUP: the settings a worker's reload would load (--config, when given, read
   * again; with the restart-only ones as started), checked as it would check
   * them. As nginx's master checks a new configuration before any worker
   * sees it, a mistake (a file that is not YAML, a key that is not the
   * certificate's) is one line, here, and no worker is told: each keeps
   * serving what it serves. Otherwise the text and the files are held for
   * the workers restarted from now on, and a restart-only change is said
   * once, here, rather than by every worker.
   */
  private async checkReload(): Promise<boolean> {
    try {
      if (this.config === null) {
        // The command line cannot change; the files it names can, the carried ones too (a CA bundle replaced).
        this.checkAndHold(this.resolveAgain === null ? this.s : await this.resolveAgain());
        return true;
      }
      const { text, settings } = await this.config.load();
      const applied = this.config.asStarted(settings as PrimarySettings);
      this.checkAndHold(applied);
      this.config.keep(text);
      const kept = this.config.restartOnlyChanged(settings as PrimarySettings);
      if (kept.length > 0) this.log.warn({ settings: kept }, `reload: ${kept.join(', ')} changed; these take effect only on a restart, and the current values stay`);
      return true;
    } catch (err) {
      const e = err as Error & { code?: string };
      this.log.error({ error: e.code, detail: e.message }, 'reload failed: still serving with the previous settings and certificates');
      return false;
    }
  }

  reopenLogs(): void {
    this.signalReadyWorkers('SIGUSR1');
  }

  /** TERM/INT: the workers stop gracefully (each within --shutdown-timeout); then the primary. */
  async stop(signal: string): Promise<void> {
    if (this.stopping) {
      this.log.info({ signal }, 'already stopping');
      return;
    }
    await this.shutdown(signal as NodeJS.Signals, this.s.shutdownTimeoutMs + STOP_GRACE_MS);
  }

  /** QUIT: the workers stop at once. */
  async close(): Promise<void> {
    await this.shutdown('SIGQUIT', STOP_GRACE_MS);
  }

  private async shutdown(signal: NodeJS.Signals, deadlineMs: number): Promise<void> {
    this.stopping = true;
    if (this.rotation) clearInterval(this.rotation);
    for (const w of this.slots) if (w.timer) clearTimeout(w.timer);
    this.log.info({ signal, workers: this.workerPids }, `stopping: passing ${signal} to every worker`);
    // Closing the primary's copies first: once the workers have closed theirs, the sockets are gone and new connections are refused.
    // (Once: a QUIT during a TERM escalates, passing QUIT on, and must not close them twice.)
    for (const fd of new Set(this.bound.slots.splice(0).flat())) this.native.closeFd(fd);
    this.signalWorkers(signal);
    const allExited = (): boolean => this.slots.every((w) => w.child === null);
    let timer: NodeJS.Timeout | undefined;
    const clean = await new Promise<boolean>((resolve) => {
      const check = (): void => {
        if (!allExited()) return;
        this.exited.delete(check);
        resolve(true);
      };
      this.exited.add(check);
      timer = setTimeout(() => resolve(false), deadlineMs);
      check();
    });
    clearTimeout(timer);
    if (!clean) {
      this.log.warn({ workers: this.workerPids, deadlineMs }, 'workers still running at the deadline: killing them (SIGKILL)');
      this.signalWorkers('SIGKILL');
    }
    await Promise.all(this.others.map((x) => x?.close()));
    this.log.info({ signal }, 'stopped: every worker has exited');
  }
}

const READY_MESSAGE = { serve: 'serving files over HTTPS', http: 'proxying', tcp: 'proxying' } as const;

/** `aludel proxy --cache`: the settings are a proxy's (PrimarySettings leaves the cache out) and name a cache. */
function hasCache(s: PrimarySettings): boolean {
  return s.mode === 'http' && ((s as { cache?: unknown }).cache ?? null) !== null;
}

/**
 * Whether this process starts a primary and its workers (not a worker itself,
 * and more than one wanted). With --workers auto where workers cannot run,
 * one process serves: an info line says why (workersToStart).
 */
export function startsWorkers(s: Pick<ListenerSettings, 'workers' | 'workersAuto' | 'logLevel'>, role: WorkerRole | null): boolean {
  if (role !== null || s.workers <= 1) return false;
  const addon = loadAddon();
  const plan = workersToStart(s, addon instanceof Error ? addon.message.split('\n')[0]! : null);
  if (plan.oneProcessBecause !== null) createLogger({ level: s.logLevel }).info({ workers: plan.workers, cpus: s.workers }, plan.oneProcessBecause);
  return plan.workers > 1;
}

/**
 * Refuses what every worker would refuse at its start (a key that is not the
 * certificate's, a pair OpenSSL refuses such as an "ee key too small", a
 * --ciphers list it matches nothing in, --offload kernel without kTLS), by
 * building the TLS listeners a worker builds, never bound and logging
 * nowhere. As nginx's master checks its configuration before it starts a
 * worker (`nginx -t`): one error, the one `--workers 1` gives, reading the
 * files by their own paths, nothing bound or forked.
 */
function checkAsWorkerWould(s: ListenerSettings): void {
  new Listeners(s, silentLogger, undefined, false);
}

/**
 * checkAsWorkerWould, its reads recorded with the bytes the settings carry:
 * the text for WORKER_FILES_ENV (null: too large to hold). The start and
 * each HUP go through here, so what the workers get is what was checked,
 * one read of each file (before, the start checked the pairs, then read
 * them again to hold them: a file replaced in between reached the workers
 * unchecked).
 */
function checkAndRecord(s: ListenerSettings): Recorded {
  return recordReads(() => {
    checkAsWorkerWould(s);
    holdCarriedFiles(s);
  });
}

/**
 * The files whose bytes the settings carry, checked as they were assembled
 * (--upstream-ca), held with the files the check read: a worker's start and
 * reload read them from the primary's copy (held-files.ts), so a bundle
 * replaced after the check reaches no worker, and a restarted worker trusts
 * what the running ones trust (nginx's workers take the
 * proxy_ssl_trusted_certificate their master read).
 */
function holdCarriedFiles(s: ListenerSettings): void {
  for (const u of (s as Partial<ProxySettings>).upstreams ?? []) {
    if (u.tls?.caFile && u.tls.caPem) noteCarried(u.tls.caFile, u.tls.caPem);
  }
}

/** Binds the listeners, starts the workers and the primary's own listeners. */
export async function runPrimary(s: PrimarySettings, config: HeldConfig | null = null, resolveAgain: (() => Promise<ListenerSettings>) | null = null): Promise<Primary> {
  const log = createLogger({ level: s.logLevel });
  const addon = loadAddon();
  if (addon instanceof Error) {
    throw new AludelError('ERR_WORKERS_UNAVAILABLE', `--workers ${s.workers}: the workers share listening sockets made by Aludel's addon, which did not load (${addon.message}); run with --workers 1`);
  }
  // One process orders and renews: this one, which outlives the workers. Before they start: they load the stand-ins.
  const acme = s.mode === 'tcp' ? null : await prepareAcme(s as PrimarySettings & HttpServerSettings, log, () => primary.certificatesStored());
  // After prepareAcme: with --acme-domain the pairs checked are its stand-ins or stored pairs.
  const startFiles = checkAndRecord(s);
  const bound = bindListeners(addon, s);
  const primary = new Primary({ settings: s, log, native: addon, bound, readyMessage: READY_MESSAGE[s.mode], acme, config, startFiles, resolveAgain });
  const how = s.reusePort ? `each of ${s.workers} workers has its own SO_REUSEPORT socket on` : `${s.workers} workers share`;
  log.info({ addresses: bound.addresses, workers: s.workers, reusePort: s.reusePort }, `primary: ${how} ${bound.addresses.join(' ')}`);
  primary.start();
  if (s.mode !== 'tcp' && s.redirectHttp) primary.hold(await startRedirectFor(s as PrimarySettings & HttpServerSettings, bound.addresses, log, acme?.http01));
  const status = acme === null ? undefined : () => acme.status();
  const purge = hasCache(s) ? (url: string): Promise<PurgeResult> => primary.purgeCache(url) : undefined;
  if (s.admin !== null) primary.hold(await startWorkerAdmin({ ...s.admin, command: s.mode === 'http' ? 'proxy' : s.mode, listen: bound.addresses.join(' '), source: primary, acme: status, log, purge }));
  primary.hold(acmeCloser(acme));
  // The first orders once every worker listens: they answer TLS-ALPN-01, and their TLS engine decides whether it can be used.
  // The primary has no TLS listener of its own: the challenge reaches the workers through its registry.
  void primary.allReady.then((answersTlsAlpn01) => startAcme(acme, s as PrimarySettings & HttpServerSettings, { answersTlsAlpn01, setAcmeChallenges: () => undefined }, log));
  return primary;
}

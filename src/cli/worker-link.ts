/**
 * The worker side of --workers N: a serve/proxy/tcp process like any other,
 * except that it accepts on the listening sockets it inherited from the
 * primary, takes the primary's session ticket keys, answers its metrics
 * requests, and leaves the admin and redirect listeners to it. With
 * --acme-domain it orders nothing: it keeps the primary's pending challenges
 * and takes each new certificate into service when the primary says so. A
 * reload is the primary's: it reads and checks --config on HUP and sends the
 * text it checked, which the worker applies (never the file as it is by then:
 * an edit made after the check would reach the workers unchecked, and a
 * worker restarted from the primary's copy would serve another setup). The
 * certificate, key, ticket key and --upstream-ca files come with it, as the primary read
 * them for its check (held-files.ts). A SIGHUP sent to a worker itself is
 * ignored and logged (signals.ts), as nginx's workers ignore it: only the
 * master reloads. A worker whose primary is gone (its IPC channel closed: the primary was
 * killed) stops gracefully, as on SIGTERM, so no worker outlives its primary;
 * one still starting (nothing accepted yet) exits at once.
 */
import { Gauge } from 'prom-client';
import type { Logger } from '../log/logger.js';
import type { ListenerSettings } from '../config/proxy-settings.js';
import { registerAdminMetrics } from '../metrics/admin-server.js';
import type { TrafficStats } from '../metrics/traffic-stats.js';
import type { UpstreamGroup } from '../proxy/upstream-group.js';
import type { Listeners } from './listeners.js';
import { challengeKey, type ChallengeRegistry } from '../tls/acme/challenges.js';
import { dropHeldFiles } from '../config/held-files.js';
import { isToWorker, type ToPrimary, type ToWorker, type WorkerRole } from './worker-protocol.js';

/** --acme-domain in a worker: the primary orders; the worker answers and serves. */
export interface WorkerAcme {
  challenges: ChallengeRegistry;
  /** Takes the pairs in the storage directory into service (the listeners' reconfigure(), as on HUP). */
  reloadCertificates(): void;
}

export interface WorkerParts {
  listeners: Listeners;
  stats: TrafficStats;
  /** proxy/tcp: the upstreams in force, for aludel_upstream_up. */
  group: (() => UpstreamGroup) | null;
  log: Logger;
  acme: WorkerAcme | null;
  /**
   * Reloads with `configText`, the --config text the primary checked (null: no --config), reading the
   * certificate, key, ticket key and --upstream-ca files from `files`, the primary's copy (held-files.ts, withHeldFiles).
   * The worker's Serving.reload: logs its own success or failure; calls apply in the order they came.
   */
  reload(configText: string | null, files: string | null): void;
}

/**
 * The worker's end of the IPC channel to its primary: `process` in a worker,
 * a stand-in in tests. `send` takes a callback so that a closed channel is a
 * failed send, not an 'error' event on process that nobody handles.
 */
export interface PrimaryChannel {
  readonly connected: boolean;
  send(m: ToPrimary, done: (err: Error | null) => void): void;
  on(event: 'message', listener: (m: unknown) => void): unknown;
  once(event: 'disconnect', listener: () => void): unknown;
}

/** How attachWorker reaches its primary, and what it does once the primary is gone. */
export interface PrimaryLink {
  channel: PrimaryChannel;
  /** Called at most once, after the line saying the primary is gone. */
  stop(): void;
}

const processChannel: PrimaryChannel = {
  get connected() {
    return process.send !== undefined && process.connected;
  },
  send(m, done) {
    if (process.send === undefined) done(new Error('no IPC channel to the primary'));
    else process.send(m, undefined, undefined, done);
  },
  on: (event, listener) => process.on(event, listener),
  once: (event, listener) => process.once(event, listener),
};

/** Its signal handlers are installed (reportWorkerReady): a TERM to itself is a graceful stop. */
let handlersInstalled = false;

const processLink: PrimaryLink = {
  channel: processChannel,
  stop() {
    // Serving: stop as on TERM, draining the connections within --shutdown-timeout. Still starting:
    // no connection was accepted, and TERM would take its default action (death by signal); exit instead.
    if (handlersInstalled) process.kill(process.pid, 'SIGTERM');
    else process.exit(0);
  },
};

/**
 * A failed send means the channel closed: the primary is gone, which the
 * 'disconnect' handler (or attachWorker's check of `connected`) acts on.
 */
function send(m: ToPrimary, channel: PrimaryChannel = processChannel): void {
  channel.send(m, () => undefined);
}

function keys(base64: readonly string[]): Buffer[] {
  return base64.map((k) => Buffer.from(k, 'base64'));
}

/**
 * Waits for the primary's 'start', installs its ticket keys, listens on the
 * inherited sockets. Returns the bound addresses. If the primary is gone
 * (killed while this worker started: the channel may be closed already, and
 * its 'disconnect' then came before anyone listened), says so and stops
 * through `link.stop`; the promise then never settles.
 */
export async function attachWorker(role: WorkerRole, s: ListenerSettings, p: WorkerParts, link: PrimaryLink = processLink): Promise<string[]> {
  const { channel } = link;
  let gone = false;
  const primaryGone = (): void => {
    if (gone) return;
    gone = true;
    p.log.warn({ worker: role.index }, 'the primary is gone: stopping this worker gracefully');
    link.stop();
  };
  // Before any send: a send to a closed channel fails, and this is what handles it.
  channel.once('disconnect', primaryGone);
  const started = new Promise<Extract<ToWorker, { type: 'start' }>>((resolve) => {
    channel.on('message', (m: unknown) => {
      if (!isToWorker(m)) return;
      if (m.type === 'start') {
        // Here, not after the await: a change the primary sent after 'start' may be read in the same chunk and must come after these.
        for (const challenge of m.challenges) onAcmeMessage({ type: 'acme-challenge', op: 'add', challenge }, p);
        resolve(m);
      } else if (m.type === 'ticket-keys') p.listeners.setTicketKeys(keys(m.keys));
      else if (m.type === 'metrics') void p.stats.registry.getMetricsAsJSON().then((metrics) => send({ type: 'metrics', id: m.id, metrics }, channel));
      else if (m.type === 'reload') p.reload(m.config, m.files);
      else onAcmeMessage(m, p);
    });
  });
  if (!channel.connected) primaryGone();
  else send({ type: 'hello' }, channel);
  const start = await started;
  if (start.ticketKeys !== null) p.listeners.setTicketKeys(keys(start.ticketKeys));
  // The primary's /metrics sums the workers' registries: each carries what one process's admin listener shows.
  if (s.admin !== null) {
    registerAdminMetrics({ stats: p.stats, server: p.listeners, group: p.group });
    registerWorkerGauge(role, p);
  }
  return p.listeners.listen(s, p.log, role.fds);
}

function onAcmeMessage(m: Extract<ToWorker, { type: 'acme-challenge' | 'certificates' }>, p: WorkerParts): void {
  if (p.acme === null) return;
  if (m.type === 'acme-challenge') {
    p.acme.challenges.apply(m);
    p.log.debug({ kind: m.challenge.kind, op: m.op, challenge: challengeKey(m.challenge) }, 'acme: challenge from the primary');
    return;
  }
  try {
    // A pair stored after this worker was forked: the disk has it, the primary's copy it started from does not (held-files.ts).
    dropHeldFiles();
    p.acme.reloadCertificates();
    p.log.info('acme: new certificate from the primary in service: new handshakes get it, connections in flight keep theirs');
  } catch (err) {
    // The primary checked the pair before storing it; this is the disk or a race with a second writer. The old pair keeps serving.
    p.log.error({ error: (err as Error).message }, 'acme: cannot take the new certificate into service; the previous one keeps serving');
  }
}

/**
 * The one figure that matters per worker (issue 17): its open connections,
 * labelled with its index and pid. The primary's aggregation sums series with
 * equal labels only, so each worker's series stays its own beside the summed
 * aludel_connections_open (a worker holding far more than the others shows).
 */
function registerWorkerGauge(role: WorkerRole, p: WorkerParts): void {
  const labels = { worker: String(role.index), pid: String(process.pid) };
  new Gauge({
    name: 'aludel_worker_connections_open',
    help: 'Client connections open now in each worker process (--workers), handshaking ones included',
    labelNames: ['worker', 'pid'],
    registers: [p.stats.registry],
    collect() {
      this.set(labels, p.listeners.connectionCount);
    },
  });
}

/**
 * Tells the primary this worker serves. Called once the signal handlers are
 * installed (handleServingSignals): the primary passes reloads and USR1 only
 * to ready workers (a reload needs the serving state; before the handlers a
 * USR1 would open Node's inspector). From here on, a
 * primary that is gone means a graceful stop through the TERM handler.
 */
export function reportWorkerReady(addresses: readonly string[], listeners: Listeners): void {
  handlersInstalled = true;
  // Started: the start-up copy is done with; each reload brings the copy of its own check (held-files.ts, withHeldFiles).
  dropHeldFiles();
  send({ type: 'ready', addresses: [...addresses], answersTlsAlpn01: listeners.answersTlsAlpn01 });
}

/**
 * Signals of a serving process (serve, proxy, tcp), handled deliberately and
 * each logged, as nginx and HAProxy admins expect:
 * - HUP (`systemctl reload`, certificate-renewal hooks): reload settings and
 *   certificates; Node's default would kill the process, silently. In a
 *   worker of --workers N it is ignored, and logged so, as nginx's workers
 *   ignore it: the primary reloads (it checks --config and sends every worker
 *   the text it checked, worker-link.ts). A worker reading the file on its own
 *   would serve what nobody checked and what a restarted worker (started
 *   from the primary's copy) does not; a `pkill -HUP aludel` that reaches the
 *   primary too reloads once, through it.
 * - TERM and INT: graceful stop within --shutdown-timeout.
 * - QUIT: stop at once (nginx's fast shutdown is TERM; here TERM is graceful
 *   because systemd sends it, and QUIT is the way to cut).
 * - USR1: reopen the access log after rotation. Node's default is to start
 *   the inspector on 127.0.0.1:9229, which in a root process hands any local
 *   user a debugger. A JS listener replaces that default (Node 20 has no
 *   --disable-sigusr1), so the inspector never opens.
 * - USR2: ignored, and logged so. nginx admins send it by habit (binary
 *   upgrade), which Aludel does not have; Node's default action would end the
 *   process at once (status 140), without a log line or a drain. WINCH and
 *   PIPE are left alone: their default actions do nothing already, and a
 *   WINCH line would come with every resize of the terminal one runs in.
 * - ALRM and IO: ignored, and logged so. nginx's master catches both
 *   (ngx_process.c: they only set flags its loop reads) and lives on; their
 *   default action here would end the process at once (status 142, 157),
 *   without a line, whoever sent them (a stray `kill -ALRM`, a tool's timer).
 */
import type { Logger } from '../log/logger.js';

export interface SignalTargets {
  reload(): Promise<void>;
  stop(signal: string): Promise<void>;
  close(): Promise<void>;
  reopenLogs(): void;
}

/** `worker`: this process is a worker of --workers N (HUP ignored, see above). */
export function handleServingSignals(log: Logger, t: SignalTargets, worker = false): void {
  const exitAfter = (p: Promise<void>): void => {
    void p.then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ detail: (err as Error).message }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => exitAfter(t.stop(signal)));
  process.on('SIGQUIT', () => {
    log.info({ signal: 'SIGQUIT' }, 'stopping now: open connections are closed');
    exitAfter(t.close());
  });
  process.on('SIGHUP', () => {
    if (worker) {
      log.warn({ signal: 'SIGHUP', primaryPid: process.ppid }, WORKER_HUP_IGNORED);
      return;
    }
    log.info({ signal: 'SIGHUP' }, 'reloading settings and certificates');
    void t.reload();
  });
  process.on('SIGUSR1', () => {
    log.info({ signal: 'SIGUSR1' }, 'reopening the access log (the Node inspector stays off)');
    t.reopenLogs();
  });
  process.on('SIGUSR2', () => {
    log.warn({ signal: 'SIGUSR2' }, USR2_IGNORED);
  });
  for (const signal of SHRUGGED) process.on(signal, () => log.warn({ signal }, ignoredLine(signal)));
}

/** Signals with no use here whose default action would end the process (see above). */
export const SHRUGGED = ['SIGALRM', 'SIGIO'] as const;

/** The line of an ignored SHRUGGED signal. */
export function ignoredLine(signal: string): string {
  return `${signal} ignored (it does nothing here): SIGHUP reloads settings and certificates, SIGTERM or SIGINT stops gracefully, SIGQUIT at once, SIGUSR1 reopens the access log`;
}

/** What USR2 does here, and what the signals that do something are for. */
export const USR2_IGNORED = 'SIGUSR2 ignored (Aludel has no binary upgrade): SIGHUP reloads settings and certificates, SIGTERM or SIGINT stops gracefully, SIGQUIT at once, SIGUSR1 reopens the access log';

/** A HUP sent to a worker itself. */
export const WORKER_HUP_IGNORED = 'SIGHUP ignored by a worker: send it to the primary (primaryPid), which checks the settings and reloads every worker with them';

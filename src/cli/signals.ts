/**
 * Signals of a serving process (serve, proxy, tcp), handled deliberately:
 * - INT and TERM: graceful stop.
 * - HUP: what `systemctl reload` and certificate-renewal hooks send. Node's
 *   default is to die, silently. Reload is not implemented yet, so the
 *   process keeps serving with what it has and says so once per signal.
 * - USR1: nginx admins send it to reopen logs. Node's default is to start the
 *   inspector on 127.0.0.1:9229, which in a root process hands any local user
 *   a debugger. A JS listener replaces that default (Node 20 has no
 *   --disable-sigusr1); the logs go to stdout, so there is nothing to reopen.
 */
import type { Logger } from '../log/logger.js';

export function handleServingSignals(log: Logger, stop: (signal: string) => void): void {
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  process.on('SIGHUP', () => log.warn({ signal: 'SIGHUP' }, 'reload is not supported yet: still serving with the certificates and settings it started with; restart to apply changes'));
  process.on('SIGUSR1', () => log.info({ signal: 'SIGUSR1' }, 'logs go to stdout: nothing to reopen (the Node inspector stays off)'));
}

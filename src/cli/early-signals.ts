/**
 * The first module the CLI loads: main.ts imports it before anything else,
 * and ES modules run in import order, so this runs before the rest of the
 * program is even evaluated (about half a second of module loading). Until
 * handleServingSignals (signals.ts) adds the real listeners beside these:
 * - USR1 must not open Node's inspector, which listens on 127.0.0.1:9229 for
 *   any local user (Node 20 has no --disable-sigusr1; a listener replaces
 *   the default), whatever the command;
 * - a serving process (serve, proxy, tcp, and their --workers, which run
 *   with the same arguments) must not die of a HUP, USR2, ALRM or IO sent
 *   while it starts (systemd's reload, a group-wide `kill`): their default
 *   actions end the process at once, without a log line.
 * A one-shot command (cert, doctor, scan, run...) keeps HUP's default: a
 * closed terminal still ends it.
 */
const ignore = (): void => undefined;

process.on('SIGUSR1', ignore);
if (['serve', 'proxy', 'tcp'].includes(process.argv[2] ?? '')) {
  process.on('SIGHUP', ignore);
  process.on('SIGUSR2', ignore);
  process.on('SIGALRM', ignore);
  process.on('SIGIO', ignore);
}

/**
 * A long-running child (nginx, redis-server) for a test: its output kept for
 * error messages, readiness polled with a deadline, stopped with SIGTERM and
 * then SIGKILL, and reaped if the test process exits first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { reapOnExit } from './run-process.js';
import { delay } from './wait.js';

/** Output kept per daemon: enough for the error that explains a failed start. */
const OUTPUT_LIMIT = 64 * 1024;

export interface Daemon {
  child: ChildProcess;
  /** The last OUTPUT_LIMIT characters of stdout and stderr, interleaved. */
  output(): string;
  /** True until the process exits (or fails to spawn). */
  alive(): boolean;
  /** How it ended, for error messages: "exit 1", "signal SIGKILL", "spawn error ENOENT". */
  ending(): string;
  /** SIGTERM, then SIGKILL after graceMs; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

/** `env` is added to process.env. */
export function spawnDaemon(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Daemon {
  const child = reapOnExit(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: options.cwd, env: { ...process.env, ...options.env } }));
  let out = '';
  let ended: string | null = null;
  const keep = (chunk: Buffer): void => {
    out = (out + chunk.toString('utf8')).slice(-OUTPUT_LIMIT);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  const gone = new Promise<void>((resolve) => {
    // 'error' without 'exit' when the binary is missing (ENOENT): the package is not installed.
    child.once('error', (err: NodeJS.ErrnoException) => {
      ended ??= `spawn error ${err.code ?? err.message}`;
      resolve();
    });
    child.once('exit', (code, signal) => {
      ended ??= signal ? `signal ${signal}` : `exit ${code}`;
      resolve();
    });
  });
  return {
    child,
    output: () => out,
    alive: () => ended === null,
    ending: () => ended ?? 'running',
    async stop(graceMs = 3000) {
      if (ended !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await gone;
      clearTimeout(timer);
    },
  };
}

/**
 * Polls `ready` every 25 ms until it resolves true. Rejects, with `describe()`
 * (logs and output) in the message, when the daemon exits first or after
 * timeoutMs; a daemon not ready in time is stopped first, since the caller
 * never gets a handle to stop it (a live child keeps the test file's process,
 * and so the whole run, waiting until the file's own timeout).
 */
export async function waitReady(daemon: Daemon, what: string, ready: () => Promise<boolean>, describe: () => Promise<string>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!daemon.alive()) throw new Error(`${what} ended (${daemon.ending()}) before it was ready:\n${await describe()}`);
    if (await ready()) return;
    if (Date.now() > deadline) {
      const output = await describe();
      await daemon.stop();
      throw new Error(`${what} not ready within ${timeoutMs} ms:\n${output}`);
    }
    await delay(25);
  }
}

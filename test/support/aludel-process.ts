/**
 * The real CLI as a child process: `aludel serve` with its pino JSON log read
 * line by line, or any command run to completion. Everything is bounded by
 * timeouts, and no child outlives the test process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Fixtures } from './fixtures.js';
import { reapOnExit, run } from './run-process.js';

/** dist/test/support/aludel-process.js -> dist/src/cli/aludel.js: the bundle that `aludel` runs (package.json "bin", scripts/bundle.mjs). */
export const CLI = fileURLToPath(new URL('../../src/cli/aludel.js', import.meta.url));

export type LogLine = Record<string, unknown> & { level: number; msg: string };

export interface Running {
  port: number;
  logs: LogLine[];
  /** The stdout lines exactly as written (logs[i] is JSON.parse(raw[i])). */
  raw: string[];
  child: ChildProcess;
  /** Non-JSON stdout lines and all of stderr, for diagnostics. */
  stderr(): string;
  /** Index to pass as `from` so only lines logged after now are considered. */
  mark(): number;
  /** First log line (at index >= from) satisfying predicate; rejects after timeoutMs or when the process exits. */
  waitForLog(predicate: (l: LogLine) => boolean, timeoutMs?: number, from?: number): Promise<LogLine>;
  /** SIGTERM, then SIGKILL if the process has not exited within 3 s. Resolves with the exit code. */
  stop(): Promise<number | null>;
}

export interface StartOptions {
  /** Added to process.env. */
  env?: NodeJS.ProcessEnv;
  /** How long start-up may take. Default 10 s. */
  startTimeoutMs?: number;
  /** Runs the CLI through this command, e.g. ['ip', 'netns', 'exec', name] (which execs, so signals reach node). */
  prefix?: readonly string[];
  /**
   * The --workers added to serve, proxy and tcp when `args` has none: '1' by
   * default (one process: most tests read its pid, signal it or count its
   * metrics); null adds none, so the command's own default (auto) applies.
   */
  workers?: string | null;
}

/** The commands that take --workers. */
const WORKER_COMMANDS = new Set(['serve', 'proxy', 'tcp']);

/**
 * `args` with `--workers <workers>` after the command name, unless it is not
 * serve, proxy or tcp, already has --workers, or `workers` is null.
 */
export function withWorkers(args: readonly string[], workers: string | null = '1'): string[] {
  if (workers === null || !WORKER_COMMANDS.has(args[0] ?? '') || args.includes('--workers')) return [...args];
  return [args[0]!, '--workers', workers, ...args.slice(1)];
}

/**
 * `serve --listen 127.0.0.1:0` with the fixtures' certificate, key and root,
 * then `extra`; a --listen in `extra` replaces the default one (--listen is
 * repeatable: both would be listeners).
 */
export function serveArgs(fx: Pick<Fixtures, 'certFile' | 'keyFile' | 'root'>, ...extra: string[]): string[] {
  const listen = extra.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
  return ['serve', ...listen, '--cert', fx.certFile, '--key', fx.keyFile, '--root', fx.root, ...extra];
}

/**
 * Starts the CLI with `args` (e.g. serveArgs(fx, ...)), one process unless
 * `args` or `options.workers` says otherwise, and resolves once the
 * "serving files over HTTPS" line gives the bound port. Rejects if the process
 * exits first or after startTimeoutMs.
 */
export function startAludel(args: string[], options: StartOptions = {}): Promise<Running> {
  const { env, startTimeoutMs = 10_000, prefix = [], workers = '1' } = options;
  const [cmd, ...argv] = [...prefix, process.execPath, CLI, ...withWorkers(args, workers)];
  const child = reapOnExit(spawn(cmd!, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }));
  const logs: LogLine[] = [];
  const raw: string[] = [];
  const waiters = new Set<() => void>();
  let other = '';
  let partial = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    partial += chunk;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      if (!line.trim()) continue;
      try {
        logs.push(JSON.parse(line) as LogLine);
        raw.push(line);
      } catch {
        other += `${line}\n`;
      }
    }
    for (const w of [...waiters]) w();
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    other += chunk;
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      for (const w of [...waiters]) w();
      resolve(code);
    });
  });

  const waitForLog = (predicate: (l: LogLine) => boolean, timeoutMs = 5000, from = 0): Promise<LogLine> =>
    new Promise((resolve, reject) => {
      let i = from;
      const check = (): boolean => {
        for (; i < logs.length; i++) {
          const l = logs[i]!;
          if (predicate(l)) {
            finish();
            resolve(l);
            return true;
          }
        }
        if (child.exitCode !== null || child.signalCode !== null) {
          finish();
          reject(new Error(`server exited (${child.exitCode ?? child.signalCode}) before the expected log line; output:\n${other}`));
          return true;
        }
        return false;
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`no matching log line within ${timeoutMs} ms; last lines:\n${logs.slice(-8).map((l) => JSON.stringify(l)).join('\n')}\n${other}`));
      }, timeoutMs);
      const finish = (): void => {
        clearTimeout(timer);
        waiters.delete(onData);
      };
      const onData = (): void => void check();
      if (!check()) waiters.add(onData);
    });

  const stop = async (): Promise<number | null> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      const code = await exited;
      clearTimeout(t);
      return code;
    }
    return child.exitCode;
  };

  return waitForLog((l) => l.msg === 'serving files over HTTPS' || l.msg === 'proxying', startTimeoutMs).then(
    (line) => {
      const listen = String(line.listen);
      const port = Number(listen.slice(listen.lastIndexOf(':') + 1));
      if (!Number.isInteger(port) || port <= 0) throw new Error(`bad listen field: ${listen}`);
      return { port, logs, raw, child, stderr: () => other, mark: () => logs.length, waitForLog, stop };
    },
    async (err: unknown) => {
      await stop();
      throw err;
    },
  );
}

/** Runs the CLI to completion (for commands expected to fail fast); SIGKILLed after timeoutMs. serve, proxy and tcp get --workers 1 unless `args` has --workers. */
export async function runCli(args: string[], env?: NodeJS.ProcessEnv, timeoutMs = 10_000): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string; ms: number }> {
  const r = await run(process.execPath, [CLI, ...withWorkers(args)], { env, timeoutMs, killSignal: 'SIGKILL' });
  return { code: r.signal ? null : r.code, signal: r.signal, stdout: r.stdout.toString('utf8'), stderr: r.stderr, ms: r.ms };
}

/**
 * Child processes of the tests: run one to completion with a timeout, and make
 * sure none outlives the test process.
 */
import { execFile, type ChildProcess } from 'node:child_process';

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** Registers `child` to be SIGKILLed if it is still running when the test process exits. */
export function reapOnExit<C extends ChildProcess>(child: C): C {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export interface RunResult {
  /** Exit status; -1 when the process did not exit by itself (killed by a signal, or could not be started). */
  code: number;
  /** The signal that ended the process (a timeout's killSignal included), else null. */
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
  /** Wall time from spawn to the end of its output. */
  ms: number;
}

export interface RunOptions {
  /** Written to stdin, which is then closed (stdin is closed right away without it). */
  input?: string | Buffer | null;
  /** Killed with killSignal after this long. Default 300 s. */
  timeoutMs?: number;
  killSignal?: NodeJS.Signals;
  /** Added to process.env. */
  env?: NodeJS.ProcessEnv;
}

/** Runs `cmd` to completion; never rejects: a failure is in `code` / `signal`. */
export function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const { input, timeoutMs = 300_000, killSignal = 'SIGTERM', env } = options;
  return new Promise((resolve) => {
    const started = Date.now();
    const child = execFile(
      cmd,
      args,
      { encoding: 'buffer', maxBuffer: 512 * 1024 * 1024, timeout: timeoutMs, killSignal, env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: unknown; signal?: NodeJS.Signals | null }) | null;
        resolve({
          code: e ? (typeof e.code === 'number' ? e.code : -1) : 0,
          signal: e?.signal ?? null,
          stdout,
          stderr: stderr.toString('utf8'),
          ms: Date.now() - started,
        });
      },
    );
    reapOnExit(child);
    if (input !== undefined && input !== null) child.stdin!.end(input);
    else child.stdin!.end();
  });
}

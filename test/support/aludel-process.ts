/** Runs `aludel serve` as a child process and reads its JSON log lines. */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import readline from 'node:readline';

export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

export type LogLine = Record<string, unknown> & { level: number; msg: string };

export interface Running {
  port: number;
  child: ChildProcess;
  logs: LogLine[];
  stderr: string[];
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>;
  stop(): Promise<void>;
}

/** Starts the CLI with args; resolves once it logs its bound port. */
export function startAludel(args: string[], options: { env?: NodeJS.ProcessEnv; startTimeoutMs?: number } = {}): Promise<Running> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  const stderr: string[] = [];
  const waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  readline.createInterface({ input: child.stdout! }).on('line', (line) => {
    let parsed: LogLine;
    try {
      parsed = JSON.parse(line) as LogLine;
    } catch {
      stderr.push(`(stdout) ${line}`);
      return;
    }
    logs.push(parsed);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (waiters[i]!.pred(parsed)) { waiters[i]!.resolve(parsed); waiters.splice(i, 1); }
    }
  });
  readline.createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  const waitForLog = (pred: (l: LogLine) => boolean, timeoutMs = 30_000): Promise<LogLine> => {
    const found = logs.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no matching log line in ${timeoutMs} ms; stderr: ${stderr.join('\n')}`)), timeoutMs);
      waiters.push({ pred, resolve: (l) => { clearTimeout(t); resolve(l); } });
    });
  };
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`aludel exited (${code}) before listening: ${stderr.join('\n')}`)));
    waitForLog((l) => l.msg === 'serving files over HTTPS', options.startTimeoutMs ?? 120_000).then((l) => {
      const port = Number(String(l.listen).split(':').pop());
      resolve({
        port, child, logs, stderr, waitForLog,
        stop: async () => {
          if (child.exitCode === null) child.kill('SIGTERM');
          await exited;
        },
      });
    }, reject);
  });
}

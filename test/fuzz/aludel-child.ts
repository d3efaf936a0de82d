/**
 * Aludel as a child process for long fuzz runs: like test/support's
 * startAludel, but the JSON log is counted and dropped rather than kept
 * (a million cases would hold gigabytes of lines), except the last few for
 * crash reports.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { CLI } from '../support/aludel-process.js';
import { reapOnExit } from '../support/run-process.js';

export interface AludelChild {
  port: number;
  child: ChildProcess;
  pid: number;
  /** Log lines by level name (warn, error, fatal...). */
  levels: Record<string, number>;
  /** The last lines of stdout and stderr. */
  tail(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
}

const LEVELS: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

export function startAludelChild(args: string[], startTimeoutMs = 15_000): Promise<AludelChild> {
  const child = reapOnExit(spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
  const levels: Record<string, number> = {};
  const tail: string[] = [];
  const keep = (line: string): void => {
    tail.push(line.slice(0, 2000));
    if (tail.length > 40) tail.shift();
  };
  let partial = '';
  let onStart: ((port: number) => void) | null = null;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    partial += chunk;
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      const level = /"level":(\d+)/.exec(line);
      const name = level ? (LEVELS[Number(level[1])] ?? level[1]!) : 'other';
      levels[name] = (levels[name] ?? 0) + 1;
      if (name !== 'info' && name !== 'debug') keep(line);
      if (onStart && /"msg":"(serving files over HTTPS|proxying)"/.test(line)) {
        const m = /"listen":"[^"]*:(\d+)"/.exec(line);
        if (m) onStart(Number(m[1]));
      }
    }
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => chunk.split('\n').filter(Boolean).forEach(keep));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  };
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      void stop();
      reject(new Error(`aludel did not start within ${startTimeoutMs} ms:\n${tail.join('\n')}`));
    }, startTimeoutMs);
    void exited.then(({ code, signal }) => {
      clearTimeout(t);
      reject(new Error(`aludel exited (${code ?? signal}) before listening:\n${tail.join('\n')}`));
    });
    onStart = (port) => {
      clearTimeout(t);
      onStart = null;
      resolve({ port, child, pid: child.pid!, levels, tail: () => tail.join('\n'), exited, stop });
    };
  });
}

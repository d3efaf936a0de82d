/**
 * Shared helpers for the integration tests: spawn the real CLI, read its pino
 * JSON log, make a certificate and a document root with known contents, run
 * curl / openssl as real clients. Everything is bounded by timeouts and
 * cleans up after itself.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { createSelfSignedCert } from '../../src/tls/self-signed.js';

/** dist/test/integration/helpers.js -> dist/src/cli/main.js */
export const CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export type LogLine = Record<string, unknown> & { level: number; msg: string };

export interface RunningServer {
  port: number;
  logs: LogLine[];
  /** The stdout lines exactly as written (logs[i] is JSON.parse(raw[i])). */
  raw: string[];
  child: ChildProcess;
  /** Non-JSON stdout lines and all of stderr, for diagnostics. */
  stderr(): string;
  /** Index to pass as `from` so only lines logged after now are considered. */
  mark(): number;
  /** First log line (at index >= from) satisfying predicate; rejects after timeoutMs. */
  waitForLog(predicate: (l: LogLine) => boolean, timeoutMs?: number, from?: number): Promise<LogLine>;
  /** SIGTERM, then SIGKILL if the process has not exited within 3 s. Resolves with the exit code. */
  stop(): Promise<number | null>;
}

const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/**
 * Spawns `aludel serve` with the given arguments (add --listen 127.0.0.1:0 yourself
 * or let this default it), and resolves once the "serving files over HTTPS" line
 * gives the bound port. Rejects if the process exits first or after startTimeoutMs.
 */
export function startServer(args: string[], env?: NodeJS.ProcessEnv, startTimeoutMs = 10_000): Promise<RunningServer> {
  const fullArgs = args.includes('--listen') ? args : ['--listen', '127.0.0.1:0', ...args];
  const child = spawn(process.execPath, [CLI, 'serve', ...fullArgs], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  const logs: LogLine[] = [];
  const raw: string[] = [];
  const waiters = new Set<() => void>();
  let other = '';
  let partial = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
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
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    other += chunk;
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      children.delete(child);
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

  return waitForLog((l) => l.msg === 'serving files over HTTPS', startTimeoutMs).then(
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

/** Runs the CLI to completion (for commands expected to fail fast). */
export function runCli(args: string[], env?: NodeJS.ProcessEnv, timeoutMs = 10_000): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

export interface FixtureFile {
  name: string;
  path: string;
  size: number;
  sha256: string;
}

export interface Fixtures {
  dir: string;
  certFile: string;
  keyFile: string;
  certPem: string;
  root: string;
  files: { empty: FixtureFile; one: FixtureFile; mid: FixtureFile; big: FixtureFile };
  cleanup(): void;
}

export const BIG_SIZE = 5 * 1024 * 1024;

/** A temp dir with cert.pem/key.pem (self-signed, SAN localhost/127.0.0.1/::1) and root/ with 0 B, 1 B, 16385 B and 5 MiB random files. */
export async function makeFixtures(): Promise<Fixtures> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-it-'));
  const pair = await createSelfSignedCert({});
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  fs.writeFileSync(certFile, pair.certPem);
  fs.writeFileSync(keyFile, pair.keyPem, { mode: 0o600 });
  const root = path.join(dir, 'root');
  fs.mkdirSync(root);
  const make = (name: string, size: number): FixtureFile => {
    const data = randomBytes(size);
    const p = path.join(root, name);
    fs.writeFileSync(p, data);
    return { name, path: p, size, sha256: sha256(data) };
  };
  const files = {
    empty: make('empty.bin', 0),
    one: make('one.bin', 1),
    mid: make('mid-16385.bin', 16385),
    big: make('big-5m.bin', BIG_SIZE),
  };
  return {
    dir,
    certFile,
    keyFile,
    certPem: pair.certPem,
    root,
    files,
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

export interface CurlResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

/** curl with the given arguments (always -sS); never rejects: a non-zero exit is in `code`. */
export function curl(args: string[], timeoutMs = 30_000): Promise<CurlResult> {
  return new Promise((resolve) => {
    const child = execFile('curl', ['-sS', '--max-time', String(Math.ceil(timeoutMs / 1000)), ...args], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs + 2000 }, (err, stdout, stderr) => {
      children.delete(child);
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
      resolve({ code, stdout: stdout as Buffer, stderr: (stderr as Buffer).toString('utf8') });
    });
    children.add(child);
  });
}

/** Splits a raw HTTP/1.1 response into head (status line + headers) and the bytes after the blank line. */
export function splitHttp(raw: Buffer): { status: number; headers: Record<string, string>; body: Buffer } {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no header block in ${JSON.stringify(raw.subarray(0, 200).toString('latin1'))}`);
  const lines = raw.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status, headers, body: raw.subarray(end + 4) };
}

/**
 * Sends `request` verbatim over a node:tls connection (trusting `ca`) and
 * collects everything the server sends until it closes; rejects on timeout.
 */
export function rawTls(port: number, ca: string, request: string | Buffer, timeoutMs = 10_000, options: tls.ConnectionOptions = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca, ...options }, () => sock.write(request));
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`rawTls: no close within ${timeoutMs} ms; got ${Buffer.concat(chunks).length} bytes`));
    }, timeoutMs);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
}

/** `openssl version`: the runtime library version ("Library: ..." part when present). */
export function opensslCliLibraryVersion(): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('openssl', ['version'], { timeout: 5000 }, (err, stdout) => {
      if (err) return reject(err);
      const out = stdout.trim();
      const m = /\(Library: (.*)\)\s*$/.exec(out);
      resolve(m ? m[1]!.trim() : out);
    });
  });
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `cond` every 20 ms; rejects after timeoutMs. */
export async function waitUntil(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await delay(20);
  }
}

/**
 * Keys that occur more than once in the same JSON object of `text` (JSON.parse
 * silently keeps the last one; many log pipelines keep the first or reject the line).
 */
export function duplicateKeys(text: string): string[] {
  const dups: string[] = [];
  const stack: Array<Set<string> | null> = []; // null: array
  let i = 0;
  let expectKey = false;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (expectKey && top) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.has(key)) dups.push(key);
        top.add(key);
        expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === '{') { stack.push(new Set()); expectKey = true; }
    else if (c === '[') stack.push(null);
    else if (c === '}' || c === ']') stack.pop();
    else if (c === ',') expectKey = stack[stack.length - 1] != null;
    i++;
  }
  return dups;
}

/**
 * Programs started under `aludel run` for the tests: `openssl s_server -WWW`
 * (files from the fixture root over TLS), a node:https server, and the
 * preload's log file (ALUDEL_PRELOAD_LOG) to read its one line per process.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CLI } from './aludel-process.js';
import { spawnDaemon, waitReady, type Daemon } from './daemon.js';
import { accepts, freePort } from './loopback-port.js';

/** The prefix that runs a command under `aludel run` (with extra run flags). */
export function aludelRun(...flags: string[]): string[] {
  return [process.execPath, CLI, 'run', ...flags, '--'];
}

export interface Started {
  port: number;
  daemon: Daemon;
  stop(): Promise<void>;
}

/**
 * `openssl s_server -WWW` on a free loopback port, serving `root`. `wrapper`
 * (aludelRun()) or none; `args` adds s_server flags (-tls1_2, -cipher ...).
 * `openssl` is another openssl binary than the system's (test/support/legacy.ts);
 * `portOnlyAccept` for OpenSSL 1.0.2, whose -accept takes a port only (and
 * binds every IPv4 address).
 */
export async function startSServer(opts: { root: string; certFile: string; keyFile: string; wrapper?: string[]; env?: NodeJS.ProcessEnv; args?: string[]; openssl?: string; portOnlyAccept?: boolean }): Promise<Started> {
  const port = await freePort();
  const bin = opts.openssl ?? 'openssl';
  const accept = opts.portOnlyAccept ? String(port) : `127.0.0.1:${port}`;
  const cmd = [...(opts.wrapper ?? []), bin, 's_server', '-accept', accept, '-cert', opts.certFile, '-key', opts.keyFile, '-WWW', '-quiet', ...(opts.args ?? [])];
  const daemon = spawnDaemon(cmd[0]!, cmd.slice(1), { env: opts.env, cwd: opts.root });
  await waitReady(daemon, `${bin} s_server`, () => accepts(port), async () => daemon.output(), 60_000);
  return { port, daemon, stop: () => daemon.stop() };
}

/**
 * A node:https server answering every request with the file `file`, plus a
 * header saying whether aludel-preload.so is in the process's own memory map
 * (so a test knows the preload was there while node's TLS kept working).
 */
export async function startNodeHttps(opts: { file: string; certFile: string; keyFile: string; wrapper?: string[]; env?: NodeJS.ProcessEnv }): Promise<Started> {
  const port = await freePort();
  const script = `
    const fs = require('node:fs'), https = require('node:https');
    const preloaded = fs.readFileSync('/proc/self/maps', 'utf8').includes('aludel-preload.so');
    https.createServer({ cert: fs.readFileSync(${JSON.stringify(opts.certFile)}), key: fs.readFileSync(${JSON.stringify(opts.keyFile)}) }, (req, res) => {
      res.writeHead(200, { 'x-preloaded': String(preloaded) });
      fs.createReadStream(${JSON.stringify(opts.file)}).pipe(res);
    }).listen(${port}, '127.0.0.1');`;
  const cmd = [...(opts.wrapper ?? []), process.execPath, '-e', script];
  const daemon = spawnDaemon(cmd[0]!, cmd.slice(1), { env: opts.env });
  // Two Node start-ups under `aludel run` (the CLI, then this server), each tens of seconds on the kTLS VM's
  // emulated CPU and more on a loaded host: 30 s was once not enough (CI, the host busy with other runs).
  await waitReady(daemon, 'node https server', () => accepts(port), async () => daemon.output(), 120_000);
  return { port, daemon, stop: () => daemon.stop() };
}

/** A fresh path for ALUDEL_PRELOAD_LOG, and its lines when read (none if never written). */
export function preloadLog(dir: string, name: string): { file: string; lines(): string[] } {
  const file = path.join(dir, `${name}.preload.log`);
  fs.rmSync(file, { force: true });
  return {
    file,
    lines: () => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length > 0) : []),
  };
}

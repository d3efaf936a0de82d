/**
 * The real legacy TLS programs of ../shared/legacy (see its README), for the
 * tests of `aludel run` on the binaries users actually have:
 * - `build` makes OpenSSL 1.0.2f (`openssl`, libssl.so.1.0.0) and nginx 1.11.1 linked to it;
 * - `fetch-debian11` unpacks Debian 11's nginx 1.18.0 and `openssl` with OpenSSL 1.1.1w.
 * Both install under LEGACY_PREFIX (default /var/tmp/aludel-legacy); scripts/run-tests.sh
 * and .ci/run call them. A missing program is an error naming the script, never a skip.
 *
 * Also here: nginx of either version on a minimal config, `openssl s_server -WWW`
 * and `s_client` of a given binary, the kernel's per-connection ULP state of a
 * server's sockets (sock_diag), and a TCP relay that can inject bytes and shows
 * the TLS records a server sent.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { loadAddon, type UlpInfo } from '../../src/native/binding.js';
import { readProcTcp, socketInodes, TCP_ESTABLISHED } from '../../src/scan/proc-net.js';
import { spawnDaemon, waitReady, type Daemon } from './daemon.js';
import { nginxMainContext, nginxString, nginxTempPaths } from './nginx-origin.js';
import { accepts, freePort } from './loopback-port.js';
import { startSServer, type Started } from './run-origins.js';
import { curlTlsArgs } from './clients.js';
import { sha256 } from './fixtures.js';
import { reapOnExit, run } from './run-process.js';
import { delay } from './wait.js';

export const LEGACY_PREFIX = process.env.LEGACY_PREFIX || '/var/tmp/aludel-legacy';

const BUILD = '../shared/legacy/build';
const FETCH = '../shared/legacy/fetch-debian11';

const PROGRAMS = {
  'openssl-1.0.2f': { rel: 'openssl-1.0.2f/bin/openssl', what: 'openssl of OpenSSL 1.0.2f', script: BUILD },
  'nginx-1.11.1': { rel: 'nginx-1.11.1/sbin/nginx', what: 'nginx 1.11.1 (OpenSSL 1.0.2f)', script: BUILD },
  'openssl-1.1.1w': { rel: 'debian11/bin/openssl', what: "Debian 11's openssl (OpenSSL 1.1.1w)", script: FETCH },
  'nginx-1.18': { rel: 'debian11/bin/nginx', what: "Debian 11's nginx 1.18.0 (OpenSSL 1.1.1w)", script: FETCH },
} as const;

export type LegacyProgram = keyof typeof PROGRAMS;
export type LegacyOpenssl = 'openssl-1.0.2f' | 'openssl-1.1.1w';
export type LegacyNginxName = 'nginx-1.11.1' | 'nginx-1.18';

/** The program's path under LEGACY_PREFIX; throws, naming the script that makes it, when it is not there. */
export function legacyPath(name: LegacyProgram): string {
  const { rel, what, script } = PROGRAMS[name];
  const file = path.join(LEGACY_PREFIX, rel);
  try {
    fs.accessSync(file, fs.constants.X_OK);
  } catch {
    throw new Error(
      `${what} not found at ${file}: run ${script} from the repository root (it installs under LEGACY_PREFIX, default /var/tmp/aludel-legacy; ` +
        'scripts/run-tests.sh and .ci/run run it before the tests)',
    );
  }
  return file;
}

/** The OpenSSL each legacy server program runs with. */
export const LIBRARY_OF: Record<LegacyNginxName | LegacyOpenssl, '1.0.2f' | '1.1.1w'> = {
  'nginx-1.11.1': '1.0.2f',
  'openssl-1.0.2f': '1.0.2f',
  'nginx-1.18': '1.1.1w',
  'openssl-1.1.1w': '1.1.1w',
};

export type TlsVersion = '1.2' | '1.3';
export type KernelCipher = 'aes-gcm-128' | 'aes-gcm-256' | 'chacha20-poly1305';

export interface KernelSuite {
  version: TlsVersion;
  /** OpenSSL's name: a TLS 1.2 cipher (the fixture certificate is ECDSA P-256) or a TLS 1.3 suite. */
  name: string;
  /** What sock_diag says for it (native/diag.c, TLS_INFO_CIPHER). */
  kernel: KernelCipher;
}

/**
 * Per library, every suite that both it and the kernel's TLS can do (Linux: AES-GCM
 * 4.13/5.1, ChaCha20-Poly1305 5.11; TLS 1.3 5.1). OpenSSL 1.0.2 has no ChaCha20 and
 * no TLS 1.3.
 */
export const KERNEL_SUITES: Record<'1.0.2f' | '1.1.1w', KernelSuite[]> = {
  '1.0.2f': [
    { version: '1.2', name: 'ECDHE-ECDSA-AES128-GCM-SHA256', kernel: 'aes-gcm-128' },
    { version: '1.2', name: 'ECDHE-ECDSA-AES256-GCM-SHA384', kernel: 'aes-gcm-256' },
  ],
  '1.1.1w': [
    { version: '1.2', name: 'ECDHE-ECDSA-AES128-GCM-SHA256', kernel: 'aes-gcm-128' },
    { version: '1.2', name: 'ECDHE-ECDSA-AES256-GCM-SHA384', kernel: 'aes-gcm-256' },
    { version: '1.2', name: 'ECDHE-ECDSA-CHACHA20-POLY1305', kernel: 'chacha20-poly1305' },
    { version: '1.3', name: 'TLS_AES_128_GCM_SHA256', kernel: 'aes-gcm-128' },
    { version: '1.3', name: 'TLS_AES_256_GCM_SHA384', kernel: 'aes-gcm-256' },
    { version: '1.3', name: 'TLS_CHACHA20_POLY1305_SHA256', kernel: 'chacha20-poly1305' },
  ],
};

/** The TLS 1.2 cipher list that offers every TLS 1.2 suite of `lib` in KERNEL_SUITES. */
export function tls12Ciphers(lib: '1.0.2f' | '1.1.1w'): string {
  return KERNEL_SUITES[lib].filter((s) => s.version === '1.2').map((s) => s.name).join(':');
}

/** s_client flags that offer exactly `suite` (OpenSSL 1.1.1 and 3 syntax; 1.0.2 has only -tls1_2/-cipher). */
export function sClientSuiteArgs(suite: KernelSuite): string[] {
  return suite.version === '1.2' ? ['-tls1_2', '-cipher', suite.name] : ['-tls1_3', '-ciphersuites', suite.name];
}

// ---------------------------------------------------------------------------
// nginx

export interface LegacyNginxOptions {
  nginx: LegacyNginxName;
  /** The static root (location /). */
  root: string;
  certFile: string;
  keyFile: string;
  /** ssl_protocols, e.g. 'TLSv1.2' or 'TLSv1.2 TLSv1.3' (nginx 1.18 offers TLS 1.3 only when told). */
  protocols: string;
  /**
   * ssl_ciphers (TLS 1.2 and below). The TLS 1.3 suites cannot be chosen: nginx 1.18
   * has no ssl_conf_command (1.19.4+), so OpenSSL 1.1.1's default applies, which
   * offers all three (TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256);
   * the client picks one.
   */
  ciphers: string;
  /** keepalive_timeout; nginx's default is 75s. */
  keepaliveTimeout?: string;
  /** A command nginx runs under (aludelRun()); nginx's pid then comes from its pid file. */
  wrapper?: string[];
  /** Added to the environment (ALUDEL_PRELOAD_LOG). */
  env?: NodeJS.ProcessEnv;
  /** Default 10 s; the kTLS VM needs far more under a wrapper. */
  readyTimeoutMs?: number;
  /** More directives for the server block (e.g. `ssl_early_data on;`), written as given. */
  serverLines?: string[];
  /**
   * A master and two workers running as this user (`user`; nginx's default as root is
   * nobody), instead of the one root process of nginxMainContext. stop() still ends
   * them all: the master takes its workers down on TERM.
   */
  workersAs?: string;
}

/** One access log line. */
export interface LegacyAccess {
  /** nginx's connection serial number: equal values mean one (keep-alive) connection. */
  connection: number;
  /** Requests so far on that connection, this one included. */
  connectionRequests: number;
  status: number;
  bodyBytes: number;
  /** 'TLSv1.2', 'TLSv1.3'. */
  tlsProtocol: string;
  /** OpenSSL's name of the negotiated suite. */
  tlsCipher: string;
  request: string;
}

export interface LegacyNginx {
  name: LegacyNginxName;
  port: number;
  /** nginx's own pid (one process: master_process off). */
  pid: number;
  daemon: Daemon;
  errorLogFile: string;
  /** The error log so far (info level and up). */
  errorLog(): string;
  /** [emerg], [alert] and [crit] lines of the error log after byte offset `from` (an earlier errorLog().length). */
  severe(from?: number): string[];
  /** The access log, waiting up to 2 s for `atLeast` lines (nginx logs just after the last byte went out). */
  accessLog(atLeast?: number): Promise<LegacyAccess[]>;
  stop(): Promise<void>;
}

/** The nginx.conf startLegacyNginx writes into `dir` for `port` (daemon mode comes from the command line: -g "daemon off;"). */
export function legacyNginxConf(dir: string, port: number, o: LegacyNginxOptions): string {
  const p = (name: string): string => nginxString(path.join(dir, name));
  const protocols = o.protocols.trim().split(/\s+/);
  for (const v of protocols) if (!/^TLSv1(\.[123])?$/.test(v)) throw new Error(`not an ssl_protocols value: ${v}`);
  if (o.nginx === 'nginx-1.11.1' && protocols.includes('TLSv1.3')) throw new Error('nginx 1.11.1 with OpenSSL 1.0.2f has no TLS 1.3');
  const main = nginxMainContext(dir, 'test/support/legacy.ts').filter((l) => !o.workersAs || !/^(master_process|worker_processes|user) /.test(l));
  if (o.workersAs) main.splice(1, 0, 'master_process on;', 'worker_processes 2;', `user ${o.workersAs};`);
  return [
    ...main,
    'http {',
    // nginx 1.11.1 has no escape=json (1.11.8): plain fields, the request line last.
    `  log_format legacy '$connection $connection_requests $status $body_bytes_sent $ssl_protocol $ssl_cipher "$request"';`,
    `  access_log ${p('access.log')} legacy;`,
    ...nginxTempPaths(dir),
    '  types { text/html html; text/plain txt; }',
    '  default_type application/octet-stream;',
    // nginx < 1.21.4 has no SSL_sendfile: on TLS it writes with SSL_write whatever this says.
    '  sendfile on;',
    `  keepalive_timeout ${o.keepaliveTimeout ?? '75s'};`,
    '  server {',
    `    listen 127.0.0.1:${port} ssl;`,
    '    server_name localhost;',
    `    root ${nginxString(path.resolve(o.root))};`,
    `    ssl_certificate ${nginxString(o.certFile)};`,
    `    ssl_certificate_key ${nginxString(o.keyFile)};`,
    `    ssl_protocols ${protocols.join(' ')};`,
    `    ssl_ciphers ${nginxString(o.ciphers)};`,
    '    ssl_prefer_server_ciphers on;',
    ...(o.serverLines ?? []).map((l) => `    ${l}`),
    '    location / { }',
    '  }',
    '}',
    '',
  ].join('\n');
}

function readOr(file: string, fallback = ''): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

const ACCESS = /^(\d+) (\d+) (\d+) (\d+) (\S+) (\S+) "(.*)"$/;

/** Attempts when another process takes the free port before nginx binds it. */
const PORT_ATTEMPTS = 3;

/**
 * nginx 1.11.1 or 1.18 on a free loopback port, everything it writes in one
 * os.tmpdir() directory (removed by stop()).
 */
export async function startLegacyNginx(o: LegacyNginxOptions): Promise<LegacyNginx> {
  const bin = legacyPath(o.nginx);
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), `aludel-${o.nginx}-`));
  // nginx < 1.19.5 has no -e: before reading the config it opens its compiled-in error
  // log, which for 1.11.1 under -p is <prefix>/logs/error.log.
  await fs.promises.mkdir(path.join(dir, 'logs'));
  const confFile = path.join(dir, 'nginx.conf');
  const errorLogFile = path.join(dir, 'error.log');
  const pidFile = path.join(dir, 'nginx.pid');
  const accessFile = path.join(dir, 'access.log');
  try {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      await fs.promises.writeFile(confFile, legacyNginxConf(dir, port, o));
      await fs.promises.writeFile(errorLogFile, '');
      await fs.promises.rm(pidFile, { force: true });
      const command = [...(o.wrapper ?? []), bin, '-p', `${dir}/`, '-c', confFile, '-g', 'daemon off;'];
      const daemon = spawnDaemon(command[0]!, command.slice(1), { env: o.env });
      // With a wrapper nginx is not our child: any live pid in the pid file (written after binding).
      const ownPid = (pid: string): boolean => (o.wrapper ? /^\d+$/.test(pid) && fs.existsSync(`/proc/${pid}`) : pid === String(daemon.child.pid));
      const describe = async (): Promise<string> => `config ${confFile}:\n${readOr(confFile)}\nerror log:\n${readOr(errorLogFile, '(none)')}\noutput:\n${daemon.output()}`;
      try {
        await waitReady(daemon, `${o.nginx} (${bin})`, async () => ownPid(readOr(pidFile).trim()) && (await accepts(port)), describe, o.readyTimeoutMs);
      } catch (err) {
        await daemon.stop();
        if (attempt < PORT_ATTEMPTS && readOr(errorLogFile).includes('Address already in use')) continue;
        throw err;
      }
      const errorLog = (): string => readOr(errorLogFile);
      return {
        name: o.nginx,
        port,
        pid: Number(readOr(pidFile).trim()),
        daemon,
        errorLogFile,
        errorLog,
        severe: (from = 0) => errorLog().slice(from).split('\n').filter((l) => /\[(emerg|alert|crit)\]/.test(l)),
        async accessLog(atLeast = 0) {
          const deadline = Date.now() + 2000;
          for (;;) {
            const lines = readOr(accessFile).split('\n').filter((l) => l.length > 0);
            if (lines.length >= atLeast || Date.now() > deadline) {
              return lines.map((l) => {
                const m = ACCESS.exec(l);
                if (!m) throw new Error(`unexpected access log line: ${l}`);
                return { connection: Number(m[1]), connectionRequests: Number(m[2]), status: Number(m[3]), bodyBytes: Number(m[4]), tlsProtocol: m[5]!, tlsCipher: m[6]!, request: m[7]! };
              });
            }
            await delay(20);
          }
        },
        async stop() {
          await daemon.stop();
          await fs.promises.rm(dir, { recursive: true, force: true });
        },
      };
    }
  } catch (err) {
    await fs.promises.rm(dir, { recursive: true, force: true });
    throw err;
  }
}

// ---------------------------------------------------------------------------
// openssl s_server / s_client of a given version

/**
 * `s_server -WWW` of a legacy openssl (startSServer with that binary). 1.0.2's
 * -accept takes a port only and binds every IPv4 address; the tests still
 * connect over loopback only.
 */
export function startLegacySServer(opts: { openssl: LegacyOpenssl; root: string; certFile: string; keyFile: string; wrapper?: string[]; env?: NodeJS.ProcessEnv; args?: string[] }): Promise<Started> {
  return startSServer({ ...opts, openssl: legacyPath(opts.openssl), portOnlyAccept: opts.openssl === 'openssl-1.0.2f' });
}

export interface SClient {
  child: ChildProcess;
  /** Everything s_client wrote to stdout so far (with -quiet: only what the server sent). */
  stdout(): Buffer;
  stderr(): string;
  /** stdout (as latin1) and stderr, for matching and error messages. */
  output(): string;
  write(text: string): void;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Polls `cond` on output() every 25 ms; rejects with the output after timeoutMs or when s_client ends first. */
  waitFor(what: string, cond: (output: string) => boolean, timeoutMs: number): Promise<void>;
  /**
   * Ends stdin; if still running after graceMs, SIGTERM (which `aludel run` passes on to the
   * program), then SIGKILL; resolves once it is gone and its output is closed.
   */
  stop(graceMs?: number): Promise<void>;
}

/**
 * `openssl s_client -connect 127.0.0.1:port -servername localhost ...args`, with
 * stdin open (so the connection stays until we end it: without -quiet/-ign_eof
 * s_client closes at end of input) and stdout kept apart from stderr.
 * `openssl` is a binary path (default: the system's).
 */
export function spawnSClient(opts: { port: number; args: string[]; openssl?: string; wrapper?: string[]; env?: NodeJS.ProcessEnv }): SClient {
  const cmd = [...(opts.wrapper ?? []), opts.openssl ?? 'openssl', 's_client', '-connect', `127.0.0.1:${opts.port}`, '-servername', 'localhost', ...opts.args];
  const child = reapOnExit(spawn(cmd[0]!, cmd.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } }));
  const out: Buffer[] = [];
  let err = '';
  let ended: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  child.stdout!.on('data', (d: Buffer) => out.push(d));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString('latin1')));
  child.stdin!.on('error', () => undefined); // EPIPE once s_client has gone
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', () => resolve((ended ??= { code: -1, signal: null })));
    child.once('close', (code, signal) => resolve((ended ??= { code, signal })));
    // 'close' waits for stdout and stderr to end, which a grandchild (the program under a
    // wrapper that was killed) could hold open forever: give them a second after 'exit'.
    child.once('exit', () =>
      setTimeout(() => {
        child.stdout!.destroy();
        child.stderr!.destroy();
      }, 1000).unref(),
    );
  });
  const stdout = (): Buffer => Buffer.concat(out);
  const output = (): string => `${stdout().toString('latin1')}\n--- stderr:\n${err}`;
  return {
    child,
    stdout,
    stderr: () => err,
    output,
    write: (text) => {
      child.stdin!.write(text);
    },
    exited,
    async waitFor(what, cond, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (cond(output())) return;
        if (ended) throw new Error(`s_client ended (${JSON.stringify(ended)}) before ${what}:\n${output().slice(-4000)}`);
        if (Date.now() > deadline) throw new Error(`no ${what} from s_client within ${timeoutMs} ms:\n${output().slice(-4000)}`);
        await delay(25);
      }
    },
    async stop(graceMs = 3000) {
      child.stdin!.end();
      const term = setTimeout(() => child.kill('SIGTERM'), graceMs);
      const kill = setTimeout(() => child.kill('SIGKILL'), graceMs + 3000);
      await exited;
      clearTimeout(term);
      clearTimeout(kill);
    },
  };
}

/** An HTTP response as raw bytes: its status line and body (after the first blank line). */
export function splitHttp(raw: Buffer): { status: string; head: string; body: Buffer } {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) return { status: '', head: raw.subarray(0, 200).toString('latin1'), body: Buffer.alloc(0) };
  const head = raw.subarray(0, end).toString('latin1');
  return { status: head.split('\r\n')[0] ?? '', head, body: raw.subarray(end + 4) };
}

// ---------------------------------------------------------------------------
// The kernel's view of one process's connections

export interface ConnectionUlp {
  inode: number;
  /** This end's port. */
  localPort: number;
  /** The peer's port (from /proc/PID/net/tcp{,6} rem_address): tells connections to one listener apart. */
  remotePort: number;
  /** null: no TLS ULP on the socket (or no CAP_NET_ADMIN: the kernel shows ULP info to net admins only). */
  tls: UlpInfo | null;
}

/**
 * The established TCP sockets `pid` holds, each with the kernel's TLS ULP state
 * (sock_diag INET_DIAG_ULP_INFO, as `ss -tie` shows it), through the project's
 * own addon (native/diag.c), the same source as `aludel scan`.
 */
export function connectionsUlp(pid: number): ConnectionUlp[] {
  const addon = loadAddon();
  if (addon instanceof Error) throw new Error(`the addon is needed to read sock_diag (npm run build:native): ${addon.message}`);
  const byInode = new Map<number, UlpInfo | null>();
  for (const family of [2 /* AF_INET */, 10 /* AF_INET6 */]) for (const s of addon.tcpUlpDump(family)) byInode.set(s.inode, s.tls);
  const inodes = socketInodes(pid);
  const remote = remotePorts(pid);
  return readProcTcp(pid)
    .filter((r) => inodes.has(r.inode) && r.state === TCP_ESTABLISHED)
    .map((r) => ({ inode: r.inode, localPort: r.port, remotePort: remote.get(r.inode) ?? -1, tls: byInode.get(r.inode) ?? null }));
}

/** inode -> remote port, from /proc/PID/net/tcp and tcp6 ("sl local_address rem_address st ... inode", ports in hex). */
function remotePorts(pid: number): Map<number, number> {
  const map = new Map<number, number>();
  for (const file of ['tcp', 'tcp6']) {
    for (const line of readOr(`/proc/${pid}/net/${file}`).split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length >= 10) map.set(Number(f[9]), Number.parseInt(f[2]!.split(':')[1] ?? '', 16));
    }
  }
  return map;
}

/**
 * Polls connectionsUlp(pid) until it holds exactly one connection and `done`
 * accepts it (the server programs the kernel just after its side of the
 * handshake, which the client may see end first), or timeoutMs; returns what
 * it saw last.
 */
export async function oneConnectionUlp(pid: number, done: (c: ConnectionUlp) => boolean, timeoutMs: number): Promise<ConnectionUlp[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const conns = connectionsUlp(pid);
    if ((conns.length === 1 && done(conns[0]!)) || Date.now() > deadline) return conns;
    await delay(50);
  }
}

// ---------------------------------------------------------------------------
// A TCP relay: client -> relay -> server, for injecting bytes and seeing the server's records

export interface RelayConnection {
  /** The local port of the relay's connection to the server: the server's remotePort for it (connectionsUlp). */
  upstreamPort(): number;
  /** Every byte the server sent toward the client. */
  fromServer(): Buffer;
  /** Writes raw bytes to the server, after whatever the client sent so far. */
  inject(bytes: Buffer): void;
  /** How the server's side ended: 'fin' (orderly), 'reset' (ECONNRESET), or 'error <code>'. */
  serverEnded: Promise<string>;
}

export interface Relay {
  port: number;
  /** Connections in order of arrival. */
  connections: RelayConnection[];
  close(): Promise<void>;
}

/**
 * Relays each client connection to 127.0.0.1:target byte for byte. The
 * upstream stays readable after the client has gone (half-close), so what the
 * server sends after the client's last bytes is still seen.
 */
export async function startRelay(target: number): Promise<Relay> {
  const connections: RelayConnection[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (down) => {
    const up = net.connect({ host: '127.0.0.1', port: target, allowHalfOpen: true });
    sockets.add(down).add(up);
    const chunks: Buffer[] = [];
    const serverEnded = new Promise<string>((resolve) => {
      up.once('end', () => resolve('fin'));
      up.once('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNRESET' ? 'reset' : `error ${e.code ?? e.message}`));
    });
    up.on('data', (d: Buffer) => {
      chunks.push(d);
      if (!down.destroyed && down.writable) down.write(d);
    });
    // FIN for FIN (half-close either way), RST for RST: the client sees how the server ended.
    up.on('end', () => down.end());
    up.on('error', () => down.resetAndDestroy());
    up.on('close', () => {
      sockets.delete(up);
      if (!down.destroyed) down.end();
    });
    down.on('data', (d: Buffer) => {
      if (up.writable) up.write(d);
    });
    down.on('end', () => up.end());
    down.on('error', () => up.resetAndDestroy());
    down.on('close', () => sockets.delete(down));
    connections.push({
      upstreamPort: () => up.localPort ?? -1,
      fromServer: () => Buffer.concat(chunks),
      inject: (bytes) => {
        up.write(bytes);
      },
      serverEnded,
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The TLS record headers in a byte stream from its start (RFC 8446 §5.1: type, version, 16-bit length). */
export function tlsRecords(stream: Buffer): Array<{ type: number; length: number }> {
  const out: Array<{ type: number; length: number }> = [];
  for (let off = 0; off + 5 <= stream.length; ) {
    const length = stream.readUInt16BE(off + 3);
    out.push({ type: stream[off]!, length });
    off += 5 + length;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Clients: curl and s_client of the system, fetching and checking files

export interface CurlFetch {
  /** Per URL, in order: sha256 of what arrived, its size, the HTTP status. */
  transfers: Array<{ sha256: string; size: number; status: number }>;
  /** Connections curl opened (sum of %{num_connects}): 1 when all went over one keep-alive connection. */
  connects: number;
  /** curl's "SSL connection using TLSv1.3 / TLS_AES_128_GCM_SHA256", one per connection: [version, suite]. */
  negotiated: Array<[string, string]>;
  stderr: string;
}

/**
 * One curl process fetching `paths` in order from https://localhost:port,
 * offering only `suite`, each body to a file in outDir (deleted after
 * hashing): curl reuses one connection for them when the server keeps it alive.
 */
export async function curlFetch(opts: { port: number; certFile: string; suite: KernelSuite | null; paths: string[]; outDir: string; timeoutMs?: number }): Promise<CurlFetch> {
  const timeoutMs = opts.timeoutMs ?? 300_000;
  const outs = opts.paths.map((_, i) => path.join(opts.outDir, `curl-${opts.port}-${process.hrtime.bigint()}-${i}`));
  const tls = opts.suite ? curlTlsArgs(opts.suite.version, opts.suite.name) : [];
  const args = ['-sS', '-v', '--max-time', String(Math.ceil(timeoutMs / 1000)), '--cacert', opts.certFile, ...tls, '-w', '%{num_connects} %{http_code}\\n'];
  opts.paths.forEach((p, i) => args.push('-o', outs[i]!, `https://localhost:${opts.port}${p}`));
  const r = await run('curl', args, { timeoutMs: timeoutMs + 2000 });
  try {
    if (r.code !== 0) throw new Error(`curl ${opts.paths.join(' ')} exited ${r.code}${r.signal ? ` (${r.signal})` : ''}:\n${r.stderr.split('\n').filter((l) => !l.startsWith('>') && !l.startsWith('<')).slice(-30).join('\n')}`);
    const lines = r.stdout.toString('utf8').trim().split('\n');
    if (lines.length !== opts.paths.length) throw new Error(`curl reported ${lines.length} transfers, expected ${opts.paths.length}: ${r.stdout.toString('utf8')}`);
    const transfers = lines.map((l, i) => {
      const data = fs.readFileSync(outs[i]!);
      return { sha256: sha256(data), size: data.length, status: Number(l.split(' ')[1]) };
    });
    const negotiated = [...r.stderr.matchAll(/SSL connection using (\S+) \/ (\S+)/g)].map((m) => [m[1]!, m[2]!] as [string, string]);
    return { transfers, connects: lines.reduce((n, l) => n + Number(l.split(' ')[0]), 0), negotiated, stderr: r.stderr };
  } finally {
    for (const f of outs) fs.rmSync(f, { force: true });
  }
}

/**
 * GET `path` over one `openssl s_client -quiet` connection offering only
 * `suite`: after the handshake (s_client's "verify return" line) `held` runs
 * while the connection is open and idle (e.g. to read its ULP state), then the
 * request goes out with Connection: close and the response is read to the
 * server's close. `openssl`/`wrapper`: another s_client, e.g. a legacy one under aludel run.
 */
export async function sClientFetch(opts: {
  port: number;
  certFile: string;
  suite: KernelSuite | null;
  path: string;
  openssl?: string;
  wrapper?: string[];
  env?: NodeJS.ProcessEnv;
  held?: (client: SClient) => Promise<void>;
  timeoutMs?: number;
}): Promise<{ status: string; body: Buffer; client: SClient }> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const client = spawnSClient({ port: opts.port, openssl: opts.openssl, wrapper: opts.wrapper, env: opts.env, args: ['-quiet', '-CAfile', opts.certFile, ...(opts.suite ? sClientSuiteArgs(opts.suite) : [])] });
  try {
    await client.waitFor('handshake', (o) => /verify return:\s*1/.test(o), timeoutMs);
    if (opts.held) await opts.held(client);
    client.write(`GET ${opts.path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    let timer: NodeJS.Timeout | undefined;
    const end = await Promise.race([client.exited, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)))]);
    clearTimeout(timer);
    if (end === null) throw new Error(`s_client did not end within ${timeoutMs} ms after the request:\n${client.stderr().slice(-2000)}`);
    const { status, body } = splitHttp(client.stdout());
    return { status, body, client };
  } finally {
    await client.stop();
  }
}

// ---------------------------------------------------------------------------
// The four legacy servers, started alike, and one matrix row against them

export type LegacyServerName = LegacyNginxName | LegacyOpenssl;

export interface LegacyServer {
  name: LegacyServerName;
  kind: 'nginx' | 's_server';
  lib: '1.0.2f' | '1.1.1w';
  port: number;
  /** The server program's own pid (not its wrapper's). */
  pid: number;
  /** Set for nginx. */
  nginx: LegacyNginx | null;
  daemon: Daemon;
  stop(): Promise<void>;
}

/** The pid of the program a wrapper (aludel run, pid `pid`) started: its one child (/proc/PID/task/PID/children). */
export function wrappedPid(pid: number): number {
  const kids = readOr(`/proc/${pid}/task/${pid}/children`).trim().split(/\s+/).filter(Boolean).map(Number);
  if (kids.length !== 1) throw new Error(`expected one child of the wrapper (pid ${pid}), found ${JSON.stringify(kids)}`);
  return kids[0]!;
}

/**
 * nginx (1.11.1: TLS 1.2; 1.18: TLS 1.2 and 1.3) or `s_server -WWW`, offering every
 * kernel suite of its library (KERNEL_SUITES; clients pick one), serving `root`.
 */
export async function startLegacyServer(
  name: LegacyServerName,
  o: { root: string; certFile: string; keyFile: string; wrapper?: string[]; env?: NodeJS.ProcessEnv; readyTimeoutMs?: number; keepaliveTimeout?: string },
): Promise<LegacyServer> {
  const lib = LIBRARY_OF[name];
  if (name === 'nginx-1.11.1' || name === 'nginx-1.18') {
    const nginx = await startLegacyNginx({ ...o, nginx: name, protocols: lib === '1.0.2f' ? 'TLSv1.2' : 'TLSv1.2 TLSv1.3', ciphers: tls12Ciphers(lib) });
    return { name, kind: 'nginx', lib, port: nginx.port, pid: nginx.pid, nginx, daemon: nginx.daemon, stop: () => nginx.stop() };
  }
  const s = await startLegacySServer({ ...o, openssl: name, args: ['-cipher', tls12Ciphers(lib)] });
  return { name, kind: 's_server', lib, port: s.port, pid: o.wrapper ? wrappedPid(s.daemon.child.pid!) : s.daemon.child.pid!, nginx: null, daemon: s.daemon, stop: () => s.stop() };
}

export interface RowFiles {
  certFile: string;
  outDir: string;
  big: { name: string; size: number; sha256: string };
  small: { name: string; size: number; sha256: string };
}

/**
 * One matrix row: curl fetches the big file and the small one twice (one
 * keep-alive connection on nginx; s_server -WWW closes after each response, so
 * three there), then `openssl s_client` fetches the small one, `held` running
 * while its connection is idle after the handshake. Asserts every body's sha256
 * and size, the suite both ends negotiated, nginx's keep-alive and its error
 * log (no [crit]/[alert]/[emerg]). Returns the TLS connections it made.
 */
export async function fetchRow(server: LegacyServer, suite: KernelSuite, f: RowFiles, held?: () => Promise<void>): Promise<{ connections: number; curlMs: number }> {
  const errFrom = server.nginx?.errorLog().length ?? 0;
  const accessFrom = server.nginx ? (await server.nginx.accessLog()).length : 0;
  const t0 = Date.now();
  const c = await curlFetch({ port: server.port, certFile: f.certFile, suite, paths: [`/${f.big.name}`, `/${f.small.name}`, `/${f.small.name}`], outDir: f.outDir });
  const curlMs = Date.now() - t0;
  const want = [f.big, f.small, f.small];
  c.transfers.forEach((t, i) => {
    assert.equal(t.status, 200, `${want[i]!.name}: status`);
    assert.equal(t.size, want[i]!.size, `${want[i]!.name}: size`);
    assert.equal(t.sha256, want[i]!.sha256, `${want[i]!.name}: sha256`);
  });
  const tlsName = suite.version === '1.2' ? 'TLSv1.2' : 'TLSv1.3';
  assert.equal(c.connects, server.kind === 'nginx' ? 1 : 3, `curl's connections (nginx keeps one alive; s_server -WWW closes each)`);
  assert.deepEqual(c.negotiated, Array.from({ length: c.connects }, () => [tlsName, suite.name]), 'what curl negotiated');
  if (server.nginx) {
    const log = (await server.nginx.accessLog(accessFrom + 3)).slice(accessFrom);
    assert.deepEqual(
      log.map((e) => [e.status, e.connectionRequests, e.connection === log[0]!.connection, e.tlsProtocol, e.tlsCipher]),
      [1, 2, 3].map((n) => [200, n, true, tlsName, suite.name]),
      'nginx: three requests on one connection, with the suite asked for',
    );
  }
  const s = await sClientFetch({ port: server.port, certFile: f.certFile, suite, path: `/${f.small.name}`, held });
  assert.match(s.status, /^HTTP\/1\.[01] 200/, `s_client: ${s.status}\n${s.client.stderr()}`);
  assert.equal(s.body.length, f.small.size, 's_client: body size');
  assert.equal(sha256(s.body), f.small.sha256, 's_client: body sha256');
  if (server.nginx) assert.deepEqual(server.nginx.severe(errFrom), [], `nginx error log: no [crit]/[alert]/[emerg]`);
  return { connections: c.connects + 1, curlMs };
}

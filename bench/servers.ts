/**
 * The servers under test, each started from a temp directory with its own
 * config so nothing outside it is written (the kTLS VM's filesystem is
 * read-only): Debian's nginx as origin, as TLS server of the files, as proxy
 * and as proxy_cache (with or without kTLS), and `aludel proxy` with and
 * without --cache. Every one is a single process (nginx: master_process off,
 * one worker), so /proc/<pid>/stat holds all its CPU time, unless started
 * with `workers` (bench/workers.ts): then CPU and memory are summed over the
 * process tree (Server.pids()).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { processTree } from './proc-cpu.js';

const NGINX = '/usr/sbin/nginx';
/**
 * The CLI of a built checkout: dist/src/cli/aludel.js, the bundle `aludel`
 * runs (scripts/bundle.mjs), or dist/src/cli/main.js in a checkout built
 * before there was one (a BASELINE).
 */
export function cliIn(checkout: string): string {
  const bundle = path.join(checkout, 'dist', 'src', 'cli', 'aludel.js');
  return fs.existsSync(bundle) ? bundle : path.join(checkout, 'dist', 'src', 'cli', 'main.js');
}
/** dist/bench/servers.js -> this checkout */
const ALUDEL_CLI = cliIn(fileURLToPath(new URL('../..', import.meta.url)));

/** The one suite every scenario negotiates, so the crypto floor (openssl speed aes-128-gcm) applies to all. */
export const TLS13_SUITE = 'TLS_AES_128_GCM_SHA256';
export const TLS12_CIPHER = 'ECDHE-ECDSA-AES128-GCM-SHA256';

export type Offload = 'userspace' | 'kernel';

export interface Server {
  pid: number;
  port: number;
  /** The started process and all its descendants, read now (under `aludel run`: the Node wrapper and the program). */
  pids(): number[];
  stop(): Promise<void>;
}

/** What a host-only bench part (--stalled, --workers) sets up once: its directory, files, certificate and origin. */
export interface BenchSetup {
  dir: string;
  root: string;
  tls: Tls;
  origin: Server;
  offload: Offload;
}

export interface Tls {
  certFile: string;
  keyFile: string;
}

export async function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, host);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** Servers still running: killed if the bench exits first. One 'exit' listener for all (a run may hold 18 servers). */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** `stdinPipe`: a pipe never written to, for servers that would act on stdin's EOF. */
export async function startProcess(what: string, cmd: string, args: string[], host: string, port: number, env?: NodeJS.ProcessEnv, stdinPipe = false): Promise<Server> {
  const child: ChildProcess = spawn(cmd, args, { stdio: [stdinPipe ? 'pipe' : 'ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let exited: string | null = null;
  child.once('exit', (code, signal) => (exited = `exited (${code ?? signal})`));
  running.add(child);
  // Node's start-up alone takes tens of seconds on the VM's emulated CPU.
  const deadline = Date.now() + 180_000;
  while (!(await accepts(host, port))) {
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${what} ${exited ?? 'did not listen within 180 s'}: ${cmd} ${args.join(' ')}\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    pid: child.pid!,
    port,
    pids: () => processTree(child.pid!),
    async stop() {
      running.delete(child);
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await gone;
      clearTimeout(t);
    },
  };
}

export type NginxRole =
  | { kind: 'origin' }
  | { kind: 'direct' }
  | { kind: 'proxy'; originPort: number; originTls?: boolean }
  | { kind: 'cache'; originPort: number };

export interface NginxOptions {
  dir: string;
  host: string;
  root: string;
  role: NginxRole;
  tls?: Tls & { offload: Offload };
  /** ssl_buffer_size: the TLS record size nginx writes (bodies through SSL_write only, i.e. sendfile off). */
  recordSize?: number;
  sendfile?: boolean;
  /** Another nginx binary (default Debian's /usr/sbin/nginx). */
  binary?: string;
  /**
   * A config for the legacy nginx 1.11.1 + OpenSSL 1.0.2 (../shared/legacy):
   * TLS 1.2 only (1.0.2 has no 1.3), no ssl_conf_command (nginx 1.19.4+),
   * no `-e` switch (1.19.5+).
   */
  legacy?: boolean;
  /** Start it under `aludel run` (no flag: the preload picks the strategy), the preload's log line appended to this file. */
  aludelRun?: { logFile: string };
  /**
   * proxy_max_temp_file_size 0: a proxy reads its upstream only as fast as the
   * client takes the body (no spooling to disk), as Aludel does. For stalled
   * readers: otherwise each would spool up to 1 GiB to proxy_temp.
   */
  noTempFile?: boolean;
  /**
   * worker_processes N. Above 1, master_process on: a master that forks the
   * workers, as nginx is deployed (they share the listening socket it bound,
   * accept_mutex off, nginx's default since 1.11.3). Default: 1, no master.
   */
  workers?: number;
  /** `listen ... reuseport`: a listening socket per worker, SO_REUSEPORT. */
  reusePort?: boolean;
  /** A command the server runs under (valgrind, strace: bench/handshake-cost.ts). */
  wrap?: readonly string[];
  /** An access log (one line per request) instead of none: an origin's, to count what reached it (bench/request-cost.ts, cache hits). */
  accessLog?: string;
}

/** `cmd args` under `wrap` (a tool and its options, e.g. valgrind), or as is. */
function wrapped(wrap: readonly string[] | undefined, cmd: string, args: string[]): [string, string[]] {
  return wrap === undefined || wrap.length === 0 ? [cmd, args] : [wrap[0]!, [...wrap.slice(1), cmd, ...args]];
}

/** A double-quoted nginx string; refuses what would need escaping or expand as a variable. */
function str(value: string): string {
  if (/["\\$\x00-\x1f]/.test(value)) throw new Error(`cannot put ${JSON.stringify(value)} into an nginx config`);
  return `"${value}"`;
}

function nginxConf(o: NginxOptions, port: number): string {
  const p = (name: string): string => str(path.join(o.dir, name));
  const { role, tls } = o;
  const location =
    role.kind === 'origin' || role.kind === 'direct'
      ? [
          // The origin marks everything cacheable, so both caches (RFC 9111 for Aludel, proxy_cache for nginx) store it without heuristics.
          ...(role.kind === 'origin' ? ['      add_header Cache-Control "public, max-age=86400";'] : []),
        ]
      : [
          `      proxy_pass http://127.0.0.1:${role.originPort};`,
          '      proxy_http_version 1.1;',
          // A TLS origin: TLS 1.3 with session reuse; with kTLS nginx's upstream socket gets kernel TX (OpenSSL 3.0: no TLS 1.3 RX).
          ...(role.kind === 'proxy' && role.originTls
            ? ['      proxy_ssl_protocols TLSv1.3;', '      proxy_ssl_session_reuse on;', ...(tls?.offload === 'kernel' ? ['      proxy_ssl_conf_command Options KTLS;'] : [])]
            : []),
          '      proxy_set_header Connection "";',
          ...(role.kind === 'cache' ? ['      proxy_cache bench;', '      proxy_cache_valid 200 1d;'] : []),
          ...(o.noTempFile ? ['      proxy_max_temp_file_size 0;'] : []),
        ];
  return [
    `master_process ${(o.workers ?? 1) > 1 ? 'on' : 'off'};`,
    `worker_processes ${o.workers ?? 1};`,
    ...(process.geteuid?.() === 0 ? ['user root root;'] : []),
    `pid ${p('nginx.pid')};`,
    `lock_file ${p('nginx.lock')};`,
    `error_log ${p('error.log')} warn;`,
    'events { worker_connections 4096; }',
    'http {',
    o.accessLog === undefined ? '  access_log off;' : `  access_log ${str(o.accessLog)};`,
    `  client_body_temp_path ${p('client_body')};`,
    `  proxy_temp_path ${p('proxy')};`,
    `  fastcgi_temp_path ${p('fastcgi')};`,
    `  uwsgi_temp_path ${p('uwsgi')};`,
    `  scgi_temp_path ${p('scgi')};`,
    ...(role.kind === 'cache' ? [`  proxy_cache_path ${p('cache')} levels=1:2 keys_zone=bench:10m max_size=4g inactive=1d;`] : []),
    '  default_type application/octet-stream;',
    `  sendfile ${o.sendfile === false ? 'off' : 'on'};`,
    '  tcp_nopush on;',
    '  keepalive_requests 1000000;',
    ...(role.kind === 'proxy' || role.kind === 'cache' ? [`  upstream origin { server 127.0.0.1:${role.originPort}; keepalive 32; }`] : []),
    '  server {',
    `    listen ${role.kind === 'origin' ? '127.0.0.1' : o.host}:${port}${tls ? (o.legacy ? ' ssl' : ' ssl http2') : ''}${o.reusePort ? ' reuseport' : ''};`,
    `    root ${str(path.resolve(o.root))};`,
    ...(tls
      ? [
          `    ssl_certificate ${str(tls.certFile)};`,
          `    ssl_certificate_key ${str(tls.keyFile)};`,
          ...(o.legacy
            ? ['    ssl_protocols TLSv1.2;', `    ssl_ciphers ${TLS12_CIPHER};`]
            : [
                '    ssl_protocols TLSv1.2 TLSv1.3;',
                `    ssl_ciphers ${TLS12_CIPHER};`,
                `    ssl_conf_command Ciphersuites ${TLS13_SUITE};`,
                // nginx 1.22 + OpenSSL 3.0: KTLS needs the option and sendfile on for file bodies (ktls-notes.md).
                ...(tls.offload === 'kernel' ? ['    ssl_conf_command Options KTLS;'] : []),
              ]),
          ...(o.recordSize ? [`    ssl_buffer_size ${o.recordSize};`] : []),
        ]
      : []),
    `    location / {`,
    ...location.map((l) => l.replace(/proxy_pass http:\/\/127\.0\.0\.1:\d+;/, `proxy_pass ${role.kind === 'proxy' && role.originTls ? 'https' : 'http'}://origin;`)),
    '    }',
    '  }',
    '}',
    '',
  ].join('\n');
}

export async function startNginx(name: string, o: NginxOptions): Promise<Server> {
  if (o.legacy && o.tls?.offload === 'kernel') throw new Error(`nginx (${name}): the legacy config has no kernel offload of its own (start it under aludel run instead)`);
  // nginx without -e opens its built-in error log (logs/error.log under -p) before reading the config.
  await fs.promises.mkdir(path.join(o.dir, 'logs'), { recursive: true });
  const port = await freePort(o.role.kind === 'origin' ? '127.0.0.1' : o.host);
  const conf = path.join(o.dir, 'nginx.conf');
  await fs.promises.writeFile(conf, nginxConf(o, port));
  const nginx = o.binary ?? NGINX;
  const args = ['-p', `${o.dir}/`, '-c', conf, ...(o.legacy ? [] : ['-e', path.join(o.dir, 'error.log')]), '-g', 'daemon off;'];
  const host = o.role.kind === 'origin' ? '127.0.0.1' : o.host;
  if (o.aludelRun) return startProcess(`aludel run nginx (${name})`, process.execPath, [ALUDEL_CLI, 'run', '--', nginx, ...args], host, port, { ALUDEL_PRELOAD_LOG: o.aludelRun.logFile });
  return startProcess(`nginx (${name})`, ...wrapped(o.wrap, nginx, args), host, port);
}

export interface AludelOptions {
  host: string;
  tls: Tls;
  offload: Offload;
  originPort: number;
  /** The upstream URL instead of http://127.0.0.1:<originPort> (a TLS origin: https://..., not verified, as nginx's proxy_ssl_verify off). */
  originUrl?: string;
  cacheDir?: string;
  /** --workers N (default 1: one process, beside nginx's worker_processes 1; the CPU measured is its own). */
  workers?: number;
  /** More flags, after the bench's own. */
  extraArgs?: string[];
  /** Another build's CLI (cliIn: a baseline measured in the same run); default this one's. */
  cli?: string;
  /** A command the server runs under (valgrind, strace: bench/handshake-cost.ts). */
  wrap?: readonly string[];
}

/** --workers (1 unless asked: the comparisons are with one nginx worker) and the caller's extra flags, for serve and proxy alike. */
function moreArgs(o: { workers?: number; extraArgs?: string[] }): string[] {
  return ['--workers', String(o.workers ?? 1), ...(o.extraArgs ?? [])];
}

/** `aludel serve` of `root`, with the same suite and log level as the proxy. */
export async function startAludelServe(name: string, o: { host: string; tls: Tls; offload: Offload; root: string; workers?: number; extraArgs?: string[]; cli?: string; wrap?: readonly string[] }): Promise<Server> {
  const port = await freePort(o.host);
  const args = [o.cli ?? ALUDEL_CLI, 'serve', '--listen', `${o.host}:${port}`, '--cert', o.tls.certFile, '--key', o.tls.keyFile, '--root', o.root, '--offload', o.offload, '--ciphersuites', TLS13_SUITE, '--access-log', 'off', '--log-level', 'warn', ...moreArgs(o)];
  return startProcess(`aludel serve (${name})`, ...wrapped(o.wrap, process.execPath, args), o.host, port);
}

/**
 * A floor under `aludel serve` (bench/floor-responder.ts): Aludel's own TLS
 * listener answering every request with one canned 1 KiB response, with no
 * HTTP machinery (`raw`) or with node's http.Server (`http`).
 */
export async function startFloor(mode: 'raw' | 'http', o: { host: string; tls: Tls; offload: Offload; wrap?: readonly string[] }): Promise<Server> {
  const port = await freePort(o.host);
  const responder = path.join(path.dirname(fileURLToPath(import.meta.url)), 'floor-responder.js');
  const args = [responder, mode, String(port), o.tls.certFile, o.tls.keyFile, o.offload];
  return startProcess(`floor-${mode}`, ...wrapped(o.wrap, process.execPath, args), o.host, port);
}

export async function startAludel(name: string, o: AludelOptions): Promise<Server> {
  const port = await freePort(o.host);
  const args = [
    o.cli ?? ALUDEL_CLI,
    'proxy',
    '--listen',
    `${o.host}:${port}`,
    '--cert',
    o.tls.certFile,
    '--key',
    o.tls.keyFile,
    '--to',
    o.originUrl ?? `http://127.0.0.1:${o.originPort}`,
    ...(o.originUrl?.startsWith('https:') ? ['--upstream-insecure'] : []),
    '--offload',
    o.offload,
    '--ciphersuites',
    TLS13_SUITE,
    // One line per request would be Aludel's cost but not nginx's (access_log off).
    '--access-log',
    'off',
    '--log-level',
    'warn',
    ...(o.cacheDir ? ['--cache', o.cacheDir] : []),
    ...moreArgs(o),
  ];
  return startProcess(`aludel (${name})`, ...wrapped(o.wrap, process.execPath, args), o.host, port);
}

/**
 * `openssl s_server -WWW -sendfile` on kTLS: each GET is one SSL_sendfile of
 * the whole file (apps/s_server.c), no HTTP beyond the request line. Its CPU
 * per GB is the floor a sendfile front can reach on this kernel: the kernel's
 * own record encryption (tls_sw) plus TCP, with nothing of a server around it.
 */
export async function startOpensslWww(dir: string, host: string, tls: Tls, root: string): Promise<Server> {
  await fs.promises.mkdir(dir, { recursive: true });
  const port = await freePort(host);
  const conf = path.join(dir, 'openssl.cnf');
  await fs.promises.writeFile(conf, ['openssl_conf = conf', '[conf]', 'ssl_conf = ssl', '[ssl]', 'system_default = sys', '[sys]', 'Options = KTLS', ''].join('\n'));
  const args = ['s_server', '-accept', `${host}:${port}`, '-cert', tls.certFile, '-key', tls.keyFile, '-tls1_3', '-ciphersuites', TLS13_SUITE, '-WWW', '-sendfile', '-quiet'];
  // -WWW serves paths relative to the working directory.
  return startProcess('openssl s_server -WWW -sendfile', 'sh', ['-c', 'cd "$1" && shift && exec openssl "$@" >/dev/null', 'sh', root, ...args], host, port, { OPENSSL_CONF: conf }, true);
}

/** `openssl s_server` reading (and discarding) what a client sends: the RX side of the record-size sweep. */
export async function startOpensslSink(dir: string, host: string, tls: Tls, offload: Offload): Promise<Server> {
  await fs.promises.mkdir(dir, { recursive: true });
  const port = await freePort(host);
  // Debian's s_server has no -ktls switch: the option comes from a config file (ktls-notes.md).
  const conf = path.join(dir, 'openssl.cnf');
  await fs.promises.writeFile(
    conf,
    ['openssl_conf = conf', '[conf]', 'ssl_conf = ssl', '[ssl]', 'system_default = sys', '[sys]', offload === 'kernel' ? 'Options = KTLS' : 'Options = -KTLS', ''].join('\n'),
  );
  const args = ['s_server', '-accept', `${host}:${port}`, '-cert', tls.certFile, '-key', tls.keyFile, '-tls1_2', '-cipher', TLS12_CIPHER, '-quiet'];
  // s_server sends what it reads on stdin and spins on its EOF, so stdin is a silent pipe; what it receives goes to /dev/null.
  return startProcess(`openssl s_server (${offload})`, 'sh', ['-c', 'exec openssl "$@" >/dev/null', 'sh', ...args], host, port, { OPENSSL_CONF: conf }, true);
}

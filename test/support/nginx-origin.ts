/**
 * Debian's nginx as a legacy origin behind the proxy under test: plain HTTP, or
 * legacy HTTPS (TLS 1.0-1.2, CBC suites, RSA key exchange) when `tls` is given.
 * Everything it writes (config, pid, logs, request-body temp files) lives in
 * one os.tmpdir() directory, so it runs where the rest of the filesystem is
 * read-only (the kTLS VM) and leaves nothing behind.
 *
 * Routes:
 * - `/<file>`: static files from `root`, sendfile, Content-Length.
 * - `/chunked/<file>`: the same bytes with Transfer-Encoding: chunked (see CHUNKING_PATTERN).
 * - `/slow/<file>`: the same bytes at SLOW_RATE bytes per second (limit_rate).
 * - `/cc/<file>?cc=...&vary=...&rate=...`: the static file with Cache-Control
 *   and Vary from the query (no field when the argument is absent), sent at
 *   `rate` bytes per second (nginx size syntax, e.g. 1m) when given; for the
 *   cache tests. The arguments are used as written, not percent-decoded.
 * - `/gz/<file>?cc=...`: the same, gzip-compressed for clients that accept it,
 *   with `Vary: Accept-Encoding` (gzip_vary).
 * - `/upload`: POST bodies up to 64 MiB, proxied to a sink origin (sink-origin.ts)
 *   whose JSON answer gives the bytes and sha256 that arrived.
 * - `/status/<code>` for each of STATUS_CODES.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnDaemon, waitReady } from './daemon.js';
import { accepts, freePort } from './loopback-port.js';
import { startSinkOrigin, type SinkOrigin } from './sink-origin.js';
import { delay } from './wait.js';

const NGINX = '/usr/sbin/nginx';

/** /upload's limit, and so the largest body the proxy tests can send through. */
export const UPLOAD_MAX_BYTES = 64 * 1024 * 1024;

/** /slow/ sends this many body bytes per second. */
export const SLOW_RATE = 64 * 1024;

/**
 * /status/<code> answers `status <code>\n` (text/plain) for codes with a body;
 * 204 and 304 have none (RFC 9110 §15.3.5, §15.4.5), though nginx's `return 304`
 * still sends Content-Length: 0 (a conditional GET of a static file sends no
 * Content-Length); 301 and 302 redirect to `/` with an absolute Location built
 * from the request's Host (absolute_redirect).
 */
export const STATUS_CODES = [200, 201, 204, 301, 302, 304, 400, 403, 404, 500, 502, 503] as const;

/**
 * sub_filter with a pattern that never occurs: nginx then cannot know the
 * length in advance, drops Content-Length (and ETag / Last-Modified) and sends
 * chunked, while the bytes pass through unchanged. Random files cannot hold it
 * by chance (sub_filter matches case-insensitively, so about 128^-40 per
 * offset). nginx skips sub_filter for empty responses: an empty file keeps
 * Content-Length: 0.
 */
const CHUNKING_PATTERN = 'aludel-sub-filter-pattern-that-never-occurs';

export interface NginxTls {
  certFile: string;
  keyFile: string;
  /** ssl_protocols, e.g. 'TLSv1 TLSv1.1 TLSv1.2'. */
  protocols: string;
  /**
   * ssl_ciphers, e.g. 'AES128-SHA:ECDHE-RSA-AES128-SHA:@SECLEVEL=0'. OpenSSL 3
   * refuses TLS < 1.2 and SHA-1 handshake signatures above security level 0,
   * and Debian builds it with level 2 as the default, so legacy lists need @SECLEVEL=0.
   */
  ciphers: string;
}

export interface NginxOriginOptions {
  root: string;
  tls?: NginxTls;
  /**
   * A command nginx is started under, e.g. [node, cli, 'run', '--']: nginx is
   * then its child, and readiness waits for nginx's own pid in the pid file.
   */
  wrapper?: string[];
  /** Added to nginx's (or the wrapper's) environment. */
  env?: NodeJS.ProcessEnv;
  /** How long nginx (and its wrapper) may take to listen; default 10 s. */
  readyTimeoutMs?: number;
}

/** One access log line (nginx's own variables, named after them). */
export interface AccessEntry {
  method: string;
  /** $request_uri: the target as the client sent it, query included. */
  uri: string;
  /** 'HTTP/1.1', 'HTTP/1.0'. */
  protocol: string;
  status: number;
  /** $bytes_sent: head and body. */
  bytesSent: number;
  bodyBytesSent: number;
  /** $request_length: request line, headers and body. */
  requestLength: number;
  /** Seconds, millisecond resolution. */
  requestTime: number;
  /** nginx's connection serial number: equal values mean one (keep-alive) connection. */
  connection: number;
  /** Requests so far on that connection, this one included. */
  connectionRequests: number;
  /** 'TLSv1', 'TLSv1.2'...; null on plain HTTP. */
  tlsProtocol: string | null;
  /** OpenSSL's name, e.g. 'AES128-SHA'; null on plain HTTP. */
  tlsCipher: string | null;
}

export interface NginxOrigin {
  port: number;
  /** nginx's own pid (from its pid file; the wrapper's child when there is one). */
  pid: number;
  /** The origin behind /upload (its `requests` show what nginx forwarded). */
  sink: SinkOrigin;
  /**
   * The access log so far, parsed. nginx writes a line when it finishes a
   * request, which can be just after the client has the last byte: pass
   * `atLeast` to wait (up to 2 s) for that many lines. A connection that sends
   * bytes but no complete request (even a lone newline) is logged as status 400
   * with an empty method and uri; one that closes without sending is not logged.
   */
  accessLog(atLeast?: number): Promise<AccessEntry[]>;
  /** Stops nginx and the sink and deletes the directory with the config and logs. */
  stop(): Promise<void>;
}

/**
 * Every field quoted: escape=json makes the strings safe, and $status can be
 * "000" or "009", which is no JSON number.
 */
const LOG_FORMAT = [
  ['method', '$request_method'],
  ['uri', '$request_uri'],
  ['protocol', '$server_protocol'],
  ['status', '$status'],
  ['bytesSent', '$bytes_sent'],
  ['bodyBytesSent', '$body_bytes_sent'],
  ['requestLength', '$request_length'],
  ['requestTime', '$request_time'],
  ['connection', '$connection'],
  ['connectionRequests', '$connection_requests'],
  ['tlsProtocol', '$ssl_protocol'],
  ['tlsCipher', '$ssl_cipher'],
] as const;

/** A double-quoted nginx string; refuses what would need escaping or expand as a variable. */
export function nginxString(value: string): string {
  if (/["\\$\x00-\x1f]/.test(value)) throw new Error(`cannot put ${JSON.stringify(value)} into an nginx config: it holds a quote, backslash, $ or control character`);
  return `"${value}"`;
}

/**
 * The main context every test nginx shares (this one and the legacy ones in
 * legacy.ts): one process, files in `dir`, the error log at info.
 */
export function nginxMainContext(dir: string, writtenBy: string): string[] {
  const p = (name: string): string => nginxString(path.join(dir, name));
  return [
    `# Written by the tests (${writtenBy}).`,
    // One process: a SIGKILL from the test harness (run-process.ts reapOnExit)
    // then leaves no orphaned workers behind, and no worker changes user.
    'master_process off;',
    'worker_processes 1;',
    // As root nginx resolves a user even without workers (default "nobody",
    // which may not exist in a minimal VM) and chowns its temp dirs to it;
    // root keeps them and the caller's root readable. As non-root it is ignored.
    ...(process.geteuid?.() === 0 ? ['user root root;'] : []),
    `pid ${p('nginx.pid')};`,
    `lock_file ${p('nginx.lock')};`,
    `error_log ${p('error.log')} info;`,
    'events { worker_connections 1024; }',
  ];
}

/** The http context's temp paths: the compiled-in defaults are under /var/lib/nginx or the build prefix, read-only in the VM, not ours as non-root. */
export function nginxTempPaths(dir: string): string[] {
  return ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${nginxString(path.join(dir, t))};`);
}

function nginxConf(dir: string, port: number, sinkPort: number, { root, tls }: NginxOriginOptions): string {
  const rootDir = path.resolve(root);
  const files = nginxString(`${rootDir}/`);
  const p = (name: string): string => nginxString(path.join(dir, name));
  const protocols = tls?.protocols.trim().split(/\s+/) ?? [];
  for (const v of protocols) if (!/^(SSLv[23]|TLSv1(\.[123])?)$/.test(v)) throw new Error(`not an ssl_protocols value: ${v}`);
  const lines = [
    ...nginxMainContext(dir, 'test/support/nginx-origin.ts'),
    'http {',
    `  log_format aludel escape=json '{${LOG_FORMAT.map(([k, v]) => `"${k}":"${v}"`).join(',')}}';`,
    `  access_log ${p('access.log')} aludel;`,
    ...nginxTempPaths(dir),
    '  types { text/html html htm; text/plain txt; application/json json; }',
    '  default_type application/octet-stream;',
    '  sendfile on;',
    '  tcp_nopush on;',
    '  server {',
    `    listen 127.0.0.1:${port}${tls ? ' ssl' : ''};`,
    '    server_name localhost;',
    `    root ${nginxString(rootDir)};`,
    ...(tls
      ? [
          `    ssl_certificate ${nginxString(tls.certFile)};`,
          `    ssl_certificate_key ${nginxString(tls.keyFile)};`,
          `    ssl_protocols ${protocols.join(' ')};`,
          `    ssl_ciphers ${nginxString(tls.ciphers)};`,
          '    ssl_prefer_server_ciphers on;',
        ]
      : []),
    '    location / { }',
    `    location /chunked/ { alias ${files}; sub_filter ${nginxString(CHUNKING_PATTERN)} ""; sub_filter_types *; }`,
    `    location /slow/ { alias ${files}; limit_rate ${SLOW_RATE}; }`,
    // add_header skips a field whose value is empty, so an absent argument sends none; an empty limit_rate is no limit.
    `    location /cc/ { alias ${files}; add_header Cache-Control $arg_cc; add_header Vary $arg_vary; limit_rate $arg_rate; }`,
    `    location /gz/ { alias ${files}; gzip on; gzip_types *; gzip_min_length 1; gzip_proxied any; gzip_vary on; add_header Cache-Control $arg_cc; }`,
    // nginx cannot hash a body; it buffers it (proxy_request_buffering on) and
    // forwards it with Content-Length to the sink, which can.
    `    location = /upload { client_max_body_size ${UPLOAD_MAX_BYTES}; proxy_pass http://127.0.0.1:${sinkPort}; }`,
    ...STATUS_CODES.map((code) => `    location = /status/${code} { default_type text/plain; return ${code}${statusArgument(code)}; }`),
    '  }',
    '}',
    '',
  ];
  return lines.join('\n');
}

function statusArgument(code: (typeof STATUS_CODES)[number]): string {
  if (code === 204 || code === 304) return '';
  if (code === 301 || code === 302) return ' /';
  return ` "status ${code}\\n"`;
}

function parseAccessLog(text: string): AccessEntry[] {
  return text
    .split('\n')
    .filter((l) => l.length > 0)
    .map((line) => {
      const f = JSON.parse(line) as Record<(typeof LOG_FORMAT)[number][0], string>;
      return {
        method: f.method,
        uri: f.uri,
        protocol: f.protocol,
        status: Number(f.status),
        bytesSent: Number(f.bytesSent),
        bodyBytesSent: Number(f.bodyBytesSent),
        requestLength: Number(f.requestLength),
        requestTime: Number(f.requestTime),
        connection: Number(f.connection),
        connectionRequests: Number(f.connectionRequests),
        tlsProtocol: f.tlsProtocol || null,
        tlsCipher: f.tlsCipher || null,
      };
    });
}

async function readOr(file: string, fallback: string): Promise<string> {
  try {
    return await fs.promises.readFile(file, 'utf8');
  } catch {
    return fallback;
  }
}

/** Attempts when another process takes the free port before nginx binds it. */
const PORT_ATTEMPTS = 3;

export async function startNginxOrigin(opts: NginxOriginOptions): Promise<NginxOrigin> {
  const sink = await startSinkOrigin();
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-nginx-'));
  const confFile = path.join(dir, 'nginx.conf');
  const errorLog = path.join(dir, 'error.log');
  const pidFile = path.join(dir, 'nginx.pid');
  const accessFile = path.join(dir, 'access.log');
  try {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      await fs.promises.writeFile(confFile, nginxConf(dir, port, sink.port, opts));
      await fs.promises.writeFile(errorLog, '');
      await fs.promises.rm(pidFile, { force: true });
      // -e: errors before the config's error_log takes over go to the file too.
      const nginxArgs = [NGINX, '-p', `${dir}/`, '-c', confFile, '-e', errorLog, '-g', 'daemon off;'];
      const command = [...(opts.wrapper ?? []), ...nginxArgs];
      const nginx = spawnDaemon(command[0]!, command.slice(1), { env: opts.env });
      // Without a wrapper nginx is our child; with one, any live pid written after binding.
      const ownPid = (pid: string): boolean => (opts.wrapper ? /^\d+$/.test(pid) && fs.existsSync(`/proc/${pid}`) : pid === String(nginx.child.pid));
      const describe = async (): Promise<string> =>
        `config ${confFile}:\n${await readOr(confFile, '')}\nerror log:\n${await readOr(errorLog, '(none)')}\noutput:\n${nginx.output()}`;
      try {
        // nginx writes its pid file after binding: a connect before that could reach whoever else holds the port.
        await waitReady(nginx, `nginx (${NGINX}, Debian package nginx)`, async () => ownPid((await readOr(pidFile, '')).trim()) && (await accepts(port)), describe, opts.readyTimeoutMs);
      } catch (err) {
        await nginx.stop();
        if (attempt < PORT_ATTEMPTS && (await readOr(errorLog, '')).includes('Address already in use')) continue;
        throw err;
      }
      return {
        port,
        pid: Number((await readOr(pidFile, '')).trim()),
        sink,
        async accessLog(atLeast = 0) {
          const deadline = Date.now() + 2000;
          for (;;) {
            const entries = parseAccessLog(await readOr(accessFile, ''));
            if (entries.length >= atLeast || Date.now() > deadline) return entries;
            await delay(20);
          }
        },
        async stop() {
          await nginx.stop();
          await sink.stop();
          await fs.promises.rm(dir, { recursive: true, force: true });
        },
      };
    }
  } catch (err) {
    await sink.stop();
    await fs.promises.rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Flags of `aludel serve`, `aludel proxy` and `aludel tcp`, and how they
 * combine with `--config FILE`: one table, one schema, one set of messages. No flag has a commander default: a default would hide the
 * config file's value, so defaults are applied below both (PROXY_DEFAULTS)
 * and only shown in the help text.
 */
import type { Command } from 'commander';
import { assembleProxySettings, assembleServeSettings, HTTP_DEFAULT_LISTEN, PROXY_DEFAULTS, type SettingLayer } from '../config/assemble-proxy-settings.js';
import { loadProxyConfigFile } from '../config/proxy-config-file.js';
import { parseProxyInput, proxyKeys, type ProxyKey, type ProxyMode, type SettingsMode } from '../config/proxy-input.js';
import type { ProxySettings, ServeSettings } from '../config/proxy-settings.js';
import { InvalidOptionError } from '../errors.js';

type Camel<S extends string> = S extends `${infer H}-${infer T}` ? `${H}${Capitalize<Camel<T>>}` : S;

/** What commander hands the action: camel-cased flag names, only those given on the command line. */
export type ProxyFlags = { config?: string } & Partial<Record<Camel<ProxyKey>, string | string[] | boolean>>;

/** commander's name for a flag's value: --upstream-tls-min -> upstreamTlsMin. */
function camel(key: string): string {
  return key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** Value placeholder (null: a switch) and help, per setting; the order of --help. */
const OPTIONS: Record<ProxyKey, { arg: string | null; help: (mode: SettingsMode) => string }> = {
  listen: { arg: '<addr:port...>', help: () => 'listen address(es), e.g. 127.0.0.1:8443, [::1]:8443 or :8443 (repeatable)' },
  cert: { arg: '<file...>', help: () => 'certificate chain (PEM); repeat --cert/--key pairs for more names, chosen by SNI (the first is the default)' },
  key: { arg: '<file...>', help: () => 'private key (PEM) of the --cert in the same position' },
  root: { arg: '<dir>', help: () => 'document root' },
  to: {
    arg: '<url...>',
    help: (mode) =>
      mode === 'http'
        ? 'upstream(s): http://HOST[:PORT] or https://HOST[:PORT] (repeatable; IPv6 as http://[::1]:8080)'
        : 'upstream(s): HOST:PORT or tcp://HOST:PORT (repeatable; IPv6 as [::1]:5432)',
  },
  offload: { arg: '<mode>', help: () => 'auto (kernel where possible), kernel (refuse to start without kTLS), userspace' },
  'offload-policy': { arg: '<policy>', help: () => 'default, or prefer-hw: client TLS 1.2 AES-128-GCM only where the NIC offloads TLS (tls-hw-tx-offload on), so it can take the crypto' },
  'tls-min': { arg: '<version>', help: () => 'lowest client TLS version: 1.2 or 1.3' },
  'tls-max': { arg: '<version>', help: () => 'highest client TLS version: 1.2 or 1.3' },
  ciphers: { arg: '<list>', help: () => 'client TLS 1.2 cipher list (default: kernel-offloadable AEAD suites)' },
  ciphersuites: { arg: '<list>', help: () => 'client TLS 1.3 suites (default: AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305)' },
  'handshake-timeout': { arg: '<time>', help: () => 'drop clients that have not finished the TLS handshake' },
  'max-connections': { arg: '<n>', help: () => 'live client connections (TLS handshakes included) beyond which new ones are closed unread; 0 = no limit' },
  'shutdown-timeout': { arg: '<time>', help: () => 'on SIGTERM/SIGINT, how long connections in flight may take to finish before they are cut' },
  'idle-timeout': { arg: '<time>', help: (mode) => (mode !== 'tcp' ? 'close client connections idle this long (keep-alive, stalled sends)' : 'close connections with no data either way for this long') },
  'headers-timeout': { arg: '<time>', help: () => 'time allowed to receive client request headers (408)' },
  'max-header-size': { arg: '<size>', help: () => 'largest request line + headers (431), also the largest upstream response head' },
  'max-header-count': { arg: '<n>', help: () => 'most request header fields (431)' },
  'max-body-size': { arg: '<size>', help: () => 'largest client request body (413); 0 = no limit (default: no limit)' },
  'trust-forwarded': { arg: null, help: () => 'pass client-sent X-Forwarded-* / Forwarded on (default: dropped, only ours are sent)' },
  'connect-timeout': { arg: '<time>', help: () => 'upstream connect timeout (nginx proxy_connect_timeout)' },
  'upstream-headers-timeout': { arg: '<time>', help: () => 'wait this long for the upstream response head' },
  'upstream-idle-timeout': { arg: '<time>', help: () => 'upstream read/write stall timeout' },
  'upstream-keepalive': { arg: '<n>', help: () => 'idle upstream connections kept per upstream (those past it are closed after 1 s idle, oldest first); 0 = none' },
  'upstream-keepalive-timeout': { arg: '<time>', help: () => 'close idle upstream connections after this long' },
  'upstream-tls-min': { arg: '<version>', help: () => 'lowest TLS version to https:// upstreams: 1.0, 1.1, 1.2 or 1.3' },
  'upstream-tls-max': { arg: '<version>', help: () => 'highest TLS version to https:// upstreams' },
  'upstream-ciphers': { arg: '<list>', help: () => "OpenSSL cipher list for TLS <= 1.2 upstreams (default: node's; legacy TLS 1.0/1.1 needs @SECLEVEL=0)" },
  'upstream-ca': { arg: '<file>', help: () => 'verify https:// upstreams against this CA bundle (PEM) instead of the system CAs' },
  'upstream-fingerprint': { arg: '<sha256>', help: () => "pin the upstream's leaf certificate by SHA-256 (hex, colons optional)" },
  'upstream-insecure': { arg: null, help: () => 'do not verify upstream certificates (explicitly; conflicts with --upstream-ca/--upstream-fingerprint)' },
  'upstream-servername': { arg: '<name>', help: () => 'SNI and certificate name for https:// upstreams (default: the URL host when it is a name)' },
  'health-check-interval': { arg: '<time>', help: () => 'active health checks every interval; 0 = off' },
  'health-check-timeout': { arg: '<time>', help: () => 'active health check timeout (default: 2s, or the interval if shorter)' },
  'health-check-path': { arg: '<path>', help: () => 'active checks GET this path (2xx/3xx = healthy) instead of only connecting' },
  'max-fails': { arg: '<n>', help: () => 'failures within --fail-timeout that mark an upstream down (nginx max_fails); 0 = never' },
  'fail-timeout': { arg: '<time>', help: () => 'window for --max-fails, and how long an upstream stays down (nginx fail_timeout)' },
  cache: { arg: '<dir>', help: () => 'RFC 9111 shared cache in this directory (created if missing); hits go out by sendfile' },
  'cache-size': { arg: '<size>', help: () => 'most bytes the cache keeps on disk, least recently used evicted first' },
  'cache-cookies': { arg: null, help: () => 'store responses that set cookies when the origin made them cacheable explicitly (default: never stored, as nginx)' },
  'cache-stale-if-error': { arg: '<time>', help: () => 'when the upstream fails (no answer, 500/502/503/504), send a stored response stale by at most this long instead, if it has no stale-if-error of its own (RFC 5861) and nothing forbids it; 0 = off' },
  'targeted-cache-control': {
    arg: '<field>',
    help: () => 'a response field (e.g. Aludel-Cache-Control) whose directives the cache follows before CDN-Cache-Control and Cache-Control (RFC 9213); both targeted fields are not forwarded to clients',
  },
  'acme-domain': { arg: '<name...>', help: () => 'obtain and renew a certificate for this name from an ACME CA (repeatable); no --cert/--key needed' },
  'acme-challenge': { arg: '<type>', help: () => 'http-01 (answered on --redirect-http) or tls-alpn-01 (answered on the TLS listener, RFC 8737); default: http-01 with --redirect-http, else tls-alpn-01' },
  'acme-directory': { arg: '<url>', help: () => 'the ACME directory URL (RFC 8555)' },
  'acme-email': { arg: '<address>', help: () => 'contact address for the ACME account (expiry notices)' },
  'acme-storage': { arg: '<dir>', help: () => 'where the account key and managed certificates are kept (mode 0700/0600; default: $STATE_DIRECTORY/acme, else ~/.local/share/aludel/acme)' },
  'acme-ca': { arg: '<file>', help: () => "also trust this CA bundle (PEM) for the ACME directory's own TLS (besides the system CAs and NODE_EXTRA_CA_CERTS)" },
  'redirect-http': { arg: '<addr:port>', help: () => 'also listen for plain HTTP here and answer 308 to https:// (e.g. :80); default: off' },
  'access-log': { arg: '<file>', help: () => 'write request lines to this file (reopened on SIGUSR1) instead of the main log on stdout; off: none at all (nginx access_log off; a file named off is ./off)' },
  http2: {
    arg: '<on|off>',
    help: () => 'offer HTTP/2 (ALPN h2) besides HTTP/1.1',
  },
  'http2-max-concurrent-streams': { arg: '<n>', help: () => 'HTTP/2 streams one client connection may have open at once (nginx http2_max_concurrent_streams)' },
  'access-log-format': { arg: '<format>', help: () => 'json, or combined (nginx combined plus request time, upstream and request id)' },
  'log-level': { arg: '<level>', help: () => 'fatal, error, warn, info, debug, trace or silent' },
  'reuse-port': { arg: null, help: () => 'SO_REUSEPORT: with --workers, each worker gets its own listening socket and the kernel spreads new connections over them (nginx\'s listen ... reuseport); several aludel processes may also share the port' },
  workers: { arg: '<n|auto>', help: () => 'worker processes sharing the listeners (auto = the CPUs this process may use); 1 = one process, no primary' },
  'ticket-keys': { arg: '<file...>', help: () => 'TLS session ticket key files, 80 (or 48) bytes as nginx ssl_session_ticket_key: the first encrypts, all decrypt (repeatable); default: keys made at start-up' },
  admin: { arg: '<addr:port>', help: () => 'admin HTTP listener for Prometheus GET /metrics and GET /status (JSON); a bare port binds 127.0.0.1 (default: off)' },
};

/** Adds the flags of `aludel serve`, `aludel proxy` (mode http) or `aludel tcp`; none is required here, as a config file may give it. */
export function addProxyOptions(cmd: Command, mode: SettingsMode): Command {
  cmd.option('--config <file>', 'settings file (.yaml, .yml or .json), keys as the long flag names; flags given here win');
  const keys = new Set(proxyKeys(mode));
  for (const [key, { arg, help }] of Object.entries(OPTIONS) as Array<[ProxyKey, (typeof OPTIONS)[ProxyKey]]>) {
    if (!keys.has(key)) continue;
    const shown = key === 'listen' ? (mode !== 'tcp' ? HTTP_DEFAULT_LISTEN : 'none, required') : PROXY_DEFAULTS[key];
    const suffix = typeof shown === 'string' ? ` (default: ${shown})` : '';
    cmd.option(arg === null ? `--${key}` : `--${key} ${arg}`, `${help(mode)}${suffix}`);
  }
  return cmd;
}

/**
 * Defaults < config file < flags, each setting on its own: a flag replaces
 * the file's value (--to replaces the file's whole list). Everything is
 * validated, the cert/key/CA files checked readable, and every problem
 * reported in one InvalidOptionError naming its flag or config key.
 */
export async function resolveProxySettings(mode: ProxyMode, flags: ProxyFlags, configText?: string): Promise<ProxySettings> {
  return assembleProxySettings(mode, await settingLayers(mode, flags, configText));
}

/** The same for `aludel serve`. */
export async function resolveServeSettings(flags: ProxyFlags, configText?: string): Promise<ServeSettings> {
  return assembleServeSettings(await settingLayers('serve', flags, configText));
}

/** The config file's layer (when --config is given; from `configText` when given, else read now) under the command line's. */
async function settingLayers(mode: SettingsMode, flags: ProxyFlags, configText?: string): Promise<SettingLayer[]> {
  const given = flags as Record<string, unknown>;
  const raw: Record<string, unknown> = {};
  for (const key of proxyKeys(mode)) {
    const value = given[camel(key)];
    if (value !== undefined) raw[key] = value;
  }
  const cli = parseProxyInput(mode, raw, { kind: 'cli' });
  if (cli.problems.length > 0) throw new InvalidOptionError(cli.problems.join('\n'));
  const layers: SettingLayer[] = [];
  if (flags.config !== undefined) {
    layers.push({ values: await loadProxyConfigFile(flags.config, mode, configText), source: { kind: 'file', file: flags.config } });
  }
  layers.push({ values: cli.values, source: { kind: 'cli' } });
  return layers;
}

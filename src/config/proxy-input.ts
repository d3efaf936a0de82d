/**
 * The settings of `aludel serve`, `aludel proxy` and `aludel tcp` as given:
 * one schema for the command line and config files alike, keyed by the long
 * flag name without its dashes (the config file keys), so both are checked
 * by the same rules, with the same messages, for every command.
 */
import { z } from 'zod';
import { didYouMean } from './did-you-mean.js';
import { describeIssue } from './setting-issues.js';
import {
  acmeDirectory,
  acmeDomain,
  adminAddress,
  count,
  duration,
  emailAddress,
  filePath,
  fingerprint,
  flag,
  listenAddress,
  logLevel,
  offloadMode,
  offloadPolicy,
  onOff,
  requestPath,
  serverName,
  size,
  targetedFieldName,
  text,
  tlsVersion,
  upstreamTlsVersion,
  workerCount,
} from './setting-values.js';
import { upstreamUrl } from './upstream-url.js';
import { ACCESS_FORMATS } from '../log/access-log.js';

export type ProxyMode = 'http' | 'tcp';
/** Which command the settings are for: serve, or the proxy in its two modes. */
export type SettingsMode = ProxyMode | 'serve';

const positiveDuration = duration({ allowZero: false });

/** Every listener: serve, proxy and tcp. */
/** `listen: a` or a list; --listen is repeatable. */
const listenList = z
  .union([z.string().transform((s) => [s]), z.array(z.unknown()).min(1, 'list at least one address')], { error: 'expected ADDRESS:PORT or a list of them' })
  .pipe(z.array(listenAddress));

/** `cert: a.pem` or a list; --cert and --key are repeatable, paired in order. */
const fileList = z
  .union([z.string().transform((s) => [s]), z.array(z.unknown()).min(1, 'list at least one file')], { error: 'expected a file path or a list of them' })
  .pipe(z.array(filePath));

/** `acme-domain: a` or a list; --acme-domain is repeatable. */
const domainList = z
  .union([z.string().transform((s) => [s]), z.array(z.unknown()).min(1, 'list at least one name')], { error: 'expected a DNS name or a list of them' })
  .pipe(z.array(acmeDomain));

const LISTENER = {
  listen: listenList,
  cert: fileList,
  key: fileList,
  offload: offloadMode,
  'offload-policy': offloadPolicy,
  'tls-min': tlsVersion,
  'tls-max': tlsVersion,
  ciphers: text,
  ciphersuites: text,
  'handshake-timeout': positiveDuration,
  // Per listener, TLS handshakes in progress included; 0 = no limit.
  'max-connections': count(0).transform((n) => (n === 0 ? null : n)),
  'idle-timeout': positiveDuration,
  'shutdown-timeout': positiveDuration,
  'log-level': logLevel,
  'reuse-port': flag,
  admin: adminAddress,
  // Worker processes sharing the listening sockets (src/cli/primary.ts).
  workers: workerCount,
  // nginx's ssl_session_ticket_key files: the first encrypts, all decrypt (src/tls/ticket-keys.ts).
  'ticket-keys': fileList,
};

/** The upstream side of proxy and tcp. */
const UPSTREAM = {
  'connect-timeout': positiveDuration,
  'upstream-idle-timeout': positiveDuration,
  'health-check-interval': duration({ allowZero: true }),
  'health-check-timeout': positiveDuration,
  'max-fails': count(0),
  'fail-timeout': positiveDuration,
};

/** HTTP requests from clients: serve and proxy. */
const HTTP_SERVER = {
  'headers-timeout': positiveDuration,
  'max-header-size': size.refine((n) => n > 0, 'must be more than 0'),
  'access-log': filePath,
  'redirect-http': listenAddress,
  'access-log-format': z.enum(ACCESS_FORMATS as [string, ...string[]], { error: 'expected json or combined' }),
  // ALPN h2 (RFC 9113 §3.2) besides http/1.1; `aludel proxy` validates it but offers http/1.1 only for now.
  http2: onOff,
  // SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §6.5.2), nginx's http2_max_concurrent_streams.
  'http2-max-concurrent-streams': count(1),
  // Managed certificates (RFC 8555, src/tls/acme/): HTTP-01 is answered on --redirect-http, so serve and proxy only.
  'acme-domain': domainList,
  // HTTP-01 (on --redirect-http) or TLS-ALPN-01 (RFC 8737, on the TLS listener itself), as nginx's acme `challenge`.
  'acme-challenge': z.enum(['http-01', 'tls-alpn-01'], { error: 'expected http-01 or tls-alpn-01' }),
  'acme-directory': acmeDirectory,
  'acme-email': emailAddress,
  'acme-storage': filePath,
  'acme-ca': filePath,
};

/** Settings about HTTP messages or TLS to the upstream: not offered by `aludel tcp`. */
const HTTP_ONLY = {
  'upstream-headers-timeout': positiveDuration,
  'max-header-count': count(1),
  // 0 = no limit, as nginx's client_max_body_size 0.
  'max-body-size': size.transform((n) => (n === 0 ? null : n)),
  'upstream-keepalive': count(0),
  'upstream-keepalive-timeout': positiveDuration,
  'trust-forwarded': flag,
  'upstream-tls-min': upstreamTlsVersion,
  'upstream-tls-max': upstreamTlsVersion,
  'upstream-ciphers': text,
  'upstream-ca': filePath,
  'upstream-fingerprint': fingerprint,
  'upstream-insecure': flag,
  'upstream-servername': serverName,
  'health-check-path': requestPath,
  cache: filePath,
  'cache-size': size.refine((n) => n > 0, 'must be more than 0'),
  'cache-cookies': flag,
  // RFC 5861 §4: how long past its freshness a stored response may stand in for an upstream error, when it gives no stale-if-error of its own; 0 = off.
  'cache-stale-if-error': duration({ allowZero: true }),
  // RFC 9213 §2.1: a targeted field honoured before CDN-Cache-Control, e.g. Aludel-Cache-Control.
  'targeted-cache-control': targetedFieldName,
};

/** `to: http://a` or a list; --to is variadic and repeatable. */
function upstreamList(mode: ProxyMode) {
  return z
    .union([z.string().transform((s) => [s]), z.array(z.unknown()).min(1, 'list at least one upstream')], {
      error: 'expected an upstream or a list of upstreams',
    })
    .pipe(z.array(upstreamUrl(mode)));
}

/** `aludel serve` only. */
const SERVE_ONLY = {
  root: filePath,
};

const httpInput = z.strictObject({ ...LISTENER, to: upstreamList('http'), ...UPSTREAM, ...HTTP_SERVER, ...HTTP_ONLY }).partial();
const tcpInput = z.strictObject({ ...LISTENER, to: upstreamList('tcp'), ...UPSTREAM }).partial();
const serveInput = z.strictObject({ ...LISTENER, ...HTTP_SERVER, ...SERVE_ONLY }).partial();
const INPUTS = { http: httpInput, tcp: tcpInput, serve: serveInput } as const;

/** Every setting parsed to its value (durations in ms, sizes in bytes, ...); absent when not given. */
export type ProxyInput = z.output<typeof httpInput> & z.output<typeof serveInput>;
export type ProxyKey = keyof ProxyInput & string;

const HTTP_KEYS: readonly string[] = [...Object.keys(HTTP_SERVER), ...Object.keys(HTTP_ONLY)];
const PROXY_KEYS: readonly string[] = ['to', ...Object.keys(UPSTREAM), ...Object.keys(HTTP_ONLY)];

/** The keys (and flags) of a mode, in schema order. */
export function proxyKeys(mode: SettingsMode): ProxyKey[] {
  return Object.keys(INPUTS[mode].shape) as ProxyKey[];
}

/** Where a value came from, for messages. */
export type SettingSource = { kind: 'default' } | { kind: 'cli' } | { kind: 'file'; file: string };

/** The head of an error line: "--connect-timeout" or "config proxy.yaml: connect-timeout". */
export function settingLabel(source: SettingSource, key: string, index?: number): string {
  if (source.kind === 'cli') return `--${key}`;
  const name = index === undefined ? key : `${key}[${index}]`;
  return source.kind === 'file' ? `config ${source.file}: ${name}` : `${name} (default)`;
}

/** A setting inside a sentence: "--upstream-ca", "upstream-ca in config proxy.yaml", "tls-max (default)". */
export function settingMention(source: SettingSource, key: string): string {
  return source.kind === 'file' ? `${key} in config ${source.file}` : settingLabel(source, key);
}

function unknownKeyProblem(mode: SettingsMode, source: SettingSource, key: string): string {
  const where = source.kind === 'file' ? `config ${source.file}: ` : '';
  if (mode === 'tcp' && HTTP_KEYS.includes(key)) {
    return `${where}${key}: applies to aludel proxy (HTTP) only, not to aludel tcp; remove it`;
  }
  if (mode === 'serve' && (PROXY_KEYS.includes(key) || key === 'cache' || key.startsWith('cache-'))) {
    return `${where}${key}: applies to aludel proxy and tcp, not to aludel serve; remove it`;
  }
  // A YAML 1.1 merge key (docker-compose files use them): YAML 1.2, which the file is read as, has
  // none, and a flat mapping of settings has nothing to merge from.
  if (key === '<<' && source.kind === 'file') {
    return `${where}'<<' (a YAML merge key) is not supported: settings are one flat mapping; write each setting out`;
  }
  const near = didYouMean(key, proxyKeys(mode));
  return `${where}unknown setting '${key}'${near === null ? '' : ` (did you mean '${near}'?)`}`;
}

/**
 * Parses one source's raw values (strings from the command line, scalars from
 * a file). Returns every problem, one line each, rather than the first only,
 * so a config file is fixed in one round.
 */
export function parseProxyInput(mode: SettingsMode, raw: Record<string, unknown>, source: SettingSource): { values: ProxyInput; problems: string[] } {
  const result = INPUTS[mode].safeParse(raw, { reportInput: true });
  if (result.success) return { values: result.data as ProxyInput, problems: [] };
  const problems: string[] = [];
  for (const issue of result.error.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) problems.push(unknownKeyProblem(mode, source, key));
      continue;
    }
    const [key, index] = issue.path;
    // `to: "x"` becomes a one-element list; an index would point into a list that is not in the file.
    const listIndex = typeof index === 'number' && Array.isArray(raw[String(key)]) ? index : undefined;
    problems.push(`${settingLabel(source, String(key), listIndex)}: ${describeIssue(issue)}`);
  }
  return { values: {}, problems };
}

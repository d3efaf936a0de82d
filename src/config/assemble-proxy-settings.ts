/**
 * Defaults < config file < command line, then the rules that span several
 * settings (required ones, ranges, conflicts) and the files they name.
 */
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { InvalidOptionError } from '../errors.js';
import { parseProxyInput, proxyKeys, settingLabel, settingMention, type ProxyInput, type ProxyKey, type ProxyMode, type SettingSource, type SettingsMode } from './proxy-input.js';
import type { HttpServerSettings, ListenerSettings, ProxySettings, ServeSettings, Upstream, UpstreamTls } from './proxy-settings.js';
import { ACCESS_LOG_OFF, type AccessFormat } from '../log/access-log.js';
import { unreadableFileReason } from './readable-file.js';
import { upstreamTlsProblems } from './upstream-tls-check.js';
import { ticketKeyFileProblem } from './ticket-key-file.js';
import { VERSION_ORDER, workerCountFor } from './setting-values.js';
import { managedPaths } from './acme-paths.js';
import type { CertificateFiles } from './tls-settings.js';

/** --acme-directory's default: Let's Encrypt's production directory. */
export const LETS_ENCRYPT_DIRECTORY = 'https://acme-v02.api.letsencrypt.org/directory';

/** Written as an admin would write them: they are parsed by the same schema, and shown in --help. */
export const PROXY_DEFAULTS: Partial<Record<ProxyKey, string | boolean>> = {
  offload: 'auto',
  'offload-policy': 'default',
  'tls-min': '1.2',
  'tls-max': '1.3',
  'handshake-timeout': '10s',
  'max-connections': '0',
  'idle-timeout': '60s',
  'shutdown-timeout': '30s',
  'headers-timeout': '20s',
  'connect-timeout': '5s',
  'upstream-headers-timeout': '60s',
  'upstream-idle-timeout': '60s',
  'max-header-size': '16k',
  'max-header-count': '100',
  'upstream-keepalive': '32',
  'upstream-keepalive-timeout': '30s',
  'trust-forwarded': false,
  'upstream-tls-min': '1.2',
  'upstream-tls-max': '1.3',
  'upstream-insecure': false,
  'health-check-interval': '0',
  'max-fails': '1',
  'fail-timeout': '10s',
  'log-level': 'info',
  'reuse-port': false,
  workers: 'auto',
  'cache-size': '10GiB',
  'cache-cookies': false,
  'cache-stale-if-error': '0',
  'access-log-format': 'json',
  http2: 'on',
  'http2-max-concurrent-streams': '128',
  'acme-directory': LETS_ENCRYPT_DIRECTORY,
};

/**
 * `aludel proxy` and `aludel serve` listen on 127.0.0.1:8443. `aludel tcp` has
 * no default: no port is conventional for an arbitrary TLS-wrapped TCP service.
 */
export const HTTP_DEFAULT_LISTEN = '127.0.0.1:8443';

/** Without active checks, or when the interval is shorter (a check must end before the next starts). */
const HEALTH_CHECK_TIMEOUT_MS = 2000;

/** Settings that only mean something for https:// upstreams. */
const UPSTREAM_TLS_KEYS = [
  'upstream-tls-min',
  'upstream-tls-max',
  'upstream-ciphers',
  'upstream-ca',
  'upstream-fingerprint',
  'upstream-insecure',
  'upstream-servername',
] as const satisfies readonly ProxyKey[];

export interface SettingLayer {
  values: ProxyInput;
  source: SettingSource;
}

const DEFAULT_SOURCE: SettingSource = { kind: 'default' };

/** Parsed once: a default that fails its own schema is a bug, caught by the first test. */
const defaultValues = (() => {
  const { values, problems } = parseProxyInput('http', { ...PROXY_DEFAULTS, listen: HTTP_DEFAULT_LISTEN }, DEFAULT_SOURCE);
  if (problems.length > 0) throw new Error(`bad proxy defaults: ${problems.join('; ')}`);
  return values;
})();

function versionName(v: string): string {
  return v === 'TLSv1' ? 'TLSv1.0' : v;
}

/** Checks that need every setting at once; one line per problem. */
function crossCheck(mode: SettingsMode, s: ProxyInput, from: (key: ProxyKey) => SettingSource): string[] {
  const problems: string[] = [];
  const given = (key: ProxyKey): boolean => from(key).kind !== 'default' && s[key] !== undefined;
  const label = (key: ProxyKey): string => settingLabel(from(key), key);
  const mention = (key: ProxyKey): string => settingMention(from(key), key);
  const config = (key: ProxyKey): string => `, or ${key}: in a --config file`;

  // --acme-domain brings its own certificates (src/tls/acme/); --cert/--key may then add more.
  const acme = s['acme-domain'] !== undefined;
  if (s.cert === undefined && !acme) problems.push(`--cert is required: give --cert FILE (certificate chain, PEM)${config('cert')}, or --acme-domain NAME`);
  if (s.key === undefined && !acme && s.cert === undefined) problems.push(`--key is required: give --key FILE (private key, PEM)${config('key')}`);
  if (s.key === undefined && s.cert !== undefined) problems.push(`--key is required: give --key FILE (private key, PEM)${config('key')}`);
  if (s.cert === undefined && s.key !== undefined) problems.push(`${mention('key')} without --cert: give --cert FILE for each key${config('cert')}`);
  if (s.cert !== undefined && s.key !== undefined && s.cert.length !== s.key.length) {
    problems.push(`${mention('cert')} names ${s.cert.length} certificate(s) and ${mention('key')} ${s.key.length} key(s): give one key per certificate, in the same order`);
  }
  if (s.listen === undefined) {
    problems.push(`--listen is required for aludel tcp (no port is conventional for a TLS-wrapped TCP service): give e.g. --listen 127.0.0.1:9993${config('listen')}`);
  }
  if (mode === 'serve' && s.root === undefined) problems.push(`--root is required: give --root DIR (the document root)${config('root')}`);
  if (mode !== 'serve' && s.to === undefined) {
    const example = mode === 'http' ? 'http://127.0.0.1:8080' : '127.0.0.1:5432';
    problems.push(`--to is required: give the upstream(s), e.g. --to ${example}${config('to')}`);
  }

  for (const [min, max] of [['tls-min', 'tls-max'], ['upstream-tls-min', 'upstream-tls-max']] as const) {
    const lo = s[min];
    const hi = s[max];
    if (lo !== undefined && hi !== undefined && VERSION_ORDER[lo] > VERSION_ORDER[hi]) {
      problems.push(`${mention(min)} ${versionName(lo)} is above ${mention(max)} ${versionName(hi)}: lower the minimum or raise the maximum`);
    }
  }

  const addresses = new Set<string>();
  for (const a of s.listen ?? []) {
    const id = `[${a.host}]:${a.port}`;
    if (addresses.has(id) && a.port !== 0) problems.push(`${label('listen')}: ${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port} is listed twice; each address once`);
    addresses.add(id);
  }

  const seen = new Map<string, string>();
  for (const u of s.to ?? []) {
    const id = `${u.protocol}://${net.isIPv6(u.host) ? `[${u.host}]` : u.host}:${u.port}`;
    const first = seen.get(id);
    if (first !== undefined) problems.push(`${label('to')}: ${u.url} is listed twice (also as ${first}); each upstream once`);
    else seen.set(id, u.url);
  }

  if (s.to !== undefined && mode === 'http' && !s.to.some((u) => u.protocol === 'https')) {
    for (const key of UPSTREAM_TLS_KEYS) {
      if (given(key) && s[key] !== false) {
        problems.push(`${label(key)}: no https:// upstream to apply it to (${mention('to')} lists only http://); remove it or use https:// upstreams`);
      }
    }
  }
  if (s['upstream-insecure'] === true) {
    for (const key of ['upstream-ca', 'upstream-fingerprint'] as const) {
      if (given(key)) {
        problems.push(`${mention('upstream-insecure')} turns upstream certificate verification off, but ${mention(key)} asks for it: remove one of them`);
      }
    }
  }

  const interval = s['health-check-interval'] ?? 0;
  for (const key of ['health-check-path', 'health-check-timeout'] as const) {
    if (given(key) && interval === 0) problems.push(`${label(key)}: has no effect without active health checks; set health-check-interval (e.g. 5s) or remove it`);
  }
  const timeout = s['health-check-timeout'];
  if (given('health-check-timeout') && timeout !== undefined && interval > 0 && timeout >= interval) {
    problems.push(`${label('health-check-timeout')}: must be shorter than ${mention('health-check-interval')} (${interval} ms), so one check ends before the next`);
  }
  problems.push(...acmeProblems(s, from));
  for (const key of ['cache-size', 'cache-cookies', 'cache-stale-if-error', 'targeted-cache-control'] as const) {
    if (given(key) && s[key] !== false && s.cache === undefined) problems.push(`${label(key)}: has no effect without a cache; give --cache DIR${config('cache')}, or remove it`);
  }
  return problems;
}

/** The ACME settings among themselves. (With --workers N, the primary orders for all: src/cli/primary.ts.) */
function acmeProblems(s: ProxyInput, from: (key: ProxyKey) => SettingSource): string[] {
  const problems: string[] = [];
  const domains = s['acme-domain'];
  if (domains === undefined) {
    for (const key of ['acme-email', 'acme-storage', 'acme-ca', 'acme-challenge'] as const) {
      if (from(key).kind !== 'default' && s[key] !== undefined) problems.push(`${settingLabel(from(key), key)}: has no effect without --acme-domain NAME; give it, or remove this`);
    }
    if (from('acme-directory').kind !== 'default') problems.push(`${settingLabel(from('acme-directory'), 'acme-directory')}: has no effect without --acme-domain NAME; give it, or remove this`);
    return problems;
  }
  const seen = new Set<string>();
  for (const d of domains) {
    if (seen.has(d)) problems.push(`${settingLabel(from('acme-domain'), 'acme-domain')}: ${d} is listed twice; each name once`);
    seen.add(d);
  }
  return problems;
}

/** --acme-storage's default: systemd's StateDirectory= when set, else the user's data directory. */
export function defaultAcmeStorage(env: NodeJS.ProcessEnv = process.env): string {
  const state = env.STATE_DIRECTORY?.split(':')[0];
  return state ? path.join(state, 'acme') : path.join(os.homedir(), '.local', 'share', 'aludel', 'acme');
}

async function fileProblems(s: ProxyInput, from: (key: ProxyKey) => SettingSource): Promise<string[]> {
  const problems: string[] = [];
  const files: Array<[ProxyKey, string]> = [
    ...(s.cert ?? []).map((f): [ProxyKey, string] => ['cert', f]),
    ...(s.key ?? []).map((f): [ProxyKey, string] => ['key', f]),
    ...(s['upstream-ca'] === undefined ? [] : [['upstream-ca', s['upstream-ca']] as [ProxyKey, string]]),
    ...(s['acme-ca'] === undefined ? [] : [['acme-ca', s['acme-ca']] as [ProxyKey, string]]),
  ];
  for (const [key, file] of files) {
    const why = await unreadableFileReason(file);
    if (why !== null) problems.push(`${settingLabel(from(key), key)}: ${file}: ${why}`);
  }
  for (const file of s['ticket-keys'] ?? []) {
    const why = await ticketKeyFileProblem(file);
    if (why !== null) problems.push(`${settingLabel(from('ticket-keys'), 'ticket-keys')}: ${file}: ${why}`);
  }
  if (s.root !== undefined) {
    const why = await unreadableFileReason(s.root, 'directory');
    if (why !== null) problems.push(`${settingLabel(from('root'), 'root')}: ${s.root}: ${why}`);
  }
  return problems;
}

function upstreamTls(u: Omit<Upstream, 'tls'>, s: ProxyInput, caPem: Buffer | null): UpstreamTls | null {
  if (u.protocol !== 'https') return null;
  return {
    minVersion: s['upstream-tls-min']!,
    maxVersion: s['upstream-tls-max']!,
    ciphers: s['upstream-ciphers'] ?? null,
    caFile: s['upstream-ca'] ?? null,
    caPem,
    fingerprint256: s['upstream-fingerprint'] ?? null,
    verify: s['upstream-insecure'] !== true,
    servername: s['upstream-servername'] ?? (net.isIP(u.host) === 0 ? u.host : null),
  };
}

/**
 * Merges parsed layers (later wins, per setting) over the mode's defaults and
 * checks the whole. Throws InvalidOptionError listing every problem, each
 * naming its flag or config key. Returns the input and the upstream-ca bytes
 * checked (the settings carry them: upstream-tls-check.ts readCaFile).
 */
async function mergeAndCheck(mode: SettingsMode, layers: readonly SettingLayer[]): Promise<{ s: ProxyInput; caPem: Buffer | null }> {
  const merged: Record<string, unknown> = {};
  const sources = new Map<string, SettingSource>();
  const keys = new Set<string>(proxyKeys(mode));
  const modeDefaults = Object.fromEntries(Object.entries(defaultValues).filter(([k]) => keys.has(k) && !(mode === 'tcp' && k === 'listen')));
  for (const { values, source } of [{ values: modeDefaults, source: DEFAULT_SOURCE }, ...layers]) {
    for (const [key, value] of Object.entries(values)) {
      if (value === undefined) continue;
      merged[key] = value;
      sources.set(key, source);
    }
  }
  const s = merged as ProxyInput;
  const from = (key: ProxyKey): SettingSource => sources.get(key) ?? DEFAULT_SOURCE;
  let problems = crossCheck(mode, s, from);
  if (problems.length === 0) problems = await fileProblems(s, from);
  let caPem: Buffer | null = null;
  if (problems.length === 0) ({ problems, caPem } = upstreamTlsProblems(s, (key) => settingLabel(from(key), key)));
  if (problems.length > 0) throw new InvalidOptionError(problems.join('\n'));
  return { s, caPem };
}

/**
 * The --acme-domain pairs, one per name in the storage directory; errors name
 * each by its --acme-domain, not by a --cert the admin never gave.
 */
function managedCertificates(s: ProxyInput): CertificateFiles[] {
  const acme = acmeSettings(s);
  if (acme === null) return [];
  return acme.domains.map((d) => {
    const { certFile, keyFile } = managedPaths(acme.storage, d);
    return { certFile, keyFile, label: `--acme-domain ${d}, its certificate kept in --acme-storage ${acme.storage}` };
  });
}

/** The settings every listener shares, from checked input. */
function listenerSettings(s: ProxyInput): ListenerSettings {
  return {
    listen: s.listen!,
    // Managed certificates first (the first is the default), then the --cert/--key pairs.
    certificates: [...managedCertificates(s), ...(s.cert ?? []).map((certFile, i) => ({ certFile, keyFile: s.key![i]! }))],
    offload: s.offload!,
    offloadPolicy: s['offload-policy']!,
    tlsMin: s['tls-min']!,
    tlsMax: s['tls-max']!,
    ciphers: s.ciphers ?? null,
    ciphersuites: s.ciphersuites ?? null,
    handshakeTimeoutMs: s['handshake-timeout']!,
    maxConnections: s['max-connections'] ?? null,
    idleTimeoutMs: s['idle-timeout']!,
    shutdownTimeoutMs: s['shutdown-timeout']!,
    logLevel: s['log-level']!,
    reusePort: s['reuse-port']!,
    admin: s.admin ?? null,
    workers: workerCountFor(s.workers!),
    workersAuto: s.workers === 'auto',
    ticketKeyFiles: s['ticket-keys'] ?? [],
  };
}

/** --acme-*: null without --acme-domain. */
function acmeSettings(s: ProxyInput): HttpServerSettings['acme'] {
  const domains = s['acme-domain'];
  if (domains === undefined) return null;
  return {
    domains,
    directoryUrl: s['acme-directory'] ?? LETS_ENCRYPT_DIRECTORY,
    email: s['acme-email'] ?? null,
    storage: path.resolve(s['acme-storage'] ?? defaultAcmeStorage()),
    caFile: s['acme-ca'] ?? null,
    challenge: s['acme-challenge'] ?? null,
  };
}

/** `--access-log off`, as nginx's `access_log off`: no request lines (a file named off is `./off`). */
function accessLogSettings(value: string | undefined, format: AccessFormat): HttpServerSettings['accessLog'] {
  if (value === ACCESS_LOG_OFF) return { file: null, format, off: true };
  return { file: value ?? null, format, off: false };
}

/** tcp has no HTTP side: its values are the defaults, unused. */
function httpServerSettings(s: ProxyInput): HttpServerSettings {
  return {
    headersTimeoutMs: s['headers-timeout'] ?? defaultValues['headers-timeout']!,
    maxHeaderSize: s['max-header-size'] ?? defaultValues['max-header-size']!,
    accessLog: accessLogSettings(s['access-log'], (s['access-log-format'] ?? 'json') as AccessFormat),
    redirectHttp: s['redirect-http'] ?? null,
    acme: acmeSettings(s),
    http2: s.http2 ?? defaultValues.http2!,
    http2MaxConcurrentStreams: s['http2-max-concurrent-streams'] ?? defaultValues['http2-max-concurrent-streams']!,
  };
}

/** `aludel serve`'s settings from its layers (defaults < config file < flags). */
export async function assembleServeSettings(layers: readonly SettingLayer[]): Promise<ServeSettings> {
  const { s } = await mergeAndCheck('serve', layers);
  return { mode: 'serve', ...listenerSettings(s), ...httpServerSettings(s), root: s.root! };
}

/** `aludel proxy` / `aludel tcp`'s settings from their layers (defaults < config file < flags). */
export async function assembleProxySettings(mode: ProxyMode, layers: readonly SettingLayer[]): Promise<ProxySettings> {
  const { s, caPem } = await mergeAndCheck(mode, layers);
  const interval = s['health-check-interval']!;
  return {
    mode,
    ...listenerSettings(s),
    ...httpServerSettings(s),
    upstreams: s.to!.map((u) => ({ ...u, tls: upstreamTls(u, s, caPem) })),
    connectTimeoutMs: s['connect-timeout']!,
    upstreamHeadersTimeoutMs: s['upstream-headers-timeout']!,
    upstreamIdleTimeoutMs: s['upstream-idle-timeout']!,
    maxHeaderCount: s['max-header-count']!,
    maxBodySize: s['max-body-size'] ?? null,
    keepAlive: { maxIdle: s['upstream-keepalive']!, idleTimeoutMs: s['upstream-keepalive-timeout']! },
    trustForwarded: s['trust-forwarded']!,
    healthCheck: {
      intervalMs: interval,
      timeoutMs: s['health-check-timeout'] ?? (interval > 0 ? Math.min(HEALTH_CHECK_TIMEOUT_MS, interval) : HEALTH_CHECK_TIMEOUT_MS),
      path: s['health-check-path'] ?? null,
      maxFails: s['max-fails']!,
      failTimeoutMs: s['fail-timeout']!,
    },
    cache: s.cache === undefined ? null : { dir: s.cache, maxBytes: s['cache-size']!, cookies: s['cache-cookies']!, staleIfErrorMs: s['cache-stale-if-error']!, targeted: s['targeted-cache-control'] ?? null },
  };
}

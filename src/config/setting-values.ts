/**
 * The grammar of each kind of setting value, as zod schemas shared by the
 * command line (strings) and config files (YAML/JSON scalars). An issue's
 * message says what was expected; formatSettingIssue() adds which flag or key
 * and what was given.
 */
import net from 'node:net';
import os from 'node:os';
import { z } from 'zod';
import { InvalidOptionError } from '../errors.js';
import type { OffloadMode, OffloadPolicy, TlsVersionName } from './tls-settings.js';
import { parseDuration, parseSize } from './duration.js';
import { looksLikeSha1, normaliseFingerprint } from './fingerprint.js';
import { isToken } from '../text/char-classes.js';
import { parseAdminAddress, parseListen } from './listen-address.js';
import type { UpstreamTlsVersion } from './proxy-settings.js';

/** Fails the value with an issue that carries what was given. */
export function reject(ctx: z.RefinementCtx, input: unknown, message: string): never {
  ctx.addIssue({ code: 'custom', message, input });
  return z.NEVER;
}

/** Runs one of the existing throwing parsers (parseDuration, parseListen, ...) for its grammar; its wording is replaced by ours. */
function attempt<T>(parse: () => T): T | undefined {
  try {
    return parse();
  } catch (err) {
    if (err instanceof InvalidOptionError) return undefined;
    throw err;
  }
}

/** Node clamps a timer beyond 2^31-1 ms to 1 ms (TimeoutOverflowWarning): a huge timeout would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const DURATION = 'expected a duration like 500ms, 5s, 2m';

/**
 * "500ms", "5s", "2m", "1h"; a unitless string means seconds as on the command
 * line (nginx's rule). A YAML/JSON number is refused: seconds to nginx,
 * milliseconds to node, so the reader cannot tell which was meant.
 */
export function duration(options: { allowZero: boolean }) {
  return z.union([z.string(), z.number()], { error: DURATION }).transform((v, ctx) => {
    if (typeof v === 'number') return reject(ctx, v, `${DURATION}; a bare number is ambiguous, write the unit, e.g. "${v}s" or "${v}ms"`);
    const ms = attempt(() => parseDuration('', v));
    if (ms === undefined) return reject(ctx, v, DURATION);
    if (ms === 0 && !options.allowZero) return reject(ctx, v, 'must be more than 0');
    if (ms > MAX_TIMER_MS) return reject(ctx, v, 'must be at most 596h (node timers cannot wait longer)');
    return ms;
  });
}

const SIZE = 'expected a size like 16384, 16k, 1m or 10GiB';

/** "16k", "1m", "16384" on the command line; in a file also a plain number of bytes (unambiguous). */
export const size = z.union([z.string(), z.number()], { error: SIZE }).transform((v, ctx) => {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : reject(ctx, v, SIZE);
  const bytes = attempt(() => parseSize('', v));
  return bytes !== undefined && Number.isSafeInteger(bytes) ? bytes : reject(ctx, v, SIZE);
});

/** A whole number >= min, from "32" or 32. */
export function count(min: number) {
  const expected = `expected a whole number of at least ${min}`;
  return z.union([z.string(), z.number()], { error: expected }).transform((v, ctx) => {
    const n = typeof v === 'number' ? v : /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
    return Number.isSafeInteger(n) && n >= min ? n : reject(ctx, v, expected);
  });
}

/** More worker processes than this is a typo (nginx caps worker_processes far lower in practice). */
export const MAX_WORKERS = 1024;
const WORKERS = `expected a whole number from 1 to ${MAX_WORKERS}, or auto (the CPUs this process may use)`;

/** --workers as given: a count, or `auto`, resolved by workerCountFor (and, for the default, allowed to fall back to one process). */
export type WorkerCount = number | 'auto';

/** --workers N|auto, checked; `auto` stays `auto` until workerCountFor. */
export const workerCount = z.union([z.string(), z.number()], { error: WORKERS }).transform((v, ctx): WorkerCount => {
  if (typeof v === 'string' && v.trim() === 'auto') return 'auto';
  const n = typeof v === 'number' ? v : /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
  return Number.isSafeInteger(n) && n >= 1 && n <= MAX_WORKERS ? n : reject(ctx, v, WORKERS);
});

/**
 * The number of worker processes: `auto` is os.availableParallelism(), the
 * CPUs this process may run on (its affinity mask, as nginx's
 * worker_processes auto), not every CPU of the host; 1 on a 1-CPU host.
 */
export function workerCountFor(w: WorkerCount, cpus: number = os.availableParallelism()): number {
  return w === 'auto' ? Math.min(Math.max(1, cpus), MAX_WORKERS) : w;
}

/** YAML reads `tls-min: 1.2` as a number; 1.0 arrives as 1. */
function versionText(v: string | number): string {
  return typeof v === 'number' ? (Number.isInteger(v) ? v.toFixed(1) : String(v)) : v.trim();
}

const CLIENT_TLS = 'expected 1.2 or 1.3 (older versions are what Aludel exists to retire)';

/** Client-facing versions: 1.2 and 1.3 only. */
export const tlsVersion = z.union([z.string(), z.number()], { error: CLIENT_TLS }).transform((v, ctx): TlsVersionName => {
  const t = versionText(v);
  if (t === '1.2' || t === 'TLSv1.2') return 'TLSv1.2';
  if (t === '1.3' || t === 'TLSv1.3') return 'TLSv1.3';
  return reject(ctx, v, CLIENT_TLS);
});

const UPSTREAM_TLS = 'expected 1.0, 1.1, 1.2 or 1.3';
const UPSTREAM_VERSIONS: Record<string, UpstreamTlsVersion> = {
  '1.0': 'TLSv1',
  TLSv1: 'TLSv1',
  'TLSv1.0': 'TLSv1',
  '1.1': 'TLSv1.1',
  'TLSv1.1': 'TLSv1.1',
  '1.2': 'TLSv1.2',
  'TLSv1.2': 'TLSv1.2',
  '1.3': 'TLSv1.3',
  'TLSv1.3': 'TLSv1.3',
};

/** Upstream versions go down to TLS 1.0: legacy origins are why Aludel sits in front of them. */
export const upstreamTlsVersion = z.union([z.string(), z.number()], { error: UPSTREAM_TLS }).transform((v, ctx) => {
  return UPSTREAM_VERSIONS[versionText(v)] ?? reject(ctx, v, UPSTREAM_TLS);
});

/** Protocol order, for min <= max checks. */
export const VERSION_ORDER: Record<UpstreamTlsVersion, number> = { TLSv1: 0, 'TLSv1.1': 1, 'TLSv1.2': 2, 'TLSv1.3': 3 };

export const offloadMode = z.enum(['auto', 'kernel', 'userspace'] satisfies OffloadMode[], { error: 'expected auto, kernel or userspace' });

export const offloadPolicy = z.enum(['default', 'prefer-hw'] satisfies OffloadPolicy[], { error: 'expected default or prefer-hw' });

/** pino's levels. */
export const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
  error: 'expected fatal, error, warn, info, debug, trace or silent',
});

export const flag = z.boolean({ error: 'expected true or false' });

/**
 * A switch with a value, as nginx writes them (`http2 on;`): "on"/"off" on the
 * command line; in a config file also true/false (YAML 1.2 keeps `on`/`off`
 * as strings, so both spellings arrive here).
 */
export const onOff = z
  .union([z.enum(['on', 'off']), z.boolean()], { error: 'expected on or off' })
  .transform((v) => v === true || v === 'on');

/** A non-empty string passed on as it is (cipher lists: OpenSSL judges them when the context is built). */
export const text = z.string({ error: 'expected a string' }).refine((v) => v.trim() !== '', 'must not be empty');

export const filePath = z.string({ error: 'expected a file path' }).refine((v) => v.trim() !== '', 'expected a file path');

export const listenAddress = z.string({ error: 'expected ADDRESS:PORT' }).transform((v, ctx) => {
  return (
    attempt(() => parseListen(v)) ??
    reject(ctx, v, 'expected ADDRESS:PORT with a numeric address, e.g. 127.0.0.1:8443, [::1]:8443 or :8443')
  );
});

/** A port alone (a YAML number too) means 127.0.0.1:PORT. */
export const adminAddress = z.union([z.string(), z.number()], { error: 'expected ADDRESS:PORT or PORT' }).transform((v, ctx) => {
  return (
    attempt(() => parseAdminAddress(String(v))) ??
    reject(ctx, v, 'expected PORT (binds 127.0.0.1) or ADDRESS:PORT with a numeric address, e.g. 9100, 127.0.0.1:9100 or [::1]:9100')
  );
});

/**
 * Fields a targeted cache-control field (RFC 9213 §2) cannot be: those the
 * cache already reads with their own meaning (RFC 9111 §5, RFC 9211), and
 * CDN-Cache-Control, which is always honoured (after the named field).
 */
const NOT_TARGETED_FIELDS: ReadonlyMap<string, string> = new Map([
  ['cache-control', 'it is the field targeted fields override; name another one, e.g. Aludel-Cache-Control'],
  ['cdn-cache-control', 'CDN-Cache-Control is always honoured; name a field more specific to this cache, e.g. Aludel-Cache-Control, or leave the setting out'],
  ['expires', 'Expires has its own meaning (RFC 9111 §5.3); name another field, e.g. Aludel-Cache-Control'],
  ['pragma', 'Pragma has its own meaning (RFC 9111 §5.4); name another field, e.g. Aludel-Cache-Control'],
  ['age', 'Age has its own meaning (RFC 9111 §5.1); name another field, e.g. Aludel-Cache-Control'],
  ['vary', 'Vary has its own meaning (RFC 9110 §12.5.5); name another field, e.g. Aludel-Cache-Control'],
  ['cache-status', 'Cache-Status is what this cache writes (RFC 9211); name another field, e.g. Aludel-Cache-Control'],
]);

/** --targeted-cache-control: a field name (a token, RFC 9110 §5.1), kept as written for messages; compared lowercase. */
export const targetedFieldName = z.string({ error: 'expected a header field name like Aludel-Cache-Control' }).transform((v, ctx) => {
  const name = v.trim();
  if (!isToken(name)) return reject(ctx, v, 'expected a header field name (a token: letters, digits and !#$%&\'*+-.^_`|~), like Aludel-Cache-Control');
  const why = NOT_TARGETED_FIELDS.get(name.toLowerCase());
  return why === undefined ? name : reject(ctx, v, `cannot be ${name}: ${why}`);
});

/** RFC 1123 host names (underscores too: they occur in internal DNS). */
export const HOST_NAME = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i;

/** SNI carries a DNS name only (RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not permitted"). */
export const serverName = z.string({ error: 'expected a DNS name' }).transform((v, ctx) => {
  if (net.isIP(v.trim()) !== 0) return reject(ctx, v, 'an IP address cannot be sent as SNI (RFC 6066 §3); leave it out to send no SNI to IP upstreams');
  return HOST_NAME.test(v.trim()) ? v.trim().toLowerCase() : reject(ctx, v, 'expected a DNS name like app.internal');
});

export const fingerprint = z.string({ error: 'expected a SHA-256 fingerprint' }).transform((v, ctx) => {
  const fp = normaliseFingerprint(v);
  if (fp !== null) return fp;
  if (looksLikeSha1(v)) return reject(ctx, v, 'that is a SHA-1 fingerprint; give the SHA-256 one (openssl x509 -noout -fingerprint -sha256 -in cert.pem)');
  return reject(ctx, v, 'expected a SHA-256 fingerprint: 64 hex digits, with or without colons (openssl x509 -noout -fingerprint -sha256 -in cert.pem)');
});

/** Sent verbatim in a request line, so printable ASCII without spaces only (no CR/LF to split the request). */
export const requestPath = z.string({ error: 'expected a path like /health' }).refine((v) => /^\/[\x21-\x7e]*$/.test(v), 'expected a path like /health (absolute, no spaces)');

/**
 * --acme-domain: a DNS name the CA can validate by HTTP-01, so no wildcard
 * (RFC 8555 §7.1.3: wildcards need DNS-01) and no IP address (RFC 8738 is not
 * supported); lower case, no trailing dot (it also names a directory).
 */
export const acmeDomain = z.string({ error: 'expected a DNS name' }).transform((v, ctx) => {
  const name = v.trim().toLowerCase().replace(/\.$/, '');
  if (name.startsWith('*.')) return reject(ctx, v, 'a wildcard needs the DNS-01 challenge, which Aludel does not answer; list each name');
  if (net.isIP(name) !== 0) return reject(ctx, v, 'certificates for IP addresses are not supported; give a DNS name');
  if (!HOST_NAME.test(name) || !name.includes('.') && name !== 'localhost') return reject(ctx, v, 'expected a fully qualified DNS name like www.example.com');
  return name;
});

/** --acme-directory: the ACME directory URL (RFC 8555 §7.1.1), over https. */
export const acmeDirectory = z.string({ error: 'expected an https:// URL' }).transform((v, ctx) => {
  const url = URL.canParse(v.trim()) ? new URL(v.trim()) : null;
  if (url === null || url.protocol !== 'https:') return reject(ctx, v, 'expected the https:// URL of an ACME directory, e.g. https://acme-v02.api.letsencrypt.org/directory');
  return url.href;
});

/** --acme-email: the account's contact (RFC 8555 §7.3, a mailto: URI); one address. */
export const emailAddress = z.string({ error: 'expected an e-mail address' }).transform((v, ctx) => {
  const e = v.trim();
  return /^[^\s@,;:<>()[\]"]+@[^\s@,;:<>()[\]"]+\.[^\s@,;:<>()[\]"]+$/.test(e) ? e : reject(ctx, v, 'expected one e-mail address like admin@example.com');
});

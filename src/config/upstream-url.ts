/**
 * Upstream addresses: http://HOST[:PORT] and https://HOST[:PORT] for
 * `aludel proxy`, HOST:PORT or tcp://HOST:PORT for `aludel tcp`. Parsed with
 * the WHATWG URL parser (brackets, default ports, IDNA), then checked for the
 * parts a forwarding target must not have.
 */
import net from 'node:net';
import { z } from 'zod';
import type { Upstream } from './proxy-settings.js';
import { HOST_NAME, reject } from './setting-values.js';

export type UpstreamAddress = Omit<Upstream, 'tls'>;

const EXPECTED = {
  http: 'expected http://HOST[:PORT] or https://HOST[:PORT]',
  tcp: 'expected HOST:PORT or tcp://HOST:PORT',
} as const;

/** Why this scheme is wrong for this command, or null when it is right. */
function schemeProblem(scheme: string, mode: 'http' | 'tcp'): string | null {
  if (mode === 'http') {
    if (scheme === 'http' || scheme === 'https') return null;
    if (scheme === 'tcp') return `aludel proxy forwards HTTP; a tcp:// upstream belongs to aludel tcp (${EXPECTED.http})`;
  } else {
    if (scheme === 'tcp') return null;
    if (scheme === 'http' || scheme === 'https') return `aludel tcp forwards raw TCP; an ${scheme}:// upstream belongs to aludel proxy (${EXPECTED.tcp})`;
  }
  return `unsupported scheme ${scheme}:// (${EXPECTED[mode]})`;
}

export function upstreamUrl(mode: 'http' | 'tcp') {
  return z.string({ error: EXPECTED[mode] }).transform((given, ctx): UpstreamAddress => {
    const v = given.trim();
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(v)?.[1]?.toLowerCase();
    if (scheme === undefined && mode === 'http') return reject(ctx, given, EXPECTED.http);
    const problem = scheme === undefined ? null : schemeProblem(scheme, mode);
    if (problem !== null) return reject(ctx, given, problem);
    let url: URL;
    try {
      url = new URL(scheme === undefined ? `tcp://${v}` : v);
    } catch {
      return reject(ctx, given, EXPECTED[mode]);
    }
    if (url.username !== '' || url.password !== '') return reject(ctx, given, 'credentials in an upstream URL are not supported');
    // The client's request target is forwarded as it is, so a path here would be silently ignored.
    if ((url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '') {
      return reject(ctx, given, `${EXPECTED[mode]}, without a path: requests are forwarded with the path the client sent`);
    }
    // tcp:// has no special-scheme parsing: its host stays as written, so lower-case it here.
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
    if (net.isIP(host) === 0 && !HOST_NAME.test(host)) return reject(ctx, given, `${EXPECTED[mode]}: ${JSON.stringify(url.hostname)} is not a host name or IP address`);
    const protocol = scheme === 'http' || scheme === 'https' ? scheme : 'tcp';
    // WHATWG URL leaves port '' when it is the scheme's default (80 / 443); tcp has none.
    const port = url.port !== '' ? Number(url.port) : protocol === 'http' ? 80 : protocol === 'https' ? 443 : 0;
    if (protocol === 'tcp' && url.port === '') return reject(ctx, given, `${EXPECTED.tcp}: a port is required (TCP has no default port)`);
    if (port === 0) return reject(ctx, given, 'port 0 cannot be connected to');
    return { url: given, protocol, host, port };
  });
}

/**
 * An HTTP/2 request's field lines as an HTTP/1.1 request carries them, for
 * the steps that speak HTTP/1.1 semantics (the cache's keys and Vary, the
 * upstream request head). RFC 9113 §8.3.1: the pseudo-header fields are not
 * fields, and an intermediary forwarding over HTTP/1.1 must construct Host
 * from :authority when there is none; §8.2.3: a Cookie split into several
 * field lines is joined with "; " before it goes to an HTTP/1.1 hop.
 */
import { InvalidRequestError } from '../errors.js';

/** [name, value, ...] in HTTP/1.1 form, from node's rawHeaders of an HTTP/2 request (pseudo-headers first, lower case). */
export function h1FieldsOfH2(rawHeaders: readonly string[]): string[] {
  const out: string[] = [];
  let authority: string | undefined;
  let host: string | undefined;
  const cookies: string[] = [];
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const value = rawHeaders[i + 1]!;
    if (name === ':authority') authority = value;
    else if (name.startsWith(':')) continue;
    else if (name === 'cookie') cookies.push(value);
    else {
      if (name === 'host') {
        if (host !== undefined) throw new InvalidRequestError('more than one Host field (RFC 9112 §3.2)');
        host = value;
      }
      out.push(name, value);
    }
  }
  const differ = authorityProblem(authority, host);
  if (differ !== null) throw new InvalidRequestError(differ);
  if (host === undefined && authority !== undefined) out.unshift('host', authority);
  if (cookies.length > 0) out.push('cookie', cookies.join('; '));
  return out;
}

/**
 * RFC 9113 §8.3.1: a server SHOULD treat a request whose Host names another
 * entity than its :authority as malformed (nginx 1.22 refuses any Host beside
 * :authority, 400). The reason, or null.
 */
function authorityProblem(authority: string | undefined, host: string | undefined): string | null {
  if (authority === undefined || host === undefined || authority === host) return null;
  return `:authority ${JSON.stringify(authority.slice(0, 100))} and Host ${JSON.stringify(host.slice(0, 100))} differ (RFC 9113 §8.3.1)`;
}

/**
 * The same check for a handler that reads an HTTP/2 request's fields as they
 * came (serve): a Host that differs from :authority, or null. More than one
 * Host is requestProblem's.
 */
export function h2HostProblem(rawHeaders: readonly string[]): string | null {
  let authority: string | undefined;
  let host: string | undefined;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i] === ':authority') authority = rawHeaders[i + 1];
    else if (rawHeaders[i] === 'host') host ??= rawHeaders[i + 1];
  }
  return authorityProblem(authority, host);
}

/**
 * `--redirect-http ADDR`: a plain-HTTP listener that sends every request to
 * HTTPS, as nginx's `return 308 https://$host$request_uri` server block or
 * Caddy's automatic redirect. 308 (RFC 9110 §15.4.9) keeps the method and
 * body, unlike 301. The target is the client's own Host (without its port)
 * and Aludel's TLS port, so nothing the client sends can point elsewhere
 * than the name it asked for. Small and strict: no keep-alive, short
 * timeouts, and a 400 for a request without a usable Host, or one the TLS
 * fronts would refuse (request-checks.ts).
 */
import http from 'node:http';
import { isIP } from 'node:net';
import type { Logger } from '../log/logger.js';
import { HOST_NAME } from '../config/setting-values.js';
import { requestProblem } from './request-checks.js';
import { answerParseErrors, capSideListener, listenSideServer, sideServerOptions } from '../transport/side-listener.js';
import { closingAnswer } from './h1-wire.js';
import type { Http01Responder } from '../tls/acme/http01.js';

export interface RedirectOptions {
  host: string;
  port: number;
  /** The HTTPS port to send clients to (443 is left out of the URL). */
  httpsPort: number;
  log: Logger;
  /** --acme-domain: pending HTTP-01 challenges (RFC 8555 §8.3) are answered here instead of redirected. */
  http01?: Http01Responder;
}

/** Where to send a request, or null when its Host is missing or malformed. */
export function redirectTarget(hostField: string | undefined, url: string, httpsPort: number): string | null {
  if (hostField === undefined) return null;
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::\d{1,5})?$/.exec(hostField.trim());
  if (m === null) return null;
  const name = m[1]!;
  const ok = name.startsWith('[') ? isIP(name.slice(1, -1)) === 6 : isIP(name) === 4 || HOST_NAME.test(name);
  if (!ok) return null;
  // An absolute-form target (RFC 9112 §3.2.2) keeps only its path.
  const path = url.startsWith('/') ? url : url.replace(/^https?:\/\/[^/]*/i, '') || '/';
  return `https://${name.toLowerCase()}${httpsPort === 443 ? '' : `:${httpsPort}`}${path.startsWith('/') ? path : `/${path}`}`;
}

export async function startRedirect(o: RedirectOptions): Promise<{ address: string; close(): Promise<void> }> {
  const server = http.createServer({ ...sideServerOptions(10_000), keepAliveTimeout: 0, maxHeaderSize: 8192 }, (req, res) => {
    res.shouldKeepAlive = false;
    const keyAuthorization = req.method === 'GET' || req.method === 'HEAD' ? (o.http01?.answer(req.url) ?? null) : null;
    if (keyAuthorization !== null) {
      o.log.info({ url: req.url, remote: req.socket.remoteAddress }, 'acme: HTTP-01 challenge answered');
      res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(keyAuthorization) }).end(keyAuthorization);
      return;
    }
    // The checks the TLS fronts make (request-checks.ts): RFC 9112 §3.2 requires a 400 for more than
    // one Host field, and node keeps only the first in req.headers, so a redirect went to that one.
    const problem = requestProblem(req.method ?? '', req.url ?? '/', req.rawHeaders);
    const location = problem === null ? redirectTarget(req.headers.host, req.url ?? '/', o.httpsPort) : null;
    if (location === null) {
      const text = problem === null ? 'Bad Request: no usable Host\n' : 'Bad Request\n';
      res.writeHead(400, { 'Content-Type': 'text/plain', 'Content-Length': Buffer.byteLength(text) }).end(text);
      return;
    }
    res.writeHead(308, { Location: location, 'Content-Length': 0 }).end();
  });
  // A head node's parser refuses gets nginx's answer (414, 431, 408 or 400, then the close), as on
  // the admin listener, where it had node's silent close: nginx's port-80 server answers it too.
  answerParseErrors(server, closingAnswer);
  capSideListener(server, 'redirect listener', o.log);
  await listenSideServer(server, '--redirect-http', o.host, o.port);
  const a = server.address() as { address: string; port: number };
  const address = `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`;
  o.log.info({ redirect: address, httpsPort: o.httpsPort }, 'plain HTTP redirected to HTTPS (308)');
  return {
    address,
    close: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

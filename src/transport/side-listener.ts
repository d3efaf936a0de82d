/**
 * The bounds every plain side listener (--redirect-http, --admin) puts on
 * node's http.Server, so that no client can hold the process's descriptors
 * through them: a connection cap under the descriptor limit, refusals logged
 * (rate-limited), and timeouts that node enforces promptly.
 */
import type http from 'node:http';
import type { Logger } from '../log/logger.js';
import { ConnectionLimit } from './connection-limit.js';
import { descriptorLimit, sideListenerBound } from './descriptor-limit.js';

/**
 * Options for http.createServer: a request's head and whole request within
 * `ms` (nginx's client_header_timeout and client_body_timeout, 60 s, are per
 * read; a side listener answers at once, so one short bound is enough).
 * node checks these timeouts only every connectionsCheckingInterval (30 s by
 * default): one second makes an idle connection go close to `ms`.
 */
export function sideServerOptions(ms: number): http.ServerOptions {
  return { headersTimeout: ms, requestTimeout: ms, connectionsCheckingInterval: 1000 };
}

/**
 * Caps `server`'s connections (net.Server maxConnections: node closes each
 * one over at once, and emits 'drop') and logs the refusals, at most a line a
 * second. `name` says which listener, in the log line.
 */
export function capSideListener(server: http.Server, name: string, log: Logger): ConnectionLimit {
  const max = sideListenerBound(descriptorLimit());
  server.maxConnections = max;
  let open = 0;
  server.on('connection', (socket) => {
    open++;
    socket.once('close', () => open--);
  });
  const limit = new ConnectionLimit(max, log, () => open, `${name}: at most ${max}, a sixteenth of the descriptor limit`);
  server.on('drop', () => limit.refused());
  server.once('close', () => limit.close());
  return limit;
}

/** What bind(2) says for the errors an admin meets (as the addon says it for --listen, and nginx's "bind() to ... failed"). */
const BIND_ERRORS: Record<string, string> = {
  EADDRINUSE: 'bind: Address already in use',
  EACCES: 'bind: Permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)',
  EADDRNOTAVAIL: 'bind: Cannot assign requested address (no interface holds it)',
};

/**
 * Listens `server` on host:port; a failure names the flag and the address,
 * "--admin 127.0.0.1:9100: bind: Address already in use", where node's own
 * "listen EADDRINUSE: address already in use" left the admin to guess which
 * of several listeners it was.
 */
export function listenSideServer(server: http.Server, flag: string, host: string | undefined, port: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const fail = (err: Error & { code?: string }): void => {
      const where = host === undefined || host === '' ? `:${port}` : `${host.includes(':') ? `[${host}]` : host}:${port}`;
      const why = (err.code !== undefined ? BIND_ERRORS[err.code] : undefined) ?? err.message;
      reject(Object.assign(new Error(`${flag} ${where}: ${why}`), { code: err.code }));
    };
    server.once('error', fail);
    server.listen({ host: host === '' ? undefined : host, port }, () => {
      server.off('error', fail);
      resolve();
    });
  });
}

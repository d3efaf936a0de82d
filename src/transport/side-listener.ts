/**
 * The bounds every plain side listener (--redirect-http, --admin) puts on
 * node's http.Server, so that no client can hold the process's descriptors
 * through them: a connection cap under the descriptor limit, refusals logged
 * (rate-limited), and timeouts that node enforces promptly.
 */
import type http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../log/logger.js';
import { ConnectionLimit } from './connection-limit.js';
import { descriptorLimit, sideListenerBound } from './descriptor-limit.js';
import { overflowInRequestLine, trackHeads } from './head-line.js';

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
 * Caps `server`'s connections at a sixteenth of the descriptor limit
 * (sideListenerBound). A connection over the cap first takes the place of
 * the oldest one with no request being answered (waiting for its first
 * request, between keep-alive requests, or trickling a head): that one is
 * closed, as nginx closes its oldest reusable connections (keep-alive and
 * waiting ones, ngx_drain_connections) when worker_connections run out.
 * Only when every connection has a request in flight is the new one closed
 * unread. With node's net.Server maxConnections instead, the cap's worth of
 * idle local connections kept /metrics blind until their 10 s request
 * timeout, and a client reconnecting as they went kept it blind for good.
 * Both are logged, at most a line a second. `name` says which listener.
 */
export function capSideListener(server: http.Server, name: string, log: Logger): ConnectionLimit {
  const max = sideListenerBound(descriptorLimit());
  /** Connections with no request in flight, oldest idle first (a Map keeps insertion order). */
  const idle = new Map<Socket, true>();
  /** Requests in flight per connection (pipelined ones included). */
  const busy = new Map<Socket, number>();
  let open = 0;
  const limit = new ConnectionLimit(max, log, () => open, `${name}: at most ${max}, a sixteenth of the descriptor limit`);
  server.on('connection', (socket: Socket) => {
    open++;
    socket.once('close', () => {
      open--;
      idle.delete(socket);
      busy.delete(socket);
    });
    if (open > max) {
      const oldest = idle.keys().next();
      if (oldest.done === true) {
        limit.refused();
        socket.destroy();
        return;
      }
      idle.delete(oldest.value);
      limit.reclaimed();
      oldest.value.destroy();
    }
    idle.set(socket, true);
  });
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket;
    idle.delete(socket);
    busy.set(socket, (busy.get(socket) ?? 0) + 1);
    res.once('close', () => {
      const left = (busy.get(socket) ?? 1) - 1;
      if (left > 0) busy.set(socket, left);
      else {
        busy.delete(socket);
        // Idle again: now the youngest idle one (a Map entry set anew goes last).
        if (!socket.destroyed) idle.set(socket, true);
      }
    });
  });
  server.once('close', () => limit.close());
  return limit;
}

/**
 * The whole answer, status line to empty line, closing a connection with
 * `status`: http/h1-wire.ts closingAnswer, the one writer of HTTP/1.1 wire
 * format, which this layer (below http/) is handed by the commands.
 */
export type ClosingAnswer = (status: number) => Buffer;

/** How long an answered parse error waits for its client to read it and close (nginx's lingering_timeout, 5 s). */
const LINGER_MS = 5_000;

/**
 * Answers what node's HTTP/1.1 parser refuses on `server`: a head over the
 * size limit is 414 when the request line alone went over (RFC 9110
 * §15.5.15; nginx's "Request-URI Too Large" for a line longer than
 * large_client_header_buffers), else 431 (RFC 6585 §5), as nginx; a head
 * begun but not finished in time 408 (RFC 9110 §15.5.9; nginx closes without
 * an answer), anything else 400. node's own answer is 431 for both sizes, as its
 * parser counts the line and the fields together (maxHeaderSize).
 * `answer` writes the bytes.
 */
export function answerParseErrors(server: http.Server, answer: ClosingAnswer): void {
  // After node's own 'connection' listener, so that the parser is there to follow.
  server.on('connection', (socket: Socket) => trackHeads(socket));
  server.on('clientError', (err: Error & { code?: string; rawPacket?: Buffer; bytesParsed?: number }, socket: Duplex) => {
    // As node's default: no second head on a connection an answer began on.
    if (!socket.writable || (socket as Socket).bytesWritten > 0) {
      socket.destroy();
      return;
    }
    // A connection that sent nothing before its request timeout asked nothing: it is closed
    // unanswered, as nginx closes one idle past client_header_timeout (ngx_http_wait_request_handler,
    // no 408). node's default would write a 408 that such a client, never reading, leaves unread.
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' && (socket as Socket).bytesRead === 0) {
      socket.destroy();
      return;
    }
    const raw = err.rawPacket;
    const status =
      err.code === 'HPE_HEADER_OVERFLOW'
        ? raw !== undefined && overflowInRequestLine(socket, raw, Math.min(err.bytesParsed ?? raw.length, raw.length)) ? 414 : 431
        : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    // The parser stays in its error: nothing more goes to it (node's 'on' wrapper takes the
    // socket back from a parser that consumed it). What the client still sends is dropped, and
    // the socket closes at its FIN or after LINGER_MS: closing with the rest of a 100 KB head
    // unread would make the kernel send a RST (RFC 9293 §3.6.1) that can destroy the answer.
    socket.removeAllListeners('data');
    socket.on('data', () => undefined);
    socket.once('end', () => socket.destroy());
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
    socket.end(answer(status));
  });
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

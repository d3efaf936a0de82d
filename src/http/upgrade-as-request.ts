/**
 * An HTTP/1.1 request asking to switch protocols (Upgrade with Connection:
 * upgrade, RFC 9110 §7.8) on a front that offers no other protocol: `serve`.
 * The server may ignore the Upgrade field (§7.8: "A server MAY ignore a
 * received Upgrade header field"), and nginx serving files does: the request
 * is answered as any other, and the connection kept alive.
 *
 * node's http.Server cannot be told so. llhttp stops parsing after such a
 * request whatever the server does with it; without an 'upgrade' listener
 * node answers it as a request but drops the bytes the parser had not taken
 * from that read, so requests pipelined behind it were never answered, and
 * the connection then waited in silence for --idle-timeout (or the next
 * bytes were parsed from the middle of a request). With a listener, node
 * hands the connection over detached, with those bytes (`head`).
 *
 * Here the request is answered through a ServerResponse of our own on the
 * detached connection, after the responses owed to earlier pipelined
 * requests (RFC 9112 §9.3.2). Then, as nginx does, the connection goes back
 * to node's server with `head` (the requests pipelined behind), when that is
 * safe: the request has no body, the client did not ask to close (§9.6), and
 * the server is not draining. A request with a body closes the connection
 * after its answer (Connection: close), as before: llhttp handed the body
 * over unparsed in `head` (Content-Length or chunked), and reading its end
 * here would be a second HTTP/1.1 body parser, whose least disagreement with
 * an intermediary's is request smuggling (RFC 9112 §11.2). The client's
 * further bytes are then read and dropped (closeDetached), and the client,
 * seeing the close, sends again what it had pipelined (§9.3.2).
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import type { SecureConnection } from '../tls/types.js';
import { connectionOptions } from './forward-headers.js';
import { closeDetached, owedSent } from './front.js';

export interface UpgradeAsRequestOptions {
  lingerMs: number;
  handle: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** The front is draining: the answer closes the connection. */
  draining: () => boolean;
  /** Hands the connection back to node's server, with the bytes read after the request. */
  giveBack: (conn: SecureConnection, rest: Buffer) => void;
}

export function answerUpgradeAsRequest(req: http.IncomingMessage, conn: SecureConnection, head: Buffer, o: UpgradeAsRequestOptions): void {
  // node took its 'timeout' listener off with the rest; the idle timer it set still runs. A
  // client that stops reading the answer is cut as node's own socketOnTimeout cuts it.
  const cut = (): void => void conn.destroy();
  conn.once('timeout', cut);
  void owedSent(conn).then((sent) => {
    if (!sent || conn.destroyed) {
      conn.destroy();
      return;
    }
    const res = new http.ServerResponse(req);
    // Connection: close on the answer unless kept (node writes it when keep-alive is off, RFC 9112 §9.6).
    res.shouldKeepAlive = !o.draining() && keepsAlive(req);
    res.assignSocket(conn as unknown as Socket);
    res.once('finish', () => {
      // The handler may have closed it meanwhile (a Connection: close of its own).
      if (!res.shouldKeepAlive || /\bclose\b/i.test(String(res.getHeader('connection') ?? '')) || conn.destroyed) {
        // node's server ends the connection after such a response (resOnFinish); this one is ours.
        closeDetached(conn, o.lingerMs);
        return;
      }
      conn.off('timeout', cut);
      // As node's resOnFinish does: the next response is assigned the socket, not queued behind this one.
      res.detachSocket(conn as unknown as Socket);
      o.giveBack(conn, head);
    });
    o.handle(req, res);
  });
}

/**
 * The connection may go on after this request: it has no body (see the
 * header comment), and persists by RFC 9112 §9.3 (HTTP/1.1 without "close",
 * HTTP/1.0 with "keep-alive").
 */
function keepsAlive(req: http.IncomingMessage): boolean {
  const length = req.headers['content-length'];
  if (req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0')) return false;
  const options = connectionOptions(req.rawHeaders);
  if (options.has('close')) return false;
  return req.httpVersionMajor === 1 && (req.httpVersionMinor >= 1 || options.has('keep-alive'));
}

/**
 * An HTTP/1.1 request asking to switch protocols (Upgrade with Connection:
 * upgrade, RFC 9110 §7.8) on a front that offers no other protocol: `serve`.
 * The server may ignore the Upgrade field (§7.8: "A server MAY ignore a
 * received Upgrade header field"), and nginx serving files does: the request
 * is answered as any other.
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
 * requests (RFC 9112 §9.3.2), with Connection: close, and the connection then
 * closes as a refused one does (closeDetached: the client's further bytes are
 * read and dropped). The client, seeing the close, sends again what it had
 * pipelined behind (§9.3.2), where nginx would have answered it on the same
 * connection; none of it is lost unsaid.
 */
import http from 'node:http';
import type { Socket } from 'node:net';
import type { SecureConnection } from '../tls/types.js';
import { closeDetached, owedSent } from './front.js';

export function answerUpgradeAsRequest(req: http.IncomingMessage, conn: SecureConnection, lingerMs: number, handle: (req: http.IncomingMessage, res: http.ServerResponse) => void): void {
  // node took its 'timeout' listener off with the rest; the idle timer it set still runs. A
  // client that stops reading the answer is cut as node's own socketOnTimeout cuts it.
  conn.once('timeout', () => conn.destroy());
  void owedSent(conn).then((sent) => {
    if (!sent || conn.destroyed) {
      conn.destroy();
      return;
    }
    const res = new http.ServerResponse(req);
    // Connection: close on the answer (node writes it when keep-alive is off, RFC 9112 §9.6).
    res.shouldKeepAlive = false;
    res.assignSocket(conn as unknown as Socket);
    // node's server ends the connection after such a response (resOnFinish); this one is ours.
    res.once('finish', () => closeDetached(conn, lingerMs));
    handle(req, res);
  });
}

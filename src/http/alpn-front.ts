/**
 * One front for a listener that speaks HTTP/1.1 and HTTP/2: each connection
 * goes by the protocol its TLS handshake negotiated (ALPN, RFC 7301) to the
 * HTTP/1.1 front (node's http.Server) or the HTTP/2 one (node:http2), and a
 * drain drains both (HTTP/1.1: Connection: close; HTTP/2: GOAWAY).
 */
import http2 from 'node:http2';
import type http from 'node:http';
import type { SecureConnection } from '../tls/types.js';
import type { Front } from './front.js';
import { h2Connection } from './h2-front.js';
import type { LaneRequest } from './h1-lane.js';

/** ALPN protocol ids (IANA registry): "h2" is HTTP/2 over TLS (RFC 9113 §3.2). */
export const ALPN_H2 = 'h2';
export const ALPN_HTTP1 = 'http/1.1';

/**
 * What an HTTP listener offers, in server preference order (the addon and
 * node:tls both pick the first of ours the client also lists): h2 first, as
 * nginx does with `http2 on`.
 */
export function httpAlpn(http2On: boolean): string[] {
  return http2On ? [ALPN_H2, ALPN_HTTP1] : [ALPN_HTTP1];
}

/**
 * By ALPN, whatever the settings say now: a reload that turns HTTP/2 off can
 * race a handshake that already agreed on h2, and that connection is served.
 */
export function alpnFront(h1: Front, h2: Front): Front {
  return {
    accept(conn) {
      (conn.tls.alpn === ALPN_H2 ? h2 : h1).accept(conn);
    },
    async drain() {
      await Promise.all([h1.drain(), h2.drain()]);
    },
    get connections() {
      return h1.connections + h2.connections;
    },
  };
}

export type AnyRequest = http.IncomingMessage | http2.Http2ServerRequest;
export type AnyResponse = http.ServerResponse | http2.Http2ServerResponse;

/** The TLS connection a request came on, for either protocol (an HTTP/2 request's socket is node's wrapper). */
export function requestConnection(req: AnyRequest | LaneRequest): SecureConnection {
  return req instanceof http2.Http2ServerRequest ? h2Connection(req) : (req.socket as unknown as SecureConnection);
}

/**
 * The response writer: an upstream's answer to one exchange, sent on to the
 * client. relay() picks the body's path: splice from the upstream socket into
 * the kTLS socket when the kernel encrypts and the upstream is plain (the
 * bytes never enter user space), a copy through user space otherwise (TLS
 * upstreams, kTLS off, the cache's fills, which read() the body themselves).
 * After either, `reusable` says whether the upstream connection ended
 * exactly at the body's end and may carry another exchange.
 */
import type { ServerResponse } from 'node:http';
import { filterResponseHeaders } from '../http/forward-headers.js';
import { whenAttached } from '../http/front.js';
import { writeBody, writeHead, withCacheStatus, type Exchange } from '../http/exchange.js';
import { chunkFraming } from '../http/h1-wire.js';
import type { ResponseHead } from '../http/response-head.js';
import type { SecureConnection } from '../tls/types.js';
import type { PipePool } from '../transport/pipe-pool.js';
import { spliceBody } from '../transport/splice-body.js';
import type { UpstreamAnswer } from '../cache/cache-layer.js';
import { readBody, spliceChunked, type SpliceRoute } from './upstream-exchange.js';
import type { UpstreamStream } from './upstream-stream.js';

export class UpstreamResponse implements UpstreamAnswer {
  /** The upstream connection ended exactly at the body's end (set once the body has been taken). */
  reusable = false;

  constructor(
    private readonly x: Exchange,
    private readonly u: UpstreamStream,
    readonly head: ResponseHead,
    /** Body bytes read along with the head (none from a plain upstream: its head was peeked). */
    private readonly rest: Buffer,
    readonly sentAt: number,
    private readonly pipes: PipePool | null,
  ) {}

  async read(onData: (b: Buffer) => Promise<void>): Promise<void> {
    this.reusable = await readBody(this.u, this.head.framing, this.rest, onData);
  }

  writeHead(fields: string[]): void {
    writeHead(this.x, this.head.status, this.head.reason, fields);
  }

  async relay(): Promise<number> {
    const { x, head } = this;
    const { req, res } = x;
    const f = head.framing;
    if (f.kind === 'none' || (f.kind === 'length' && f.length === 0)) {
      this.writeHead(withCacheStatus(x, filterResponseHeaders(head.headers, { keepFraming: true })));
      res.end();
      this.reusable = this.rest.length === 0;
      return head.status;
    }
    // A plain upstream's head was peeked (rest is empty): every body byte is still in the kernel.
    const splice = this.rest.length === 0 ? this.spliceRoute() : null;
    // Unknown length to an HTTP/1.1 client: each pipeful becomes one chunk we frame ourselves,
    // so Transfer-Encoding: chunked is declared here and node's end() writes the last chunk.
    const chunkedSplice = splice !== null && f.kind !== 'length' && req.httpVersion === '1.1';
    const fields = withCacheStatus(x, filterResponseHeaders(head.headers, { keepFraming: f.kind === 'length' }));
    if (chunkedSplice) fields.push('Transfer-Encoding', 'chunked');
    this.writeHead(fields);
    if (splice !== null && (f.kind === 'length' || chunkedSplice)) {
      await this.spliceOut(splice);
      res.end();
      return head.status;
    }
    x.bodyPath = 'write';
    // Node frames what it is given: Content-Length as announced, chunked otherwise.
    await this.read(async (b) => {
      await writeBody(x, b);
      x.bytes += b.length;
    });
    res.end();
    return head.status;
  }

  /**
   * splice writes into the connection itself: only once the responses to
   * earlier pipelined requests are out. The head goes out through OpenSSL
   * first; spliceFromPipe() waits until it is flushed.
   */
  private async spliceOut(route: SpliceRoute): Promise<void> {
    const { x } = this;
    const res = x.res as ServerResponse;
    const f = this.head.framing;
    const count = (n: number): void => void (x.bytes += n);
    await whenAttached(res);
    res.flushHeaders();
    x.bodyPath = 'splice';
    if (f.kind === 'length') {
      await spliceBody(route.pipes, route.sock, route.conn, f.length, count);
      this.reusable = true;
    } else if (f.kind === 'chunked') {
      this.reusable = await spliceChunked(route, count);
    } else {
      await spliceBody(route.pipes, route.sock, route.conn, null, count, chunkFraming(route.conn));
      this.reusable = false;
    }
  }

  /**
   * Bodies leave by splice when the kernel encrypts the client side and the
   * upstream is a plain socket (whose bytes need no user-space work), over
   * HTTP/1.1: HTTP/2 DATA frames are built by nghttp2 in user space.
   */
  private spliceRoute(): SpliceRoute | null {
    const conn = this.x.conn;
    if (this.x.h2 || this.pipes === null || this.u.plain === null || !conn.tls.ktlsTx || conn.spliceFromPipe === undefined) return null;
    return { pipes: this.pipes, sock: this.u.plain, conn: conn as Required<SecureConnection> };
  }
}

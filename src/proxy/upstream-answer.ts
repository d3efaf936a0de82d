/**
 * The response writer: an upstream's answer to one exchange, sent on to the
 * client. relay() picks the body's path: splice from the upstream socket into
 * the kTLS socket when the kernel encrypts and the upstream is plain (the
 * bytes never enter user space); the copy path (src/transport/copy-body.ts:
 * SSL_write in whole records) of what a plain upstream's socket holds when
 * kTLS TX is off (peeked, and dropped as taken; the bytes taken with the
 * head first), or of what node:tls
 * decrypted from a TLS upstream; node's write path otherwise (HTTP/2, small
 * bodies, unknown lengths to HTTP/1.0 clients, and the cache's fills,
 * which read() the body themselves).
 * After either, `reusable` says whether the upstream connection ended
 * exactly at the body's end and may carry another exchange.
 */
import { filterResponseHeaders } from '../http/forward-headers.js';
import { whenAttached } from '../http/front.js';
import { endBody, endedNow, h1Response, writeBody, writeHead, withCacheStatus, type Exchange } from '../http/exchange.js';
import { CHUNK_WIRE, chunkFraming } from '../http/h1-wire.js';
import { LaneResponse } from '../http/h1-lane.js';
import type { ResponseHead } from '../http/response-head.js';
import type { SecureConnection } from '../tls/types.js';
import type { PipePool } from '../transport/pipe-pool.js';
import { spliceBody } from '../transport/splice-body.js';
import { copyBody, type CopySource, type CopyTarget } from '../transport/copy-body.js';
import { TakenFirstSource } from '../transport/taken-first-source.js';
import type { UpstreamAnswer } from '../cache/cache-layer.js';
import { moveChunked, readBody, spliceChunked, type FramingSource, type SpliceRoute, type TakeWithHead } from './upstream-exchange.js';
import type { UpstreamStream } from './upstream-stream.js';

/**
 * Content-Length bodies below this size keep node's write path, where the
 * head and the first body bytes share a record.
 */
const COPY_MIN = 64 * 1024;

/** takeWithHead()'s answers: splice takes the whole body from the kernel; the copy path takes bodies of COPY_MIN and more. */
const TAKE_NONE: TakeWithHead = () => 0;
const TAKE_BELOW_COPY_MIN: TakeWithHead = (head) => (head.framing.kind === 'length' && head.framing.length < COPY_MIN ? head.framing.length : 0);
const TAKE_ALL: TakeWithHead = (head) => (head.framing.kind === 'length' ? head.framing.length : 0);

/**
 * Upstream -> user space -> SSL_write on the client's connection, outside
 * node's streams. The source is a plain socket (bytes peeked, then dropped as
 * taken) or a node:tls stream (bytes taken from node's buffer as looked at).
 */
interface CopyRoute {
  src: CopySource & FramingSource;
  conn: SecureConnection & CopyTarget & { whenFlushed(): Promise<void> };
  /** Bytes the source took from the upstream and the body did not use (past its framing). */
  leftover(): number;
}

const NOTHING_LEFT = (): number => 0;

/**
 * The head's fields as they go to the client (filterResponseHeaders), in a
 * list of the caller's own. The parser hands the same (readonly) headers
 * list again for the same head bytes (parseResponseHead), so the last
 * filtering is kept for it: the list is copied, not filtered again (a
 * look at each name and the Connection options per request).
 */
function forwardedFields(head: ResponseHead, keepFraming: boolean): string[] {
  const last = lastForwarded;
  if (last !== null && last.from === head.headers && last.keepFraming === keepFraming) return last.fields.slice();
  const fields = filterResponseHeaders(head.headers, { keepFraming });
  lastForwarded = { from: head.headers, keepFraming, fields: fields.slice() };
  return fields;
}

let lastForwarded: { from: readonly string[]; keepFraming: boolean; fields: readonly string[] } | null = null;

export class UpstreamResponse implements UpstreamAnswer {
  /** The upstream connection ended exactly at the body's end (set once the body has been taken). */
  reusable = false;

  constructor(
    private readonly x: Exchange,
    private readonly u: UpstreamStream,
    readonly head: ResponseHead,
    /** Body bytes read along with the head (from a plain upstream, only what takeWithHead allowed: the rest is still in the kernel; and any stray bytes seen past a body that ends there). */
    private rest: Buffer,
    readonly sentAt: number,
    private readonly pipes: PipePool | null,
    /** The plain socket's answerRoom, when `rest` is a view of it (takeWholeAnswer): lent, not ours to keep (ownRest). */
    private room: Buffer | null = null,
    /** The recv that took the answer found nothing behind it (WholeAnswer.drained). */
    private readonly drained = false,
  ) {}

  /**
   * `rest` made the answer's own: a copy when it is a view of the
   * socket's answerRoom, which goes back to the socket for its next answer.
   * Done before `rest` goes anywhere that may keep it past this exchange
   * (node's write path holds a chunk until written, the cache stores it).
   */
  private ownRest(): Buffer {
    if (this.room !== null) {
      this.rest = Buffer.from(this.rest);
      this.giveRoomBack();
    }
    return this.rest;
  }

  private giveRoomBack(): void {
    const plain = this.u.plain;
    if (plain !== null && this.room !== null) plain.answerRoom = this.room;
    this.room = null;
  }

  /**
   * Nothing waited behind the answer when it was taken (drained) and the
   * answer was whole then, so afterAnswer()'s recv would only repeat what
   * that recv saw: Forwarder.endsAtAnswer asks no more. A FIN that came
   * with the answer is not seen this way: the pool's readiness watch reports
   * it at the loop's next poll (level-triggered, the FIN keeps the socket
   * readable), and a lease before that poll is either one that may be sent
   * again on a fresh connection or one that makes its own recv check
   * (UpstreamGroup.leaseIdle).
   */
  endsQuiet(): boolean {
    const f = this.head.framing;
    return this.drained && this.reusable && this.rest.length === (f.kind === 'length' ? f.length : f.kind === 'none' ? 0 : -1);
  }

  async read(onData: (b: Buffer) => Promise<void>): Promise<void> {
    this.reusable = await readBody(this.u, this.head.framing, this.ownRest(), onData);
  }

  writeHead(fields: string[]): void {
    writeHead(this.x, this.head.status, this.head.reason, fields);
  }

  async relay(): Promise<number> {
    this.ownRest();
    const { x, head } = this;
    const { req, res } = x;
    const f = head.framing;
    if (f.kind === 'none' || (f.kind === 'length' && f.length === 0)) {
      // RFC 9110 §8.6: a server MUST NOT send Content-Length in a 204 (HTTP/2 clients reset the
      // stream over one, RFC 9113 §8.1.1); a 304's describes the selected representation and stays.
      this.writeHead(withCacheStatus(x, forwardedFields(head, head.status !== 204)));
      res.end();
      this.reusable = this.rest.length === 0;
      return head.status;
    }
    const direct = this.spliceRoute() ?? this.copyRoute();
    // Unknown length to an HTTP/1.1 client: each pipeful (or copied piece) becomes one chunk we
    // frame ourselves, so Transfer-Encoding: chunked is declared here and node's end() writes the last chunk.
    const framedByUs = direct !== null && f.kind !== 'length' && req.httpVersion === '1.1';
    const fields = withCacheStatus(x, forwardedFields(head, f.kind === 'length'));
    if (framedByUs) fields.push('Transfer-Encoding', 'chunked');
    this.writeHead(fields);
    if (direct !== null && (f.kind === 'length' || framedByUs)) {
      await ('pipes' in direct ? this.spliceOut(direct) : this.copyOut(direct));
      res.end();
      return head.status;
    }
    x.bodyPath = 'write';
    if (f.kind === 'length' && this.rest.length >= f.length) {
      const body = this.wholeBody(f.length);
      if (!endedNow(x, body)) await endBody(x, body);
      return this.wholeSent(f.length);
    }
    // Node frames what it is given: Content-Length as announced, chunked otherwise.
    await this.read(async (b) => {
      await writeBody(x, b);
      x.bytes += b.length;
    });
    res.end();
    return head.status;
  }

  /**
   * relay() where the whole body came with the head (takeWithHead) and goes
   * to an HTTP/1.1 client by one end(), done in this turn: the status, or
   * endBody's promise of it if the client is gone meanwhile; null having
   * done nothing (the caller then relays). The await of relay()'s own
   * promise and its resumption cost about 1k instructions per proxied 1 KiB
   * keep-alive GET (bench/request-cost.ts).
   */
  relayWhole(): number | Promise<number> | null {
    const { x, head } = this;
    const f = head.framing;
    if (x.h2 || f.kind !== 'length' || f.length === 0 || this.rest.length < f.length) return null;
    // The routes relay() would take first: neither takes a body that came with its head from a
    // plain upstream, but the copy path may take a node:tls upstream's (copyRoute). Splice is not
    // asked: it never takes a body of which bytes came with the head (spliceRoute), and here all
    // of it did (a call that only said so, about 0.3k instructions per proxied 1 KiB GET).
    if (this.copyRoute() !== null) return null;
    this.writeHead(withCacheStatus(x, forwardedFields(head, true)));
    x.bodyPath = 'write';
    // Lent from the socket's answerRoom only to the lane's end(), which says whether it copied
    // the body out at once (bodyCopied, ktls-connection.ts writeWhole); node's response keeps what
    // it is given until written, so it gets the answer's own copy.
    const lend = this.room !== null && x.res instanceof LaneResponse;
    const body = this.wholeBody(f.length, lend);
    if (!endedNow(x, body)) return endBody(x, this.wholeBody(f.length, false)).then(() => this.wholeSent(f.length));
    // Copied out: the room goes back to the socket. Held by the lane's connection until written:
    // the room stays with the body, and the socket makes a new one for its next answer.
    if (lend) {
      if ((x.res as LaneResponse).bodyCopied) this.giveRoomBack();
      else this.room = null;
    }
    return this.wholeSent(f.length);
  }

  /**
   * The body that came whole with the head: one end() sends it. rest is
   * longer than the body only when a broken upstream sent more
   * (peekResponseHead takes it all). Over HTTP/1.x nothing waits for the
   * client's 'finish': end() hands head and body to the connection (queued
   * by node behind a pipelined response still going), rest is this
   * response's own copy, and the upstream is done with. As serve's small
   * files (small-body.ts).
   */
  private wholeBody(length: number, lent = false): Buffer {
    const rest = lent ? this.rest : this.ownRest();
    return rest.length === length ? rest : rest.subarray(0, length);
  }

  /** The whole body (wholeBody) handed over: counted; bytes past it mean the upstream broke framing (as readBody() decides). */
  private wholeSent(length: number): number {
    this.x.bytes += length;
    this.reusable = this.rest.length === length;
    return this.head.status;
  }

  /** What splice and the copy path do first: the head out through node once attached (and, for the copy path, flushed); returns the byte counter. */
  private async startBody(path: 'splice' | 'write', flushed?: () => Promise<void>): Promise<(n: number) => void> {
    const { x } = this;
    // Only HTTP/1.1 bodies go by splice or the copy path (spliceRoute, copyRoute): node's response or the lane's.
    const res = h1Response(x.res);
    if (res === null) throw new Error('splice and the copy path write HTTP/1.1 bodies only');
    await whenAttached(res);
    res.flushHeaders();
    await flushed?.();
    x.bodyPath = path;
    return (n: number): void => void (x.bytes += n);
  }

  /**
   * splice writes into the connection itself: only once the responses to
   * earlier pipelined requests are out. The head goes out through OpenSSL
   * first; spliceFromPipe() waits until it is flushed.
   */
  private async spliceOut(route: SpliceRoute): Promise<void> {
    const f = this.head.framing;
    const count = await this.startBody('splice');
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
   * The copy path (src/transport/copy-body.ts): written into the connection
   * itself, like splice, once earlier responses and this one's head are out.
   * The body goes through user space (and OpenSSL), so it counts as 'write'.
   */
  private async copyOut(route: CopyRoute): Promise<void> {
    const f = this.head.framing;
    const count = await this.startBody('write', () => route.conn.whenFlushed());
    if (f.kind === 'length') {
      await copyBody(route.src, route.conn, f.length, null, count);
      this.reusable = route.leftover() === 0;
    } else if (f.kind === 'chunked') {
      this.reusable = (await moveChunked(route.src, (pending) => copyBody(route.src, route.conn, pending, CHUNK_WIRE, count))) && route.leftover() === 0;
    } else {
      await copyBody(route.src, route.conn, null, CHUNK_WIRE, count);
      this.reusable = false;
    }
  }

  /**
   * How many body bytes the head's reader may take with the head (a
   * TakeWithHead for readResponseHead): a body of known length that relay()
   * sends through node's write path anyway (no splice route, and below
   * COPY_MIN or no copy route), which would otherwise cost another recv
   * and a wait on it. The rest of such a body is read as before.
   */
  static takeWithHead(x: Exchange, u: UpstreamStream, pipes: PipePool | null): TakeWithHead {
    // The routes do not depend on the head: one of three shared functions, not a closure per request.
    if (UpstreamResponse.splicePossible(x, u, pipes)) return TAKE_NONE;
    return UpstreamResponse.copyPossible(x, u) ? TAKE_BELOW_COPY_MIN : TAKE_ALL;
  }

  /**
   * Whether the answer may be taken with one recv (takeWholeAnswer) rather
   * than peeked: every `take` but splice's. Without splice no body byte has
   * to stay in the kernel: the copy path starts with the bytes taken along
   * with the head (copyRoute, TakenFirstSource), and the others go through
   * user space anyway. Splice (kTLS TX) moves bytes still in the kernel
   * only: there the head alone is taken, after a peek.
   */
  static takesAll(take: TakeWithHead): boolean {
    return take !== TAKE_NONE;
  }

  /** The copy path's conditions other than the body's length (copyRoute()). */
  private static copyPossible(x: Exchange, u: UpstreamStream): boolean {
    const conn = x.conn;
    // A kTLS RX upstream is not a plain TCP socket for peek-and-drop: recv(MSG_TRUNC) is TCP's
    // (tcp(7)), and records that are not data must go through its control-record reader.
    // With kTLS TX a plain upstream's bodies splice; a node:tls upstream's are in user space
    // anyway, and SSL_write hands them to the kernel to encrypt.
    const source = u.plain !== null ? !u.plain.decryptsInKernel && !conn.tls.ktlsTx : u.streamSource !== undefined;
    if (x.h2 || !source) return false;
    return conn.writeRecords !== undefined && conn.writeReady !== undefined && conn.whenFlushed !== undefined;
  }

  /**
   * The copy path, where splice cannot be used, over HTTP/1.1 on a
   * system-OpenSSL connection: from a plain upstream when kTLS TX is off (the
   * body bytes taken with the head first, then those still in the kernel), or from
   * a node:tls upstream (its bytes already in user space, those that came
   * with the head first), kTLS TX or not. Bodies known to be small keep node's write path: there the head
   * and the body share one record (a head sent apart costs a record and a
   * syscall).
   */
  private copyRoute(): CopyRoute | null {
    const { x, head, u } = this;
    if (!UpstreamResponse.copyPossible(x, u)) return null;
    if (head.framing.kind === 'length' && head.framing.length < COPY_MIN) return null;
    const conn = x.conn as CopyRoute['conn'];
    if (u.plain !== null) {
      if (this.rest.length === 0) return { src: u.plain, conn, leftover: NOTHING_LEFT };
      // Body bytes the recv took with the head (takeWholeAnswer) go first, then the socket's.
      const src = new TakenFirstSource(u.plain, this.ownRest());
      return { src, conn, leftover: () => src.leftover };
    }
    const src = u.streamSource!(this.rest);
    return { src, conn, leftover: () => src.leftover };
  }

  /**
   * Bodies leave by splice when the kernel encrypts the client side and the
   * upstream is a plain socket (whose bytes need no user-space work), over
   * HTTP/1.1: HTTP/2 DATA frames are built by nghttp2 in user space.
   */
  private spliceRoute(): SpliceRoute | null {
    // Unless takeWithHead let a small body come along (rest), every body byte is still in the kernel.
    if (this.rest.length > 0 || !UpstreamResponse.splicePossible(this.x, this.u, this.pipes)) return null;
    return { pipes: this.pipes!, sock: this.u.plain!, conn: this.x.conn as Required<SecureConnection> };
  }

  private static splicePossible(x: Exchange, u: UpstreamStream, pipes: PipePool | null): boolean {
    const conn = x.conn;
    return !x.h2 && pipes !== null && u.plain !== null && conn.tls.ktlsTx && conn.spliceFromPipe !== undefined;
  }
}

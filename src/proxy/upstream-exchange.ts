/**
 * One exchange with an upstream, below the proxy's policy: reading a response
 * head (peeked from a plain socket so the body stays in the kernel), moving a
 * body by framing (length, chunked, until close) either through user space or
 * by splice, and streaming a request body up. Nothing here decides what to
 * forward or cache; http-proxy.ts does.
 */
import { ChunkedDecoder } from '../http/chunked-decoder.js';
import { chunkFraming, chunkSizeLine, CRLF, LAST_CHUNK } from '../http/h1-wire.js';
import { isInterim, parseResponseHead, parseResponseHeadIn, type Framing, type HeadLimits, type ResponseHead } from '../http/response-head.js';
import { BodyTooLargeError, UpstreamResponseError, UpstreamTruncatedError } from '../errors.js';
import type { SecureConnection } from '../tls/types.js';
import type { PipePool } from '../transport/pipe-pool.js';
import type { PlainSocket } from '../transport/plain-socket.js';
import { AGAIN } from '../native/binding.js';
import { spliceBody } from '../transport/splice-body.js';
import type { UpstreamStream } from './upstream-stream.js';
import { ChunkPool } from '../transport/copy-file.js';

/** Upstream socket -> pipe -> kTLS client socket. */
export interface SpliceRoute {
  pipes: PipePool;
  sock: PlainSocket;
  conn: Required<SecureConnection>;
}

/** An error's code, for logs and counters. */
export function errCode(err: unknown): string {
  return (err as { code?: string }).code ?? 'ERR_UNKNOWN';
}

/**
 * Transfer codings other than plain chunked (gzip, chunked) would reach the
 * client still coded once Transfer-Encoding, a hop-by-hop field, is dropped:
 * refuse them as nginx does ("upstream sent unknown Transfer-Encoding").
 */
export function checkTransferCoding(head: ResponseHead): void {
  // The same (never changed) list as the last accepted one: parsed from the same head bytes
  // (parseResponseHead), so the same answer; no look at each name again.
  if (head.headers === lastAccepted) return;
  for (let i = 0; i < head.headers.length; i += 2) {
    const name = head.headers[i]!;
    // The length first: no lowercased copy of every name per response.
    if (name.length === 17 && name.toLowerCase() === 'transfer-encoding' && head.headers[i + 1]!.trim().toLowerCase() !== 'chunked') {
      throw new UpstreamResponseError(`unsupported Transfer-Encoding "${head.headers[i + 1]}"`);
    }
  }
  lastAccepted = head.headers;
}

/** The field list checkTransferCoding last accepted (a ResponseHead's headers are never changed). */
let lastAccepted: readonly string[] | null = null;

export function isConnectionLoss(err: unknown): boolean {
  const c = errCode(err);
  return c === 'ECONNRESET' || c === 'EPIPE' || c === 'ERR_UPSTREAM_CLOSED';
}

export const EMPTY = Buffer.alloc(0);

export type OnInterim = (head: ResponseHead) => void;

/** Reads until a complete response head; interim 1xx responses (other than an awaited 101) go to `onInterim`. */
export function readResponseHead(u: UpstreamStream, method: string, limits: HeadLimits, allowSwitch = false, onInterim?: OnInterim, take?: TakeWithHead): Promise<{ head: ResponseHead; rest: Buffer }> {
  // Not async itself: an async function returning a promise settles a few microtask turns later.
  return u.plain ? peekResponseHead(u.plain, method, limits, allowSwitch, onInterim, take) : readStreamHead(u, method, limits, allowSwitch, onInterim);
}

/**
 * readResponseHead() from a stream that hands over its bytes (node:tls),
 * or from a plain socket after takeWholeAnswer took `first` (the bytes
 * behind the head then come as `rest`, whatever the framing: the body's
 * reader starts with them).
 */
export async function readStreamHead(u: UpstreamStream, method: string, limits: HeadLimits, allowSwitch: boolean, onInterim?: OnInterim, first: Buffer = EMPTY): Promise<{ head: ResponseHead; rest: Buffer }> {
  let buf: Buffer = first;
  for (;;) {
    const head = buf.length > 0 ? parseResponseHead(buf, limits, method) : null;
    if (head) {
      refuseUnaskedSwitch(head, allowSwitch);
      const rest = buf.subarray(head.headerBytes);
      if (skipInterim(head, allowSwitch)) {
        onInterim?.(head);
        buf = Buffer.from(rest);
        continue;
      }
      return { head, rest };
    }
    const chunk = await u.read();
    if (chunk === null) throw upstreamClosed();
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
  }
}

/** Interim responses precede the final one (RFC 9110 §15.2); 101 ends the exchange when an upgrade was asked for. */
export function skipInterim(head: ResponseHead, allowSwitch: boolean): boolean {
  return isInterim(head.status) && !(allowSwitch && head.status === 101);
}

/**
 * RFC 9110 §15.2.2: a server MUST NOT switch to a protocol the client did
 * not ask for (its Upgrade field, §7.8). A 101 to a request without one is
 * an invalid response: relayed, the client got "101 Switching Protocols"
 * with "Connection: keep-alive", both sides went on parsing HTTP, and the
 * upstream connection, which had announced a switch, went back to the pool
 * for the next request. Thrown, it is a 502 and that connection is closed.
 */
function refuseUnaskedSwitch(head: ResponseHead, allowSwitch: boolean): void {
  if (head.status === 101 && !allowSwitch) {
    throw new UpstreamResponseError('101 Switching Protocols to a request that asked for no upgrade (RFC 9110 §7.8, §15.2.2)', 'fix the upstream: a server must not switch to a protocol the client did not ask for');
  }
}

export function upstreamClosed(): Error {
  return Object.assign(new Error('upstream closed the connection before a complete response head'), { code: 'ERR_UPSTREAM_CLOSED' });
}

/**
 * How many body bytes a head's reader may take along with the head: the
 * response writer's choice, made once the framing is known. 0 leaves the
 * whole body in the kernel (for splice or the copy path).
 */
export type TakeWithHead = (head: ResponseHead) => number;

/**
 * Body bytes a peek may bring along beyond a head, for a small body the
 * writer takes with it (TakeWithHead): nginx and a fast origin often deliver
 * head and a small body in one segment, and one recv then takes both.
 */
const PEEK_BODY = 16 * 1024;

/**
 * The peek buffer, shared by all sockets: peekSome() fills it and the head is
 * parsed in the same turn, so no other socket's peek comes in between. Grows
 * to the largest --max-header-size seen (a fresh buffer of that size per
 * response was a malloc and a GC'd ArrayBuffer for every request).
 */
let peekRoom = Buffer.allocUnsafe(16 * 1024 + 1 + PEEK_BODY);

/**
 * The same from a plain socket, taking exactly the head: it looks with
 * MSG_PEEK and then consumes only the head's bytes, so every body byte is
 * still in the kernel for splice. When `take` allows, the body bytes that
 * came with the head (up to its say) are consumed in the same recv and
 * returned as `rest`. Bytes of an incomplete head are consumed as they are
 * seen (so readiness never fires for data already looked at).
 *
 * The first look waits for readiness: every caller has just written its
 * request, and the answer is rarely there yet (a peek then was a recv that
 * said EAGAIN for about 70% of 1 KiB keep-alive requests). The poll is
 * level-triggered, so an answer that did arrive meanwhile is reported by the
 * loop's next poll (with no epoll_ctl: readability stays watched between
 * responses, FdReadiness).
 */
export async function peekResponseHead(sock: PlainSocket, method: string, limits: HeadLimits, allowSwitch: boolean, onInterim?: OnInterim, take?: TakeWithHead): Promise<{ head: ResponseHead; rest: Buffer }> {
  // One more byte than a head may have: parseResponseHead then reports an oversized head.
  const max = limits.maxHeaderSize + 1;
  growPeekRoom(max);
  let held: Buffer = EMPTY;
  await sock.readable();
  for (;;) {
    const room = peekRoom;
    // Past an incomplete head, only as much as the head may still have.
    const n = sock.peekSome(room, held.length > 0 ? max - held.length : room.length);
    if (n === AGAIN) {
      await sock.readable();
      continue;
    }
    if (n === 0) throw upstreamClosed();
    const seen = held.length > 0 ? Buffer.concat([held, room.subarray(0, n)]) : room.subarray(0, n);
    const head = parseResponseHead(seen, limits, method);
    if (head === null) {
      sock.skip(n);
      held = Buffer.from(seen);
      continue;
    }
    refuseUnaskedSwitch(head, allowSwitch);
    if (skipInterim(head, allowSwitch)) {
      sock.skip(head.headerBytes - held.length);
      held = EMPTY;
      onInterim?.(head);
      continue;
    }
    return takeHead(sock, seen, held.length, head, take);
  }
}

/** peekRoom, grown for heads of `max` bytes and the body bytes a peek may bring along. */
function growPeekRoom(max: number): void {
  if (peekRoom.length < max + PEEK_BODY) peekRoom = Buffer.allocUnsafe(max + PEEK_BODY);
}

/**
 * A final head seen in `seen` (of which `held` bytes were consumed before)
 * taken from the socket, with the body bytes `take` allows (bytesWithHead),
 * which are copied: `seen` may be the shared peekRoom.
 */
function takeHead(sock: PlainSocket, seen: Buffer, held: number, head: ResponseHead, take: TakeWithHead | undefined): { head: ResponseHead; rest: Buffer } {
  const body = bytesWithHead(head, take, seen.length - head.headerBytes);
  sock.skip(head.headerBytes + body - held);
  return { head, rest: body > 0 ? Buffer.from(seen.subarray(head.headerBytes, head.headerBytes + body)) : EMPTY };
}

/**
 * peekResponseHead's first look, for a caller that has waited for
 * readability itself (sock.readable()): the final head when one is whole
 * in what one peek sees, taken as peekResponseHead takes it; null having
 * taken nothing (no bytes yet, the FIN, an incomplete head, an interim or
 * 101 answer: peekResponseHead then reads as before, and refuses). Not
 * async: an answer read in the turn its readiness came saves
 * peekResponseHead's promise and its resumption, about 1k instructions per
 * proxied 1 KiB keep-alive GET (bench/request-cost.ts). It peeks into the
 * connection's own answerRoom, not the shared peekRoom: the body bytes
 * taken with the head stay there, lent to the answer (WholeAnswer), instead
 * of a copy per answer (about 1.7k instructions per proxied 1 KiB GET).
 */
export function peekWholeHead(sock: PlainSocket, method: string, limits: HeadLimits, take?: TakeWithHead): WholeAnswer | null {
  const room = answerRoom(sock);
  const n = sock.peekSome(room, room.length);
  if (n <= 0) return null;
  const seen = room.subarray(0, n);
  const head = parseResponseHead(seen, limits, method);
  // Every 1xx, 101 included (isInterim leaves 101 out): peekResponseHead forwards or refuses them.
  if (head === null || head.status < 200) return null;
  const taken = head.headerBytes + bytesWithHead(head, take, n - head.headerBytes);
  sock.skip(taken);
  // A short peek saw all the socket held, and all of it was taken: nothing waits behind the answer.
  const drained = n < room.length && taken === n;
  if (taken === head.headerBytes) return { head, rest: EMPTY, room: null, drained };
  sock.answerRoom = null;
  return { head, rest: seen.subarray(head.headerBytes, taken), room, drained };
}

/** The socket's answerRoom, made at its first answer. */
function answerRoom(sock: PlainSocket): Buffer {
  return sock.answerRoom ?? (sock.answerRoom = Buffer.allocUnsafeSlow(ANSWER_ROOM));
}

/** peekWholeHead's and takeWholeAnswer's answer: the final head and the bytes taken behind it, lent from the socket's answerRoom. */
export interface WholeAnswer {
  head: ResponseHead;
  /** The bytes taken behind the head: a view of `room`, valid until the connection's next exchange (or EMPTY). */
  rest: Buffer;
  /** The socket's answerRoom when `rest` is a view of it, held by the answer: given back (PlainSocket.answerRoom) once nothing references `rest`. */
  room: Buffer | null;
  /**
   * The recv did not fill the room: nothing more was waiting then. TCP's
   * recvmsg returns short only once the receive queue and the backlog are
   * empty (tcp_recvmsg_locked, net/ipv4/tcp.c).
   */
  drained: boolean;
}

/**
 * A connection's answerRoom: a 1 KiB answer and its head with room to
 * spare, as nginx's proxy_buffer_size (4k|8k) holds a head and the start of
 * the body; a longer answer leaves the rest in the kernel for the body's
 * reader.
 */
const ANSWER_ROOM = 16 * 1024;

/**
 * peekWholeHead for an answer no byte of which has to stay in the kernel
 * (UpstreamResponse.takesAll: no splice; the copy path starts with the bytes
 * taken here), so one recv takes what a peek and then a recv of the same
 * bytes took, into the connection's own buffer, and the bytes behind the
 * head stay there (no copy: WholeAnswer). Returns null having taken nothing
 * (no bytes yet, or the FIN); the bytes taken when they hold no whole final
 * head (incomplete, 1xx, 101: readStreamHead goes on from them, as from a
 * node:tls upstream); else the answer. Readiness stays level-triggered:
 * whatever is left in the kernel is reported by the loop's next poll.
 */
export function takeWholeAnswer(sock: PlainSocket, method: string, limits: HeadLimits): WholeAnswer | Buffer | null {
  const room = answerRoom(sock);
  const n = sock.takeSome(room, room.length);
  if (n <= 0) return null;
  // No view of the n bytes taken unless they are parsed (parseResponseHeadIn): the rest is one.
  const head = parseResponseHeadIn(room, n, limits, method);
  if (head === null || head.status < 200) return Buffer.from(room.subarray(0, n));
  sock.answerRoom = null;
  return { head, rest: room.subarray(head.headerBytes, n), room, drained: n < room.length };
}

/**
 * How many of the `after` bytes seen behind a head peekResponseHead takes
 * with it: what `take` allows, except that when it allows the whole body,
 * every byte seen is taken. A response ends where its framing says: a HEAD's,
 * a 204's or a 304's at its head (RFC 9110 §9.3.2, §6.4.1), a Content-Length
 * body at its length; bytes beyond are no next response (nothing was asked
 * for) but the upstream's error, such as a body sent to HEAD. Left in the
 * socket, the connection went back to the pool with them, and the next
 * request sent on it read them as its answer: a 502. Taken, they make the
 * rest longer than the body, and the connection is not reused (relay,
 * readBody), as nginx's "upstream sent more data than specified" does.
 */
function bytesWithHead(head: ResponseHead, take: TakeWithHead | undefined, after: number): number {
  const allowed = take?.(head) ?? 0;
  const f = head.framing;
  const whole = f.kind === 'none' ? 0 : f.kind === 'length' ? f.length : -1;
  return take !== undefined && whole >= 0 && allowed >= whole ? after : Math.min(allowed, after);
}

/**
 * Streams the client's body upstream, re-framed (chunk sizes from what
 * arrives), at the pace of the slower side. `cut(total)`, asked once the
 * client's stream has ended, says why that end is not the body's (an error
 * to reject with) or null: the body is then complete upstream, its last
 * chunk written, only when it was complete from the client.
 */
export async function sendRequestBody(req: AsyncIterable<Buffer>, u: UpstreamStream, chunked: boolean, max: number | null, cut?: (total: number) => Error | null): Promise<void> {
  let total = 0;
  for await (const chunk of req) {
    total += chunk.length;
    if (max !== null && total > max) throw new BodyTooLargeError(max);
    if (chunked) await u.write(chunkSizeLine(chunk.length));
    await u.write(chunk);
    if (chunked) await u.write(CRLF);
  }
  const short = cut?.(total) ?? null;
  if (short !== null) throw short;
  if (chunked) await u.write(LAST_CHUNK);
}


/** 64 KiB, a plain socket's read: one buffer per body being copied, back in the pool when the body is done. */
const bodyBuffers = new ChunkPool(64 * 1024, 64);

/**
 * Upstream body bytes for a copy through user space. From a plain socket,
 * every read lands in one pooled buffer, reused for the next (a fresh 64 KiB
 * buffer per read cost about a sixth of the proxy's CPU in allocation and
 * GC). So a piece is valid until the next call: each must have been taken
 * (written to the client, stored) when onData's promise resolves, as every
 * caller's does. Other upstreams (node:tls) hand over their own chunks.
 */
class BodyReader {
  private buf: Buffer | null = null;

  constructor(private readonly u: UpstreamStream) {}

  /** The next bytes, at most `max`, or null at the end of stream. */
  async next(max: number = Number.MAX_SAFE_INTEGER): Promise<Buffer | null> {
    if (this.u.readInto === undefined) return this.u.read();
    this.buf ??= bodyBuffers.take();
    const n = await this.u.readInto(max < this.buf.length ? this.buf.subarray(0, max) : this.buf);
    return n === 0 ? null : this.buf.subarray(0, n);
  }

  /** Gives the buffer back once nothing can hold it: after a failed copy a write may still reference it. */
  done(clean: boolean): void {
    if (this.buf !== null && clean) bodyBuffers.give(this.buf);
    this.buf = null;
  }
}

/**
 * Reads a response body through user space (TLS upstreams, kTLS off, the
 * cache's fills), handing each piece of body data to `onData` and waiting
 * for it: de-chunked, exactly Content-Length bytes, or until the upstream
 * closes. A piece must be taken by the time onData's promise resolves (see
 * BodyReader). Returns true when the connection ends exactly at the body's
 * end and may carry another exchange. A close before the announced end
 * throws UpstreamTruncatedError.
 */
export async function readBody(u: UpstreamStream, f: Framing, rest: Buffer, onData: (b: Buffer) => Promise<void>): Promise<boolean> {
  if (f.kind === 'none') return rest.length === 0;
  const reader = new BodyReader(u);
  let finished = false;
  try {
    const clean = f.kind === 'chunked' ? await readChunked(reader, rest, onData) : f.kind === 'close' ? await readToClose(reader, rest, onData) : await readLength(reader, f.length, rest, onData);
    finished = true;
    return clean;
  } finally {
    reader.done(finished);
  }
}

/** Delimited by the upstream closing (RFC 9112 §6.3 point 8): never reusable. */
async function readToClose(r: BodyReader, rest: Buffer, onData: (b: Buffer) => Promise<void>): Promise<false> {
  if (rest.length > 0) await onData(rest);
  for (let c = await r.next(); c !== null; c = await r.next()) await onData(c);
  return false;
}

/** Exactly `length` bytes; bytes beyond them mean the upstream broke framing, and the connection is never reused. */
async function readLength(r: BodyReader, length: number, rest: Buffer, onData: (b: Buffer) => Promise<void>): Promise<boolean> {
  let clean = rest.length <= length;
  const early = rest.subarray(0, length);
  if (early.length > 0) await onData(early);
  let left = length - early.length;
  while (left > 0) {
    const c = await r.next(left);
    if (c === null) throw new UpstreamTruncatedError(`closed after ${length - left} of ${length} body bytes`);
    if (c.length > left) clean = false;
    const part = c.length > left ? c.subarray(0, left) : c;
    await onData(part);
    left -= part.length;
  }
  return clean;
}

/** What moveChunked reads the chunk framing from: a plain socket, or the copy path's StreamSource. */
export type FramingSource = Pick<PlainSocket, 'peek' | 'skip'>;

/**
 * A chunked upstream body moved without user-space de-chunking of its data:
 * the framing (size lines, CRLFs, trailers) is peeked and consumed here, and
 * each chunk's data is left in the socket for `move` (splice, or the copy
 * path), which re-frames it. Returns true: the decoder stops exactly at the
 * body's end, so the connection can carry the next exchange.
 */
export async function moveChunked(sock: FramingSource, move: (pending: number) => Promise<unknown>): Promise<boolean> {
  const dec = new ChunkedDecoder();
  const look = Buffer.allocUnsafe(4096);
  while (!dec.done) {
    const pending = dec.dataPending;
    if (pending > 0) {
      await move(pending);
      dec.dataMoved(pending);
      continue;
    }
    const n = await sock.peek(look, look.length);
    if (n === 0) throw new UpstreamTruncatedError('closed inside a chunked body');
    sock.skip(dec.pushFraming(look.subarray(0, n)));
  }
  return true;
}

/** A chunked upstream body by splice, one chunk per pipeful. */
export function spliceChunked(t: SpliceRoute, onBytes: (n: number) => void): Promise<boolean> {
  return moveChunked(t.sock, (pending) => spliceBody(t.pipes, t.sock, t.conn, pending, onBytes, chunkFraming(t.conn)));
}

/** De-chunks the upstream body into `onData`; true when nothing followed the last chunk. */
async function readChunked(r: BodyReader, first: Buffer, onData: (b: Buffer) => Promise<void>): Promise<boolean> {
  const dec = new ChunkedDecoder();
  const out: Buffer[] = [];
  const collect = (b: Buffer): void => { out.push(b); };
  let input: Buffer | null = first;
  for (;;) {
    if (input !== null && input.length > 0) {
      const used = dec.push(input, collect);
      for (const b of out) await onData(b);
      out.length = 0;
      if (dec.done) return used === input.length;
    }
    input = await r.next();
    if (input === null) throw new UpstreamTruncatedError('closed inside a chunked body');
  }
}

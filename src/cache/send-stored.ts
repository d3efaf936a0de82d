/**
 * Answers a request from a stored response, or from one still being stored:
 * the client's conditional request (304) and Range (206/416) are evaluated
 * here with the same code `aludel serve` uses for files, then the header
 * fields go out through the exchange's response (node's HTTP/1.1 or HTTP/2
 * one, or the lane's, h1-lane.ts LaneResponse) and the body by the
 * connection's sendFile: sendfile(2) from the page cache into the kTLS
 * socket, or read + SSL_write without kTLS TX.
 *
 * A body still being written is sent as it lands: each newly written range
 * of the file goes out, then the sender waits for the next (see fill.ts).
 * Without a known length (a chunked upstream still filling) each range is one
 * HTTP/1.1 chunk (RFC 9112 §7.1). Over HTTP/2, ranges become DATA frames
 * from bounded reads (h2-body.ts): sendfile cannot build frames. A fill that
 * stopped being stored (fill.ts) hands the bytes past its file's end from
 * memory (`piece`): written to the connection as they are.
 */
import { Http2ServerResponse } from 'node:http2';
import { evaluatePreconditions, ifRangeAllows, parseHttpDate } from '../http/conditional.js';
import { parseRange } from '../http/range.js';
import { whenAttached } from '../http/front.js';
import { dropFields, h1Response, sent, writeHead, writeHeadAfter, type Exchange } from '../http/exchange.js';
import type { H1Response } from '../http/h1-lane.js';
import { sendRangeOverH2, takenInTime } from '../http/h2-body.js';
import { chunkFraming } from '../http/h1-wire.js';
import { sentWithHead, sentWithHeadNow } from '../http/small-body.js';
import type { BodyPath } from '../transport/copy-file.js';
import { taken } from '../transport/taken.js';
import { fieldValue, notModifiedFields } from './policy.js';

export interface StoredBody {
  status: number;
  reason: string;
  /** The stored header fields (no Content-Length, no Age). */
  headers: readonly string[];
  /** The whole body's length; null while a chunked body is still being stored. */
  length(): number | null;
  /** The file to send from, by offset. */
  fd: number;
  /** Current age in seconds (§4.2.3), sent as Age (§5.1). */
  age: number;
  /** Bytes of the file that can be sent now. */
  available(): number;
  /** Every body byte is in the file. */
  complete(): boolean;
  /** Resolves when more bytes arrived or the body is complete; rejects when storing it failed. */
  progress(): Promise<void>;
  /**
   * A partial entry (RFC 9111 §3.3): whether bytes [start, end) are stored.
   * The caller only sends a range it checked; this is the last guard that a
   * hole of the file never goes out as body bytes.
   */
  covers?(start: number, end: number): boolean;
  /** Bytes of available() that are in the file (the rest: piece()); default all of them. */
  inFile?(): number;
  /** Bytes from `from` (at or past inFile(), below available()), at most `max`, from memory. */
  piece?(from: number, max: number): Buffer;
  /** Everything before `pos` is sent (kept bytes may go); throws when this client is to be aborted. */
  sentUpTo?(pos: number): void;
}

/** An Invalid Date: what a stored response without a usable Last-Modified or Date compares as; never modified. */
const NO_DATE = new Date(NaN);

export interface SentStored {
  status: number;
  bytes: number;
  bodyPath: BodyPath;
}

/** What sendStored reads of a stored response's fields, for one list of consumed names. */
interface StoredFields {
  consumed: ReadonlySet<string> | null;
  /** The fields the client gets (the consumed ones dropped), before Age, Cache-Status and the framing. */
  forClient: readonly string[];
  etag: string;
}

/**
 * StoredFields by the stored field list they were made from. The list of an
 * entry is never changed in place: a 304's new fields (store.ts update,
 * a worker's reported freshen) and a replacing response come as a new list,
 * and a replaced, evicted or expired entry's list is no longer handed here,
 * so a memo of a list cannot outlive what it says. The consumed names are
 * compared too (one set per cache). Dropping the consumed fields and finding
 * ETag lowercased each field name twice per hit (about 5k instructions per
 * 1 KiB hit, bench/request-cost.ts).
 */
const storedFields = new WeakMap<readonly string[], StoredFields>();

/** `headers` as sendStored uses them for a client, from the memo when it was made for the same list and consumed names. */
export function fieldsForClient(headers: readonly string[], consumed: ReadonlySet<string> | null): StoredFields {
  const known = storedFields.get(headers);
  if (known !== undefined && known.consumed === consumed) return known;
  const forClient = [...headers];
  // RFC 9213: the targeted fields were kept for the cache's own use (lifetimes after a restart), not for the client.
  if (consumed !== null) dropFields(forClient, consumed);
  const made = { consumed, forClient, etag: fieldValue(headers, 'etag') ?? '' };
  storedFields.set(headers, made);
  return made;
}

/**
 * Sends `src` as the answer to x's request, with `cacheStatus` as this
 * cache's Cache-Status member (RFC 9211). What was sent, or a promise of it
 * when the body is still to go once this returns: a head-only answer, or a
 * small body read with its head at once (sentWithHeadNow), is done in this
 * turn, and the caller (cache-layer.ts fromStore) answers a hit without a
 * promise. Throws, or rejects, as the body fails. The body's bytes and
 * path are counted on x as they go (exchange.ts sent), not by a callback:
 * each caller's closure for that was made per hit.
 */
export function sendStored(x: Exchange, src: StoredBody, cacheStatus: string): SentStored | Promise<SentStored> {
  const { req, res } = x;
  const method = req.method ?? 'GET';
  const age = String(src.age);
  // Validators and Range only mean something for a 200 (RFC 9110 §13.2.1, §14.2).
  const selected = src.status === 200 && (method === 'GET' || method === 'HEAD');
  const stored = fieldsForClient(src.headers, x.cacheConsumed);
  const etag = stored.etag;
  // §4.3.2: If-Modified-Since is compared with Last-Modified, or else the Date of the stored response.
  // Only If-Modified-Since and a date in If-Range read it (conditional.ts): parsed for them alone, as
  // parsing it for every hit was among the top entries of a profile of 1 KiB hits.
  const lastModified = req.headers['if-modified-since'] !== undefined || req.headers['if-range'] !== undefined
    ? parseHttpDate(fieldValue(src.headers, 'last-modified') ?? fieldValue(src.headers, 'date') ?? '') ?? new Date(NaN)
    : NO_DATE;
  if (selected) {
    // If-Match and If-Unmodified-Since never get here: they are the origin's to evaluate (§4.3.2).
    const headers = { 'if-none-match': req.headers['if-none-match'], 'if-modified-since': req.headers['if-modified-since'] };
    if (evaluatePreconditions({ method, headers }, etag, lastModified) === 'not-modified') {
      writeHead(x, 304, 'Not Modified', [...notModifiedFields(src.headers), 'Age', age, 'Cache-Status', cacheStatus]);
      res.end();
      return { status: 304, bytes: 0, bodyPath: 'none' };
    }
  }

  let status = src.status;
  let reason = src.reason;
  let start = 0;
  const total = src.length();
  let length = total;
  let contentRange: string | null = null;
  const range = req.headers.range;
  if (selected && method === 'GET' && total !== null && range !== undefined && ifRangeAllows(headerString(req.headers['if-range']), etag, lastModified)) {
    const r = parseRange(range, total);
    if (r.kind === 'unsatisfiable') {
      // RFC 9110 §15.5.17: a 416 for byte ranges says the current length.
      const text = 'Range Not Satisfiable\n';
      writeHead(x, 416, 'Range Not Satisfiable', ['Age', age, 'Cache-Status', cacheStatus, 'Content-Range', `bytes */${total}`, 'Content-Type', 'text/plain', 'Content-Length', String(text.length)]);
      res.end(text);
      return { status: 416, bytes: text.length, bodyPath: 'none' };
    }
    if (r.kind === 'single') {
      status = 206;
      reason = 'Partial Content';
      start = r.start;
      length = r.end - r.start + 1;
      contentRange = `bytes ${r.start}-${r.end}/${total}`;
    }
  }
  if (src.covers !== undefined && !src.covers(start, start + (length ?? 0))) {
    throw Object.assign(new Error(`bytes ${start}-${start + (length ?? 0)} are not all in the stored partial response`), { code: 'ERR_CACHE_PARTIAL' });
  }
  // The stored fields, then this answer's own: a new list per response (the response keeps the one
  // it is given, h1-lane.ts writeHead), the stored list as it is (writeHeadAfter: never changed in place).
  writeHeadAfter(x, status, reason, stored.forClient, ownFields(age, cacheStatus, contentRange, length));
  if (method === 'HEAD' || length === 0) {
    res.end();
    return { status, bytes: 0, bodyPath: 'none' };
  }
  // A small body already whole in the file, without kTLS TX: with its head in one record (small-body.ts),
  // at once when the response is the connection's current one and the bytes are in the page cache
  // (each await of the asynchronous way is a promise and a microtask turn).
  const h1 = h1Response(res);
  const small = length !== null && h1 !== null && (src.inFile?.() ?? src.available()) >= start + length ? h1 : null;
  if (small !== null && sentWithHeadNow(small, src.fd, start, length!)) {
    sent(x, 'write', length!);
    return { status, bytes: length!, bodyPath: 'write' };
  }
  return sendBody(x, src, status, start, length, small);
}

/**
 * An answer's own fields after the stored ones: Age, Cache-Status, then
 * Content-Range and Content-Length when it has them. Each list is made at
 * its length: pushed onto a list of four, it grew (a new backing store, about
 * 0.3k instructions) per 1 KiB hit (bench/request-cost.ts).
 */
function ownFields(age: string, cacheStatus: string, contentRange: string | null, length: number | null): string[] {
  if (contentRange === null) {
    return length === null ? ['Age', age, 'Cache-Status', cacheStatus] : ['Age', age, 'Cache-Status', cacheStatus, 'Content-Length', String(length)];
  }
  return length === null
    ? ['Age', age, 'Cache-Status', cacheStatus, 'Content-Range', contentRange]
    : ['Age', age, 'Cache-Status', cacheStatus, 'Content-Range', contentRange, 'Content-Length', String(length)];
}

/**
 * sendStored's body once the head is made, when it could not go at once:
 * with its head from the file (`small`: the HTTP/1.1 response, when the body
 * is all in the file) or range by range as it lands, then the end.
 */
async function sendBody(x: Exchange, src: StoredBody, status: number, start: number, length: number | null, small: H1Response | null): Promise<SentStored> {
  const { res } = x;
  if (small !== null && length !== null && (await sentWithHead(small, src.fd, start, length))) {
    sent(x, 'write', length);
    return { status, bytes: length, bodyPath: 'write' };
  }
  const send = await rangeSender(res);
  const end = length === null ? null : start + length;
  let pos = start;
  let bodyPath: BodyPath = 'none';
  for (;;) {
    const upto = end === null ? src.available() : Math.min(end, src.available());
    if (upto > pos) {
      const inFile = src.inFile?.() ?? upto;
      let n: number;
      if (pos < inFile) {
        n = Math.min(upto, inFile) - pos;
        bodyPath = await send.file(src.fd, pos, n);
      } else {
        const b = src.piece!(pos, upto - pos);
        n = b.length;
        bodyPath = await send.bytes(b);
      }
      sent(x, bodyPath, n);
      pos += n;
      src.sentUpTo?.(pos);
      continue;
    }
    if (end !== null ? pos >= end : src.complete()) break;
    // Complete yet short of `end`: the store's length check makes this unreachable; never wait forever.
    if (src.complete()) throw new Error(`stored body ended at ${pos} of ${end} bytes`);
    await src.progress();
  }
  res.end();
  return { status, bytes: pos - start, bodyPath };
}

/** How the body reaches the client once its head is out: ranges of the file, and bytes from memory. */
interface RangeSender {
  file(fd: number, offset: number, length: number): Promise<BodyPath>;
  bytes(b: Buffer): Promise<BodyPath>;
}

/**
 * HTTP/1.1 by the connection's sendFile (sendfile(2) under kTLS) and writes,
 * in order, framed as chunks when the length is unknown; HTTP/2 as DATA frames.
 */
async function rangeSender(res: Exchange['res']): Promise<RangeSender> {
  if (res instanceof Http2ServerResponse) {
    // Http2ServerResponse.flushHeaders() exists (node's compat layer) but is missing from @types/node 20.
    (res as unknown as { flushHeaders(): void }).flushHeaders();
    const stream = res.stream;
    return {
      file: (fd, offset, length) => sendRangeOverH2(stream, fd, offset, length),
      bytes: async (b) => {
        await takenInTime(stream, b);
        return 'write';
      },
    };
  }
  // node's response or the lane's: both frame a body of unknown length the same way (h1-wire.ts framedResponseHead).
  const h1 = h1Response(res);
  if (h1 === null) throw new Error('a response neither HTTP/2 nor HTTP/1.1');
  const conn = await whenAttached(h1);
  // Unknown length: chunked for an HTTP/1.1 client (close-delimited for 1.0, node's server only), as
  // the response's head says; the bytes sendfile puts into the connection are framed here to match.
  h1.flushHeaders();
  const framing = h1.chunkedEncoding ? chunkFraming(conn) : null;
  return {
    file: async (fd, offset, length) => {
      framing?.before(length);
      const path = await conn.sendFile(fd, offset, length);
      framing?.after();
      return path;
    },
    bytes: async (b) => {
      framing?.before(b.length);
      await taken(conn, b);
      framing?.after();
      return 'write';
    },
  };
}

/** If-Range is not in node's typed header list, so it may arrive as an array. */
function headerString(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

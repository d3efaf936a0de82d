/**
 * A plain HTTP/1.1 origin (node:http on 127.0.0.1) that reports what reached
 * it and misbehaves on request, for the proxy tests:
 *
 * - POST/PUT (any path): the body streamed into sha256; answers JSON
 *   `{ method, url, bytes, sha256, headers }` (headers: rawHeaders, as received).
 * - GET /echo-headers: JSON `{ method, url, httpVersion, headers }` (rawHeaders).
 * - GET /chunked-stream?size=N: N pattern bytes (patternBytes) in irregular
 *   writes, so Transfer-Encoding: chunked with chunks of many sizes.
 * - GET /die-after?bytes=N&total=M: Content-Length M, N pattern bytes, then the
 *   socket is destroyed (a backend dying mid-response).
 * - GET /close-delimited?size=N: N pattern bytes with neither Content-Length nor
 *   chunking, ended by closing the connection (an HTTP/1.0-style body).
 * - GET /hang-headers: never answered (until stop()).
 * - GET /cache?...: a response for the cache tests, its fields from the query:
 *   `cc` Cache-Control, `vary` Vary, `etag` ETag (sent quoted), `lm` Last-Modified
 *   (Unix seconds), `expires` Expires (seconds from now), `cookie` Set-Cookie,
 *   `status` (default 200), `hints=1` a 103 Early Hints first, `delay` ms before
 *   the head. The body is `size` pattern bytes (with Content-Length, or chunked
 *   with `chunked=1`), or else a JSON line `{n, url, ae, auth}`: n counts the
 *   /cache requests so far, so a test tells a stored answer from a new one.
 *   If-None-Match / If-Modified-Since matching etag / lm get a 304 with the same
 *   fields. A request header X-Sink-Rate: B sends the body at B bytes per second;
 *   `die=N` destroys the connection after N body bytes (a backend dying mid-body).
 *   More fields, for the freshness tests (issue 16):
 *   - `age` an Age field, sent as given (e.g. "7200, 0");
 *   - `expiresraw` an Expires field, sent as given (any case, any format);
 *   - `cycle=A|B|C`: the Cache-Control of the k-th request for this exact URL
 *     is the (k mod 3)-th of the list (overrides `cc`); with `etagn=1` each
 *     response has its own ETag "n<n>" (so a revalidation never gets a 304);
 *   - `hold=NAME`: the first request with that name waits before its head
 *     until `release(NAME)` (later ones do not wait), so a test decides
 *     exactly when the head leaves;
 *   - `te=CODINGS`: the head says `Transfer-Encoding: CODINGS` and the body
 *     "hello" is sent chunked, written on the socket (node:http would frame
 *     it itself); the connection then closes;
 *   - `field=NAME:VALUE` (repeatable): one more response field, e.g. a
 *     targeted `CDN-Cache-Control: max-age=60` (RFC 9213).
 *   - `nm=NAME:VALUE` (repeatable): a field of the 304 answers only, replacing
 *     one of that name, e.g. a Set-Cookie or `private` a revalidation brings;
 *     with an empty VALUE, the 304 has no field of that name.
 *   Each /cache answer is noted in its record's `cache` (n, Cache-Control, when the head left).
 * - POST/PUT with `?location=URL`: the JSON answer carries that Location.
 * - Upgrade: echo (GET /upgrade or any path): 101, then every byte is echoed.
 *
 * Every request, upgrades included, is recorded in `requests`.
 */
import crypto from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import type { Duplex } from 'node:stream';

export interface SinkRecord {
  method: string;
  url: string;
  /** rawHeaders as received: names in their original case, repeats kept, in order. */
  headers: string[];
  /** The client side of the connection: equal ports mean a reused (keep-alive) connection. */
  remotePort: number;
  /** /cache answers only: the n in its body, the Cache-Control sent, the status, and when the head was written (ms since the epoch). */
  cache?: { n: number; cc: string | null; status: number; at: number };
}

export interface SinkOrigin {
  port: number;
  requests: SinkRecord[];
  /** Lets the request held by `hold=name` send its head (see the header comment). */
  release(name: string): void;
  stop(): Promise<void>;
}

/** The pattern's period: a prime, so it never lines up with record, page or write sizes. */
export const PATTERN_PERIOD = 65521;
const PERIOD = PATTERN_PERIOD;

/** Deterministic bytes (xorshift32, fixed seed), computed once; byte i of any stream is PATTERN[i % PERIOD]. */
const PATTERN = ((): Buffer => {
  const b = Buffer.allocUnsafe(PERIOD);
  let x = 0x2545f491;
  for (let i = 0; i < PERIOD; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = x & 0xff;
  }
  return b;
})();

/**
 * Write sizes for /chunked-stream, cycled: 1 byte, odd sizes, one TLS record,
 * one past it, and a whole period, so chunk boundaries fall everywhere.
 */
const WRITE_SIZES = [1, 13, 1000, 4096, 7, 16384, 16385, 65521, 333];

/** `length` pattern bytes starting at stream offset `offset`; a view of PATTERN when they do not wrap. */
function patternSlice(offset: number, length: number): Buffer {
  const start = offset % PERIOD;
  if (start + length <= PERIOD) return PATTERN.subarray(start, start + length);
  const out = Buffer.allocUnsafe(length);
  for (let done = 0; done < length; ) {
    const s = (offset + done) % PERIOD;
    done += PATTERN.copy(out, done, s, Math.min(PERIOD, s + length - done));
  }
  return out;
}

/** The first `size` bytes that /chunked-stream and /die-after send. */
export function patternBytes(size: number): Buffer {
  return Buffer.from(patternSlice(0, size));
}

/** sha256 (hex) of patternBytes(size), without holding it in memory. */
export function patternSha256(size: number): string {
  const hash = crypto.createHash('sha256');
  for (let off = 0; off < size; off += PERIOD) hash.update(patternSlice(off, Math.min(PERIOD, size - off)));
  return hash.digest('hex');
}

function sendJson(res: http.ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

/** A non-negative integer query parameter, or null when missing or malformed. */
function count(url: URL, name: string): number | null {
  const v = url.searchParams.get(name);
  return v !== null && /^\d{1,10}$/.test(v) ? Number(v) : null;
}

/** Resolves on 'drain' or 'close', whichever comes first (a client that leaves never drains). */
function drainOrClose(res: http.ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

async function chunkedStream(res: http.ServerResponse, size: number): Promise<void> {
  // No Content-Length: Node frames each write() as one chunk (RFC 9112 §7.1).
  res.writeHead(200, { 'Content-Type': 'application/octet-stream' });
  let off = 0;
  for (let i = 0; off < size && !res.destroyed; i++) {
    const n = Math.min(WRITE_SIZES[i % WRITE_SIZES.length]!, size - off);
    const ok = res.write(patternSlice(off, n));
    off += n;
    if (!ok) await drainOrClose(res);
  }
  res.end();
}

/** Head with Content-Length `total`, `bytes` body bytes, then the socket is destroyed once they are flushed. */
function dieAfter(socket: net.Socket, bytes: number, total: number): void {
  const head = `HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${total}\r\n\r\n`;
  // Written on the socket itself: node:http would refuse to end short of Content-Length.
  socket.write(Buffer.concat([Buffer.from(head, 'latin1'), patternSlice(0, bytes)]), () => socket.destroy());
}

/** One-shot holds of /cache?hold=NAME: a name is held the first time only. */
class Holds {
  private readonly seen = new Set<string>();
  private readonly waiting = new Map<string, () => void>();
  private readonly released = new Set<string>();

  wait(name: string | null): Promise<void> {
    if (name === null || this.seen.has(name)) return Promise.resolve();
    this.seen.add(name);
    if (this.released.has(name)) return Promise.resolve();
    return new Promise((resolve) => this.waiting.set(name, resolve));
  }

  release(name: string): void {
    this.released.add(name);
    this.waiting.get(name)?.();
    this.waiting.delete(name);
  }

  releaseAll(): void {
    for (const name of [...this.waiting.keys()]) this.release(name);
  }
}

/** Per-URL request counts, for `cycle`. */
const urlCounts = new WeakMap<SinkRecord[], Map<string, number>>();

function cycleCc(requests: SinkRecord[], url: string, cycle: string): string {
  let counts = urlCounts.get(requests);
  if (counts === undefined) urlCounts.set(requests, (counts = new Map()));
  const k = counts.get(url) ?? 0;
  counts.set(url, k + 1);
  const list = cycle.split('|');
  return list[k % list.length]!;
}

/** `te=`: a chunked body under the given Transfer-Encoding, written raw; the connection closes after it. */
function rawTransferEncoding(socket: net.Socket, te: string, cc: string | null): void {
  const head = `HTTP/1.1 200 OK\r\nDate: ${new Date().toUTCString()}\r\n${cc !== null ? `Cache-Control: ${cc}\r\n` : ''}Transfer-Encoding: ${te}\r\nConnection: close\r\n\r\n`;
  socket.end(`${head}5\r\nhello\r\n0\r\n\r\n`, 'latin1');
}

/** The /cache route (see the header comment). */
async function cacheable(req: http.IncomingMessage, res: http.ServerResponse, url: URL, n: number, rec: SinkRecord, holds: Holds, requests: SinkRecord[]): Promise<void> {
  const q = url.searchParams;
  const delay = count(url, 'delay');
  if (delay !== null) await new Promise((r) => setTimeout(r, delay));
  await holds.wait(q.get('hold'));
  if (q.get('hints') === '1') res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' });
  const fields: Record<string, string> = {};
  const cycle = q.get('cycle');
  if (cycle !== null) fields['Cache-Control'] = cycleCc(requests, req.url ?? '', cycle);
  else if (q.has('cc')) fields['Cache-Control'] = q.get('cc')!;
  if (q.has('te')) {
    rec.cache = { n, cc: fields['Cache-Control'] ?? null, status: 200, at: Date.now() };
    rawTransferEncoding(req.socket, q.get('te')!, fields['Cache-Control'] ?? null);
    return;
  }
  if (q.has('vary')) fields.Vary = q.get('vary')!;
  if (q.has('etag')) fields.ETag = `"${q.get('etag')}"`;
  if (q.get('etagn') === '1') fields.ETag = `"n${n}"`;
  if (q.has('age')) fields.Age = q.get('age')!;
  const lm = count(url, 'lm');
  if (lm !== null) fields['Last-Modified'] = new Date(lm * 1000).toUTCString();
  const expires = count(url, 'expires');
  if (expires !== null) fields.Expires = new Date(Date.now() + expires * 1000).toUTCString();
  if (q.has('expiresraw')) fields.Expires = q.get('expiresraw')!;
  if (q.has('cookie')) fields['Set-Cookie'] = q.get('cookie')!;
  for (const f of q.getAll('field')) {
    const colon = f.indexOf(':');
    if (colon > 0) fields[f.slice(0, colon)] = f.slice(colon + 1).trim();
  }
  const inm = req.headers['if-none-match'];
  const ims = req.headers['if-modified-since'];
  const notModified = inm !== undefined ? fields.ETag !== undefined && inm.split(',').some((t) => t.trim().replace(/^W\//, '') === fields.ETag) : ims !== undefined && lm !== null && Date.parse(ims) >= lm * 1000;
  if (notModified) {
    for (const f of q.getAll('nm')) {
      const colon = f.indexOf(':');
      const value = f.slice(colon + 1).trim();
      if (colon > 0 && value === '') delete fields[f.slice(0, colon)];
      else if (colon > 0) fields[f.slice(0, colon)] = value;
    }
    rec.cache = { n, cc: fields['Cache-Control'] ?? null, status: 304, at: Date.now() };
    res.writeHead(304, fields).end();
    return;
  }
  const status = count(url, 'status') ?? 200;
  const size = count(url, 'size');
  rec.cache = { n, cc: fields['Cache-Control'] ?? null, status, at: Date.now() };
  if (size === null) {
    const body = `${JSON.stringify({ n, url: req.url, ae: req.headers['accept-encoding'] ?? null, auth: req.headers.authorization ?? null, cc: fields['Cache-Control'] ?? null })}\n`;
    res.writeHead(status, { ...fields, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body);
    return;
  }
  res.writeHead(status, { ...fields, 'Content-Type': 'application/octet-stream', ...(q.get('chunked') === '1' ? {} : { 'Content-Length': size }) });
  const rate = Number(req.headers['x-sink-rate'] ?? 0);
  const piece = rate > 0 ? Math.min(16384, Math.max(1, Math.floor(rate / 4))) : 65521;
  const die = count(url, 'die');
  for (let off = 0; off < size && !res.destroyed; ) {
    if (die !== null && off >= die) {
      // Once what was written has left (node corks a response's first write for a tick).
      await new Promise((r) => setTimeout(r, 50));
      res.socket?.destroy();
      return;
    }
    const len = Math.min(piece, size - off, die !== null ? Math.max(1, die - off) : Infinity);
    const ok = res.write(patternSlice(off, len));
    off += len;
    if (rate > 0) await new Promise((r) => setTimeout(r, (len / rate) * 1000));
    else if (!ok) await drainOrClose(res);
  }
  res.end();
}

function record(requests: SinkRecord[], req: http.IncomingMessage): SinkRecord {
  const rec: SinkRecord = { method: req.method ?? '', url: req.url ?? '', headers: req.rawHeaders, remotePort: req.socket.remotePort ?? 0 };
  requests.push(rec);
  return rec;
}

/** `port`: listen there (e.g. to revive an origin that was stopped); default a free one. */
export async function startSinkOrigin(port = 0): Promise<SinkOrigin> {
  const requests: SinkRecord[] = [];
  const upgraded = new Set<Duplex>();

  let cacheRequests = 0;
  const holds = new Holds();
  const server = http.createServer((req, res) => {
    const rec = record(requests, req);
    const url = new URL(req.url ?? '/', 'http://sink.invalid');
    if (req.method === 'GET' && url.pathname === '/cache') {
      void cacheable(req, res, url, ++cacheRequests, rec, holds, requests);
      return;
    }
    if (req.method === 'POST' || req.method === 'PUT') {
      const hash = crypto.createHash('sha256');
      let bytes = 0;
      req.on('data', (chunk: Buffer) => {
        hash.update(chunk);
        bytes += chunk.length;
      });
      req.on('end', () => {
        const location = url.searchParams.get('location');
        if (location !== null) res.setHeader('Location', location);
        sendJson(res, 200, { method: req.method, url: req.url, bytes, sha256: hash.digest('hex'), headers: req.rawHeaders });
      });
      return;
    }
    switch (url.pathname) {
      case '/echo-headers':
        return sendJson(res, 200, { method: req.method, url: req.url, httpVersion: req.httpVersion, headers: req.rawHeaders });
      case '/chunked-stream': {
        const size = count(url, 'size');
        if (size === null) return sendJson(res, 400, { error: 'use /chunked-stream?size=N' });
        void chunkedStream(res, size);
        return;
      }
      case '/die-after': {
        const bytes = count(url, 'bytes');
        const total = count(url, 'total');
        if (bytes === null || total === null || bytes >= total) return sendJson(res, 400, { error: 'use /die-after?bytes=N&total=M with N < M' });
        return dieAfter(req.socket, bytes, total);
      }
      case '/close-delimited': {
        // An HTTP/1.0-style body: no Content-Length, no chunking, ended by closing (RFC 9112 §6.3 point 8).
        const size = count(url, 'size');
        if (size === null) return sendJson(res, 400, { error: 'use /close-delimited?size=N' });
        req.socket.end(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n'), patternBytes(size)]));
        return;
      }
      case '/hang-headers':
        return; // answered by nothing; stop() closes the connection
      default:
        return sendJson(res, 404, { error: `no route ${url.pathname}` });
    }
  });

  // Node hands every request carrying Connection: upgrade here instead of to the handler above.
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    record(requests, req);
    socket.on('error', () => socket.destroy());
    if (req.headers.upgrade?.toLowerCase() !== 'echo') {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    upgraded.add(socket);
    socket.once('close', () => upgraded.delete(socket));
    socket.write('HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
    if (head.length > 0) socket.write(head);
    socket.pipe(socket);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const bound = (server.address() as net.AddressInfo).port;

  return {
    port: bound,
    requests,
    release: (name) => holds.release(name),
    async stop() {
      holds.releaseAll();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Hanging requests and upgraded streams would otherwise hold close() open forever.
      server.closeAllConnections();
      for (const s of upgraded) s.destroy();
      await closed;
    },
  };
}

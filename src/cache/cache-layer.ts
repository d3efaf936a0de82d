/**
 * The cache as one step of the proxy's pipeline (RFC 9111): for each
 * request, lookup (a fresh stored response from disk), follow (a fill in
 * progress, collapsed), revalidate (a stale one, with its own validators),
 * fill (a storable miss goes to its client and into the store at once), or
 * purge. What it needs from the origin side is one function, `Origin`: it
 * sends the request on and hands over the answer. The store itself stays
 * behind HttpCache.
 */
import type { Logger } from '../log/logger.js';
import type { ResponseHead } from '../http/response-head.js';
import { UpstreamResponseError } from '../errors.js';
import { isLoopback } from '../config/loopback.js';
import { answerText, dropFields, sent, withCacheStatus, writeBody, type Exchange } from '../http/exchange.js';
import type { CacheOutcome } from '../metrics/traffic-stats.js';
import type { HttpCache } from './cache.js';
import type { Fill, FillHead } from './fill.js';
import type { Entry } from './store.js';
import { sendStored, type StoredBody } from './send-stored.js';
import { filterResponseHeaders } from '../http/forward-headers.js';
import {
  cacheKey,
  cacheStatus,
  currentAge,
  fieldValue,
  freshenHeaders,
  headersToStore,
  initialAge,
  invalidationKeys,
  notModifiedApplies,
  requestDirectives,
  reuse,
  storability,
  validators,
  varyNames,
  varySelection,
  type CacheStatus,
} from './policy.js';

/** An upstream's answer, as the cache gets it: the head, and a body to take one way or the other. */
export interface UpstreamAnswer {
  readonly head: ResponseHead;
  /** When the request head went upstream (ms since the epoch): the request_time of RFC 9111 §4.2.3. */
  readonly sentAt: number;
  /** The body through user space, de-chunked, each piece awaited; rejects if the upstream breaks off. */
  read(onData: (b: Buffer) => Promise<void>): Promise<void>;
  /** Head and body to the client as without a cache (splice where the kernel can); resolves with the status. */
  relay(): Promise<number>;
  /** Sends the head with `fields` (framing already chosen by the caller) and writes each piece of the body itself. */
  writeHead(fields: string[]): void;
}

/** How the request is sent on. */
export interface Forward {
  /** Request fields to send instead of the client's (revalidation swaps the conditionals). */
  rawHeaders?: string[];
  /** Sees the final response head before it is answered (invalidation by unsafe methods). */
  onHead?: (head: ResponseHead) => void;
  /** Answers the client from the upstream's answer; default: relay it. */
  answer?: (a: UpstreamAnswer) => Promise<number>;
}

/** Sends the exchange's request on as `fwd` says; resolves with the status the client got. */
export type Origin = (fwd?: Forward) => Promise<number>;

/** The client's conditionals and Range: replaced by the cache's own validators when it revalidates. */
const VALIDATION_FIELDS = new Set(['if-none-match', 'if-modified-since', 'range', 'if-range']);

export class CacheLayer {
  constructor(
    private readonly cache: HttpCache,
    private readonly log: Logger,
  ) {}

  /** GET and HEAD through the cache; PURGE; everything else forwarded, invalidating what it changes. */
  async handle(x: Exchange, origin: Origin): Promise<number> {
    const { req } = x;
    const c = this.cache;
    const method = req.method ?? 'GET';
    const raw = x.fields;
    const key = cacheKey(fieldValue(x.fields, 'host'), req.url ?? '/');
    if (method === 'PURGE') return this.purge(x, key);
    // RFC 9213: the targeted fields are this cache's; whatever the answer, they do not go on to the client.
    x.cacheConsumed = c.consumed;
    if (method !== 'GET' && method !== 'HEAD') {
      x.cache = 'bypass';
      x.cacheStatus = cacheStatus({ fwd: 'method' });
      // §4.4: invalidated when the answer arrives, before its body (a GET meanwhile must not get the old one).
      return origin({ onHead: (h) => { for (const k of invalidationKeys(method, h.status, key, h.headers)) c.invalidate(k); } });
    }
    // §4.3.2: If-Match and If-Unmodified-Since are for the origin server to evaluate.
    if (has(raw, 'if-match') || has(raw, 'if-unmodified-since')) {
      x.cache = 'bypass';
      note(x, 'precondition');
      x.cacheStatus = cacheStatus({ fwd: 'request', detail: x.cacheDetail! });
      return origin();
    }
    const directives = requestDirectives(raw);
    const authorized = has(raw, 'authorization');
    const { entry, uriHit, refusedAuthorization } = c.select(key, raw, authorized);
    // §3.5: a stored variant matched, but may not answer a request with Authorization.
    if (refusedAuthorization && entry === null) note(x, 'authorization');
    let fwd: CacheStatus['fwd'] = uriHit ? 'vary-miss' : 'uri-miss';
    if (entry !== null) {
      const r = reuse(entry, directives, Date.now(), c.targets);
      if (r.use === 'fresh') {
        const status = await this.fromStore(x, entry, { hit: true, ttl: r.ttl }, 'hit');
        if (status !== null) return status;
        fwd = 'miss';
        note(x, 'evicted');
      } else {
        fwd = r.stale ? 'stale' : 'request';
        // fwd=stale already says "stale"; every other refusal is named.
        if (r.why !== 'stale') note(x, r.why);
        if (!directives.onlyIfCached && method === 'GET' && hasValidator(entry)) return this.revalidate(x, origin, key, entry, fwd);
      }
    }
    // §5.2.1.7
    if (directives.onlyIfCached) {
      note(x, 'only-if-cached');
      x.cacheStatus = cacheStatus({ detail: x.cacheDetail! });
      return answerText(x, 504, 'Gateway Timeout: only-if-cached, and no stored response may be used\n');
    }
    // A no-cache request wants the origin's answer to its own request, not one already under way.
    if (!directives.noCache) {
      const followed = await c.follow(key, raw, authorized, directives);
      if (followed.fill !== null) return this.followFill(x, followed.fill, followed.head, fwd);
      if (followed.refused !== null) note(x, followed.refused);
    }
    // Fetched for the cache only as a plain GET: HEAD has no body to store, a range or a
    // conditional would not bring the whole response, no-store forbids it (§5.2.1.5).
    const notFetchedToStore = forwardedAsIs(method, raw, directives.noStore);
    if (notFetchedToStore !== null) {
      x.cache = 'miss';
      note(x, notFetchedToStore);
      x.cacheStatus = cacheStatus({ fwd, detail: x.cacheDetail! });
      return origin();
    }
    const fill = c.beginFill(key, raw);
    try {
      return await origin({ answer: (a) => this.storeAndRespond(x, fill, key, fwd, a) });
    } finally {
      // The upstream failed before a head: followers waiting for it go to the origin themselves.
      await c.endFill(fill);
    }
  }

  /** A stored response from disk; null when its file is gone (evicted since it was selected). */
  private async fromStore(x: Exchange, entry: Entry, status: CacheStatus, outcome: CacheOutcome): Promise<number | null> {
    const fh = await this.cache.openBody(entry);
    if (fh === null) return null;
    x.cache = outcome;
    if (x.cacheDetail !== null) status.detail = x.cacheDetail;
    const src: StoredBody = {
      status: entry.status, reason: entry.reason, headers: entry.headers, fd: fh.fd,
      age: currentAge(entry.initialAge, entry.responseTime, Date.now()),
      length: () => entry.length, available: () => entry.length, complete: () => true, progress: () => Promise.resolve(),
    };
    try {
      return (await sendStored(x, src, cacheStatus(status), (path, n) => sent(x, path, n))).status;
    } finally {
      // sendFile has settled: no sendfile(2) on the thread pool still reads this descriptor.
      await fh.close().catch(() => undefined);
    }
  }

  /** Another request is fetching this response: send it from the file as it is written (collapsed, RFC 9211 §2.6). */
  private async followFill(x: Exchange, fill: Fill, head: FillHead, fwd: CacheStatus['fwd']): Promise<number> {
    x.cache = 'collapsed';
    const src: StoredBody = {
      status: head.status, reason: head.reason, headers: head.headers, fd: fill.file!.fd,
      age: currentAge(head.initialAge, head.responseTime, Date.now()),
      length: () => fill.length, available: () => fill.written, complete: () => fill.complete, progress: () => fill.progress(),
    };
    try {
      return (await sendStored(x, src, cacheStatus({ fwd, collapsed: true, detail: x.cacheDetail ?? undefined }), (path, n) => sent(x, path, n))).status;
    } finally {
      fill.release();
    }
  }

  /**
   * §4.3.1: a stale (or no-cache) stored response is validated with its own
   * validators instead of the client's; a 304 freshens it (§4.3.4) and the
   * client is answered from it, its own conditionals and Range included. A
   * full response replaces it.
   */
  private revalidate(x: Exchange, origin: Origin, key: string, entry: Entry, fwd: CacheStatus['fwd']): Promise<number> {
    const v = validators(entry.headers);
    const raw = [...x.fields];
    dropFields(raw, VALIDATION_FIELDS);
    if (v.etag !== null) raw.push('If-None-Match', v.etag);
    if (v.lastModified !== null) raw.push('If-Modified-Since', v.lastModified);
    return origin({
      rawHeaders: raw,
      answer: async (a) => {
        const { head } = a;
        if (head.status !== 304) return this.storeAndRespond(x, null, key, fwd, a);
        if (!notModifiedApplies(entry.headers, head.headers)) {
          this.cache.invalidate(key);
          throw new UpstreamResponseError(`304 Not Modified for a validator Aludel did not send (ETag ${fieldValue(head.headers, 'etag') ?? 'none'})`, 'check the upstream ETag / Last-Modified logic; the stored response was dropped');
        }
        // A 304 has no body (RFC 9110 §15.4.5): this only settles whether the connection is clean.
        await a.read(() => Promise.resolve());
        const now = Date.now();
        await this.cache.freshen(entry, { headers: freshenHeaders(entry.headers, head.headers, now, this.cache.targets), requestTime: a.sentAt, responseTime: now, initialAge: initialAge(head.headers, a.sentAt, now) });
        const ttl = entry.lifetime - currentAge(entry.initialAge, entry.responseTime, now);
        const status = await this.fromStore(x, entry, { fwd, fwdStatus: 304, ttl }, 'revalidated');
        if (status === null) throw Object.assign(new Error('the revalidated response was evicted before it could be sent'), { code: 'ERR_CACHE_EVICTED' });
        return status;
      },
    });
  }

  /**
   * A response from upstream for a plain GET: when storable (policy.storability),
   * it goes to the client (copied) and into the store at once, while followers
   * read it from the file; a disk error only stops the storing. Otherwise it
   * is relayed as without a cache (splice included).
   */
  private async storeAndRespond(x: Exchange, pending: Fill | null, key: string, fwd: CacheStatus['fwd'], a: UpstreamAnswer): Promise<number> {
    const { req } = x;
    const c = this.cache;
    const { head } = a;
    x.cache = fwd === 'stale' || fwd === 'request' ? 'stale' : 'miss';
    const fwdStatus = x.cache === 'stale' ? head.status : undefined;
    const f = head.framing;
    const responseTime = Date.now();
    const verdict = storability({
      method: req.method ?? 'GET', requestHeaders: x.fields, status: head.status, responseHeaders: head.headers, framing: f.kind, responseTime, cacheCookies: c.cookies, targets: c.targets,
    });
    const length = f.kind === 'length' ? f.length : f.kind === 'none' ? 0 : null;
    const why = !verdict.store ? verdict.reason : length !== null && length > c.maxBytes ? 'too-large' : null;
    const file = why === null ? await c.createBody() : null;
    if (file === null) {
      if (pending) await c.endFill(pending);
      note(x, why ?? 'disk-error');
      x.cacheStatus = cacheStatus({ fwd, fwdStatus, detail: x.cacheDetail! });
      return a.relay();
    }
    const fill = pending ?? c.beginFill(key, x.fields);
    const names = varyNames(head.headers) as string[];
    fill.start({
      key, vary: names.length > 0 ? varySelection(names, x.fields) : null,
      status: head.status, reason: head.reason, headers: headersToStore(head.headers, responseTime, c.targets),
      requestTime: a.sentAt, responseTime, initialAge: initialAge(head.headers, a.sentAt, responseTime),
    }, length, file);
    x.cacheStatus = cacheStatus({ fwd, fwdStatus, stored: true, detail: x.cacheDetail ?? undefined });
    a.writeHead(withCacheStatus(x, filterResponseHeaders(head.headers, { keepFraming: f.kind === 'length' })));
    x.bodyPath = length === 0 ? 'none' : 'write';
    // The client may leave: the fill goes on for the followers and the store.
    const client = new ClientCopy(x);
    const toFile = (b: Buffer): Promise<void> => this.append(x, fill, b);
    try {
      await a.read((b) => Promise.all([toFile(b), client.write(b)]).then(() => undefined));
      fill.finish();
    } catch (err) {
      fill.fail(err as Error);
      await c.endFill(fill);
      throw err;
    }
    if (client.gone === null) x.res.end();
    // Committed before the request is logged: once its line is written, the next request finds the entry.
    await c.endFill(fill);
    // Not committed after all (Cache-Status already said `stored`): the log line says why.
    if (fill.notCommitted !== null) note(x, fill.notCommitted);
    if (client.gone !== null) throw client.gone;
    return head.status;
  }

  /**
   * One piece of a fill to its file; past the cache's size or on a disk error, storing stops (clients
   * are not disturbed, and only the log line can still say why: the head said `stored`).
   */
  private async append(x: Exchange, fill: Fill, b: Buffer): Promise<void> {
    if (fill.failed) return;
    try {
      await fill.append(b);
      if (fill.written > this.cache.maxBytes) throw Object.assign(new Error(`response over the cache size (${this.cache.maxBytes} bytes)`), { code: 'ERR_CACHE_TOO_LARGE' });
    } catch (err) {
      fill.fail(err as Error);
      const tooLarge = (err as { code?: string }).code === 'ERR_CACHE_TOO_LARGE';
      note(x, tooLarge ? 'too-large' : 'disk-error');
      if (!tooLarge) this.cache.diskError(err, 'could not write a response body');
    }
  }

  /** PURGE (as Varnish and nginx cache_purge users know it), from loopback clients only: every variant of the URL. */
  private purge(x: Exchange, key: string): number {
    if (!isLoopback(x.conn.remoteAddress)) return answerText(x, 403, 'Forbidden: PURGE is accepted from loopback clients only\n');
    const n = this.cache.invalidate(key);
    this.log.info({ conn: x.conn.id, key, purged: n }, 'cache purge');
    const body = `${JSON.stringify({ key, purged: n })}\n`;
    const status = n > 0 ? 200 : 404;
    x.res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body);
    return status;
  }
}

/** The client's copy of a body being stored: once the client is gone, the rest is dropped and the error kept. */
class ClientCopy {
  gone: unknown = null;

  constructor(private readonly x: Exchange) {}

  async write(b: Buffer): Promise<void> {
    if (this.gone !== null) return;
    try {
      await writeBody(this.x, b);
      this.x.bytes += b.length;
    } catch (err) {
      this.gone = err;
    }
  }
}

function has(headers: readonly string[], lower: string): boolean {
  return fieldValue(headers, lower) !== undefined;
}

/**
 * Why a GET or HEAD is forwarded as it is, not fetched to be stored, or null:
 * HEAD has no body to store, a range or a conditional would not bring the
 * whole response (§3.3), a request no-store forbids storing (§5.2.1.5).
 */
function forwardedAsIs(method: string, raw: readonly string[], noStore: boolean): 'head' | 'no-store' | 'range' | 'conditional' | null {
  if (method === 'HEAD') return 'head';
  if (noStore) return 'no-store';
  if (has(raw, 'range') || has(raw, 'if-range')) return 'range';
  if (has(raw, 'if-none-match') || has(raw, 'if-modified-since')) return 'conditional';
  return null;
}

/**
 * Adds a reason to the exchange's Cache-Status `detail` (RFC 9211 §2.8:
 * implementation-specific, an sf-token here) and to its log line. Reasons
 * are short lowercase tokens (docs/cache.md lists them); several are joined
 * with "+", which keeps the whole an sf-token.
 */
function note(x: Exchange, reason: string): void {
  const d = x.cacheDetail;
  if (d === null) x.cacheDetail = reason;
  else if (!d.split('+').includes(reason)) x.cacheDetail = `${d}+${reason}`;
}

function hasValidator(e: Entry): boolean {
  const v = validators(e.headers);
  return v.etag !== null || v.lastModified !== null;
}

/**
 * The cache as one step of the proxy's pipeline (RFC 9111): for each
 * request, lookup (a fresh stored response from disk), follow (a fill in
 * progress, collapsed), revalidate (a stale one, with its own validators),
 * fill (a storable miss goes to its client and into the store at once), or
 * purge; and serving stale (RFC 5861, rules in stale.ts): at once while a
 * background revalidation runs, or instead of an upstream error; and
 * partial content (§3.3, §3.4, rules in partial.ts): a 206 to a Range
 * request stored as a part, Range requests it covers answered from it. What it
 * needs from the origin side is one function, `Origin`: it sends the
 * request on and hands over the answer. The store itself stays behind
 * HttpCache.
 */
import type { Logger } from '../log/logger.js';
import type { ResponseHead } from '../http/response-head.js';
import { PurgeIncompleteError, UpstreamResponseError } from '../errors.js';
import { isLoopback } from '../config/loopback.js';
import { isClientFault } from '../http/failures.js';
import { answerText, dropFields, withCacheStatus, writeBody, type Exchange } from '../http/exchange.js';
import { isFieldName } from '../text/field-names.js';
import type { CacheOutcome } from '../metrics/traffic-stats.js';
import type { HttpCache } from './cache.js';
import type { Fill, FillHead, FillReader } from './fill.js';
import { isPartial, type Entry, type StoredResponse } from './store.js';
import { partStorability, rangeFromParts, type ByteRanges } from './partial.js';
import { sendStored, type SentStored, type StoredBody } from './send-stored.js';
import { EntryBody, PartialEntryBody } from './entry-body.js';
import type { BodyLease } from './open-bodies.js';
import { filterResponseHeaders } from '../http/forward-headers.js';
import { sendWholeAfterFin, waitsOnUpstream } from '../http/h1-lane.js';
import { queuedTurn } from '../http/front.js';
import {
  answeredHeaders,
  cacheStatus,
  currentAge,
  fieldValue,
  freshenHeaders,
  headersToStore,
  initialAge,
  invalidationKeys,
  notKeptAfterUpdate,
  notModifiedApplies,
  requestDirectivesOf,
  reuse,
  storability,
  validators,
  varyNames,
  varySelection,
  type CacheStatus,
  type RequestDirectives,
  type Reuse,
} from './policy.js';
import { requestKey } from './request-key.js';
import { isErrorStatus, requestStaleIfError, staleIfError, staleWhileRevalidate } from './stale.js';

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
  /**
   * The cache's own request, which no client waits for (a background
   * revalidation, RFC 5861 §3): sent on an exchange of its own, without a
   * body, leaving the client's connection, timers and response alone.
   */
  detached?: boolean;
}

/** Sends the exchange's request on as `fwd` says; resolves with the status the client got. */
export type Origin = (fwd?: Forward) => Promise<number>;

/** The client's conditionals and Range: replaced by the cache's own validators when it revalidates. */
const VALIDATION_FIELDS = new Set(['if-none-match', 'if-modified-since', 'range', 'if-range']);

/** A stored response as a 304 made it for the request it validated (freshenFrom), and why it is not kept, or null when it is. */
interface Revalidated extends Pick<StoredResponse, 'headers' | 'initialAge' | 'responseTime'> {
  why: string | null;
}

/** What handle found for a GET or HEAD, for the steps after the lookup (afterLookup, upstream). */
interface Lookup {
  key: string;
  directives: RequestDirectives;
  authorized: boolean;
  /** Why it goes upstream, as Cache-Status says it (RFC 9211 §2.2), once it does. */
  fwd: CacheStatus['fwd'];
  stale: StaleFallback | null;
}

/** reuse's verdict on a complete entry that may not answer as it is. */
type Refused = Extract<Reuse, { use: 'validate' }>;

/** A stale stored response that may answer instead of an upstream error (RFC 5861 §4), if stale.ts allows it when the error comes. */
interface StaleFallback {
  entry: Entry;
  key: string;
  directives: RequestDirectives;
  /** The request's own stale-if-error window, seconds, or null. */
  requestWindow: number | null;
  fwd: CacheStatus['fwd'];
}

export class CacheLayer {
  constructor(
    private readonly cache: HttpCache,
    private readonly log: Logger,
  ) {}

  /**
   * GET and HEAD through the cache; PURGE; everything else forwarded, invalidating what it changes.
   * `waited`: a second pass, after another worker's fill of the key ended (claimFill).
   * The status the client got, or a promise of it: a plain number for a fresh hit whose
   * body went with its head at once (fromStore), which the caller logs in this turn.
   * Whatever fails is a rejection, never a throw, as when this was an async function.
   */
  handle(x: Exchange, origin: Origin, waited = false): number | Promise<number> {
    try {
      return this.lookup(x, origin, waited);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * handle's synchronous part: a fresh stored response answered from here,
   * without a promise when its body went at once (each async function and
   * await between this and send-stored.ts was a promise and a microtask turn
   * per hit, about 3.7k instructions per 1 KiB hit, bench/request-cost.ts);
   * everything else goes on in afterLookup, still in this turn.
   */
  private lookup(x: Exchange, origin: Origin, waited: boolean): number | Promise<number> {
    const { req } = x;
    const c = this.cache;
    const method = req.method ?? 'GET';
    const raw = x.fields;
    const facts = requestFacts(raw);
    const key = requestKey(facts.host, req.url ?? '/');
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
    if (facts.precondition) {
      x.cache = 'bypass';
      note(x, 'precondition');
      x.cacheStatus = cacheStatus({ fwd: 'request', detail: x.cacheDetail! });
      return origin();
    }
    const directives = requestDirectivesOf(facts.cacheControl);
    const selected = c.select(key, raw, facts.authorized);
    // §3.5: a stored variant matched, but may not answer a request with Authorization.
    if (selected.refusedAuthorization && selected.entry === null) note(x, 'authorization');
    const q: Lookup = { key, directives, authorized: facts.authorized, fwd: selected.uriHit ? 'vary-miss' : 'uri-miss', stale: null };
    const entry = selected.entry;
    // §3.3: a partial entry answers only a covered Range (fromParts); it is never revalidated, nor
    // served stale, nor sent whole: every other request goes upstream (RFC 9211 §2.2 fwd=partial).
    if (entry === null || isPartial(entry)) return this.afterLookup(x, origin, waited, q, entry, null, 0);
    const now = Date.now();
    const r = reuse(entry, directives, now, c.targets);
    if (r.use !== 'fresh') return this.afterLookup(x, origin, waited, q, entry, r, now);
    const status = this.fromStore(x, entry, { hit: true, ttl: r.ttl }, 'hit', null, now);
    if (status !== null) return status;
    q.fwd = 'miss';
    note(x, 'evicted');
    return this.upstream(x, origin, waited, q);
  }

  /**
   * handle for a request no fresh complete entry answers: a covered Range
   * from a partial one, a stale one sent while it is revalidated or
   * revalidated first, else upstream. `r`: reuse's verdict on a complete
   * `entry`, at `now`.
   */
  private async afterLookup(x: Exchange, origin: Origin, waited: boolean, q: Lookup, found: Entry | null, r: Refused | null, now: number): Promise<number> {
    const c = this.cache;
    const method = x.req.method ?? 'GET';
    const { directives } = q;
    let entry = found;
    if (entry !== null && isPartial(entry)) {
      const status = method === 'GET' ? await this.fromParts(x, entry, directives) : null;
      if (status !== null) return status;
      q.fwd = 'partial';
      entry = null;
    }
    if (entry !== null && r !== null) {
      // RFC 5861 §3: sent at once, revalidated in the background (a GET: its answer is what gets stored).
      if (r.stale && method === 'GET' && staleWhileRevalidate(entry, directives, now, c.targets)) {
        const status = await this.serveWhileRevalidating(x, origin, q.key, entry, r.ttl);
        if (status !== null) return status;
        q.fwd = 'miss';
        note(x, 'evicted');
      } else {
        q.fwd = r.stale ? 'stale' : 'request';
        // fwd=stale already says "stale"; every other refusal is named.
        if (r.why !== 'stale') note(x, r.why);
        if (r.stale) q.stale = { entry, key: q.key, directives, requestWindow: requestStaleIfError(x.fields), fwd: q.fwd };
        if (!directives.onlyIfCached && method === 'GET' && hasValidator(entry)) {
          // Upstream: a FIN gives it up, as below. A second pass (another worker's fill ended) comes here marked.
          waitsOnUpstream(x.res);
          return this.revalidate(x, origin, q.key, entry, q.fwd, q.stale);
        }
      }
    }
    return this.upstream(x, origin, waited, q);
  }

  /** handle for a request no stored response answers: only-if-cached's 504, a fill to follow, or upstream (filling the store when it may). */
  private async upstream(x: Exchange, origin: Origin, waited: boolean, q: Lookup): Promise<number> {
    const c = this.cache;
    const method = x.req.method ?? 'GET';
    const raw = x.fields;
    const { key, directives, authorized, fwd, stale } = q;
    // §5.2.1.7
    if (directives.onlyIfCached) {
      note(x, 'only-if-cached');
      x.cacheStatus = cacheStatus({ detail: x.cacheDetail! });
      return answerText(x, 504, 'Gateway Timeout: only-if-cached, and no stored response may be used\n');
    }
    // A no-cache request wants the origin's answer to its own request, not one already under way.
    if (!directives.noCache) {
      // A follower is sent whole past its client's FIN (followFill), and so is one still waiting
      // for a fill: here for a fill's head, or in claimFill for another worker's fill to end. It
      // holds no upstream connection of its own. Marked in the turn the request was read, before
      // its FIN can be seen; taken back (waitsOnUpstream) only once it goes upstream itself.
      sendWholeAfterFin(x.res);
      const followed = await c.follow(key, raw, authorized, directives);
      if (followed.fill !== null) return this.followFill(x, followed.fill, followed.head, followed.reader, fwd);
      if (followed.refused !== null) note(x, followed.refused);
    }
    // §3.3: a GET with Range is sent on as it is, and a 206 it brings is stored as a part (a 200: whole, storeWhole).
    const part = method === 'GET' && !directives.noStore && wantsPart(raw);
    // Fetched for the cache only as a plain GET: HEAD has no body to store, a range or a
    // conditional would not bring the whole response, no-store forbids it (§5.2.1.5).
    const notFetchedToStore = part ? null : forwardedAsIs(method, raw, directives.noStore);
    // One fill per key across the workers: while another one fills it, wait and look again (its
    // entry, if stored, is then a hit, sent whole: fromStore marks it again).
    // It goes upstream from here: in its turn, before it may become a fill others follow
    // (front.ts queuedTurn), or a client that reads nothing would hold them all.
    const turn = queuedTurn(x.res);
    if (turn !== null) await turn;
    const fill = part || notFetchedToStore !== null ? null : await c.claimFill(key, raw, !waited && !directives.noCache);
    if (fill === 'waited') return this.handle(x, origin, true);
    // This request goes to the upstream itself (as a revalidation above does): a FIN from its
    // client, read now or meanwhile, gives it up (499, abortOnFin), so no upstream connection is
    // held for a client that left. nginx 1.18 gives up such a request when it goes upstream at
    // once, but not one that waited on proxy_cache_lock first: ngx_http_upstream_init_request
    // installs its broken-connection check then, and it runs only on a read event that comes
    // after, where the FIN's came during the wait (docs/proxy.md).
    waitsOnUpstream(x.res);
    if (part) return this.orStale(x, origin, { answer: (a) => this.storePart(x, key, fwd, a) }, stale);
    if (fill === null) {
      x.cache = 'miss';
      note(x, notFetchedToStore!);
      x.cacheStatus = cacheStatus({ fwd, detail: x.cacheDetail! });
      return this.orStale(x, origin, {}, stale);
    }
    try {
      return await this.orStale(x, origin, { answer: (a) => this.storeAndRespond(x, fill, key, fwd, a) }, stale);
    } finally {
      // The upstream failed before a head: followers waiting for it go to the origin themselves.
      await c.endFill(fill);
    }
  }

  /**
   * A stored response from disk; null when its file is gone (evicted since it
   * was selected). With `update` (freshenFrom), the body is sent with the
   * fields and times of the 304's response to this request; when that
   * update may not be kept, the entry goes from the store once this request
   * holds its descriptor. `now`: the clock the Age is computed at (§4.2.3),
   * lookup's own reading for a fresh hit (a second Date.now() in the same
   * turn, a call into V8's runtime, was 0.2k instructions of a 1 KiB hit).
   */
  private fromStore(x: Exchange, entry: Entry, status: CacheStatus, outcome: CacheOutcome, update: Revalidated | null = null, now = Date.now()): number | null | Promise<number> {
    const lease = this.cache.openBody(entry);
    if (lease === null) return null;
    if (update !== null && update.why !== null) this.cache.drop(entry);
    const fd = lease.fd;
    const view = update ?? entry;
    x.cache = outcome;
    // From here nothing waits on an upstream: a client that half-closes now gets it whole
    // (h1-lane.ts sendWholeAfterFin). Marked in the turn the request was read for a hit (select,
    // openBody are synchronous), so before its FIN can be seen.
    sendWholeAfterFin(x.res);
    if (x.cacheDetail !== null) status.detail = x.cacheDetail;
    const age = currentAge(view.initialAge, view.responseTime, now);
    // A partial entry: sendStored checks the range it sends is all there (fromParts chose one that is).
    const src = isPartial(entry)
      ? new PartialEntryBody(entry, entry.status, entry.reason, view.headers, fd, age)
      : new EntryBody(entry, entry.status, entry.reason, view.headers, fd, age);
    let out: SentStored | Promise<SentStored>;
    try {
      out = sendStored(x, src, cacheStatus(status));
    } catch (err) {
      this.bodyFailed(entry, lease, err);
      throw err;
    }
    // Sent at once (a small body read with its head, send-stored.ts): nothing reads the descriptor
    // any more, and the status goes back in this turn, without a promise (handle).
    if (!(out instanceof Promise)) {
      this.cache.closeBody(entry, lease);
      return out.status;
    }
    return out.then(
      (done) => {
        // sendFile has settled: no sendfile(2) on the thread pool still reads this descriptor.
        this.cache.closeBody(entry, lease);
        return done.status;
      },
      (err: unknown) => {
        this.bodyFailed(entry, lease, err);
        throw err;
      },
    );
  }

  /** fromStore's body failed to go out: its descriptor given back, after the store heard of a file that ended early. */
  private bodyFailed(entry: Entry, lease: BodyLease, err: unknown): void {
    // The file ended before its committed length: changed since it was opened (cache.brokenBody).
    if ((err as { code?: string }).code === 'ERR_FILE_TRUNCATED') this.cache.brokenBody(entry, err);
    this.cache.closeBody(entry, lease);
  }

  /**
   * A GET with Range from a stored partial entry (§3.3, partial.rangeFromParts):
   * a 206 of stored bytes when the entry is fresh and holds the whole range;
   * null (and why, in the detail) when the request must go upstream or the
   * entry's file was evicted meanwhile. The
   * entry's file never changes once committed, so every byte sent is one a
   * complete 206 brought.
   */
  private async fromParts(x: Exchange, entry: Entry & { ranges: ByteRanges }, directives: RequestDirectives): Promise<number | null> {
    const raw = x.fields;
    if (has(raw, 'if-none-match') || has(raw, 'if-modified-since')) return null;
    const r = reuse(entry, directives, Date.now(), this.cache.targets);
    if (r.use !== 'fresh') {
      note(x, r.why);
      return null;
    }
    const range = rangeFromParts(entry, fieldValue(raw, 'range'), fieldValue(raw, 'if-range'));
    if (typeof range === 'string') {
      if (range === 'if-range') note(x, 'if-range');
      return null;
    }
    note(x, 'partial');
    const status = await this.fromStore(x, entry, { hit: true, ttl: r.ttl }, 'hit');
    if (status === null) note(x, 'evicted');
    return status;
  }

  /**
   * Another request is fetching this response: send it from the file as it is
   * written (collapsed, RFC 9211 §2.6); if storing it stops meanwhile, the rest
   * from the fill's memory (fill.ts). Never `stored`: this request stored nothing.
   */
  private async followFill(x: Exchange, fill: Fill, head: FillHead, reader: FillReader, fwd: CacheStatus['fwd']): Promise<number> {
    x.cache = 'collapsed';
    // The fill goes on for the store whether this client stays or not, and this request holds no
    // upstream connection a FIN should free: it is sent whole (h1-lane.ts sendWholeAfterFin), as a
    // hit is. nginx's request waiting on proxy_cache_lock has no check for a client that left
    // either (ngx_http_upstream_cache returns NGX_BUSY before ngx_http_upstream_init_request installs
    // it). Marked already while c.follow() waited for the fill's head (handle); the mark stays.
    sendWholeAfterFin(x.res);
    try {
      return (await sendStored(x, fillBody(fill, head, reader), cacheStatus({ fwd, collapsed: true, detail: x.cacheDetail ?? undefined }))).status;
    } finally {
      fill.release(reader);
    }
  }

  /**
   * §4.3.1: a stale (or no-cache) stored response is validated with its own
   * validators instead of the client's; a 304 freshens it (§4.3.4) and the
   * client is answered from it, its own conditionals and Range included. A
   * full response replaces it. When the upstream fails, `stale` may answer
   * instead (orStale, RFC 5861 §4).
   */
  private revalidate(x: Exchange, origin: Origin, key: string, entry: Entry, fwd: CacheStatus['fwd'], stale: StaleFallback | null): Promise<number> {
    return this.orStale(x, origin, {
      rawHeaders: validationFields(x.fields, entry),
      answer: async (a) => {
        if (a.head.status !== 304) return this.storeAndRespond(x, null, key, fwd, a);
        const update = await this.freshenFrom(entry, key, a);
        if (update.why !== null) note(x, update.why);
        const ttl = update.why === null ? entry.lifetime - currentAge(entry.initialAge, entry.responseTime, Date.now()) : undefined;
        const status = await this.fromStore(x, entry, { fwd, fwdStatus: 304, ttl }, 'revalidated', update);
        if (status === null) throw Object.assign(new Error('the revalidated response was evicted before it could be sent'), { code: 'ERR_CACHE_EVICTED' });
        return status;
      },
    }, stale);
  }

  /**
   * §4.3.4: a 304 for the stored response's own validator freshens it (new
   * fields and times); one for a validator Aludel did not send drops it and
   * is the upstream's error. Returns the response for the client whose
   * request brought the 304: every field of the 304 (a Set-Cookie too),
   * whatever is kept in the store (policy.freshenHeaders). A 304 whose
   * fields make the response one that may not be stored
   * (policy.notKeptAfterUpdate: Set-Cookie, private, no-store, Vary: *)
   * leaves the stored response as it was, and `why` says the caller drops it
   * (fromStore).
   */
  private async freshenFrom(entry: Entry, key: string, a: UpstreamAnswer): Promise<Revalidated> {
    const { head } = a;
    if (!notModifiedApplies(entry.headers, head.headers)) {
      this.cache.invalidate(key);
      throw new UpstreamResponseError(`304 Not Modified for a validator Aludel did not send (ETag ${fieldValue(head.headers, 'etag') ?? 'none'})`, 'check the upstream ETag / Last-Modified logic; the stored response was dropped');
    }
    // A 304 has no body (RFC 9110 §15.4.5): this only settles whether the connection is clean.
    await a.read(() => Promise.resolve());
    const now = Date.now();
    const next = { headers: freshenHeaders(entry.headers, head.headers, now, this.cache.targets), requestTime: a.sentAt, responseTime: now, initialAge: initialAge(head.headers, a.sentAt, now) };
    const answered = { headers: answeredHeaders(entry.headers, head.headers, now), responseTime: now, initialAge: next.initialAge };
    const why = notKeptAfterUpdate(entry.status, next.headers, now, this.cache.cookies, this.cache.targets);
    if (why !== null) {
      this.log.debug({ key, why }, 'cache: a 304 made the stored response one that may not be stored (RFC 9111 §3, §4.3.4); it is dropped');
      return { ...answered, why };
    }
    await this.cache.freshen(entry, next);
    return { ...answered, why: null };
  }

  /**
   * Sends the request on as `fwd` says; when a stale stored response may
   * stand in for an error (RFC 5861 §4: no answer at all, or 500, 502, 503,
   * 504, before anything was sent to the client), the client gets it
   * instead. The 5xx's body is not read: its upstream connection is closed.
   */
  private async orStale(x: Exchange, origin: Origin, fwd: Forward, stale: StaleFallback | null): Promise<number> {
    if (stale === null) return origin(fwd);
    const answer = fwd.answer ?? ((a: UpstreamAnswer) => a.relay());
    try {
      return await origin({
        ...fwd,
        answer: async (a) => (isErrorStatus(a.head.status) ? await this.serveStaleOnError(x, stale, a.head.status, null) : null) ?? answer(a),
      });
    } catch (err) {
      if (x.res.headersSent || isClientFault(err)) throw err;
      const status = await this.serveStaleOnError(x, stale, undefined, err);
      if (status === null) throw err;
      return status;
    }
  }

  /** RFC 5861 §4: the stale response instead of the upstream's error, when stale.ts allows it now; null when not. */
  private async serveStaleOnError(x: Exchange, stale: StaleFallback, fwdStatus: number | undefined, err: unknown): Promise<number | null> {
    const { entry } = stale;
    const now = Date.now();
    // Not when the entry went meanwhile (a 304 for another validator dropped it, a purge, an eviction).
    if (!this.cache.holds(entry) || !staleIfError(entry, stale.directives, { request: stale.requestWindow, fallback: this.cache.staleIfError }, now, this.cache.targets)) return null;
    const ttl = entry.lifetime - currentAge(entry.initialAge, entry.responseTime, now);
    const failure = err === null ? { status: fwdStatus } : { error: (err as { code?: string }).code ?? 'ERR_UNKNOWN', detail: (err as Error).message };
    this.log.warn({ conn: x.conn.id, key: stale.key, ...failure, ttl }, 'cache: the upstream failed; the stale stored response is sent instead (stale-if-error, RFC 5861 §4)');
    return this.fromStore(x, entry, { fwd: stale.fwd, fwdStatus, ttl, detail: 'stale-if-error' }, 'stale-if-error');
  }

  /**
   * RFC 5861 §3: the stale response goes out at once (a hit: this request is
   * not forwarded, RFC 9211 §2.1), and one background revalidation per
   * stored response brings a new one: requests arriving while it runs, in
   * this worker or another (--workers N), are answered stale too, without
   * another.
   */
  private serveWhileRevalidating(x: Exchange, origin: Origin, key: string, entry: Entry, ttl: number): number | null | Promise<number> {
    if (this.cache.beginRefresh(entry)) void this.refresh(x.fields, origin, key, entry);
    return this.fromStore(x, entry, { hit: true, ttl, detail: 'stale-while-revalidate' }, 'stale-while-revalidate');
  }

  /**
   * The background revalidation, once this worker has the key's lock (no
   * other worker revalidates it meanwhile, HttpCache.lockRefresh): the
   * stored validators, as revalidate() sends them. A 304 freshens the
   * stored response, a full response replaces it (when storable); an error
   * (no answer, 500, 502, 503, 504) leaves it as it is and is logged. Never
   * rejects.
   */
  private async refresh(fields: string[], origin: Origin, key: string, entry: Entry): Promise<void> {
    if (!(await this.cache.lockRefresh(entry))) return;
    this.log.debug({ key }, 'cache: background revalidation started (stale-while-revalidate)');
    try {
      const status = await origin({
        detached: true,
        rawHeaders: validationFields(fields, entry),
        answer: async (a) => {
          const s = a.head.status;
          if (isErrorStatus(s)) throw Object.assign(new Error(`the upstream answered ${s}`), { code: 'ERR_UPSTREAM_STATUS' });
          if (s === 304) {
            if ((await this.freshenFrom(entry, key, a)).why !== null) this.cache.drop(entry);
          } else await this.storeDetached(fields, key, a);
          return s;
        },
      });
      this.log.debug({ key, status }, 'cache: background revalidation done (stale-while-revalidate)');
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'ERR_UNKNOWN';
      this.log.warn({ key, error: code, detail: (err as Error).message }, 'cache: background revalidation failed (stale-while-revalidate, RFC 5861 §3); the stored response stays as it was');
    } finally {
      this.cache.endRefresh(entry);
    }
  }

  /** A full response to a background revalidation: into the store when storable (the fill machinery, no client). */
  private async storeDetached(fields: string[], key: string, a: UpstreamAnswer): Promise<void> {
    const opened = await this.openFill('GET', fields, null, key, a);
    if ('why' in opened) {
      this.log.debug({ key, status: a.head.status, why: opened.why }, 'cache: the background revalidation brought a response that is not stored');
      return;
    }
    await this.fillFrom(null, opened.fill, a);
  }

  /**
   * The upstream's body into a started fill, read at the upstream's pace (no client writes
   * here), then the fill ended: committed when complete. Rejects with the upstream's error.
   */
  private async fillFrom(x: Exchange | null, fill: Fill, a: UpstreamAnswer): Promise<void> {
    try {
      await a.read((b) => this.append(x, fill, b));
      fill.finish();
    } catch (err) {
      fill.fail(err as Error);
      throw err;
    } finally {
      await this.cache.endFill(fill);
    }
  }

  /**
   * A response from upstream for a plain GET: when storable (policy.storability),
   * it goes to the client (copied) and into the store at once, while followers
   * read it from the file; a disk error only stops the storing. Otherwise it
   * is relayed as without a cache (splice included).
   */
  private async storeAndRespond(x: Exchange, pending: Fill | null, key: string, fwd: CacheStatus['fwd'], a: UpstreamAnswer): Promise<number> {
    const c = this.cache;
    const { head } = a;
    x.cache = fwd === 'stale' || fwd === 'request' ? 'stale' : 'miss';
    const fwdStatus = x.cache === 'stale' ? head.status : undefined;
    const f = head.framing;
    const opened = await this.openFill(x.req.method ?? 'GET', x.fields, pending, key, a);
    if ('why' in opened) {
      if (pending) await c.endFill(pending);
      note(x, opened.why);
      x.cacheStatus = cacheStatus({ fwd, fwdStatus, detail: x.cacheDetail! });
      return a.relay();
    }
    const { fill, length } = opened;
    // RFC 9211 §2.5: the head goes out before the body is written, so `stored` here says the
    // response is being stored: not while the last body write failed (a full disk, writesFailing).
    // A store failing after the head is out cannot be taken back: the request's log line
    // (cacheDetail `disk-error`, `too-large`) and the warn line say it was not stored.
    x.cacheStatus = cacheStatus({ fwd, fwdStatus, stored: !c.writesFailing, detail: x.cacheDetail ?? undefined });
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
   * The answer to a GET with Range (§3.3): a 206 that partial.partStorability
   * accepts goes to the client and, at its offset, into a new body file, then
   * joins the store (HttpCache.commitPart); a 206 it refuses, or a 416, is
   * relayed as without a cache, with the reason in the detail. Any other
   * answer is the whole response (storeWhole).
   */
  private async storePart(x: Exchange, key: string, fwd: CacheStatus['fwd'], a: UpstreamAnswer): Promise<number> {
    const c = this.cache;
    const { head } = a;
    // Not an answer to the range: the whole response (storeWhole). A 416 is one (RFC 9110 §15.5.17: about the range asked for).
    if (head.status !== 206 && head.status !== 416) return this.storeWhole(x, key, fwd, a);
    x.cache = 'miss';
    const f = head.framing;
    const responseTime = Date.now();
    const verdict = head.status === 206
      ? partStorability({ method: 'GET', requestHeaders: x.fields, status: head.status, responseHeaders: head.headers, framing: f.kind, responseTime, cacheCookies: c.cookies, targets: c.targets })
      : { store: false as const, reason: 'range' };
    const part = verdict.store ? verdict.range : null;
    const why = part === null ? (verdict as { reason: string }).reason
      : f.kind === 'length' && f.length !== part.end - part.start ? 'content-range'
      : part.end - part.start > c.maxBytes ? 'too-large' : null;
    const file = why === null ? await c.createBody() : null;
    if (part === null || file === null) {
      note(x, why ?? 'disk-error');
      x.cacheStatus = cacheStatus({ fwd, detail: x.cacheDetail! });
      return a.relay();
    }
    const w = c.beginPart(key);
    const names = varyNames(head.headers) as string[];
    const stored: StoredResponse = {
      key, vary: names.length > 0 ? varySelection(names, x.fields) : null, status: 200, reason: 'OK',
      headers: headersToStore(withoutContentRange(head.headers), responseTime, c.targets),
      length: part.complete, requestTime: a.sentAt, responseTime, initialAge: initialAge(head.headers, a.sentAt, responseTime),
    };
    x.cacheStatus = cacheStatus({ fwd, stored: true, detail: x.cacheDetail ?? undefined });
    a.writeHead(withCacheStatus(x, filterResponseHeaders(head.headers, { keepFraming: f.kind === 'length' })));
    x.bodyPath = 'write';
    const client = new ClientCopy(x);
    let at = part.start;
    let failed: string | null = null;
    const toFile = async (b: Buffer): Promise<void> => {
      if (failed !== null) return;
      // More bytes than Content-Range says: the part is not what its head described.
      if (at + b.length > part.end) failed = 'content-range';
      else await file.writeAt(b, at).catch((err: unknown) => { failed = 'disk-error'; c.diskError(err, 'could not write a partial response'); });
      at += b.length;
    };
    try {
      await a.read((b) => Promise.all([toFile(b), client.write(b)]).then(() => undefined));
    } catch (err) {
      await c.abandonPart(w, file);
      throw err;
    }
    if (client.gone === null) x.res.end();
    // Fewer bytes than Content-Range says (a Content-Length matched it, so only a short chunked body).
    if (failed === null && at !== part.end) failed = 'content-range';
    const notStored = failed !== null ? await c.abandonPart(w, file, failed) : await c.commitPart(w, file, stored, part).finally(() => c.endPart(w));
    if (notStored !== null) note(x, notStored);
    if (client.gone !== null) throw client.gone;
    return head.status;
  }

  /**
   * An answer to a GET with Range that is not about the range: the origin ignored it (RFC 9110
   * §14.2: a server MAY) or the If-Range sent with it did not match (§13.1.5). It is the whole
   * response, stored when §3 allows, as a plain GET's (relayed unstored, a client asking for
   * ranges of a file from such an origin would never make it a hit). nginx's
   * proxy_cache comes to the same: it clears Range and If-Range upstream, stores the 200 and
   * answers the range from it. Aludel keeps sending the Range, so an origin that honours it
   * still sends only the part (stored as one, storePart), not a whole file for 100 bytes.
   *
   * A 200 of known length: the client is answered as a follower of this fill (sendStored, the
   * code of every hit), its Range and If-Range evaluated against the 200: a 206 as soon as its
   * bytes are in the file, a 416, or the whole 200 when If-Range does not match. The fill reads
   * at the upstream's pace, not the client's (it may want 100 bytes of a large file), and, as
   * storeAndRespond's, is committed before the request is logged. Any other status, or an
   * unknown length (chunked): the whole response as storeAndRespond sends it; a 206 needs the
   * complete length for Content-Range, and waiting for the end of the body to know it would
   * hold the client for all of it, where nginx's range filter sends the 200 too.
   */
  private async storeWhole(x: Exchange, key: string, fwd: CacheStatus['fwd'], a: UpstreamAnswer): Promise<number> {
    const { head } = a;
    if (head.status !== 200 || head.framing.kind !== 'length') return this.storeAndRespond(x, null, key, fwd, a);
    x.cache = 'miss';
    const opened = await this.openFill('GET', x.fields, null, key, a);
    if ('why' in opened) {
      note(x, opened.why);
      x.cacheStatus = cacheStatus({ fwd, detail: x.cacheDetail! });
      return a.relay();
    }
    const { fill } = opened;
    // Just started, so storing has not stopped and the file is open: a reader is granted.
    const reader = fill.acquire()!;
    const filled = this.fillFrom(x, fill, a).then(() => null, (err: unknown) => err);
    let status = 0;
    let clientError: unknown = null;
    try {
      const cs = cacheStatus({ fwd, stored: !this.cache.writesFailing, detail: x.cacheDetail ?? undefined });
      status = (await sendStored(x, fillBody(fill, fill.head!, reader), cs)).status;
    } catch (err) {
      clientError = err;
    } finally {
      fill.release(reader);
    }
    const upstreamError = await filled;
    if (fill.notCommitted !== null) note(x, fill.notCommitted);
    if (upstreamError !== null && clientError === null) {
      // The client had all its range before the upstream broke off: its response stands (thrown, the
      // error would abort its connection); only the store lost the body, which the warn line says.
      const e = upstreamError as NodeJS.ErrnoException;
      this.log.warn({ conn: x.conn.id, key, code: e.code ?? 'ERR_UNKNOWN', detail: e.message }, 'cache: the upstream broke off a response being stored after the client had its range; it is not stored');
      return status;
    }
    // The upstream's failure is the cause when both failed: the fill's failure aborted this client.
    if (upstreamError !== null) throw upstreamError;
    if (clientError !== null) throw clientError;
    return status;
  }

  /**
   * §3 for an upstream answer to a plain GET with these request fields: the
   * fill it goes into (`pending`, or a new one), started; or why it is not
   * stored (a NotStoredReason, `too-large`, or `disk-error` when no file
   * could be created).
   */
  private async openFill(method: string, fields: string[], pending: Fill | null, key: string, a: UpstreamAnswer): Promise<{ fill: Fill; length: number | null } | { why: string }> {
    const c = this.cache;
    const { head } = a;
    const f = head.framing;
    const responseTime = Date.now();
    const verdict = storability({ method, requestHeaders: fields, status: head.status, responseHeaders: head.headers, framing: f.kind, responseTime, cacheCookies: c.cookies, targets: c.targets });
    const length = f.kind === 'length' ? f.length : f.kind === 'none' ? 0 : null;
    const why = !verdict.store ? verdict.reason : length !== null && length > c.maxBytes ? 'too-large' : null;
    const file = why === null ? await c.createBody() : null;
    if (file === null) return { why: why ?? 'disk-error' };
    const fill = pending ?? c.beginFill(key, fields);
    const names = varyNames(head.headers) as string[];
    fill.start({
      key, vary: names.length > 0 ? varySelection(names, fields) : null,
      status: head.status, reason: head.reason, headers: headersToStore(head.headers, responseTime, c.targets),
      requestTime: a.sentAt, responseTime, initialAge: initialAge(head.headers, a.sentAt, responseTime),
    }, length, file);
    return { fill, length };
  }

  /**
   * One piece of a fill to its file; past the cache's size or on a disk error, storing stops
   * and the body goes on (fill.ts): the leader's client, the followers' and the upstream
   * connection are not disturbed, and only the log line can still say why (the head went out
   * before). A disk error is logged at warn, once per failed store, with its errno.
   */
  private async append(x: Exchange | null, fill: Fill, b: Buffer): Promise<void> {
    if (fill.failed) return;
    const stopped = await fill.append(b);
    if (stopped !== null) {
      const e = stopped as NodeJS.ErrnoException;
      this.cache.writeFailure();
      if (x !== null) note(x, 'disk-error');
      this.log.warn({ conn: x?.conn.id, key: fill.key, code: e.code ?? 'ERR_UNKNOWN', errno: e.errno, at: fill.inFile, detail: e.message },
        'cache: could not write a response body; it is not stored, and every client still gets all of it (followers from memory)');
    } else if (fill.unstored === null && fill.written > this.cache.maxBytes) {
      fill.stopStoring(Object.assign(new Error(`response over the cache size (${this.cache.maxBytes} bytes)`), { code: 'ERR_CACHE_TOO_LARGE' }));
      if (x !== null) note(x, 'too-large');
    }
  }

  /**
   * PURGE (as Varnish and nginx cache_purge users know it), from loopback
   * clients only: every variant of the URL. Files that could not be deleted
   * (EROFS, EACCES) make it a 500 naming them, logged at error: an admin
   * purges to remove content (a leaked file, a takedown), and those files
   * would be served again after a restart. The entries left the index all
   * the same, so this process does not serve them.
   */
  private purge(x: Exchange, key: string): number {
    if (!isLoopback(x.conn.remoteAddress)) return answerText(x, 403, 'Forbidden: PURGE is accepted from loopback clients only\n');
    const { purged, undeleted } = this.cache.invalidate(key);
    let answer: object = { key, purged };
    let status = purged > 0 ? 200 : 404;
    if (undeleted.length > 0) {
      status = 500;
      answer = { ...answer, error: new PurgeIncompleteError('this process').message, undeleted };
      this.log.error({ conn: x.conn.id, key, purged, undeleted }, 'cache purge failed: files could not be deleted');
    } else this.log.info({ conn: x.conn.id, key, purged }, 'cache purge');
    const body = `${JSON.stringify(answer)}\n`;
    x.res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body);
    return status;
  }
}

/** A fill as `reader` sends it: each byte once it is written, from the file or (storing stopped) from memory. */
function fillBody(fill: Fill, head: FillHead, reader: FillReader): StoredBody {
  return {
    status: head.status, reason: head.reason, headers: head.headers, fd: fill.file!.fd,
    age: currentAge(head.initialAge, head.responseTime, Date.now()),
    length: () => fill.length, available: () => fill.written, complete: () => fill.complete, progress: () => fill.progress(),
    inFile: () => fill.inFile, piece: (from, max) => fill.piece(reader, from, max), sentUpTo: (pos) => fill.sentUpTo(reader, pos),
  };
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

/** What handle() reads of a request's fields first. */
interface RequestFacts {
  /** The first Host. */
  host: string | undefined;
  /** If-Match or If-Unmodified-Since (§4.3.2: the origin's to evaluate). */
  precondition: boolean;
  authorized: boolean;
  /** The Cache-Control field values, in order. */
  cacheControl: string[];
}

/**
 * RequestFacts from one pass over the fields, each name compared in place
 * by its length first (isFieldName: case-insensitive, RFC 9110 §5.1): a
 * lookup per field asked for lowercased every name five times per cache hit,
 * and a lowercased copy of each name once was still about 0.6k instructions
 * of a 1 KiB hit (bench/request-cost.ts).
 */
function requestFacts(raw: readonly string[]): RequestFacts {
  const facts: RequestFacts = { host: undefined, precondition: false, authorized: false, cacheControl: [] };
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!;
    switch (name.length) {
      case 4:
        if (isFieldName(name, 'host')) facts.host ??= raw[i + 1]!;
        break;
      case 8:
      case 19:
        if (isFieldName(name, 'if-match') || isFieldName(name, 'if-unmodified-since')) facts.precondition = true;
        break;
      case 13:
        if (isFieldName(name, 'authorization')) facts.authorized = true;
        else if (isFieldName(name, 'cache-control')) facts.cacheControl.push(raw[i + 1]!);
        break;
    }
  }
  return facts;
}

function has(headers: readonly string[], lower: string): boolean {
  return fieldValue(headers, lower) !== undefined;
}

/** The request may bring a part to store (§3.3): it has Range and no conditional that could turn the answer into a 304. */
function wantsPart(raw: readonly string[]): boolean {
  return has(raw, 'range') && !has(raw, 'if-none-match') && !has(raw, 'if-modified-since');
}

const CONTENT_RANGE = new Set(['content-range']);

/** A 206's fields as the stored response keeps them: Content-Range belongs to the part (§3.4), not to the response. */
function withoutContentRange(headers: readonly string[]): string[] {
  const out = [...headers];
  dropFields(out, CONTENT_RANGE);
  return out;
}

/** §4.3.1: the request's fields with the stored response's validators in place of the client's conditionals and Range. */
function validationFields(fields: readonly string[], entry: Entry): string[] {
  const v = validators(entry.headers);
  const raw = [...fields];
  dropFields(raw, VALIDATION_FIELDS);
  if (v.etag !== null) raw.push('If-None-Match', v.etag);
  if (v.lastModified !== null) raw.push('If-Modified-Since', v.lastModified);
  return raw;
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

/**
 * The shared cache of `aludel proxy --cache DIR`: the disk store, the fills in
 * progress (one upstream request per key, collapsed), variant selection and
 * invalidation. Nothing outside this directory reaches the store: the
 * proxy's side (lookup, fill, revalidate, purge on an exchange) is
 * cache-layer.ts, answering from a stored body send-stored.ts, and the
 * RFC 9111 decisions policy.ts.
 *
 * With --workers N the directory is shared by the workers (`peers`,
 * peers.ts): each change to the index is published to the others and theirs
 * applied here, in the order they come; an invalidation (§4.4) reaches their
 * fills in progress too; and a key is filled by one worker at a time
 * (claimFill), the others answering from the store once it is committed.
 * The same per-key lock (key-locks.ts) makes one background revalidation
 * per stored response on the host (lockRefresh, RFC 5861 §3) and combines
 * the parts of a key one worker at a time (combinePart, RFC 9111 §3.4);
 * uses reach the other workers' LRU order in batches (store.ts, touch-batch.ts).
 */
import fs from 'node:fs';
import type { Logger } from '../log/logger.js';
import { Fill, type FillHead, type FillReader } from './fill.js';
import { cacheKey, currentAge, followable, freshnessLifetime, reusableWithAuthorization, varyMatches, type Headers, type NotFollowedReason, type RequestDirectives, type StoredTiming } from './policy.js';
import { CacheStore, isPartial, sameSelection, type BodyFile, type Entry, type PurgeResult, type StoreChange, type StoredResponse } from './store.js';
import { addRange, combinedHead, isWhole, sameStrongValidator, subtractRange, type PartRange } from './partial.js';
import { targetList, type Targets } from './targeted.js';
import type { CachePeers, LockAnswer, PeerEvent } from './peers.js';
import { KeyLocks } from './key-locks.js';
import { descriptorLimit, linkCountByFstat, OpenBodies, openBodiesBound, type BodyLease } from './open-bodies.js';

export interface CacheOptions {
  dir: string;
  maxBytes: number;
  /** --cache-cookies: store explicitly cacheable responses that set cookies (policy.storability). */
  cookies?: boolean;
  /** --cache-stale-if-error: the stale-if-error window, seconds, of responses that give none (RFC 5861 §4); default 0 = none. */
  staleIfError?: number;
  /** --targeted-cache-control: a field honoured before CDN-Cache-Control (RFC 9213 §2.1). */
  targeted?: string | null;
  log: Logger;
  /** The other processes sharing DIR (--workers N); absent: this process alone. */
  peers?: CachePeers | null;
  /** With peers: how long a request waits for another worker's fill of its key before going upstream itself. */
  peerWaitMs?: number;
  /** st_nlink of an open body descriptor (the addon's linkCount); default fs.fstatSync's. */
  linkCount?: (fd: number) => number;
  /** Body descriptors kept open between hits at most (default: openBodiesBound of the descriptor limit). */
  openBodies?: number;
}

/** Default of CacheOptions.peerWaitMs. */
const PEER_WAIT_MS = 60_000;
/** How long an invalidation is remembered for the entries other workers report afterwards (see applyStored). */
const INVALIDATION_MEMORY_MS = 60_000;

/**
 * What policy.followable (and the reuse() it calls) reads of a fill's head,
 * with the head's freshness lifetime. Written out rather than spread
 * ({ ...head, lifetime }): V8 (11.3, node 20) gives each object a warmed-up
 * spread copies and then adds to a map of its own, so reuse(), which every
 * hit calls with its entry, saw a new map per followed fill and its reads
 * went megamorphic for the rest of the process, a stub-cache probe each per
 * hit (test/unit/one-map.test.ts). A literal's fields in one order share one
 * map.
 */
export function timingOf(head: FillHead, lifetime: number): StoredTiming {
  return { status: head.status, headers: head.headers, lifetime, initialAge: head.initialAge, responseTime: head.responseTime };
}

export class HttpCache {
  private readonly store: CacheStore;
  /** Responses with Set-Cookie may be stored (--cache-cookies). */
  readonly cookies: boolean;
  /** Seconds a stale response may stand in for an upstream error when it gives no stale-if-error of its own (stale.ts). */
  readonly staleIfError: number;
  /** Targeted cache-control fields honoured, most specific first, and not forwarded to clients (RFC 9213). */
  readonly targets: Targets;
  /** The same names as a set, for removing them from responses. */
  readonly consumed: ReadonlySet<string>;
  private readonly log: Logger;
  /** Fills in progress per key (several when variants or no-cache requests overlap). */
  private readonly fills = new Map<string, Fill[]>();
  /** Disk errors are logged once per kind (ENOSPC would otherwise log on every fill). */
  private readonly diskErrorsLogged = new Set<string>();
  /** A fill's write failed (ENOSPC, EIO, ...) and no fill was committed since (writesFailing). */
  private writeFailed = false;
  /**
   * Stored responses (by id) being revalidated in the background
   * (stale-while-revalidate), one revalidation each; the value says whether
   * it holds its key's lock across the workers (lockRefresh). Also those
   * another worker revalidates, until its lock is given back.
   */
  private readonly refreshing = new Map<string, boolean>();
  /** 206 bodies being stored per key (§3.3), so that an invalidation (§4.4) keeps them out of the store. */
  private readonly parts = new Map<string, Set<PartWrite>>();
  /** The last part commit per key: parts of one key are combined one after the other (commitPart). */
  private readonly partCommits = new Map<string, Promise<unknown>>();
  private readonly peers: CachePeers | null;
  private readonly peerWaitMs: number;
  /** Other workers' events, applied one after the other (a 'stored' reads a file first). */
  private peerQueue: Promise<void> = Promise.resolve();
  /** Requests waiting for another worker's fill of a key ('unlocked'). */
  private readonly unlockWaiters = new Map<string, Set<() => void>>();
  /** Fills of this process that hold their key's lock across the workers. */
  private readonly locked = new Set<Fill>();
  /** This process's holds of the keys' locks (fills, background revalidations, parts being combined); null alone. */
  private readonly keyLocks: KeyLocks | null;
  /** Keys whose lock this process is asking for (claimFill): true once granted and the fill registered, false when refused. */
  private readonly claims = new Map<string, Promise<boolean>>();
  /** When each key was last invalidated (§4.4), for entries other workers report later (applyStored). */
  private readonly invalidatedAt = new Map<string, number>();
  /** Body descriptors kept open between hits. */
  private readonly bodies: OpenBodies;

  private constructor(store: CacheStore, o: CacheOptions, targets: Targets) {
    this.store = store;
    this.bodies = new OpenBodies({ max: o.openBodies ?? openBodiesBound(descriptorLimit()), open: openStoredBody, linkCount: o.linkCount ?? linkCountByFstat, shared: store.shared });
    store.onDropped = (id) => this.bodies.drop(id);
    this.cookies = o.cookies ?? false;
    this.staleIfError = o.staleIfError ?? 0;
    this.targets = targets;
    this.consumed = new Set(targets);
    this.log = o.log;
    this.peers = o.peers ?? null;
    const peers = this.peers;
    this.keyLocks = peers === null ? null : new KeyLocks((key) => peers.unlock(key));
    this.peerWaitMs = o.peerWaitMs ?? PEER_WAIT_MS;
  }

  static async open(o: CacheOptions): Promise<HttpCache> {
    const targets = targetList(o.targeted ?? null);
    const peers = o.peers ?? null;
    const onChange = peers === null ? undefined : (c: StoreChange): void => peers.publish(c);
    const store = await CacheStore.open({ dir: o.dir, maxBytes: o.maxBytes, targets, log: o.log, onChange });
    const cache = new HttpCache(store, o, targets);
    peers?.subscribe((e) => cache.onPeerEvent(e));
    peers?.answerPurges((url) => cache.purge(url));
    return cache;
  }

  /** Another worker's event, queued behind the earlier ones (an 'unlocked' must find the 'stored' before it applied). */
  private onPeerEvent(e: PeerEvent): void {
    this.peerQueue = this.peerQueue.then(() => this.applyPeerEvent(e)).catch((err: unknown) => this.log.warn({ err, event: e.event }, 'cache: could not apply another worker\'s change'));
  }

  private async applyPeerEvent(e: PeerEvent): Promise<void> {
    if (e.event === 'unlocked') {
      for (const wake of this.unlockWaiters.get(e.key) ?? []) wake();
      this.unlockWaiters.delete(e.key);
    } else if (e.event === 'invalidated') {
      const { purged } = this.invalidate(e.key, false, e.at);
      this.log.debug({ key: e.key, purged }, 'cache: invalidated by another worker');
    } else if (e.event === 'stored') {
      await this.applyStored(e);
    } else if (e.event === 'touched') {
      const moved = this.store.touchRemote(e.ids);
      this.log.debug({ entries: e.ids.length, moved }, 'cache: recent uses from another worker (LRU order)');
    } else {
      await this.store.applyRemote(e);
    }
  }

  /**
   * An entry another worker committed (or freshened) joins this index. One
   * whose request went upstream before an invalidation this process knows
   * of is refused and removed everywhere: it may hold what the unsafe
   * request changed (§4.4), as a fill of this process would (Fill.invalidated).
   */
  private async applyStored(e: PeerEvent & { event: 'stored' }): Promise<void> {
    const at = this.invalidatedAt.get(e.key);
    const entry = await this.store.applyRemote(e, (x) => at === undefined || x.requestTime > at);
    if (entry !== null) this.log.debug({ key: e.key, id: e.id }, 'cache: stored by another worker');
  }

  /**
   * The stored response a request selects (§4.1): among the key's variants
   * whose Vary selection matches, the most recent (§4.1: "the most recent
   * response ... is used"); with Authorization, only those §3.5 allows.
   * `uriHit` tells Cache-Status a uri-miss from a vary-miss; `refusedAuthorization`
   * that a variant matched but §3.5 kept it from this request (Cache-Status detail).
   */
  select(key: string, requestHeaders: Headers, authorized: boolean): { entry: Entry | null; uriHit: boolean; refusedAuthorization: boolean } {
    const variants = this.store.variants(key);
    let best: Entry | null = null;
    let refusedAuthorization = false;
    for (const e of variants) {
      if (e.vary !== null && !varyMatches(e.vary, requestHeaders)) continue;
      if (authorized && !reusableWithAuthorization(e.headers, this.targets)) {
        refusedAuthorization = true;
        continue;
      }
      if (best === null || e.responseTime >= best.responseTime) best = e;
    }
    return { entry: best, uriHit: variants.length > 0, refusedAuthorization };
  }

  /**
   * A fill in progress that this request can follow: same key, a storable
   * head whose Vary selection the request matches (and that §3.5 lets answer
   * a request with Authorization), and that RFC 9111 §4 lets answer this
   * request without validation (policy.followable: fresh when received, no
   * no-cache, the request's own max-age / min-fresh). Waits for pending heads
   * (the upstream's answer), so concurrent misses cost one upstream request;
   * the rules are applied once the head is known, whatever the fill's state.
   * Without one to follow, `refused` says why the last fill of this variant
   * could not be (for Cache-Status detail), or is null.
   */
  async follow(
    key: string,
    requestHeaders: Headers,
    authorized: boolean,
    directives: RequestDirectives,
  ): Promise<{ fill: Fill; head: FillHead; reader: FillReader } | { fill: null; refused: NotFollowedReason | 'authorization' | null }> {
    let refused: NotFollowedReason | 'authorization' | null = null;
    for (const fill of [...(this.fills.get(key) ?? [])]) {
      if (fill.head === null && !fill.failed) this.log.debug({ key }, 'cache: waiting for the response head of a fill in progress');
      const head = await fill.ready();
      if (head === null || fill.failed || fill.invalidated) continue;
      if (head.vary !== null && !varyMatches(head.vary, requestHeaders)) continue;
      if (authorized && !reusableWithAuthorization(head.headers, this.targets)) {
        refused = 'authorization';
        continue;
      }
      const lifetime = freshnessLifetime(head.status, head.headers, head.responseTime, this.targets).seconds;
      const verdict = followable(timingOf(head, lifetime), directives, Date.now(), this.targets);
      if (!verdict.follow) {
        refused = verdict.why;
        this.log.debug({ key, why: verdict.why }, 'cache: not following a fill in progress (RFC 9111 §4 forbids reusing it for this request); sending the request upstream');
        continue;
      }
      // Null once storing stopped: the bytes this request would need first may be gone (fill.ts).
      const reader = fill.acquire();
      if (reader !== null) return { fill, head, reader };
    }
    return { fill: null, refused };
  }

  /** Registers a fill before its request goes upstream, so requests arriving meanwhile follow it. */
  beginFill(key: string, requestHeaders: Headers): Fill {
    const fill = new Fill(key, requestHeaders);
    const list = this.fills.get(key);
    if (list) list.push(fill);
    else this.fills.set(key, [fill]);
    return fill;
  }

  /**
   * Ends a fill: a complete, still valid body is committed to the store;
   * anything else is discarded. The fill leaves the in-progress list in the
   * same turn as its entry enters the store, so a request always finds one
   * of them. Never rejects: a disk error is logged and only costs the entry.
   */
  async endFill(fill: Fill): Promise<Entry | null> {
    if (fill.ended) return null;
    fill.ended = true;
    let entry: Entry | null = null;
    const file = fill.file;
    try {
      // Not when storing stopped (fill.unstored: the file lacks the end of the body).
      if (file !== null && fill.complete && fill.unstored === null && !fill.invalidated && fill.head !== null) {
        await beforeCommit(fill.key);
        entry = await this.store.commit(file, { ...fill.head, length: fill.length! });
        // null: body and metadata together are larger than the whole cache.
        if (entry === null) fill.notCommitted = 'too-large';
        else this.writeFailed = false;
        // Invalidated while committing: the entry holds what was there before the unsafe request.
        if (entry !== null && fill.invalidated) {
          this.store.remove(entry);
          entry = null;
        }
      } else if (file !== null) {
        await this.store.discard(file);
      }
      if (fill.invalidated && fill.complete) fill.notCommitted = 'invalidated';
    } catch (err) {
      this.diskError(err, 'could not store a response');
      fill.notCommitted = 'disk-error';
      if (file !== null) await this.store.discard(file);
    } finally {
      fill.abandon();
      const list = this.fills.get(fill.key) ?? [];
      if (list.includes(fill)) list.splice(list.indexOf(fill), 1);
      if (list.length === 0) this.fills.delete(fill.key);
      fill.release();
      // After the commit's 'stored': the workers waiting for this fill find its entry when they wake.
      if (this.locked.delete(fill)) this.keyLocks?.release(fill.key);
    }
    return entry;
  }

  /**
   * A new fill of `key`, registered (beginFill): alone, at once. With peers,
   * one fill per key across the workers: the fill holds the key's lock
   * (endFill releases it); or, while another worker fills the key, this
   * waits for that fill to end (or `peerWaitMs`) and says 'waited': the
   * caller looks in the store again, then fills without waiting (`mayWait`
   * false). A request arriving while another request of this process asks
   * for the key's lock waits for the answer: granted, it follows the new
   * fill (says 'waited', and follow() finds it); refused, it asks itself.
   * Alone or not, a request that finds a fill of the key registered since
   * its follow() looked says 'waited' too (mayWait: first pass only).
   */
  async claimFill(key: string, requestHeaders: Headers, mayWait: boolean): Promise<Fill | 'waited'> {
    // One upstream request per key at a time in this process too (nginx's proxy_cache_lock).
    // follow() and this call are a few promise turns apart, and requests read together (the
    // HTTP/2 streams of one read, pipelined requests) all run their follow() before the first
    // of them gets here: each found no fill, and each would register its own. A fill registered
    // since is one this request did not look at: 'waited' sends it through handle() again, where
    // follow() waits for that fill's head and applies RFC 9111 §4 to it. The second pass has
    // `mayWait` false, so a request the fill cannot answer goes upstream then, never loops.
    if (mayWait && (this.fills.get(key) ?? []).some((f) => f.joinable)) return 'waited';
    if (this.peers === null) return this.beginFill(key, requestHeaders);
    // The key's entries as this request found them (select ran in this turn, or after a local fill it did not follow).
    const seen = mayWait ? this.store.variants(key).map((e) => e.id) : null;
    const asking = this.claims.get(key);
    if (asking !== undefined && mayWait && (await asking)) return 'waited';
    let answered!: (granted: boolean) => void;
    const claim = new Promise<boolean>((resolve) => (answered = resolve));
    this.claims.set(key, claim);
    const settle = (granted: boolean): void => {
      if (this.claims.get(key) === claim) this.claims.delete(key);
      answered(granted);
    };
    try {
      const answer = await this.askLock(key, mayWait, (a) => a !== 'granted' && settle(false));
      if (answer === 'waited') return 'waited';
      if (answer === 'granted' && seen !== null && (await this.storedSince(key, seen))) {
        // Another worker committed this key between this request's miss and the grant: its
        // 'stored' came over the channel ahead of the grant. Look again instead of a second fill.
        this.keyLocks!.release(key);
        return 'waited';
      }
      const fill = this.beginFill(key, requestHeaders);
      if (answer === 'granted') this.locked.add(fill);
      // After beginFill, in the same turn: the requests waiting for this answer find the fill.
      settle(answer === 'granted');
      return fill;
    } finally {
      settle(false);
    }
  }

  /**
   * Whether `key` has an entry that was not among `seen`, once every event
   * the other workers sent before the lock's answer is applied: the primary
   * relays a worker's 'stored' before it frees the key, so a request that
   * missed just before another worker's commit is granted the lock with that
   * entry already on its way (the same wait as holdKey's).
   */
  private async storedSince(key: string, seen: readonly string[]): Promise<boolean> {
    await this.peerQueue;
    return this.store.variants(key).some((e) => !seen.includes(e.id));
  }

  /**
   * The key's lock from the primary: 'granted', now held by this process
   * (counted in keyLocks: granted by the primary, or joined to this
   * process's own hold when the primary says it has the key: another fill,
   * a background revalidation or a part of this process); 'waited' when
   * another worker held it and its work ended (the waiter is registered
   * before the lock is asked for, so an 'unlocked' never slips between the
   * two); 'held' when another worker holds it and `mayWait` is false (also
   * when the primary says this process has it but nothing here holds it:
   * its release is on the way); 'lead' when the primary did not answer.
   */
  private async askLock(key: string, mayWait: boolean, onAnswer: (a: LockAnswer) => void, what = 'fill'): Promise<'granted' | 'waited' | 'held' | 'lead'> {
    let wake!: () => void;
    const woken = new Promise<void>((resolve) => (wake = resolve));
    const waiters = this.unlockWaiters.get(key) ?? new Set();
    this.unlockWaiters.set(key, waiters.add(wake));
    try {
      const answer = await this.peers!.lock(key);
      const locks = this.keyLocks!;
      const held = answer === 'granted' ? (locks.granted(key), true) : answer === 'mine' && locks.join(key);
      onAnswer(held ? 'granted' : answer);
      if (held) return 'granted';
      if (answer === 'unknown') return 'lead';
      if (answer === 'mine' || !mayWait) return 'held';
      this.log.debug({ key }, `cache: waiting for another worker's ${what} of this key`);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        wake();
      }, this.peerWaitMs);
      await woken;
      clearTimeout(timer);
      // The caller looks in the store once more and then goes upstream itself, without the lock
      // (a fill slower than the wait is not waited for twice), as nginx passes a request to the
      // upstream at proxy_cache_lock_timeout (nginx does not store that answer; this fill may).
      // Logged, unlike the wait itself: it is the one way two fills of a key run at once.
      if (timedOut) this.log.info({ key, waitedMs: this.peerWaitMs }, `cache: stopped waiting for another worker's ${what} of this key (--upstream-headers-timeout)`);
      return 'waited';
    } finally {
      waiters.delete(wake);
      if (waiters.size === 0 && this.unlockWaiters.get(key) === waiters) this.unlockWaiters.delete(key);
    }
  }

  /**
   * The key's lock for a background revalidation or a part being combined:
   * 'granted' (give it back with keyLocks.release), once every event the
   * other workers sent before the grant is applied (the previous holder's
   * 'stored' is then in the index); 'held' while another worker holds it
   * (with `wait`: after waiting for it to end, up to peerWaitMs in all);
   * 'lead' when the primary does not answer (go on without it, as a fill
   * does).
   */
  private async holdKey(key: string, wait: boolean, what: string): Promise<'granted' | 'held' | 'lead'> {
    if (this.keyLocks!.join(key)) return 'granted';
    const until = Date.now() + this.peerWaitMs;
    for (;;) {
      const a = await this.askLock(key, wait && Date.now() < until, () => undefined, what);
      if (a === 'waited') continue;
      if (a === 'granted') await this.peerQueue;
      return a;
    }
  }

  /**
   * Claims the background revalidation of a stale stored response (RFC 5861
   * §3) in this process: false when one is already under way (or another
   * worker's is, see lockRefresh), so concurrent stale hits cost one
   * upstream request. Synchronous: the claim and the check happen in the
   * same turn. Then lockRefresh(), and endRefresh() gives it back.
   */
  beginRefresh(entry: Entry): boolean {
    if (this.refreshing.has(entry.id)) return false;
    this.refreshing.set(entry.id, false);
    return true;
  }

  /**
   * RFC 5861 §3 across the workers: one background revalidation per stored
   * response on the host, under the key's lock (the fill lock, peers.ts).
   * True: this revalidation goes ahead (endRefresh() ends it). False when
   * another worker holds the key (its revalidation, or a fill, brings the
   * new response; this process starts none for the entry until that worker
   * gives the key back, and asks the primary nothing meanwhile), or when
   * the entry was replaced or freshened by the time the lock came (another
   * worker's revalidation ended just before). Without an answer from the
   * primary it goes ahead without the lock, as a fill does. Never rejects.
   */
  async lockRefresh(entry: Entry): Promise<boolean> {
    if (this.peers === null) return true;
    // Registered before the lock is asked for: an 'unlocked' read together with the 'held' answer
    // is applied before this code sees the answer. (One from an earlier holder, read before the
    // answer, only makes the next stale hit ask again.)
    let heldElsewhere = false;
    let freed = false;
    const unlocked = (): void => {
      freed = true;
      if (heldElsewhere) this.refreshing.delete(entry.id);
    };
    const waiters = this.unlockWaiters.get(entry.key) ?? new Set();
    this.unlockWaiters.set(entry.key, waiters.add(unlocked));
    const lock = await this.holdKey(entry.key, false, 'revalidation');
    if (lock === 'held') {
      this.log.debug({ key: entry.key }, 'cache: background revalidation left to another worker (it holds the key)');
      heldElsewhere = true;
      if (freed) this.refreshing.delete(entry.id);
      return false;
    }
    waiters.delete(unlocked);
    if (waiters.size === 0 && this.unlockWaiters.get(entry.key) === waiters) this.unlockWaiters.delete(entry.key);
    if (lock === 'granted') this.refreshing.set(entry.id, true);
    if (this.store.holds(entry) && currentAge(entry.initialAge, entry.responseTime, Date.now()) >= entry.lifetime) return true;
    this.log.debug({ key: entry.key }, 'cache: no background revalidation: the stored response was replaced or freshened meanwhile');
    this.endRefresh(entry);
    return false;
  }

  /** Ends a background revalidation: this process's claim, and the key's lock if it held it. */
  endRefresh(entry: Entry): void {
    const locked = this.refreshing.get(entry.id);
    this.refreshing.delete(entry.id);
    if (locked === true) this.keyLocks?.release(entry.key);
  }


  /** The entry is still stored as it was selected: not replaced, invalidated, purged or evicted since. */
  holds(entry: Entry): boolean {
    return this.store.holds(entry);
  }

  /** The largest body stored (the store's size). */
  get maxBytes(): number {
    return this.store.maxBytes;
  }

  /**
   * A selected entry's body descriptor to send it from, or null when its
   * file is gone (evicted since it was selected, here or by another worker),
   * and the entry goes with it. Give it back with closeBody().
   *
   * Descriptors stay open between hits (open-bodies.ts). A new one is opened
   * inline, as nginx opens its cache files: the file is one the store wrote
   * under a directory it keeps open, and a thread-pool round trip for a
   * syscall of a few microseconds cost a cache hit more than the syscall
   * itself (the same change on the serve path: docs/benchmarks.md).
   */
  openBody(entry: Entry): BodyLease | null {
    let lease: BodyLease | null;
    try {
      lease = this.bodies.acquire(entry.id, entry.bodyFile, entry.length);
    } catch (err) {
      // Not the file the store committed (openStoredBody): as gone, so the request fetches the response again.
      this.brokenBody(entry, err);
      return null;
    }
    if (lease === null) {
      this.store.remove(entry);
      return null;
    }
    this.store.touch(entry);
    return lease;
  }

  /**
   * A stored body that cannot be sent as its entry says (not a regular file
   * of its length, or it ended early while being sent, ERR_FILE_TRUNCATED):
   * the entry goes, with one warn line, so that the next request fetches the
   * response again instead of every hit failing until the entry expires.
   * Committed bodies never change (store.ts): only something outside Aludel
   * (a truncate, a file put in its place, a disk error) gets here.
   */
  brokenBody(entry: Entry, err: unknown): void {
    if (!this.store.holds(entry)) return;
    const e = err as { code?: string; message?: string };
    this.log.warn({ key: entry.key, file: entry.bodyFile, code: e.code ?? 'ERR_UNKNOWN', detail: e.message }, 'cache: a stored body is not the file that was committed; the entry is dropped and the response will be fetched again');
    this.store.remove(entry);
  }

  /** Gives back what openBody() gave, once nothing (no sendfile on the thread pool) reads it any more. */
  closeBody(entry: Entry, lease: BodyLease): void {
    this.bodies.release(entry.id, lease);
  }

  /**
   * A file for a new response body; null after a disk error (logged once):
   * the response is then relayed without being stored.
   */
  async createBody(): Promise<BodyFile | null> {
    try {
      return await this.store.create();
    } catch (err) {
      this.diskError(err, 'could not create a file for a response');
      return null;
    }
  }

  /**
   * One stored response goes (a 304 made it unstorable, policy.notKeptAfterUpdate),
   * reported to the other workers. Its files are gone when this returns, as
   * for an invalidation: no worker can open them afterwards; a descriptor
   * already open (a hit still sending, this request's lease) keeps its bytes.
   */
  drop(entry: Entry): void {
    this.store.remove(entry, true, true);
  }

  /** §4.3.4: a 304 freshens the stored response; a disk error only costs the rewrite (the entry in memory is freshened all the same). */
  async freshen(entry: Entry, next: Pick<StoredResponse, 'headers' | 'requestTime' | 'responseTime' | 'initialAge'>): Promise<void> {
    try {
      await this.store.update(entry, next);
    } catch (err) {
      this.diskError(err, 'could not rewrite the metadata of a revalidated response');
    }
  }

  /**
   * Whether the last write of a response body failed, with no commit since
   * (a full disk): a miss then does not say `stored` in its head (RFC 9211
   * §2.5: the cache stored it), which goes out before any body byte is
   * written and cannot be taken back. It is still stored if it can be, and
   * its commit clears this.
   */
  get writesFailing(): boolean {
    return this.writeFailed;
  }

  /** A fill could not write its body (the caller logs it, once per fill). */
  writeFailure(): void {
    this.writeFailed = true;
  }

  /** Logs a disk problem once per error code; storing stops for that response, clients are not disturbed. */
  diskError(err: unknown, what: string): void {
    const code = (err as { code?: string }).code ?? 'ERR_UNKNOWN';
    if (this.diskErrorsLogged.has(code)) return;
    this.diskErrorsLogged.add(code);
    this.log.error({ dir: this.store.dir, code, detail: (err as Error).message }, `cache: ${what}; responses are still served, not stored (logged once per error code)`);
  }

  /** A 206 body starts being written for `key` (§3.3); endPart() when it is committed or dropped. */
  beginPart(key: string): PartWrite {
    const w: PartWrite = { key, invalidated: false };
    const set = this.parts.get(key);
    if (set) set.add(w);
    else this.parts.set(key, new Set([w]));
    return w;
  }

  endPart(w: PartWrite): void {
    const set = this.parts.get(w.key);
    if (set?.delete(w) && set.size === 0) this.parts.delete(w.key);
  }

  /**
   * A completely received 206 (`r`: its stored head, without ranges; `part`:
   * its range and the complete length) joins the store (§3.3, §3.4): combined with
   * the partial entry of the same key and Vary selection when both have the
   * same strong validator, else replacing it; when the parts then make the
   * whole body, the entry is a complete 200. Parts of one key are combined
   * one at a time, each from the entry as the previous one left it, into a
   * new file (store.copyParts), so no ranges are lost to a race and no reader
   * of a stored file sees it change. Returns why the part was not stored, or
   * null; `file` is consumed (committed or discarded) and closed.
   *
   * Across the workers, one at a time too: a part is combined and committed
   * under the key's lock (holdKey), so the stored parts it starts from are
   * the last ones any worker committed. Why the lock and not a re-read of
   * the stored parts just before the commit: no file on disk is named by
   * its key (ids are random), so finding another worker's newer entry would
   * take a scan of the directory, and without a lock two workers would
   * still both read, then both commit, and one of them drop the other's
   * part (of two entries of one key the later received wins). The lock is
   * the one fills and revalidations take already, held only while the
   * parts are copied and committed (milliseconds; longer only behind a fill
   * of the key, whose complete 200 then makes the part unneeded:
   * `already-complete`). The combination replaces the entry it was made
   * from explicitly (store.commit `replaces`), whatever their times.
   */
  commitPart(w: PartWrite, file: BodyFile, r: StoredResponse, part: PartRange): Promise<PartNotStored | null> {
    const prev = this.partCommits.get(w.key) ?? Promise.resolve();
    const next = prev.then(() => this.combinePart(w, file, r, part));
    const settled = next.catch(() => undefined);
    this.partCommits.set(w.key, settled);
    void settled.then(() => {
      if (this.partCommits.get(w.key) === settled) this.partCommits.delete(w.key);
    });
    return next;
  }

  private async combinePart(w: PartWrite, file: BodyFile, r: StoredResponse, part: PartRange): Promise<PartNotStored | null> {
    let locked = false;
    try {
      locked = this.peers !== null && (await this.holdKey(w.key, true, 'parts')) === 'granted';
      if (w.invalidated) return await this.dropPart(file, 'invalidated');
      const held = this.store.variants(r.key).find((e) => sameSelection(e.vary, r.vary)) ?? null;
      // §3.4: combined only with a stored response that has the same strong validator; anything else is replaced.
      const same = held !== null && held.length === part.complete && sameStrongValidator(held.headers, r.headers);
      if (same && !isPartial(held)) return await this.dropPart(file, 'already-complete');
      let ranges = addRange([], part.start, part.end);
      let head: Pick<StoredResponse, 'headers' | 'requestTime' | 'responseTime' | 'initialAge'> = r;
      let replaces: Entry | null = null;
      if (same && isPartial(held) && (await this.store.copyParts(held, file, subtractRange(held.ranges, part.start, part.end)))) {
        ranges = addRange(held.ranges, part.start, part.end);
        // §3.4: the newer response's fields replace the stored ones of the same names.
        head = combinedHead(held, r, this.targets);
        replaces = held;
      }
      if (w.invalidated) return await this.dropPart(file, 'invalidated');
      // §3.4: all the parts make up the whole body: a complete 200 from now on.
      const whole = isWhole(ranges, part.complete);
      if (whole) file.written = part.complete;
      await beforeCommit(r.key);
      const entry = await this.store.commit(file, { ...r, ...head, length: part.complete, ...(whole ? { status: 200, reason: 'OK', ranges: null } : { ranges }) }, replaces);
      if (entry === null) return 'too-large';
      // Invalidated while committing (§4.4): the entry holds what was there before the unsafe request.
      if (w.invalidated) {
        this.store.remove(entry);
        return 'invalidated';
      }
      return null;
    } catch (err) {
      this.diskError(err, 'could not store a partial response');
      await this.store.discard(file);
      return 'disk-error';
    } finally {
      // After the commit's 'stored': the next worker to combine a part of the key starts from this entry.
      if (locked) this.keyLocks!.release(w.key);
      await file.handle.close().catch(() => undefined);
    }
  }

  /** A part that will not be stored (the upstream broke off, or its body was not what its head said): its file goes. */
  async abandonPart<T = null>(w: PartWrite, file: BodyFile, why: T = null as T): Promise<T> {
    this.endPart(w);
    try {
      return await this.dropPart(file, why);
    } finally {
      await file.handle.close().catch(() => undefined);
    }
  }

  private async dropPart<T>(file: BodyFile, why: T): Promise<T> {
    await this.store.discard(file);
    return why;
  }

  /**
   * §4.4: a key's stored responses go, and fills in progress for it will not
   * be stored. With peers, every other worker is told (`publish`), and does
   * the same to its own index and fills; the files are gone before this
   * returns, so no worker can send them afterwards, even one not told yet.
   */
  invalidate(key: string, publish = true, at = Date.now()): PurgeResult {
    for (const f of this.fills.get(key) ?? []) f.invalidated = true;
    for (const w of this.parts.get(key) ?? []) w.invalidated = true;
    if (this.peers !== null) this.rememberInvalidation(key, at);
    // Not reported entry by entry: 'invalidated' says it all, and reaches the others' fills too.
    const r = this.store.purge(key, false);
    if (publish) this.peers?.publish({ event: 'invalidated', key, at });
    return r;
  }

  private rememberInvalidation(key: string, at: number): void {
    const latest = Math.max(at, this.invalidatedAt.get(key) ?? 0);
    this.invalidatedAt.delete(key);
    this.invalidatedAt.set(key, latest);
    // Oldest first (a Map keeps insertion order): forget those no fill can still be behind.
    for (const [k, t] of this.invalidatedAt) {
      if (t >= Date.now() - INVALIDATION_MEMORY_MS) break;
      this.invalidatedAt.delete(k);
    }
  }

  /**
   * Purge by URL, for the admin interface: `https://host[:port]/path?query`
   * (the scheme is ignored: keys are always https), every variant. Returns
   * how many stored responses were removed, and their files still on disk.
   */
  purge(url: string): PurgeResult {
    return this.invalidate(cacheKey(undefined, url));
  }
}

/**
 * Opens a committed body: O_NONBLOCK, because open(2) of a FIFO put in its
 * place would block the event loop, every client of this worker with it,
 * until a writer came (nginx opens its cache files non-blocking too; reads
 * and sendfile(2) of a regular file ignore the flag); O_NOFOLLOW, because
 * the store never writes a symlink. Then one fstat(2): a body that is not a
 * regular file of the committed length (truncated, replaced by a directory)
 * throws ERR_CACHE_BODY_CHANGED, as nginx refuses a cache file that "is not
 * a regular file". Runs only when no kept descriptor is reused.
 */
function openStoredBody(file: string, length?: number): number {
  // libuv adds O_CLOEXEC itself.
  const { O_RDONLY, O_NONBLOCK, O_NOFOLLOW } = fs.constants;
  const fd = fs.openSync(file, O_RDONLY | O_NONBLOCK | O_NOFOLLOW);
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile() || (length !== undefined && st.size !== length)) {
      throw Object.assign(new Error(`${st.isFile() ? `${st.size} bytes` : 'not a regular file'}, committed with ${length ?? '?'} bytes`), { code: 'ERR_CACHE_BODY_CHANGED' });
    }
    return fd;
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

/** Why a completely received part was not stored (Cache-Status detail, log line). */
export type PartNotStored = 'invalidated' | 'already-complete' | 'too-large' | 'disk-error';

/** A 206 body on its way into the store (commitPart). */
export interface PartWrite {
  readonly key: string;
  /** An unsafe method or a purge hit the key meanwhile (§4.4): the part is not stored. */
  invalidated: boolean;
}

/**
 * Test seam, inert in production. The integration tests of issue 16 hold a
 * commit here to open, deterministically, the window between the leader's
 * last byte (its res.end()) and the commit, in which new requests follow the
 * fill. Nothing in Aludel sets it, and no flag, config key or request
 * reaches it: only code already running inside the process can set it (the
 * tests load test/support/cache-commit-gate.ts with node --import; whoever
 * can do that runs arbitrary code in the process anyway). Unset, it costs
 * one property read per commit.
 */
const BEFORE_COMMIT = Symbol.for('aludel.test.cache.beforeCommit');

function beforeCommit(key: string): Promise<void> | undefined {
  const gate = (globalThis as Record<symbol, unknown>)[BEFORE_COMMIT];
  return typeof gate === 'function' ? (gate as (key: string) => Promise<void>)(key) : undefined;
}

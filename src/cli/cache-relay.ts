/**
 * One cache for all workers (--workers N --cache DIR, issue 17): the
 * primary relays the cache's events between its workers and keeps the fill
 * locks, over the same IPC channel as worker-protocol.ts but in messages of
 * their own type ('cache'), which worker-link.ts and primary.ts's own
 * handlers ignore.
 *
 * - A worker's event (an entry stored, freshened or removed; a key
 *   invalidated, RFC 9111 §4.4) goes to every other worker, in the order the
 *   primary received them (src/cache/peers.ts says what each does with it).
 * - Key locks: one worker at a time fetches a key for the store,
 *   revalidates it in the background (RFC 5861 §3) or combines parts of it
 *   (RFC 9111 §3.4). The primary grants a key's lock to the first worker
 *   that asks and answers 'held' to the others until it is released; then
 *   (or when the holder dies: its 'exit') it tells every worker 'unlocked'.
 *   The primary outlives its workers, so no lock outlives its holder and no
 *   lock file can be left stale on disk. A worker that got no answer within
 *   2 s goes on without the lock; a grant arriving after that is given
 *   back at once (WorkerCachePeers.lockAnswered).
 * - 'touched' (a worker's recent uses, in batches) is relayed like any
 *   event: the others update their LRU order (src/cache/touch-batch.ts).
 * - The admin listener's POST /purge (the primary's) is passed to one
 *   worker, which purges as for a PURGE request: its 'invalidated' reaches
 *   the others.
 */
import type { ChildProcess } from 'node:child_process';
import type { Logger } from '../log/logger.js';
import type { CachePeers, LockAnswer, PeerEvent, PublishedEvent } from '../cache/peers.js';
import type { PurgeResult } from '../cache/store.js';

/** How long a worker waits for the primary's answer to a lock request before filling without the lock. */
const LOCK_ANSWER_MS = 2_000;
/** How long the primary waits for a worker to answer a purge. */
const PURGE_ANSWER_MS = 2_000;

export type CacheToPrimary =
  | { type: 'cache'; op: 'event'; e: PublishedEvent }
  | { type: 'cache'; op: 'lock'; key: string; seq: number }
  | { type: 'cache'; op: 'unlock'; key: string }
  | { type: 'cache'; op: 'purged'; seq: number; result: PurgeResult };

export type CacheToWorker =
  | { type: 'cache'; op: 'event'; e: PeerEvent }
  /** `mine`: the asking worker holds it itself (another of its requests fills the key). */
  | { type: 'cache'; op: 'lock'; seq: number; granted: boolean; mine: boolean }
  /** The admin listener's POST /purge: the worker purges `url` and answers 'purged'. */
  | { type: 'cache'; op: 'purge'; seq: number; url: string };

function isCacheMessage<T extends { type: 'cache' }>(m: unknown): m is T {
  return typeof m === 'object' && m !== null && (m as { type?: unknown }).type === 'cache' && typeof (m as { op?: unknown }).op === 'string';
}

/** The primary's side: relays events, keeps the locks. */
export class CacheRelay {
  /** Key -> pid of the worker filling it. */
  private readonly locks = new Map<string, number>();
  private purgeSeq = 0;
  private readonly purges = new Map<number, (r: PurgeResult) => void>();

  constructor(
    private readonly workers: () => ChildProcess[],
    private readonly log: Logger,
  ) {}

  onMessage(from: ChildProcess, m: unknown): void {
    if (!isCacheMessage<CacheToPrimary>(m) || from.pid === undefined) return;
    if (m.op === 'event') this.send(m.e, (c) => c !== from);
    else if (m.op === 'lock') this.lock(from, from.pid, m.key, m.seq);
    else if (m.op === 'unlock' && this.locks.get(m.key) === from.pid) this.unlock(m.key);
    else if (m.op === 'purged') this.purges.get(m.seq)?.(m.result);
  }

  /**
   * Purges a URL (the admin listener's POST /purge) through one live worker:
   * how many stored responses went. A worker that does not answer within
   * PURGE_ANSWER_MS (stopped, its event loop blocked) is passed over for the
   * next: any worker can purge for all (its 'invalidated' reaches the
   * others), so one stuck worker must not make every purge fail. Its request
   * stays queued on its channel and runs if it wakes up: purging twice only
   * costs a refetch. Rejects when no worker answers.
   */
  async purge(url: string): Promise<PurgeResult> {
    const asked: Array<number | undefined> = [];
    for (;;) {
      const to = this.workers().find((c) => c.connected && !asked.includes(c.pid));
      if (to === undefined) throw new Error(asked.length === 0 ? 'no worker is running' : `no worker answered within ${PURGE_ANSWER_MS} ms (asked ${asked.join(', ')}); a worker that wakes up still purges`);
      asked.push(to.pid);
      try {
        return await this.purgeThrough(to, url);
      } catch (err) {
        this.log.warn({ workerPid: to.pid, url, detail: (err as Error).message }, 'cache purge (admin): a worker did not answer; asking the next one');
      }
    }
  }

  private purgeThrough(to: ChildProcess, url: string): Promise<PurgeResult> {
    const seq = ++this.purgeSeq;
    return new Promise<PurgeResult>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker ${to.pid} did not answer within ${PURGE_ANSWER_MS} ms`)), PURGE_ANSWER_MS);
      this.purges.set(seq, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      this.reply(to, { type: 'cache', op: 'purge', seq, url });
    }).finally(() => this.purges.delete(seq));
  }

  /** A worker died (kill -9, a crash): its fills, background revalidations and part commits will never end, so their keys are free again. */
  workerExited(pid: number | undefined): void {
    const held = [...this.locks].filter(([, p]) => p === pid).map(([key]) => key);
    for (const key of held) this.unlock(key);
    if (held.length > 0) this.log.warn({ workerPid: pid, keys: held.length }, 'cache: a worker died holding keys (filling, revalidating or combining parts); they are free again (its unfinished files are never served and are removed at the next start-up)');
  }

  private lock(from: ChildProcess, pid: number, key: string, seq: number): void {
    const holder = this.locks.get(key);
    if (holder === undefined) this.locks.set(key, pid);
    this.reply(from, { type: 'cache', op: 'lock', seq, granted: holder === undefined, mine: holder === pid });
  }

  /** Every worker is told, the holder too: its own requests may wait for the fill as well. */
  private unlock(key: string): void {
    this.locks.delete(key);
    this.send({ event: 'unlocked', key }, () => true);
  }

  private send(e: PeerEvent, to: (c: ChildProcess) => boolean): void {
    for (const c of this.workers()) if (to(c)) this.reply(c, { type: 'cache', op: 'event', e });
  }

  private reply(c: ChildProcess, m: CacheToWorker): void {
    if (c.connected) c.send(m, (err) => err && this.log.debug({ workerPid: c.pid, err: err.message }, 'cache message to a worker not delivered'));
  }
}

/** The channel to the primary as a worker uses it: the process's IPC channel (processChannel), or a stand-in in tests. */
export interface PrimaryChannel {
  /** False when there is no channel to the primary (it is gone): nothing was sent. */
  send(m: CacheToPrimary): boolean;
  onMessage(fn: (m: unknown) => void): void;
}

const processChannel: PrimaryChannel = { send, onMessage: (fn) => process.on('message', fn) };

/** The worker's side: the cache's CachePeers over the IPC channel to the primary. */
export class WorkerCachePeers implements CachePeers {
  private seq = 0;
  /**
   * Lock requests sent and not answered yet: the key, and who waits for the
   * answer (null once nobody does: no answer came within `answerMs`, and
   * the caller went on without the lock).
   */
  private readonly pending = new Map<number, { key: string; answer: ((a: LockAnswer) => void) | null }>();
  private listener: ((e: PeerEvent) => void) | null = null;
  private purger: ((url: string) => PurgeResult) | null = null;
  /** Events received before the cache subscribed (while its index was rebuilt). */
  private early: PeerEvent[] = [];

  constructor(
    private readonly channel: PrimaryChannel = processChannel,
    private readonly answerMs = LOCK_ANSWER_MS,
  ) {
    channel.onMessage((m: unknown) => {
      if (isCacheMessage<CacheToWorker>(m)) this.onMessage(m);
    });
  }

  private onMessage(m: CacheToWorker): void {
    if (m.op === 'lock') this.lockAnswered(m.seq, m.granted ? 'granted' : m.mine ? 'mine' : 'held');
    else if (m.op === 'purge') {
      if (this.purger !== null) this.channel.send({ type: 'cache', op: 'purged', seq: m.seq, result: this.purger(m.url) });
    } else if (this.listener !== null) this.listener(m.e);
    else this.early.push(m.e);
  }

  /**
   * The primary's answer to lock request `seq`. A grant that comes after the
   * requester stopped waiting (a busy primary, a long IPC queue) is given
   * back at once: nothing here will ever release it, and the primary would
   * keep the key for this process until it exits: every other worker's
   * fill of the key would wait its full --upstream-headers-timeout, and none
   * would revalidate the key in the background. Nothing else in this
   * process holds the key then (the primary granted it, so it had no
   * holder; this process's later requests get 'mine', which never creates
   * a hold here: cache.ts askLock), so the release frees only this grant.
   * ('mine' and 'held' gave this process nothing to give back.)
   */
  private lockAnswered(seq: number, a: LockAnswer): void {
    const request = this.pending.get(seq);
    if (request === undefined) return;
    this.pending.delete(seq);
    if (request.answer !== null) request.answer(a);
    else if (a === 'granted') this.unlock(request.key);
  }

  publish(e: PublishedEvent): void {
    this.channel.send({ type: 'cache', op: 'event', e });
  }

  lock(key: string): Promise<LockAnswer> {
    const seq = ++this.seq;
    return new Promise((resolve) => {
      const request = { key, answer: null as ((a: LockAnswer) => void) | null };
      const timer = setTimeout(() => {
        // Kept in `pending` (nobody waiting): a grant arriving later is given back (lockAnswered).
        request.answer = null;
        resolve('unknown');
      }, this.answerMs);
      request.answer = (a) => {
        clearTimeout(timer);
        resolve(a);
      };
      this.pending.set(seq, request);
      if (this.channel.send({ type: 'cache', op: 'lock', key, seq })) return;
      this.pending.delete(seq);
      request.answer('unknown');
    });
  }

  unlock(key: string): void {
    this.channel.send({ type: 'cache', op: 'unlock', key });
  }

  answerPurges(fn: (url: string) => PurgeResult): void {
    this.purger = fn;
  }

  subscribe(fn: (e: PeerEvent) => void): void {
    this.listener = fn;
    for (const e of this.early.splice(0)) fn(e);
  }
}

/**
 * False when there is no channel to the primary (it is gone). A send that
 * fails later (the primary died meanwhile) is ignored: the worker stops on
 * 'disconnect' (worker-link.ts), and a lock request then times out.
 */
function send(m: CacheToPrimary): boolean {
  if (process.send === undefined || !process.connected) return false;
  process.send(m, () => undefined);
  return true;
}

/**
 * The other processes sharing a cache directory (--workers N), as the cache
 * sees them: whatever carries the messages (src/cli/cache-relay.ts, the
 * primary relaying over IPC) stays outside src/cache.
 *
 * - Changes to the index (store.ts StoreChange) and invalidations (RFC 9111
 *   §4.4) are published to every other process, which applies them to its
 *   own index.
 * - One fill per key across the processes: a process about to fetch a key
 *   for the store asks for the key's lock; while another holds it, it waits
 *   for that fill to end ('unlocked', which follows the fill's 'stored') and
 *   answers from the store. The same lock is taken for a background
 *   revalidation (RFC 5861 §3: one per stored response on the host; a
 *   process that finds it held serves stale and starts none) and while
 *   parts of the key are combined (RFC 9111 §3.4); within a process, its
 *   holders share it (key-locks.ts).
 * - Uses of stored responses go out in batches ('touched', touch-batch.ts),
 *   so every process's LRU order counts the others' hits.
 */
import type { PurgeResult, StoreChange } from './store.js';

export type PeerEvent =
  | StoreChange
  /** §4.4: an unsafe request (or a purge) in another process invalidated the key at `at` (ms since the epoch). */
  | { event: 'invalidated'; key: string; at: number }
  /** The fill that held the key's lock ended (committed, not stored, or its process died). */
  | { event: 'unlocked'; key: string };

/** Published by a process; 'unlocked' is the lock keeper's to say. */
export type PublishedEvent = Exclude<PeerEvent, { event: 'unlocked' }>;

/** 'granted': this process fills the key; 'held': another one does; 'mine': this process already does; 'unknown': no answer (fill without the lock). */
export type LockAnswer = 'granted' | 'held' | 'mine' | 'unknown';

export interface CachePeers {
  publish(e: PublishedEvent): void;
  lock(key: string): Promise<LockAnswer>;
  unlock(key: string): void;
  /** Events from the others, in the order they were sent; those received before this call are delivered too. */
  subscribe(fn: (e: PeerEvent) => void): void;
  /** Purges asked for from outside the workers (the primary's admin listener): `fn` purges a URL and says how many responses went, and which files stayed. */
  answerPurges(fn: (url: string) => PurgeResult): void;
}

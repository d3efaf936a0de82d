/**
 * Recent uses of stored responses, told to the other processes sharing the
 * cache directory (--workers N) in batches, so that a hit in one counts as
 * a recent use for eviction in all of them. Each process evicts from its
 * own LRU order when its commits pass --cache-size; without these, a
 * response that one worker serves all the time is, for every other worker,
 * as old as when it was stored, and the first of them to commit something
 * evicts it for everyone.
 *
 * Never one message per hit: a hit puts the entry's id in a Set (an id
 * already there moves to the end, and nothing is allocated), and the batch
 * goes out as one message when it holds `maxIds` ids or `flushMs` after its
 * first one, in the order of last use. So the LRU orders agree up to about
 * `flushMs`: a response used only in that window's last moments may still
 * be evicted by another worker meanwhile, which costs one refetch.
 */

/** Default batch limits: at most one message a second per worker, or one per 1024 distinct responses used. */
export const TOUCH_FLUSH_MS = 1000;
export const TOUCH_MAX_IDS = 1024;

export class TouchBatch {
  private readonly ids = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  /** The id added last, while it is in `ids` (flush clears both): already at the end, nothing to move. */
  private last: string | null = null;

  /** `send`: one batch, ids least recently used first. */
  constructor(
    private readonly send: (ids: string[]) => void,
    private readonly maxIds = TOUCH_MAX_IDS,
    private readonly flushMs = TOUCH_FLUSH_MS,
  ) {}

  /** An entry was used (a hit): on the hot path, so a Set operation and at most one timer a batch. */
  add(id: string): void {
    // The same response hit again: it is the batch's last already (a Set's delete and add
    // would leave a deleted slot per hit, which V8 compacts every few adds).
    if (id === this.last) return;
    this.last = id;
    this.ids.delete(id);
    this.ids.add(id);
    if (this.ids.size >= this.maxIds) this.flush();
    else if (this.timer === null) {
      this.timer = setTimeout(() => this.flush(), this.flushMs);
      // Pending uses never keep a stopping process alive: they only order evictions.
      this.timer.unref();
    }
  }

  /** Sends what was collected (nothing when empty) and starts a new batch. */
  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.ids.size === 0) return;
    const ids = [...this.ids];
    this.ids.clear();
    this.last = null;
    this.send(ids);
  }

  /** Ids waiting for the next batch. */
  get size(): number {
    return this.ids.size;
  }
}

/**
 * This process's holds on the per-key locks the primary keeps across the
 * workers (peers.ts, src/cli/cache-relay.ts). The primary knows one holder
 * per key: a process. Within it, several operations may need the key at the
 * same time: a fill (one per key on the host), a background revalidation
 * (RFC 5861 §3: one per stored response on the host) and parts being
 * combined (RFC 9111 §3.4: one combination at a time, each from the parts
 * the previous one stored). They share the process's hold, counted here,
 * and the key goes back to the primary when the last of them ends: without
 * the count, the first to end would free the key while the others still
 * work on it, and another worker could start the same work at once.
 */
export class KeyLocks {
  /** Key -> operations of this process holding it (at least 1). */
  private readonly held = new Map<string, number>();

  /** `unlock`: gives a key back to the primary. */
  constructor(private readonly unlock: (key: string) => void) {}

  /** The primary granted `key` to this process: one holder. */
  granted(key: string): void {
    this.held.set(key, (this.held.get(key) ?? 0) + 1);
  }

  /** One more holder of a key this process holds already; false (nothing changes) when it does not hold it. */
  join(key: string): boolean {
    const n = this.held.get(key);
    if (n === undefined) return false;
    this.held.set(key, n + 1);
    return true;
  }

  /** A holder is done; the last one gives the key back. */
  release(key: string): void {
    const n = this.held.get(key);
    if (n === undefined) return;
    if (n > 1) this.held.set(key, n - 1);
    else {
      this.held.delete(key);
      this.unlock(key);
    }
  }

  holds(key: string): boolean {
    return this.held.has(key);
  }
}

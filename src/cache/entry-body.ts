/**
 * A stored entry's body as sendStored reads it (send-stored.ts StoredBody):
 * the entry's file is complete once committed, so its length, what is
 * available and completeness all come from the entry itself.
 *
 * A class, not an object literal of closures: the literal made four
 * closures per hit and, for the partial case, spread a second object into
 * it (V8's CloneObjectIC / CopyDataProperties), per 1 KiB hit
 * (bench/request-cost.ts). The methods live on the prototype; a hit makes
 * one object of a fixed shape.
 */
import type { Entry } from './store.js';
import { covers, type ByteRanges } from './partial.js';
import type { StoredBody } from './send-stored.js';

/** A complete entry's body: every byte of `entry.length` is in its file. */
export class EntryBody implements StoredBody {
  constructor(
    private readonly entry: Entry,
    readonly status: number,
    readonly reason: string,
    readonly headers: readonly string[],
    readonly fd: number,
    readonly age: number,
  ) {}

  length(): number {
    return this.entry.length;
  }

  available(): number {
    return this.entry.length;
  }

  complete(): boolean {
    return true;
  }

  progress(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * A partial entry's body (RFC 9111 §3.3): only `ranges` of its file hold
 * bytes, and sendStored checks by covers() that the range it sends is all
 * there (fromParts chose one that is); the rest of the file is a hole.
 */
export class PartialEntryBody extends EntryBody {
  constructor(
    private readonly part: Entry & { ranges: ByteRanges },
    status: number,
    reason: string,
    headers: readonly string[],
    fd: number,
    age: number,
  ) {
    super(part, status, reason, headers, fd, age);
  }

  covers(start: number, end: number): boolean {
    return covers(this.part.ranges, start, end);
  }
}

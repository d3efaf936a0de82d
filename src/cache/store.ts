/**
 * The cache on disk: one body file and one metadata file per stored response,
 * an in-memory index rebuilt from the metadata at start-up, and a size limit
 * kept by evicting the least recently used responses.
 *
 *   DIR/<2 hex>/<id>.body        exactly the body bytes (sendfile reads them)
 *   DIR/<2 hex>/<id>.meta.json   key, Vary selection, status, header fields, length, times,
 *                                and for a partial entry the byte ranges it holds
 *
 * A partial entry (RFC 9111 §3.3, partial.ts) has a sparse body file of the
 * complete length in which only its `ranges` are written; it is committed
 * like any other, and it is never changed either: a new part makes a new
 * entry (its ranges copied into a new file, copyParts()) that replaces it.
 *
 * The commit protocol makes a partial fill impossible to serve, even after
 * kill -9 or a power cut: a body is written to `<id>.<pid>.body.tmp`, and
 * only when its length is verified complete is it fdatasync'ed and renamed to
 * `<id>.body`; the metadata is written to a temporary file
 * (`<id>.<pid>.meta.json.tmp`) and renamed after that. The metadata is the
 * commit record: at start-up, a body without metadata, metadata whose body is
 * missing or of another length, and the `.tmp` files of writers that are gone
 * are deleted. Each stored response gets a new random id, so replacing a
 * response never overwrites a file some reader still expects.
 *
 * The writer's pid in a temporary name is what lets several processes share
 * the directory (--workers N, cache-relay.ts): a worker starting (or
 * restarting after a crash) removes a `.tmp` only when its pid is not alive
 * (kill(pid, 0) says ESRCH), is its own (a previous process's, the pid reused),
 * or the file was not written for STALE_TEMP_MS; never another live worker's
 * fill in progress. Names without a pid (older versions) are always removed.
 *
 * Shared (`onChange` given): every change this process makes to the index
 * (a commit, a freshened entry, a removal) is reported, and changes made by
 * the others come in through applyRemote(), so each process's index follows
 * the directory. Of two responses with the same key and Vary selection, every
 * process keeps the same one: the later received (responseTime, then id), so
 * their indexes agree whatever order the reports arrive in.
 *
 * Eviction unlinks files: a hit that already opened the body keeps its file
 * descriptor, so the bytes it sends stay intact. Files in DIR that do not
 * match these names are never touched.
 *
 * Last access is kept in memory only (writing it to disk on every hit would
 * cost a syscall per request); after a restart the LRU order starts as the
 * order in which responses were received. Shared, each process evicts from
 * its own LRU order, which the others' uses reach in batches ('touched',
 * touch-batch.ts): a hit in one worker is a recent use in all of them.
 */
import crypto from 'node:crypto';
import fs, { promises as fsp, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import type { Logger } from '../log/logger.js';
import { freshnessLifetime } from './policy.js';
import { DEFAULT_TARGETS, type Targets } from './targeted.js';
import { heldBytes, validRanges, type ByteRanges } from './partial.js';
import { TouchBatch } from './touch-batch.js';

/** A response as stored: everything needed to answer from it without the origin. */
export interface StoredResponse {
  /** The primary key (the target URI, §2). */
  key: string;
  /** The request's values of the fields the response varies on (§4.1); null when it has no Vary. */
  vary: Record<string, string | null> | null;
  status: number;
  reason: string;
  /** As policy.headersToStore() left them: no hop-by-hop fields, no Content-Length, no Age. */
  headers: string[];
  /** Body bytes (of a partial entry: the complete length, RFC 9110 §14.4). */
  length: number;
  /**
   * A partial entry (§3.3): the byte ranges of the body it holds, [start, end),
   * sorted and merged; the rest of its file is a hole and must never be sent.
   * Absent or null: the whole body.
   */
  ranges?: ByteRanges | null;
  /** When the request that brought it was sent, and its response head received (ms since the epoch). */
  requestTime: number;
  responseTime: number;
  /** §4.2.3 corrected_initial_age, seconds. */
  initialAge: number;
}

export interface Entry extends StoredResponse {
  readonly id: string;
  readonly bodyFile: string;
  /** Freshness lifetime of the current header fields, seconds (§4.2.1). */
  lifetime: number;
  /** Body plus metadata bytes: what counts against the size limit. */
  diskBytes: number;
}

const metaSchema = z.object({
  // 2: a partial entry. A version of Aludel that knows only 1 drops it instead of serving its holes.
  v: z.union([z.literal(1), z.literal(2)]),
  key: z.string(),
  vary: z.record(z.string(), z.string().nullable()).nullable(),
  status: z.number().int().min(200).max(599),
  reason: z.string(),
  headers: z.array(z.string()).refine((h) => h.length % 2 === 0, 'name/value pairs'),
  length: z.number().int().nonnegative(),
  requestTime: z.number(),
  responseTime: z.number(),
  initialAge: z.number().nonnegative(),
  // Only in partial entries (v 2).
  ranges: z.array(z.tuple([z.number().int(), z.number().int()])).optional(),
});

/** Bytes per read when stored parts are copied into a new file (copyParts). */
const COPY_CHUNK = 256 * 1024;

const SUBDIR = /^[0-9a-f]{2}$/;
const BODY = /^([0-9a-f]{32})\.body$/;
const META = /^([0-9a-f]{32})\.meta\.json$/;
/** `<id>.<pid>.body.tmp`, `<id>.<pid>.meta.json.tmp`; without `.<pid>`: written by an older version. */
const TEMP = /^[0-9a-f]{32}(?:\.(\d+))?\.(?:body|meta\.json)\.tmp$/;

/** A temporary file not written for this long is removed at start-up even if its pid is alive (a pid reused by another program). */
export const STALE_TEMP_MS = 60 * 60 * 1000;
/** Shared: a body without metadata younger than this may be another process's commit in progress (body renamed, metadata next). */
const YOUNG_ORPHAN_MS = 10 * 60 * 1000;

/**
 * What one process reports of its changes to the index, for the others
 * sharing the directory. 'stored' with `replaces`: the entry takes the place
 * of that one whatever their times (a partial entry combined from it,
 * RFC 9111 §3.4), which every process then drops. 'touched': the entries
 * used since the last batch, least recently used first (touch-batch.ts).
 */
export type StoreChange =
  | { event: 'stored'; id: string; key: string; replaces?: string }
  | { event: 'removed'; id: string; key: string }
  | { event: 'touched'; ids: string[] };

/** A file of a removed entry that unlink(2) refused (EROFS, EACCES, EPERM, EIO). */
export interface UndeletedFile {
  file: string;
  code: string;
  detail: string;
}

/** What a purge of a key did: entries dropped from the index, and the files of theirs still on disk. */
export interface PurgeResult {
  purged: number;
  undeleted: UndeletedFile[];
}

/** A body being written; becomes an entry's body at commit, or is deleted. */
export class BodyFile {
  readonly id: string;
  readonly tmpPath: string;
  readonly handle: FileHandle;
  /** Bytes appended so far. */
  written = 0;

  constructor(id: string, tmpPath: string, handle: FileHandle) {
    this.id = id;
    this.tmpPath = tmpPath;
    this.handle = handle;
  }

  /** Readers use this with explicit offsets (sendfile, pread), so it is shared safely. */
  get fd(): number {
    return this.handle.fd;
  }

  /** Appends all of `buf` at the end; rejects with the fs error (ENOSPC, EIO, ...). */
  async append(buf: Buffer): Promise<void> {
    await this.writeAt(buf, this.written);
    this.written += buf.length;
  }

  /** Writes all of `buf` at `position` (a part of a partial entry, §3.3); `written` is the caller's to keep. */
  async writeAt(buf: Buffer, position: number): Promise<void> {
    let off = 0;
    while (off < buf.length) {
      const { bytesWritten } = await this.handle.write(buf, off, buf.length - off, position + off);
      off += bytesWritten;
    }
  }
}

export interface StoreOptions {
  dir: string;
  /** Body and metadata bytes kept at most; least recently used responses go first. */
  maxBytes: number;
  /** The targeted cache-control fields honoured (RFC 9213 §2.1): they can set an entry's lifetime. */
  targets?: Targets;
  log: Logger;
  /** The directory is shared with other processes (--workers N): each change to the index is reported here. */
  onChange?: (c: StoreChange) => void;
  /** Shared: uses are reported ('touched') in batches of at most this many entries (default TOUCH_MAX_IDS)... */
  touchMaxIds?: number;
  /** ... or this long after the first use of a batch (default TOUCH_FLUSH_MS). */
  touchFlushMs?: number;
}

/**
 * A cache directory that another user can write is refused: whoever writes
 * there chooses what the cache serves (and, for a root process, where its
 * renames land). Group or other write permission, or an owner that is
 * neither this user nor root, is such a directory; /tmp itself is one. The
 * error says how to mend it (sshd's StrictModes refuses keys for the same).
 */
function refuseForeignWriters(st: Stats, dir: string): void {
  const euid = process.geteuid?.() ?? st.uid;
  const problem =
    (st.mode & 0o022) !== 0 ? `it is writable by its group or by others (mode ${(st.mode & 0o7777).toString(8)}); chmod go-w it` : st.uid !== euid && st.uid !== 0 ? `it belongs to user ${st.uid}, who can write it; give this user (${euid}) its own directory` : null;
  if (problem === null) return;
  throw Object.assign(new Error(`${dir}: ${problem}: anyone who can write the cache directory can change what is served`), { code: 'EPERM' });
}

export class CacheStore {
  readonly dir: string;
  readonly maxBytes: number;
  private readonly targets: Targets;
  private readonly log: Logger;
  private readonly byKey = new Map<string, Entry[]>();
  /** Key -> ids of purged entries whose files unlink(2) refused: a later purge of the key tries them again. */
  private readonly undeletedByKey = new Map<string, Set<string>>();
  /** Every entry, least recently used first (a Map keeps insertion order; a touch re-inserts). */
  private readonly lru = new Map<string, Entry>();
  /**
   * The entry last put at the end of `lru` (insert, touch, touchRemote): while it is
   * still there (`lru.get(id)` is it), it is the most recently used one, and a touch of
   * it moves nothing. Spares the Map's delete and set per hit of the same response, whose
   * deleted slots also make V8 rebuild the table every few touches.
   */
  private newest: Entry | null = null;
  private total = 0;
  private readonly onChange: ((c: StoreChange) => void) | null;
  /** Shared: this process's uses, for the others' LRU order. */
  private readonly touches: TouchBatch | null;
  /** Called with the id of every entry that leaves the index (the cache's open body descriptors, open-bodies.ts). */
  onDropped: ((id: string) => void) | null = null;

  private constructor(o: StoreOptions) {
    this.dir = o.dir;
    this.maxBytes = o.maxBytes;
    this.targets = o.targets ?? DEFAULT_TARGETS;
    this.log = o.log;
    const onChange = o.onChange ?? null;
    this.onChange = onChange;
    this.touches = onChange === null ? null : new TouchBatch((ids) => onChange({ event: 'touched', ids }), o.touchMaxIds, o.touchFlushMs);
  }

  /** Other processes use the directory too (see the header comment). */
  get shared(): boolean {
    return this.onChange !== null;
  }

  /** Opens (creating it if needed) the cache directory and rebuilds the index from what is complete in it. */
  static async open(o: StoreOptions): Promise<CacheStore> {
    const store = new CacheStore(o);
    // 0700, as nginx creates its proxy_cache_path levels: what is stored is served to clients.
    const dirs = [o.dir, ...Array.from({ length: 256 }, (_, i) => path.join(o.dir, i.toString(16).padStart(2, '0')))];
    await fsp.mkdir(o.dir, { recursive: true, mode: 0o700 });
    await Promise.all(dirs.slice(1).map((d) => fsp.mkdir(d, { recursive: true, mode: 0o700 })));
    const stats = await Promise.all(dirs.map((d) => fsp.stat(d)));
    stats.forEach((st, i) => refuseForeignWriters(st, dirs[i]!));
    await store.rebuild();
    return store;
  }

  /** Bytes stored (bodies and metadata). */
  get bytes(): number {
    return this.total;
  }

  /** Responses stored. */
  get count(): number {
    return this.lru.size;
  }

  /** The stored responses (variants) of a key, oldest first. */
  variants(key: string): readonly Entry[] {
    return this.byKey.get(key) ?? [];
  }

  /** The entry is still in the index (not replaced, purged or evicted since it was selected). */
  holds(e: Entry): boolean {
    return this.lru.get(e.id) === e;
  }

  /** Marks a use, for LRU (shared: for the others' too, in the next batch). */
  touch(e: Entry): void {
    if (this.newest !== e || this.lru.get(e.id) !== e) {
      if (!this.lru.delete(e.id)) return;
      this.lru.set(e.id, e);
      this.newest = e;
    }
    this.touches?.add(e.id);
  }

  /**
   * Another process used these entries ('touched', least recently used
   * first): they become the most recently used here too. Ids not in this
   * index (removed meanwhile) are skipped. Returns how many moved.
   */
  touchRemote(ids: readonly string[]): number {
    let moved = 0;
    for (const id of ids) {
      const e = this.lru.get(id);
      if (e === undefined) continue;
      this.lru.delete(id);
      this.lru.set(id, e);
      this.newest = e;
      moved++;
    }
    return moved;
  }

  private paths(id: string): { body: string; meta: string } {
    const sub = path.join(this.dir, id.slice(0, 2));
    return { body: path.join(sub, `${id}.body`), meta: path.join(sub, `${id}.meta.json`) };
  }

  /** A new empty body file for a fill. */
  async create(): Promise<BodyFile> {
    const id = crypto.randomBytes(16).toString('hex');
    const tmp = tempName(this.paths(id).body);
    // wx: a fresh file (never someone else's); + so readers could share it, though they pread.
    return new BodyFile(id, tmp, await fsp.open(tmp, 'wx+'));
  }

  /**
   * Copies the bytes of `ranges` of a stored body into a new body file at the
   * same offsets: a new part joins a partial entry (§3.4) in a new file, the
   * stored one is never written (hits may be reading it). False when the
   * stored file is gone (evicted or replaced meanwhile): the new part then
   * stands alone.
   */
  async copyParts(from: Entry, file: BodyFile, ranges: ByteRanges): Promise<boolean> {
    let src: FileHandle;
    try {
      src = await fsp.open(from.bodyFile, 'r');
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') return false;
      throw err;
    }
    const buf = Buffer.allocUnsafe(COPY_CHUNK);
    try {
      for (const [a, b] of ranges) {
        for (let pos = a; pos < b; ) {
          const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, b - pos), pos);
          if (bytesRead === 0) throw new Error(`stored body ${from.bodyFile} ends at ${pos}, its ranges at ${b}`);
          await file.writeAt(buf.subarray(0, bytesRead), pos);
          pos += bytesRead;
        }
      }
    } finally {
      await src.close();
    }
    return true;
  }

  /** Deletes an unfinished body (the handle is the caller's to close). */
  async discard(file: BodyFile): Promise<void> {
    await fsp.unlink(file.tmpPath).catch(() => undefined);
  }

  /**
   * Makes a completely written body an entry: fdatasync, rename, then the
   * metadata (temporary file, rename). Replaces older responses of the same
   * key and Vary selection (§4: the newer one wins) and evicts down to the
   * limit. Rejects with the fs error, leaving nothing behind. Returns null
   * when the response alone is larger than the whole cache. `replaces`: the
   * entry this one was made from (parts combined, §3.4), replaced whatever
   * their times (see StoreChange).
   */
  async commit(file: BodyFile, r: StoredResponse, replaces: Entry | null = null): Promise<Entry | null> {
    const partial = isPartial(r);
    if (!partial && file.written !== r.length) throw new Error(`body file holds ${file.written} bytes, the response ${r.length}`);
    const p = this.paths(file.id);
    const json = JSON.stringify(toMeta(r));
    const entry = entryOf(r, file.id, p.body, freshnessLifetime(r.status, r.headers, r.responseTime, this.targets).seconds, storedBytes(r) + Buffer.byteLength(json));
    if (entry.diskBytes > this.maxBytes) {
      await this.discard(file);
      return null;
    }
    try {
      // A partial body's file gets its complete length (holes after the last part): load() checks it after a restart.
      if (partial) await file.handle.truncate(r.length);
      await file.handle.datasync();
      await fsp.rename(file.tmpPath, p.body);
      await writeAtomically(p.meta, json);
    } catch (err) {
      await Promise.all([fsp.unlink(file.tmpPath), fsp.unlink(p.body)].map((x) => x.catch(() => undefined)));
      throw err;
    }
    const replaced = replaces !== null && this.holds(replaces) ? replaces.id : undefined;
    this.place(entry, true, replaced);
    this.onChange?.({ event: 'stored', id: entry.id, key: entry.key, ...(replaced !== undefined ? { replaces: replaced } : {}) });
    this.evict(entry);
    return entry;
  }

  /**
   * Into the index, replacing the response of the same key and Vary
   * selection (§4: the newer one wins). One process alone: the entry given
   * always wins (it was received last). Shared: the later received wins,
   * whoever reports it (see the header comment); a loser's files go. The
   * entry `replaces` names always goes: its removal is not reported, since
   * the 'stored' saying `replaces` makes every process drop it in the same
   * step as it places the new one (a separate 'removed' first would leave
   * the key without an entry in between).
   */
  private place(entry: Entry, local: boolean, replaces?: string): void {
    for (const old of [...this.variants(entry.key)]) {
      if (!sameSelection(old.vary, entry.vary)) continue;
      const replaced = old.id === replaces;
      if (replaced || (local && !this.shared) || receivedLater(entry, old)) this.remove(old, local && !replaced);
      else {
        this.unlinkFiles(entry.id);
        return;
      }
    }
    this.insert(entry);
  }

  /**
   * A 304 freshened an entry (§4.3.4): new header fields and times, written
   * to its metadata atomically. The body is untouched.
   */
  async update(e: Entry, next: Pick<StoredResponse, 'headers' | 'requestTime' | 'responseTime' | 'initialAge'>): Promise<void> {
    e.headers = next.headers;
    e.requestTime = next.requestTime;
    e.responseTime = next.responseTime;
    e.initialAge = next.initialAge;
    e.lifetime = freshnessLifetime(e.status, e.headers, e.responseTime, this.targets).seconds;
    const { meta } = this.paths(e.id);
    const json = JSON.stringify(toMeta(e));
    await writeAtomically(meta, json);
    // Removed meanwhile (purged, evicted): the rename just brought its metadata back.
    if (!this.lru.has(e.id)) await fsp.unlink(meta).catch(() => undefined);
    else {
      this.total += storedBytes(e) + Buffer.byteLength(json) - e.diskBytes;
      e.diskBytes = storedBytes(e) + Buffer.byteLength(json);
      this.onChange?.({ event: 'stored', id: e.id, key: e.key });
    }
  }

  /**
   * Drops an entry from the index now; its files are unlinked in the
   * background (`now`: before this returns, so that no process sharing the
   * directory can open the body afterwards). `report`: tell the others.
   */
  remove(e: Entry, report = true, now = false): UndeletedFile[] {
    if (!this.forget(e.id)) return [];
    if (report) this.onChange?.({ event: 'removed', id: e.id, key: e.key });
    if (now) return this.unlinkFilesNow(e.id);
    this.unlinkFiles(e.id);
    return [];
  }

  /** Out of the index only (its files are someone else's to delete); false when it was not there. */
  private forget(id: string): boolean {
    const e = this.lru.get(id);
    if (e === undefined) return false;
    this.lru.delete(id);
    this.onDropped?.(id);
    this.total -= e.diskBytes;
    const list = this.byKey.get(e.key)!;
    list.splice(list.indexOf(e), 1);
    if (list.length === 0) this.byKey.delete(e.key);
    return true;
  }

  /** Metadata first: a crash in between leaves an orphan body, which start-up deletes. ENOENT: another process was first. */
  private unlinkFiles(id: string): void {
    const p = this.paths(id);
    void fsp.unlink(p.meta).catch(ignoreMissing).then(() => fsp.unlink(p.body).catch(ignoreMissing)).catch((err: unknown) => this.log.warn({ err, file: p.body }, 'cache: could not delete a removed response'));
  }

  /** The files that could not be deleted (ENOENT is not a failure: another process was first). */
  private unlinkFilesNow(id: string): UndeletedFile[] {
    const p = this.paths(id);
    const failed: UndeletedFile[] = [];
    for (const file of [p.meta, p.body]) {
      try {
        fs.unlinkSync(file);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        if (e.code === 'ENOENT') continue;
        this.log.warn({ err, file }, 'cache: could not delete a removed response');
        failed.push({ file, code: e.code ?? 'ERR_UNKNOWN', detail: e.message });
      }
    }
    return failed;
  }

  /**
   * Removes every variant of `key` from the index, and their files before
   * this returns (RFC 9111 §4.4): a process sharing the directory that has
   * not heard of it yet finds no body to send. `undeleted`: files still on
   * disk (a read-only or unwritable directory); they leave the index all
   * the same, so this process never serves them, but a restart would find
   * them, which is why a purge must say so (cache-layer.ts).
   */
  purge(key: string, report = true): PurgeResult {
    const list = [...this.variants(key)];
    const undeleted: UndeletedFile[] = [];
    const left = new Set<string>();
    for (const e of list) {
      const failed = this.remove(e, report, true);
      if (failed.length > 0) left.add(e.id);
      undeleted.push(...failed);
    }
    // Those an earlier purge could not delete: tried again, so that purging again once the directory is fixed finishes the job.
    const earlier = [...(this.undeletedByKey.get(key) ?? [])];
    for (const id of earlier) {
      const failed = this.unlinkFilesNow(id);
      if (failed.length > 0) left.add(id);
      undeleted.push(...failed);
    }
    if (left.size > 0) this.undeletedByKey.set(key, left);
    else this.undeletedByKey.delete(key);
    return { purged: list.length + earlier.length, undeleted };
  }

  /**
   * Another process sharing the directory changed the index: 'stored' (a new
   * entry, or new metadata of a known one) is read from its metadata on disk;
   * 'removed' is dropped here. `accept` may refuse a new entry (it is then
   * removed everywhere). Returns the entry placed, or null.
   */
  async applyRemote(c: StoreChange, accept: (e: Entry) => boolean = () => true): Promise<Entry | null> {
    if (c.event === 'touched') {
      this.touchRemote(c.ids);
      return null;
    }
    if (c.event === 'removed') {
      this.forget(c.id);
      return null;
    }
    const dir = path.dirname(this.paths(c.id).body);
    const loaded = await this.load(dir, c.id, true);
    const known = this.lru.get(c.id);
    if (loaded === null) {
      // Gone already (replaced, evicted, purged): its own 'removed' follows or came. What it replaced went all the same.
      if (c.replaces !== undefined) this.forget(c.replaces);
      return null;
    }
    if (known !== undefined) {
      Object.assign(known, { headers: loaded.headers, requestTime: loaded.requestTime, responseTime: loaded.responseTime, initialAge: loaded.initialAge, lifetime: loaded.lifetime });
      this.total += loaded.diskBytes - known.diskBytes;
      known.diskBytes = loaded.diskBytes;
      return known;
    }
    if (!accept(loaded)) {
      if (c.replaces !== undefined) this.forget(c.replaces);
      this.onChange?.({ event: 'removed', id: loaded.id, key: loaded.key });
      this.unlinkFiles(loaded.id);
      return null;
    }
    this.place(loaded, false, c.replaces);
    return this.holds(loaded) ? loaded : null;
  }

  private insert(e: Entry): void {
    // A Map's set of a key it has keeps the key's place: only a new id is the newest.
    if (!this.lru.has(e.id)) this.newest = e;
    this.lru.set(e.id, e);
    this.total += e.diskBytes;
    const list = this.byKey.get(e.key);
    if (list) list.push(e);
    else this.byKey.set(e.key, [e]);
  }

  /** Least recently used first, until the total fits; `keep` (just stored) goes last. */
  private evict(keep?: Entry): void {
    for (const e of this.lru.values()) {
      if (this.total <= this.maxBytes) return;
      if (e !== keep) {
        this.remove(e);
        this.log.debug({ key: e.key, bytes: e.diskBytes }, 'cache: evicted');
      }
    }
  }

  /**
   * The index from the directory: complete entries only (see the header
   * comment); everything unfinished is deleted. Oldest responses first, so
   * they are the first evicted.
   */
  private async rebuild(): Promise<void> {
    const found: Entry[] = [];
    let dropped = 0;
    for (const sub of (await fsp.readdir(this.dir)).filter((n) => SUBDIR.test(n))) {
      const dir = path.join(this.dir, sub);
      const names = await fsp.readdir(dir);
      const bodies = new Set(names.filter((n) => BODY.test(n)));
      const doomed: string[] = await this.deadTemps(dir, names);
      for (const name of names) {
        const id = META.exec(name)?.[1];
        if (id === undefined) continue;
        const entry = await this.load(dir, id, bodies.has(`${id}.body`));
        bodies.delete(`${id}.body`);
        if (entry) found.push(entry);
        else doomed.push(name, `${id}.body`);
      }
      doomed.push(...(await this.orphans(dir, bodies)));
      // Counted: the bodies (finished or not) that will never be served.
      const gone = await Promise.all(doomed.map((n) => fsp.unlink(path.join(dir, n)).then(() => !n.endsWith('.meta.json'), () => false)));
      dropped += gone.filter(Boolean).length;
    }
    found.sort((a, b) => a.responseTime - b.responseTime);
    for (const e of found) {
      for (const old of this.variants(e.key)) if (sameSelection(old.vary, e.vary)) this.remove(old);
      this.insert(e);
    }
    this.evict();
    this.log.info({ dir: this.dir, entries: this.count, bytes: this.total, maxBytes: this.maxBytes, deletedIncomplete: dropped }, 'cache index rebuilt');
  }

  /** The temporary files whose writer is gone (see the header comment): never a live process's fill in progress. */
  private async deadTemps(dir: string, names: readonly string[]): Promise<string[]> {
    const now = Date.now();
    const out: string[] = [];
    for (const name of names) {
      const m = TEMP.exec(name);
      if (m === null) continue;
      const pid = m[1] === undefined ? null : Number(m[1]);
      if (pid === null || pid === process.pid || !pidAlive(pid) || (await mtimeBefore(path.join(dir, name), now - STALE_TEMP_MS))) out.push(name);
      else this.log.debug({ file: name, pid }, 'cache: a fill in progress of another live process is left alone');
    }
    return out;
  }

  /** Bodies without metadata; shared, only old ones (a young one may be another process's commit in progress). */
  private async orphans(dir: string, bodies: Iterable<string>): Promise<string[]> {
    if (!this.shared) return [...bodies];
    const out: string[] = [];
    for (const name of bodies) if (await mtimeBefore(path.join(dir, name), Date.now() - YOUNG_ORPHAN_MS)) out.push(name);
    return out;
  }

  /** One entry from its metadata, if its body is there with exactly the recorded length. */
  private async load(dir: string, id: string, hasBody: boolean): Promise<Entry | null> {
    if (!hasBody) return null;
    try {
      const text = await fsp.readFile(path.join(dir, `${id}.meta.json`), 'utf8');
      const parsed = metaSchema.safeParse(JSON.parse(text));
      if (!parsed.success) return null;
      const bodyFile = path.join(dir, `${id}.body`);
      if ((await fsp.stat(bodyFile)).size !== parsed.data.length) return null;
      const { v, ...r } = parsed.data;
      // A partial entry whose ranges are not what partial.ts writes is dropped, never served.
      if ((v === 2) !== (r.ranges !== undefined) || (r.ranges !== undefined && !validRanges(r.ranges, r.length))) return null;
      return entryOf(r, id, bodyFile, freshnessLifetime(r.status, r.headers, r.responseTime, this.targets).seconds, storedBytes(r) + Buffer.byteLength(text));
    } catch {
      return null;
    }
  }
}

/**
 * An entry of the index: the stored fields (exactly those, whatever else `r`
 * carries) and the index's own. Every entry is this one literal, so all
 * share one hidden class: a hit reads the same fields of whichever entry it
 * finds (policy.ts reuse, send-stored.ts). Made by spread ({ ...r, id, ... })
 * each had a map of its own (V8 11.3, node 20: a warmed-up spread's copy
 * gets a new map when properties are added to it), and those reads went
 * megamorphic (test/unit/one-map.test.ts).
 */
export function entryOf(r: StoredResponse, id: string, bodyFile: string, lifetime: number, diskBytes: number): Entry {
  return {
    key: r.key, vary: r.vary, status: r.status, reason: r.reason, headers: r.headers, length: r.length, ranges: isPartial(r) ? r.ranges : undefined,
    requestTime: r.requestTime, responseTime: r.responseTime, initialAge: r.initialAge, id, bodyFile, lifetime, diskBytes,
  };
}

/** Exactly the stored fields, whatever else the object carries; `ranges` only for a partial entry. */
function toMeta(e: StoredResponse): { v: 1 | 2 } & StoredResponse {
  const meta = { v: 1 as const, key: e.key, vary: e.vary, status: e.status, reason: e.reason, headers: e.headers, length: e.length, requestTime: e.requestTime, responseTime: e.responseTime, initialAge: e.initialAge };
  return isPartial(e) ? { ...meta, v: 2, ranges: e.ranges } : meta;
}

/** A partial entry (§3.3): only some byte ranges of its body are stored. */
export function isPartial(e: StoredResponse): e is StoredResponse & { ranges: ByteRanges } {
  return e.ranges !== undefined && e.ranges !== null;
}

/** Body bytes actually on disk: what counts against the size limit (a partial body's holes take no space). */
function storedBytes(e: StoredResponse): number {
  return isPartial(e) ? heldBytes(e.ranges) : e.length;
}

/** Same Vary selection: the same fields with the same values (§4.1), or both without Vary. */
export function sameSelection(a: StoredResponse['vary'], b: StoredResponse['vary']): boolean {
  if (a === null || b === null) return a === b;
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => k in b && a[k] === b[k]);
}

/** Later received: the newer response (§4), ties broken by id, so that every process sharing a directory picks the same. */
function receivedLater(a: Entry, b: Entry): boolean {
  return a.responseTime !== b.responseTime ? a.responseTime > b.responseTime : a.id > b.id;
}

/** `<dir>/<id>.body` -> `<dir>/<id>.<pid>.body.tmp` (likewise `.meta.json`): the writer's pid in the name (see the header comment). */
function tempName(file: string): string {
  const base = path.basename(file);
  const dot = base.indexOf('.');
  return path.join(path.dirname(file), `${base.slice(0, dot)}.${process.pid}${base.slice(dot)}.tmp`);
}

/** kill(pid, 0): ESRCH is the only answer meaning no such process (EPERM: alive, someone else's). */
export function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code !== 'ESRCH';
  }
}

async function mtimeBefore(file: string, ms: number): Promise<boolean> {
  try {
    return (await fsp.stat(file)).mtimeMs < ms;
  } catch {
    return false;
  }
}

function ignoreMissing(err: unknown): void {
  if ((err as { code?: string }).code !== 'ENOENT') throw err;
}

/** Temporary file then rename: readers (and a restart) see the old content or the new, never a mix. */
async function writeAtomically(file: string, text: string): Promise<void> {
  const tmp = tempName(file);
  try {
    await fsp.writeFile(tmp, text);
    await fsp.rename(tmp, file);
  } catch (err) {
    await fsp.unlink(tmp).catch(() => undefined);
    throw err;
  }
}

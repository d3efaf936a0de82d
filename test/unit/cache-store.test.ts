/**
 * The cache's disk store (src/cache/store.ts) in temporary directories: only
 * complete bodies become entries, the index survives a reopen, whatever is
 * unfinished or inconsistent is deleted at start-up, LRU eviction keeps the
 * size limit; shared by several processes (--workers N), start-up leaves a
 * live writer's temporary files alone and the indexes follow each other's
 * reported changes.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterEach, describe, it } from 'node:test';
import { silentLogger } from '../../src/log/logger.js';
import { CacheStore, STALE_TEMP_MS, type StoreChange, type StoredResponse } from '../../src/cache/store.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-store-'));
  dirs.push(d);
  return d;
}

function open(dir: string, maxBytes = 1 << 30): Promise<CacheStore> {
  return CacheStore.open({ dir, maxBytes, log: silentLogger });
}

function response(key: string, length: number, more: Partial<StoredResponse> = {}): StoredResponse {
  const now = Date.now();
  return { key, vary: null, status: 200, reason: 'OK', headers: ['Cache-Control', 'max-age=60', 'Date', new Date(now).toUTCString()], length, requestTime: now, responseTime: now, initialAge: 0, ...more };
}

async function put(store: CacheStore, r: StoredResponse, body = crypto.randomBytes(r.length)) {
  const f = await store.create();
  await f.append(body);
  const e = await store.commit(f, r);
  await f.handle.close();
  return { entry: e, body };
}

/** Every file under dir, relative, sorted (no stat: a background unlink may remove one meanwhile). */
function files(dir: string): string[] {
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => path.relative(dir, path.join(d.parentPath, d.name))).sort();
}

/** Background unlinks of removed entries: wait until the files are gone. */
async function settled(dir: string, want: (names: string[]) => boolean): Promise<string[]> {
  for (let i = 0; i < 100; i++) {
    const now = files(dir);
    if (want(now)) return now;
    await new Promise((r) => setTimeout(r, 10));
  }
  return files(dir);
}

describe('CacheStore', () => {
  it('a body becomes visible only at commit, and only with the announced length', async () => {
    const dir = tempDir();
    const store = await open(dir);
    const f = await store.create();
    await f.append(Buffer.alloc(1000, 1));
    assert.deepEqual(files(dir).map((n) => path.basename(n)), [`${f.id}.${process.pid}.body.tmp`], 'while filling there is only a .tmp, named with the writer\'s pid');
    await assert.rejects(store.commit(f, response('https://h/a', 2000)), /holds 1000 bytes/);
    assert.equal(store.count, 0);
    await f.append(Buffer.alloc(1000, 2));
    const e = await store.commit(f, response('https://h/a', 2000));
    await f.handle.close();
    assert.ok(e);
    assert.deepEqual(files(dir).map((n) => path.basename(n)), [`${f.id}.body`, `${f.id}.meta.json`]);
    assert.equal(fs.statSync(e.bodyFile).size, 2000);
    assert.equal(store.variants('https://h/a').length, 1);
  });

  it('the index survives a reopen: same fields, same bytes', async () => {
    const dir = tempDir();
    const s1 = await open(dir);
    const a = await put(s1, response('https://h/a', 5000, { vary: { 'accept-encoding': 'gzip' } }));
    const b = await put(s1, response('https://h/b', 0, { status: 204, reason: 'No Content' }));
    const s2 = await open(dir);
    assert.equal(s2.count, 2);
    assert.equal(s2.bytes, s1.bytes);
    const [ra] = s2.variants('https://h/a');
    assert.deepEqual({ ...ra, lifetime: 0 }, { ...a.entry!, lifetime: 0 });
    assert.equal(ra!.lifetime, 60);
    assert.deepEqual(fs.readFileSync(ra!.bodyFile), a.body);
    assert.equal(s2.variants('https://h/b')[0]!.status, b.entry!.status);
  });

  it('start-up deletes unfinished and inconsistent files, keeps unrelated ones', async () => {
    const dir = tempDir();
    const s1 = await open(dir);
    const good = await put(s1, response('https://h/good', 100));
    const short = await put(s1, response('https://h/short', 100));
    const orphan = await put(s1, response('https://h/orphan', 100));
    const corrupt = await put(s1, response('https://h/corrupt', 100));
    const noBody = await put(s1, response('https://h/nobody', 100));
    const partial = await s1.create();
    await partial.append(Buffer.alloc(50));
    await partial.handle.close();
    // A killed fill (the .tmp), a body cut short, a body without metadata, unreadable
    // metadata, metadata without its body, and a file the store does not own.
    fs.truncateSync(short.entry!.bodyFile, 99);
    fs.unlinkSync(orphan.entry!.bodyFile.replace(/\.body$/, '.meta.json'));
    fs.writeFileSync(corrupt.entry!.bodyFile.replace(/\.body$/, '.meta.json'), '{"v":1,');
    fs.unlinkSync(noBody.entry!.bodyFile);
    fs.writeFileSync(path.join(dir, 'README'), 'mine');
    fs.writeFileSync(path.join(dir, '00', 'notes.txt'), 'mine too');
    const s2 = await open(dir);
    assert.equal(s2.count, 1);
    assert.equal(s2.variants('https://h/good')[0]!.id, good.entry!.id);
    const left = files(dir);
    assert.deepEqual(left, [path.join('00', 'notes.txt'), 'README', ...[`${good.entry!.id}.body`, `${good.entry!.id}.meta.json`].map((n) => path.join(n.slice(0, 2), n))].sort());
  });

  it('LRU eviction keeps the limit: the least recently used goes first', async () => {
    const dir = tempDir();
    const meta = 400; // about one metadata file
    const store = await open(dir, 3 * 1000 + 3 * meta);
    const a = await put(store, response('https://h/a', 1000));
    const b = await put(store, response('https://h/b', 1000));
    const c = await put(store, response('https://h/c', 1000));
    assert.equal(store.count, 3);
    store.touch(a.entry!);
    await put(store, response('https://h/d', 1000));
    assert.deepEqual(['a', 'b', 'c', 'd'].map((k) => store.variants(`https://h/${k}`).length), [1, 0, 1, 1], 'b was the least recently used');
    assert.ok(store.bytes <= store.maxBytes);
    const left = await settled(dir, (n) => !n.some((f) => f.includes(b.entry!.id)));
    assert.equal(left.filter((f) => f.includes(b.entry!.id)).length, 0, 'its files are deleted');
    assert.equal(left.filter((f) => f.includes(c.entry!.id)).length, 2);
    // A smaller limit at the next start-up evicts the oldest.
    const small = await open(dir, 1000 + meta);
    assert.equal(small.count, 1);
    assert.ok(small.bytes <= small.maxBytes);
  });

  /** A store with room for three 1000-byte responses (and their metadata), and which of `names` it holds. */
  async function roomForThree() {
    const store = await open(tempDir(), 3 * 1000 + 3 * 400);
    return { store, held: (...names: string[]) => names.map((k) => store.variants(`https://h/${k}`).length) };
  }

  it('a touch of the most recently used entry moves nothing; any other put or touch since makes it move again', async () => {
    const { store, held } = await roomForThree();
    const a = await put(store, response('https://h/a', 1000));
    const b = await put(store, response('https://h/b', 1000));
    store.touch(b.entry!);
    store.touch(b.entry!);
    // b was put last and touched since: still the newest; a touch of a moves it after b.
    store.touch(a.entry!);
    store.touch(a.entry!);
    const c = await put(store, response('https://h/c', 1000));
    // c, put since a's touches, is the newest now: touching a again must move it after c.
    store.touch(a.entry!);
    await put(store, response('https://h/d', 1000));
    assert.deepEqual(held('a', 'b', 'c', 'd'), [1, 0, 1, 1], 'b went first');
    await put(store, response('https://h/e', 1000));
    assert.deepEqual(held('a', 'c', 'd', 'e'), [1, 0, 1, 1], 'then c: a was touched after it');
    // A touch of an entry that left the index (replaced, evicted) puts nothing back.
    store.touch(c.entry!);
    assert.equal(store.holds(c.entry!), false);
    assert.equal(store.count, 3);
  });

  it('after another worker\'s use (touchRemote) made another entry the newest, a touch of the one that was moves it again', async () => {
    const { store, held } = await roomForThree();
    const [a, b, c] = [await put(store, response('https://h/a', 1000)), await put(store, response('https://h/b', 1000)), await put(store, response('https://h/c', 1000))];
    store.touch(a.entry!);
    store.touch(b.entry!);
    // Order now c, a, b; b is the newest. A remote touch of c (another worker's hit) makes c the newest.
    assert.equal(store.touchRemote([c.entry!.id]), 1);
    store.touch(b.entry!);
    await put(store, response('https://h/d', 1000));
    assert.deepEqual(held('a', 'b', 'c', 'd'), [0, 1, 1, 1], 'a went first');
    await put(store, response('https://h/e', 1000));
    assert.deepEqual(held('b', 'c', 'd', 'e'), [1, 0, 1, 1], 'then c: b moved after it');
  });

  it('a response larger than the whole cache is not stored', async () => {
    const dir = tempDir();
    const store = await open(dir, 1000);
    const { entry } = await put(store, response('https://h/big', 5000));
    assert.equal(entry, null);
    assert.equal(store.count, 0);
    assert.deepEqual(files(dir), []);
  });

  it('a newer response replaces the one with the same Vary selection; other variants stay', async () => {
    const dir = tempDir();
    const store = await open(dir);
    const gz = await put(store, response('https://h/v', 10, { vary: { 'accept-encoding': 'gzip' } }));
    await put(store, response('https://h/v', 10, { vary: { 'accept-encoding': null } }));
    const gz2 = await put(store, response('https://h/v', 20, { vary: { 'accept-encoding': 'gzip' } }));
    const v = store.variants('https://h/v');
    assert.equal(v.length, 2);
    assert.ok(v.includes(gz2.entry!) && !v.includes(gz.entry!));
    await settled(dir, (n) => !n.some((f) => f.includes(gz.entry!.id)));
    assert.deepEqual(store.purge('https://h/v'), { purged: 2, undeleted: [] });
    assert.equal(store.count, 0);
    assert.equal(store.bytes, 0);
    assert.deepEqual(await settled(dir, (n) => n.length === 0), []);
  });

  it('update rewrites the metadata atomically and survives a reopen', async () => {
    const dir = tempDir();
    const store = await open(dir);
    const { entry } = await put(store, response('https://h/u', 10));
    const later = Date.now() + 5000;
    await store.update(entry!, { headers: ['Cache-Control', 'max-age=600', 'ETag', '"x"'], requestTime: later, responseTime: later, initialAge: 3 });
    assert.equal(entry!.lifetime, 600);
    const again = (await open(dir)).variants('https://h/u')[0]!;
    assert.deepEqual(again.headers, ['Cache-Control', 'max-age=600', 'ETag', '"x"']);
    assert.equal(again.initialAge, 3);
    assert.equal(again.diskBytes, entry!.diskBytes);
    assert.ok(!files(dir).some((f) => f.endsWith('.tmp')));
  });

  it('a body being read keeps its bytes when the entry is evicted', async () => {
    const dir = tempDir();
    const store = await open(dir);
    const { entry, body } = await put(store, response('https://h/r', 4096));
    const fh = await fs.promises.open(entry!.bodyFile, 'r');
    try {
      store.purge('https://h/r');
      await settled(dir, (n) => n.length === 0);
      const buf = Buffer.alloc(4096);
      const { bytesRead } = await fh.read(buf, 0, 4096, 0);
      assert.equal(bytesRead, 4096);
      assert.deepEqual(buf, body);
    } finally {
      await fh.close();
    }
  });
  it('RFC 9111 §3.3: a partial entry round-trips a reopen with its ranges; its size counts the bytes held, not its holes', async () => {
    const dir = tempDir();
    const store = await open(dir);
    const f = await store.create();
    const body = crypto.randomBytes(100_000);
    await f.writeAt(body.subarray(0, 1000), 0);
    await f.writeAt(body.subarray(50_000, 51_000), 50_000);
    const e = (await store.commit(f, response('https://h/p', 100_000, { ranges: [[0, 1000], [50_000, 51_000]] })))!;
    await f.handle.close();
    assert.equal(fs.statSync(e.bodyFile).size, 100_000, 'a sparse file of the complete length');
    assert.ok(e.diskBytes < 3000, `diskBytes ${e.diskBytes}: 2000 body bytes and the metadata`);
    const again = await open(dir);
    const [back] = again.variants('https://h/p');
    assert.deepEqual(back?.ranges, [[0, 1000], [50_000, 51_000]]);
    assert.equal(back?.diskBytes, e.diskBytes);
    assert.ok(fs.readFileSync(back!.bodyFile).subarray(50_000, 51_000).equals(body.subarray(50_000, 51_000)));
  });

  it('RFC 9111 §3.3: a partial entry whose ranges are malformed is deleted at start-up, never served', async () => {
    const dir = tempDir();
    const store = await open(dir);
    const f = await store.create();
    await f.writeAt(crypto.randomBytes(10), 0);
    const e = (await store.commit(f, response('https://h/p', 100, { ranges: [[0, 10]] })))!;
    await f.handle.close();
    const meta = e.bodyFile.replace(/\.body$/, '.meta.json');
    const json = JSON.parse(fs.readFileSync(meta, 'utf8')) as { v: number; ranges: unknown };
    assert.equal(json.v, 2);
    // Malformed ranges, and ranges under version 1 (which a complete entry has): a version of Aludel
    // that knows no partial entries would read version 1 as a whole body, so partial ones are version 2.
    for (const [v, bad] of [[2, [[0, 101]]], [2, [[0, 10], [10, 20]]], [2, [[5, 5]]], [1, [[0, 10]]]] as const) {
      Object.assign(json, { v, ranges: bad });
      fs.writeFileSync(meta, JSON.stringify(json));
      const copy = tempDir();
      fs.cpSync(dir, copy, { recursive: true });
      const reopened = await open(copy);
      assert.equal(reopened.variants('https://h/p').length, 0, JSON.stringify(bad));
      assert.deepEqual(files(copy).filter((n) => !n.endsWith('.tmp')).length, 0);
    }
  });
});

/** A process that is alive until killed, and the pid of one that has exited. */
async function pids(): Promise<{ live: number; dead: number; stop(): void }> {
  const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
  const gone = spawn('true', [], { stdio: 'ignore' });
  await once(gone, 'exit');
  return { live: sleeper.pid!, dead: gone.pid!, stop: () => sleeper.kill('SIGKILL') };
}

/** Two stores on one directory, each told of the other's changes as the primary would relay them (in order); `touchMaxIds` 1: each use is sent at once. */
async function pair(dir: string, maxBytes = 1 << 30, touchMaxIds?: number): Promise<{ a: CacheStore; b: CacheStore; relayed(): Promise<void> }> {
  let chain: Promise<unknown> = Promise.resolve();
  const toB: StoreChange[] = [];
  const toA: StoreChange[] = [];
  const a = await CacheStore.open({ dir, maxBytes, log: silentLogger, onChange: (c) => toB.push(c), touchMaxIds });
  const b = await CacheStore.open({ dir, maxBytes, log: silentLogger, onChange: (c) => toA.push(c), touchMaxIds });
  const relayed = async (): Promise<void> => {
    while (toA.length + toB.length > 0) {
      for (const c of toB.splice(0)) chain = chain.then(() => b.applyRemote(c));
      for (const c of toA.splice(0)) chain = chain.then(() => a.applyRemote(c));
      await chain;
    }
  };
  return { a, b, relayed };
}

describe('CacheStore shared by several processes (--workers N)', () => {
  it('start-up removes the temporary files of dead writers, its own pid\'s and old names; a live writer\'s stay', async () => {
    const dir = tempDir();
    await open(dir);
    const p = await pids();
    try {
      const id = (n: number): string => n.toString(16).padStart(32, '0');
      const sub = path.join(dir, '00');
      const names = {
        live: `${id(1)}.${p.live}.body.tmp`,
        liveMeta: `${id(2)}.${p.live}.meta.json.tmp`,
        dead: `${id(3)}.${p.dead}.body.tmp`,
        deadMeta: `${id(4)}.${p.dead}.meta.json.tmp`,
        own: `${id(5)}.${process.pid}.body.tmp`,
        oldName: `${id(6)}.body.tmp`,
        oldMeta: `${id(7)}.meta.json.tmp`,
        staleLive: `${id(8)}.${p.live}.body.tmp`,
      };
      for (const n of Object.values(names)) fs.writeFileSync(path.join(sub, n), 'x');
      const old = new Date(Date.now() - STALE_TEMP_MS - 60_000);
      fs.utimesSync(path.join(sub, names.staleLive), old, old);
      await open(dir);
      assert.deepEqual(files(dir), [names.live, names.liveMeta].map((n) => path.join('00', n)).sort());
    } finally {
      p.stop();
    }
  });

  it('a commit, a freshening and a removal in one are seen by the other', async () => {
    const dir = tempDir();
    const { a, b, relayed } = await pair(dir);
    const { entry } = await put(a, response('https://h/x', 100));
    await relayed();
    const seen = b.variants('https://h/x');
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.id, entry!.id);
    assert.equal(b.bytes, a.bytes);
    await a.update(entry!, { headers: ['Cache-Control', 'max-age=600'], requestTime: Date.now(), responseTime: Date.now(), initialAge: 0 });
    await relayed();
    assert.equal(b.variants('https://h/x')[0]!.lifetime, 600);
    assert.deepEqual(a.purge('https://h/x'), { purged: 1, undeleted: [] });
    assert.ok(!fs.existsSync(entry!.bodyFile), 'a purge unlinks before it returns: no process can open the body after it');
    await relayed();
    assert.equal(b.count, 0);
    assert.equal(b.bytes, 0);
  });

  it('two commits of one key and Vary selection at once: both keep the later received, the other\'s files go', async () => {
    const dir = tempDir();
    const { a, b, relayed } = await pair(dir);
    const t = Date.now();
    // Committed in the opposite order of their responses: each process first places its own.
    const late = await put(b, response('https://h/k', 10, { responseTime: t + 1000 }));
    const early = await put(a, response('https://h/k', 20, { responseTime: t }));
    await relayed();
    assert.deepEqual(a.variants('https://h/k').map((e) => e.id), [late.entry!.id]);
    assert.deepEqual(b.variants('https://h/k').map((e) => e.id), [late.entry!.id]);
    assert.equal(a.bytes, b.bytes);
    assert.deepEqual(await settled(dir, (n) => n.length === 2), [`${late.entry!.id}.body`, `${late.entry!.id}.meta.json`].map((n) => path.join(n.slice(0, 2), n)).sort());
    assert.ok(!fs.existsSync(early.entry!.bodyFile));
  });

  it('an eviction in one is a removal in the other', async () => {
    const dir = tempDir();
    const { a, b, relayed } = await pair(dir, 2 * 1000 + 2 * 400);
    const first = await put(a, response('https://h/1', 1000));
    await put(b, response('https://h/2', 1000));
    await relayed();
    assert.equal(a.count, 2);
    await put(a, response('https://h/3', 1000));
    await relayed();
    assert.equal(a.variants('https://h/1').length, 0, 'the least recently used went');
    assert.equal(b.variants('https://h/1').length, 0);
    assert.equal(b.count, 2);
    const left = await settled(dir, (names) => !names.some((n) => n.includes(first.entry!.id)));
    assert.ok(!left.some((n) => n.includes(first.entry!.id)), 'its files were deleted');
  });

  it('a use in one is a recent use in the other: the other\'s eviction takes the least recently used on both', async () => {
    for (const used of [true, false]) {
      const dir = tempDir();
      // Three responses fit, four do not.
      const { a, b, relayed } = await pair(dir, 3 * 1000 + 3 * 400, 1);
      // In both orders: hot, e1, e2.
      const hot = await put(a, response('https://h/hot', 1000));
      await relayed();
      await put(b, response('https://h/e1', 1000));
      await put(b, response('https://h/e2', 1000));
      await relayed();
      // A hit in a: b never served it, so in b's own order it is the oldest until a's use reaches it.
      if (used) a.touch(hot.entry!);
      await relayed();
      await put(b, response('https://h/e3', 1000));
      await relayed();
      const gone = used ? 'https://h/e1' : 'https://h/hot';
      for (const s of [a, b]) {
        assert.equal(s.variants(gone).length, 0, `${used ? 'used in a' : 'not used'}: ${gone} evicted`);
        assert.equal(s.count, 3);
      }
      if (used) assert.equal(b.variants('https://h/hot').length, 1);
    }
  });

  it('uses of entries the other does not hold are skipped', async () => {
    const dir = tempDir();
    const { a } = await pair(dir);
    const { entry } = await put(a, response('https://h/x', 10));
    assert.equal(a.touchRemote(['f'.repeat(32), entry!.id]), 1);
  });

  it('a combination of parts replaces the entry it was made from in both, even when its response is older', async () => {
    const dir = tempDir();
    const { a, b, relayed } = await pair(dir);
    const t = Date.now();
    const held = await put(b, response('https://h/p', 10, { responseTime: t + 1000 }));
    await relayed();
    const from = a.variants('https://h/p')[0]!;
    assert.equal(from.id, held.entry!.id);
    // Without `replaces`, an older response loses to the stored one (§4: the newer wins) ...
    const f1 = await a.create();
    await f1.append(crypto.randomBytes(10));
    const older = await a.commit(f1, response('https://h/p', 10, { responseTime: t }));
    await f1.handle.close();
    await relayed();
    for (const s of [a, b]) assert.deepEqual(s.variants('https://h/p').map((e) => e.id), [held.entry!.id]);
    assert.ok(older !== null);
    // ... with it (the entry it combined), it takes its place everywhere.
    const f2 = await a.create();
    await f2.append(crypto.randomBytes(10));
    const combined = await a.commit(f2, response('https://h/p', 10, { responseTime: t }), from);
    await f2.handle.close();
    await relayed();
    for (const s of [a, b]) assert.deepEqual(s.variants('https://h/p').map((e) => e.id), [combined!.id]);
    const left = await settled(dir, (n) => n.length === 2);
    assert.deepEqual(left, [`${combined!.id}.body`, `${combined!.id}.meta.json`].map((n) => path.join(n.slice(0, 2), n)).sort());
  });
});

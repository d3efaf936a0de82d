/**
 * HttpCache with other workers (--workers N), through a stand-in for the
 * primary's side (CachePeers): a background revalidation (RFC 5861 §3)
 * takes the key's lock across the workers, starts none while another worker
 * holds it (and asks nothing more until that worker gives it back), does
 * not run when the entry was freshened or replaced by the time the lock
 * came, and shares this process's hold with a fill of the same key.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { HttpCache } from '../../src/cache/cache.js';
import type { Entry } from '../../src/cache/store.js';
import type { CachePeers, LockAnswer, PeerEvent, PublishedEvent } from '../../src/cache/peers.js';
import { silentLogger } from '../../src/log/logger.js';

/** The primary as one worker sees it: lock answers given by the test, unlocks and events recorded. */
class Peers implements CachePeers {
  answers: LockAnswer[] = [];
  /** Delivers an 'unlocked' of the key right behind the next answer, as one read of the IPC channel can. */
  unlockBehindAnswer = false;
  readonly asked: string[] = [];
  readonly unlocked: string[] = [];
  readonly published: PublishedEvent[] = [];
  private listener: ((e: PeerEvent) => void) | null = null;

  publish(e: PublishedEvent): void {
    this.published.push(e);
  }

  /** Other workers' events the primary relayed before its next answer (they arrive first on the channel). */
  eventsBeforeAnswer: PeerEvent[] = [];

  lock(key: string): Promise<LockAnswer> {
    this.asked.push(key);
    const a = this.answers.shift();
    assert.ok(a !== undefined, `a lock request for ${key} the test did not expect`);
    for (const e of this.eventsBeforeAnswer.splice(0)) this.listener!(e);
    const answer = Promise.resolve(a);
    if (this.unlockBehindAnswer) {
      this.unlockBehindAnswer = false;
      this.listener!({ event: 'unlocked', key });
    }
    return answer;
  }

  unlock(key: string): void {
    this.unlocked.push(key);
  }

  subscribe(fn: (e: PeerEvent) => void): void {
    this.listener = fn;
  }

  answerPurges(): void {}

  /** An event from another worker, as the primary relays it; resolves once the cache has applied it (its queue runs on promises: done before the next setImmediate). */
  async emit(e: PeerEvent): Promise<void> {
    this.listener!(e);
    await new Promise((r) => setImmediate(r));
  }
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-locks-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
let serial = 0;

async function open(): Promise<{ cache: HttpCache; peers: Peers }> {
  const peers = new Peers();
  const cache = await HttpCache.open({ dir: path.join(dir, String(++serial)), maxBytes: 1 << 20, log: silentLogger, peers });
  return { cache, peers };
}

/** A stored response, stale (Age 100 past max-age=1) unless `cc` says otherwise; stored without the lock (beginFill). */
async function stored(cache: HttpCache, key: string, cc = 'max-age=1, stale-while-revalidate=600', initialAge = 100): Promise<Entry> {
  const f = cache.beginFill(key, []);
  const file = await cache.createBody();
  assert.ok(file);
  const now = Date.now();
  f.start({ key, vary: null, status: 200, reason: 'OK', headers: ['Cache-Control', cc, 'ETag', '"v"', 'Date', new Date(now).toUTCString()], requestTime: now, responseTime: now, initialAge }, 5, file);
  await f.append(Buffer.from('hello'));
  f.finish();
  const e = await cache.endFill(f);
  assert.ok(e);
  return e;
}

describe('HttpCache: background revalidation under the key\'s lock across the workers (RFC 5861 §3)', () => {
  it('granted: the revalidation goes ahead, a second one in this process does not start, its end gives the key back', async () => {
    const { cache, peers } = await open();
    const e = await stored(cache, 'https://h/a');
    peers.answers = ['granted'];
    assert.equal(cache.beginRefresh(e), true);
    assert.equal(await cache.lockRefresh(e), true);
    assert.equal(cache.beginRefresh(e), false);
    assert.deepEqual(peers.unlocked, []);
    cache.endRefresh(e);
    assert.deepEqual(peers.unlocked, ['https://h/a']);
    assert.equal(cache.beginRefresh(e), true, 'ended: the next stale hit may start one');
  });

  it('held by another worker: none here, and none asked for until that worker gives the key back', async () => {
    const { cache, peers } = await open();
    const e = await stored(cache, 'https://h/b');
    peers.answers = ['held'];
    assert.equal(cache.beginRefresh(e), true);
    assert.equal(await cache.lockRefresh(e), false);
    for (let i = 0; i < 5; i++) assert.equal(cache.beginRefresh(e), false, 'stale hits meanwhile start nothing');
    assert.deepEqual(peers.asked, ['https://h/b'], 'and ask the primary nothing');
    await peers.emit({ event: 'unlocked', key: 'https://h/b' });
    assert.equal(cache.beginRefresh(e), true);
    assert.deepEqual(peers.unlocked, [], 'a key this process never held is not given back');
  });

  it('held, and given back in the same read as the answer: the next stale hit asks again', async () => {
    const { cache, peers } = await open();
    const e = await stored(cache, 'https://h/g');
    peers.answers = ['held'];
    peers.unlockBehindAnswer = true;
    assert.equal(cache.beginRefresh(e), true);
    assert.equal(await cache.lockRefresh(e), false);
    await new Promise((r) => setImmediate(r));
    peers.answers = ['granted'];
    assert.equal(cache.beginRefresh(e), true, 'the other worker\'s revalidation is over: not waiting for an unlocked that already came');
    assert.equal(await cache.lockRefresh(e), true);
    cache.endRefresh(e);
    assert.deepEqual(peers.unlocked, ['https://h/g']);
  });

  it('granted after the entry was freshened or replaced (another worker\'s revalidation just ended): none, and the key goes back', async () => {
    const { cache, peers } = await open();
    const fresh = await stored(cache, 'https://h/c', 'max-age=600', 0);
    peers.answers = ['granted'];
    assert.equal(cache.beginRefresh(fresh), true);
    assert.equal(await cache.lockRefresh(fresh), false);
    assert.deepEqual(peers.unlocked, ['https://h/c']);
    const gone = await stored(cache, 'https://h/d');
    peers.answers = ['granted'];
    assert.equal(cache.beginRefresh(gone), true);
    cache.invalidate('https://h/d', false);
    assert.equal(await cache.lockRefresh(gone), false);
    assert.deepEqual(peers.unlocked, ['https://h/c', 'https://h/d']);
    assert.equal(cache.beginRefresh(fresh), true, 'the claims were given back');
  });

  it('no answer from the primary: it goes ahead without the lock, as a fill does', async () => {
    const { cache, peers } = await open();
    const e = await stored(cache, 'https://h/e');
    peers.answers = ['unknown'];
    assert.equal(cache.beginRefresh(e), true);
    assert.equal(await cache.lockRefresh(e), true);
    cache.endRefresh(e);
    assert.deepEqual(peers.unlocked, [], 'nothing to give back');
  });

  it('a fill and a revalidation of one key in this process share its hold: the key goes back when both ended', async () => {
    const { cache, peers } = await open();
    const e = await stored(cache, 'https://h/f');
    peers.answers = ['granted', 'mine'];
    const fill = await cache.claimFill('https://h/f', ['Accept-Language', 'fr'], false);
    assert.notEqual(fill, 'waited');
    assert.equal(cache.beginRefresh(e), true);
    assert.equal(await cache.lockRefresh(e), true, 'the primary says this process has the key: the revalidation joins its hold');
    if (fill !== 'waited') await cache.endFill(fill);
    assert.deepEqual(peers.unlocked, [], 'the revalidation still holds it');
    cache.endRefresh(e);
    assert.deepEqual(peers.unlocked, ['https://h/f']);
  });
});

describe('HttpCache: one fill per key across the workers, when another worker commits just before the grant', () => {
  it('granted with the other worker\'s entry already relayed: no fill, the key goes back, and the request looks again (a hit)', async () => {
    // Two workers on one directory: A commits the key; B missed just before and asks for the lock.
    const shared = path.join(dir, `shared-${++serial}`);
    const a = new Peers();
    const b = new Peers();
    const cacheA = await HttpCache.open({ dir: shared, maxBytes: 1 << 20, log: silentLogger, peers: a });
    const cacheB = await HttpCache.open({ dir: shared, maxBytes: 1 << 20, log: silentLogger, peers: b });
    const key = 'https://h/late';
    assert.equal(cacheB.select(key, [], false).entry, null, 'B misses');
    await stored(cacheA, key, 'max-age=600', 0);
    const relayed = a.published.filter((e) => e.event === 'stored');
    assert.equal(relayed.length, 1);
    // The primary relays A's 'stored' to B, then frees the key: B's request is granted it.
    b.eventsBeforeAnswer = relayed;
    b.answers = ['granted'];
    const fill = await cacheB.claimFill(key, [], true);
    assert.equal(fill, 'waited', 'a second fill would fetch what A just stored');
    assert.deepEqual(b.unlocked, [key], 'the key goes back at once');
    assert.notEqual(cacheB.select(key, [], false).entry, null, 'the second look finds A\'s entry');
  });

  it('granted with nothing new for the key: the fill goes ahead; a second look (mayWait false) never waits', async () => {
    const { cache, peers } = await open();
    peers.answers = ['granted', 'granted'];
    const first = await cache.claimFill('https://h/new', [], true);
    assert.notEqual(first, 'waited');
    if (first !== 'waited') await cache.endFill(first);
    const second = await cache.claimFill('https://h/new', [], false);
    assert.notEqual(second, 'waited');
    if (second !== 'waited') await cache.endFill(second);
  });
});

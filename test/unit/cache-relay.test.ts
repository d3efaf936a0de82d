/**
 * The primary's side of one cache for all workers (src/cli/cache-relay.ts),
 * with stand-ins for the workers' channels: events go to every other worker
 * in order, a key's lock goes to one worker at a time, a dead holder's keys
 * are freed and announced, and an admin purge is answered by one worker.
 * Then the workers' side (WorkerCachePeers) wired to a real relay through
 * stand-in channels: a grant that arrives after the worker stopped waiting
 * is given back at once.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { describe, it } from 'node:test';
import { silentLogger } from '../../src/log/logger.js';
import { CacheRelay, WorkerCachePeers, type CacheToPrimary, type CacheToWorker } from '../../src/cli/cache-relay.js';
import type { PeerEvent } from '../../src/cache/peers.js';

function worker(pid: number): ChildProcess & { got: CacheToWorker[] } {
  const got: CacheToWorker[] = [];
  return { pid, connected: true, got, send: (m: CacheToWorker) => got.push(m) } as unknown as ChildProcess & { got: CacheToWorker[] };
}

function setup(): { relay: CacheRelay; a: ReturnType<typeof worker>; b: ReturnType<typeof worker>; c: ReturnType<typeof worker> } {
  const [a, b, c] = [worker(101), worker(102), worker(103)];
  return { relay: new CacheRelay(() => [a, b, c], silentLogger), a, b, c };
}

describe('CacheRelay (the primary)', () => {
  it('relays a worker\'s events (its batches of uses too) to every other worker, in order, not back to it', () => {
    const { relay, a, b, c } = setup();
    relay.onMessage(a, { type: 'cache', op: 'event', e: { event: 'stored', id: 'x', key: 'k' } });
    relay.onMessage(a, { type: 'cache', op: 'event', e: { event: 'invalidated', key: 'k', at: 1 } });
    relay.onMessage(a, { type: 'ready' });
    relay.onMessage(a, { type: 'cache', op: 'event', e: { event: 'touched', ids: ['x', 'y'] } });
    assert.deepEqual(a.got, []);
    for (const w of [b, c]) assert.deepEqual(w.got.map((m) => m.op === 'event' && m.e.event), ['stored', 'invalidated', 'touched']);
    assert.deepEqual(b.got[2], { type: 'cache', op: 'event', e: { event: 'touched', ids: ['x', 'y'] } }, 'a batch of uses as one message');
  });

  it('a key\'s lock: granted to the first, held for the others (and said to be its own to the holder), freed by its holder only', () => {
    const { relay, a, b, c } = setup();
    relay.onMessage(a, { type: 'cache', op: 'lock', key: 'k', seq: 1 });
    relay.onMessage(b, { type: 'cache', op: 'lock', key: 'k', seq: 7 });
    relay.onMessage(a, { type: 'cache', op: 'lock', key: 'k', seq: 2 });
    relay.onMessage(b, { type: 'cache', op: 'lock', key: 'other', seq: 8 });
    assert.deepEqual(a.got, [{ type: 'cache', op: 'lock', seq: 1, granted: true, mine: false }, { type: 'cache', op: 'lock', seq: 2, granted: false, mine: true }]);
    assert.deepEqual(b.got, [{ type: 'cache', op: 'lock', seq: 7, granted: false, mine: false }, { type: 'cache', op: 'lock', seq: 8, granted: true, mine: false }]);
    relay.onMessage(b, { type: 'cache', op: 'unlock', key: 'k' });
    assert.equal(c.got.length, 0, 'not the holder: nothing happens');
    relay.onMessage(a, { type: 'cache', op: 'unlock', key: 'k' });
    for (const w of [a, b, c]) assert.deepEqual(w.got.at(-1), { type: 'cache', op: 'event', e: { event: 'unlocked', key: 'k' } });
    relay.onMessage(c, { type: 'cache', op: 'lock', key: 'k', seq: 1 });
    assert.deepEqual(c.got.at(-1), { type: 'cache', op: 'lock', seq: 1, granted: true, mine: false });
  });

  it('the admin listener\'s purge goes to one worker and resolves with its answer; with no answer it rejects', async () => {
    const { relay, a, b } = setup();
    const purged = relay.purge('https://h/x');
    assert.deepEqual(a.got, [{ type: 'cache', op: 'purge', seq: 1, url: 'https://h/x' }]);
    assert.deepEqual(b.got, []);
    const result = { purged: 2, undeleted: [{ file: '/c/0a/x.meta.json', code: 'EROFS', detail: 'read-only file system' }] };
    relay.onMessage(a, { type: 'cache', op: 'purged', seq: 1, result });
    assert.deepEqual(await purged, result, 'the files the worker could not delete reach the admin listener');
    const none = new CacheRelay(() => [], silentLogger);
    await assert.rejects(none.purge('https://h/x'), /no worker is running/);
  });

  it('a worker that dies frees its keys, and every worker is told', () => {
    const { relay, a, b, c } = setup();
    relay.onMessage(a, { type: 'cache', op: 'lock', key: 'k1', seq: 1 });
    relay.onMessage(a, { type: 'cache', op: 'lock', key: 'k2', seq: 2 });
    relay.onMessage(b, { type: 'cache', op: 'lock', key: 'k3', seq: 1 });
    relay.workerExited(a.pid);
    const unlocked = (w: ReturnType<typeof worker>): string[] => w.got.flatMap((m) => (m.op === 'event' && m.e.event === 'unlocked' ? [m.e.key] : []));
    assert.deepEqual(unlocked(b), ['k1', 'k2']);
    assert.deepEqual(unlocked(c), ['k1', 'k2']);
    relay.onMessage(c, { type: 'cache', op: 'lock', key: 'k1', seq: 9 });
    assert.deepEqual(c.got.at(-1), { type: 'cache', op: 'lock', seq: 9, granted: true, mine: false });
    relay.onMessage(c, { type: 'cache', op: 'lock', key: 'k3', seq: 10 });
    assert.deepEqual(c.got.at(-1), { type: 'cache', op: 'lock', seq: 10, granted: false, mine: false }, 'a live worker keeps its lock');
  });
});

/**
 * A worker process as the relay and its WorkerCachePeers see it: what the
 * primary sends reaches `peers` on a later turn (IPC is asynchronous); what
 * `peers` sends reaches the relay at once, or is held back while `slow` (a
 * busy primary that reads its channel late) until `flush()`.
 */
function linkedWorker(pid: number, relay: () => CacheRelay, answerMs: number) {
  let deliver: (m: unknown) => void = () => undefined;
  const proc = { pid, connected: true, send: (m: CacheToWorker) => setImmediate(() => deliver(m)) } as unknown as ChildProcess;
  const sent: CacheToPrimary[] = [];
  const queued: CacheToPrimary[] = [];
  const w = {
    proc,
    sent,
    slow: false,
    events: [] as PeerEvent[],
    flush: (): void => {
      for (const m of queued.splice(0)) relay().onMessage(proc, m);
    },
    peers: new WorkerCachePeers(
      {
        send: (m) => {
          sent.push(m);
          if (w.slow) queued.push(m);
          else relay().onMessage(proc, m);
          return true;
        },
        onMessage: (fn) => (deliver = fn),
      },
      answerMs,
    ),
  };
  w.peers.subscribe((e) => w.events.push(e));
  return w;
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('WorkerCachePeers (a worker) with the primary', () => {
  /** `aMs`: how long a waits for an answer (short where the test makes it give up; b never does). */
  function pair(aMs = 10_000) {
    let relay!: CacheRelay;
    const a = linkedWorker(201, () => relay, aMs);
    const b = linkedWorker(202, () => relay, 10_000);
    relay = new CacheRelay(() => [a.proc, b.proc], silentLogger);
    return { a, b };
  }

  it('answered in time: the grant is the caller\'s, nothing is given back by itself', async () => {
    const { a, b } = pair();
    assert.equal(await a.peers.lock('k'), 'granted');
    assert.equal(await a.peers.lock('k'), 'mine');
    assert.equal(await b.peers.lock('k'), 'held');
    await turn();
    assert.deepEqual(a.sent.map((m) => m.op), ['lock', 'lock'], 'no unlock until the caller gives the key back');
  });

  it('a grant arriving after the worker stopped waiting is given back at once, so the next worker gets the key', async () => {
    const { a, b } = pair(30);
    a.slow = true;
    assert.equal(await a.peers.lock('k'), 'unknown', 'no answer within answerMs: the caller goes on without the lock');
    // A second request of the same worker also given up on: the primary answers it 'mine', which gives nothing back.
    assert.equal(await a.peers.lock('k'), 'unknown');
    a.slow = false;
    a.flush(); // the primary reads both requests now: grants the first, 'mine' to the second
    await turn();
    await turn();
    assert.deepEqual(b.events, [{ event: 'unlocked', key: 'k' }], 'the other workers waiting for the key are woken');
    assert.equal(await b.peers.lock('k'), 'granted', 'the key is free for another worker, not kept until the first one exits');
    assert.deepEqual(a.sent, [
      { type: 'cache', op: 'lock', key: 'k', seq: 1 },
      { type: 'cache', op: 'lock', key: 'k', seq: 2 },
      { type: 'cache', op: 'unlock', key: 'k' },
    ], 'exactly one unlock: for the late grant, none for the late \'mine\'');
  });

  it('a late \'held\' is not answered', async () => {
    const { a, b } = pair(30);
    assert.equal(await b.peers.lock('k'), 'granted');
    a.slow = true;
    assert.equal(await a.peers.lock('k'), 'unknown');
    a.slow = false;
    a.flush();
    await turn();
    assert.deepEqual(a.sent.map((m) => m.op), ['lock']);
    assert.equal(await a.peers.lock('k'), 'held', 'b still holds it');
  });
});

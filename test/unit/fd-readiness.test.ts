/**
 * FdReadiness (src/transport/fd-readiness.ts) against a fake libuv poll that
 * records every uv_poll_start / uv_poll_stop: each change of interest is an
 * epoll_ctl, and an upstream connection waits for readability once per
 * response. Readability must stay watched from one wait to the next, yet
 * never wake the loop twice with nobody waiting (level-triggered polling
 * would spin), and writability must be dropped at once.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { READABLE, WRITABLE, type Native } from '../../src/native/binding.js';
import { FdReadiness } from '../../src/transport/fd-readiness.js';

/** The poll handle's side: what was asked of libuv, and a way to report readiness. */
function fakePoll(): { native: Native; starts: number[]; fire: (events: number) => void } {
  const starts: number[] = [];
  let onReady: ((status: number, events: number) => void) | null = null;
  const native = {
    pollNew: (_fd: number, cb: (status: number, events: number) => void) => { onReady = cb; return {}; },
    pollStart: (_poll: unknown, events: number) => { starts.push(events); },
    pollClose: () => undefined,
  } as unknown as Native;
  return { native, starts, fire: (events) => onReady!(0, events) };
}

describe('FdReadiness', () => {
  it('keeps readability watched from one wait to the next: one epoll_ctl for many responses', async () => {
    const { native, starts, fire } = fakePoll();
    const r = new FdReadiness(native, 7);
    for (let i = 0; i < 5; i++) {
      const ready = r.readable();
      fire(READABLE);
      await ready;
    }
    // Before: start(READABLE) and stop (0) around each of the five waits.
    assert.deepEqual(starts, [READABLE]);
  });

  it('a wake-up that finds nobody waiting drops readability (no second one)', async () => {
    const { native, starts, fire } = fakePoll();
    const r = new FdReadiness(native, 7);
    const ready = r.readable();
    fire(READABLE);
    await ready;
    // Bytes (or a FIN) arrive while nobody reads: one wake-up, then the interest goes.
    fire(READABLE);
    assert.deepEqual(starts, [READABLE, 0]);
    // The next wait watches again.
    const again = r.readable();
    assert.deepEqual(starts, [READABLE, 0, READABLE]);
    fire(READABLE);
    await again;
  });

  it('writability is dropped as soon as its waiter is resumed', async () => {
    const { native, starts, fire } = fakePoll();
    const r = new FdReadiness(native, 7);
    const w = r.writable();
    assert.deepEqual(starts, [WRITABLE]);
    fire(WRITABLE);
    await w;
    assert.deepEqual(starts, [WRITABLE, 0]);
    // With readability kept from an earlier wait, only writability goes.
    const rd = r.readable();
    fire(READABLE);
    await rd;
    const w2 = r.writable();
    fire(WRITABLE);
    await w2;
    assert.deepEqual(starts, [WRITABLE, 0, READABLE, READABLE | WRITABLE, READABLE]);
  });

  it('a reader parked again while it is being resumed costs no epoll_ctl at all', () => {
    const { native, starts, fire } = fakePoll();
    const r = new FdReadiness(native, 7);
    let resumed = 0;
    const pump = (): void => {
      resumed++;
      if (resumed < 3) r.parkReader(READABLE, pump);
    };
    r.parkReader(READABLE, pump);
    fire(READABLE);
    fire(READABLE);
    assert.equal(resumed, 2);
    assert.deepEqual(starts, [READABLE]);
  });
});

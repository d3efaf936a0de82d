/**
 * The worker's end of --workers (worker-link.ts) against a stand-in for the
 * IPC channel: a primary that is gone before or while the worker attaches
 * (killed while the worker started) is a logged, graceful stop, never an
 * unhandled ERR_IPC_CHANNEL_CLOSED. A reload applies the text the primary
 * sent, in the order sent.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, test } from 'node:test';
import type { ListenerSettings } from '../../src/config/proxy-settings.js';
import type { Listeners } from '../../src/cli/listeners.js';
import type { Logger } from '../../src/log/logger.js';
import type { TrafficStats } from '../../src/metrics/traffic-stats.js';
import { attachWorker, type PrimaryChannel, type WorkerParts } from '../../src/cli/worker-link.js';
import type { ToPrimary } from '../../src/cli/worker-protocol.js';

const GONE = 'the primary is gone: stopping this worker gracefully';

/** A channel like process's: a send on a closed one fails (here through its callback, as node does when given one). */
class FakeChannel extends EventEmitter implements PrimaryChannel {
  sent: ToPrimary[] = [];
  constructor(public connected: boolean) {
    super();
  }
  send(m: ToPrimary, done: (err: Error | null) => void): void {
    if (!this.connected) {
      process.nextTick(done, Object.assign(new Error('Channel closed'), { code: 'ERR_IPC_CHANNEL_CLOSED' }));
      return;
    }
    this.sent.push(m);
    process.nextTick(done, null);
  }
  /** The primary was killed: the channel closes, 'disconnect' once. */
  close(): void {
    this.connected = false;
    this.emit('disconnect');
  }
}

function parts(): { p: WorkerParts; warnings: string[]; listened: () => boolean; reloads: Array<[string | null, string | null]> } {
  const warnings: string[] = [];
  const reloads: Array<[string | null, string | null]> = [];
  let listened = false;
  const log = { warn: (_o: unknown, msg: string) => warnings.push(msg), info: () => undefined, debug: () => undefined, error: () => undefined };
  const listeners = { listen: async () => { listened = true; return ['127.0.0.1:1']; }, setTicketKeys: () => undefined };
  return {
    p: { listeners: listeners as unknown as Listeners, stats: {} as TrafficStats, group: null, log: log as unknown as Logger, acme: null, reload: (text, files) => reloads.push([text, files]) },
    warnings,
    reloads,
    listened: () => listened,
  };
}

const settings = { admin: null } as unknown as ListenerSettings;
const role = { index: 1, fds: [4] };
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 20));

describe('attachWorker: the primary is gone', () => {
  test('channel closed before the worker attaches: nothing sent, no throw, one line, stopped once, never listens', async () => {
    const channel = new FakeChannel(false);
    const { p, warnings, listened } = parts();
    let stops = 0;
    const attached = attachWorker(role, settings, p, { channel, stop: () => stops++ });
    let settled = false;
    attached.then(() => (settled = true), () => (settled = true));
    await settle();
    assert.deepEqual(channel.sent, []);
    assert.deepEqual(warnings, [GONE]);
    assert.equal(stops, 1);
    assert.equal(listened(), false);
    assert.equal(settled, false, 'attaching ends with the stop, not with a result');
  });

  test('channel closes while the worker waits for start: one line, stopped once, a late disconnect changes nothing', async () => {
    const channel = new FakeChannel(true);
    const { p, warnings, listened } = parts();
    let stops = 0;
    void attachWorker(role, settings, p, { channel, stop: () => stops++ });
    assert.deepEqual(channel.sent, [{ type: 'hello' }]);
    channel.close();
    channel.close();
    await settle();
    assert.deepEqual(warnings, [GONE]);
    assert.equal(stops, 1);
    assert.equal(listened(), false);
  });

  test('the primary answers: start, then listening on the inherited sockets; no stop', async () => {
    const channel = new FakeChannel(true);
    const { p, warnings } = parts();
    let stops = 0;
    const attached = attachWorker(role, settings, p, { channel, stop: () => stops++ });
    channel.emit('message', { type: 'start', ticketKeys: null, challenges: [] });
    assert.deepEqual(await attached, ['127.0.0.1:1']);
    assert.deepEqual(warnings, []);
    assert.equal(stops, 0);
  });
});

describe('attachWorker: reloads', () => {
  test('each reload message reloads with the text and files the primary checked, in order; null without --config', async () => {
    const channel = new FakeChannel(true);
    const { p, reloads } = parts();
    const attached = attachWorker(role, settings, p, { channel, stop: () => undefined });
    channel.emit('message', { type: 'start', ticketKeys: null, challenges: [] });
    await attached;
    channel.emit('message', { type: 'reload', config: 'root: /a\n', files: '{}' });
    channel.emit('message', { type: 'reload', config: 'root: /b\n', files: null });
    channel.emit('message', { type: 'reload', config: null, files: null });
    assert.deepEqual(reloads, [['root: /a\n', '{}'], ['root: /b\n', null], [null, null]]);
  });
});

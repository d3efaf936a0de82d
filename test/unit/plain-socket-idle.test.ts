/**
 * An upstream socket's idle timeout (PlainSocket.setIdleTimeout): a wait
 * with no progress for the whole period destroys the socket, and every wait
 * gets a whole period of its own. The timer is not moved when a wait starts
 * (startIdlePeriod): one armed by an earlier wait fires before the new
 * wait's period is over, and must then wait out the rest, not destroy it.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, describe, it } from 'node:test';
import { loadAddon, type Native } from '../../src/native/binding.js';
import { PlainSocket } from '../../src/transport/plain-socket.js';

const addon = loadAddon();
const servers: net.Server[] = [];

after(() => {
  for (const s of servers) s.close();
});

/** A server that writes each of `writes` ([ms after the accept, text]) and then says nothing. */
async function speaking(writes: Array<[number, string]>): Promise<number> {
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    for (const [ms, text] of writes) setTimeout(() => { if (!s.destroyed) s.write(text); }, ms);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return (server.address() as net.AddressInfo).port;
}

const idleError = (): Error => new Error('idle');

async function connected(port: number): Promise<PlainSocket> {
  return PlainSocket.connect(addon as Native, { host: '127.0.0.1', port, timeoutMs: 5000, onTimeout: () => new Error('connect') });
}

describe('an upstream socket\'s idle timeout (PlainSocket)', { skip: addon instanceof Error ? 'the addon is not built' : false }, () => {
  it('a wait started after the timer was armed gets a whole period; a silent one is cut after one', async () => {
    const sock = await connected(await speaking([[250, 'a'], [500, 'b']]));
    sock.setIdleTimeout(400, idleError);
    // The first wait arms the timer (due at 400 ms); 'a' ends it at 250 ms.
    assert.equal((await sock.read())?.toString(), 'a');
    // The second wait starts at 250 ms: the timer armed by the first fires at 400 ms, 150 ms into
    // this wait, which must go on until 'b' (250 ms into it, within its 400).
    assert.equal((await sock.read())?.toString(), 'b');
    // Nothing more comes: cut 400 ms after this wait started, by the caller's error.
    const started = performance.now();
    await assert.rejects(sock.read(), /idle/);
    const waited = performance.now() - started;
    assert.ok(waited >= 390 && waited < 2000, `cut after ${waited.toFixed(0)} ms`);
    assert.equal(sock.destroyed, true);
  });

  it('a shorter timeout set after a longer one cuts at the shorter period', async () => {
    const sock = await connected(await speaking([[100, 'a']]));
    sock.setIdleTimeout(10_000, idleError);
    // This wait arms a timer due in 10 s.
    assert.equal((await sock.read())?.toString(), 'a');
    sock.setIdleTimeout(300, idleError);
    const started = performance.now();
    await assert.rejects(sock.read(), /idle/);
    const waited = performance.now() - started;
    assert.ok(waited >= 290 && waited < 2000, `cut after ${waited.toFixed(0)} ms, not at the longer timer`);
  });

  it('no wait, no cut: a socket idle between waits stays open past its period', async () => {
    const sock = await connected(await speaking([[50, 'a'], [700, 'b']]));
    sock.setIdleTimeout(300, idleError);
    assert.equal((await sock.read())?.toString(), 'a');
    // Not waiting for 500 ms: the timer armed by the first wait fires meanwhile, with nobody waiting.
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(sock.destroyed, false);
    // 'b' comes 150 ms into this wait.
    assert.equal((await sock.read())?.toString(), 'b');
    sock.destroy();
  });
});

/**
 * `aludel proxy` in front of a raw keep-alive test origin, for a test file:
 * the origin (a net.Server) calls `onTarget` with each request head's target
 * as it arrives (raw-http.ts onRequestTargets), and writes what the test
 * wants on the socket; aludel proxies to it with --max-fails 0, so an origin
 * that closes without an answer is never taken out of the group. Both start
 * in the file's before() and stop in its after().
 */
import net from 'node:net';
import { after, before } from 'node:test';
import { startAludel, type Running } from './aludel-process.js';
import { makeFixtures, type StandardFixtures } from './fixtures.js';
import { listenLocal, onRequestTargets } from './raw-http.js';

/** Filled in by before(): the fixtures (certificate) and the running proxy. */
export interface RawOriginProxy {
  fx: StandardFixtures;
  p: Running;
}

export function proxyOnRawOrigin(onTarget: (sock: net.Socket, target: string) => void): RawOriginProxy {
  const at = {} as RawOriginProxy;
  let origin: net.Server | undefined;
  before(async () => {
    at.fx = await makeFixtures();
    origin = net.createServer((sock) => onRequestTargets(sock, (target) => onTarget(sock, target)));
    const originPort = await listenLocal(origin);
    at.p = await startAludel(['proxy', '--listen', '127.0.0.1:0', '--cert', at.fx.certFile, '--key', at.fx.keyFile, '--to', `http://127.0.0.1:${originPort}`, '--max-fails', '0']);
  });
  after(async () => {
    await at.p?.stop();
    origin?.close();
    at.fx?.cleanup();
  });
  return at;
}

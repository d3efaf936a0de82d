/** Loopback ports for origins the tests start: a free one to hand out, and whether one accepts. */
import net from 'node:net';

/**
 * A port that was free on 127.0.0.1 a moment ago (bound to :0 then closed),
 * for programs that cannot report the port they bound. Another process may
 * take it before the program binds it, so callers retry on EADDRINUSE.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** True when a TCP connect to 127.0.0.1:port succeeds within timeoutMs. */
/**
 * Whether 127.0.0.1:`port` accepts a connection before `timeoutMs`, trying
 * again after each refusal while `alive()` says the server may still come
 * up. For servers that say they listen before they bind (pebble logs
 * "Listening on" and only then calls ListenAndServeTLS), where one refused
 * connect says nothing yet.
 */
export async function acceptsWithin(port: number, timeoutMs: number, alive: () => boolean = () => true): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (alive() && Date.now() < deadline) {
    if (await accepts(port, Math.max(1, Math.min(1000, deadline - Date.now())))) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}

export function accepts(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

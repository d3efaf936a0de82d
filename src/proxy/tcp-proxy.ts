/**
 * `aludel tcp`: TLS termination for any TCP protocol (Redis, SMTP, a legacy
 * binary protocol): each client connection gets its own upstream connection
 * and a two-way tunnel, stunnel-style, with the upstream -> client direction
 * spliced into the kTLS socket.
 */
import type { Logger } from '../log/logger.js';
import type { Native } from '../native/binding.js';
import type { SecureConnection, SecureServer } from '../tls/types.js';
import { cryptoSite, onSecureConnections } from '../http/serve.js';
import { PipePool } from '../transport/pipe-pool.js';
import type { UpstreamGroup } from './upstream-group.js';
import type { TrafficStats } from '../metrics/traffic-stats.js';
import { isUpstreamFailure, tunnel, TunnelIdleError, tunnelResultOf } from './tunnel.js';
import { wasCutAtShutdown } from '../tls/shutdown-cut.js';
import { beingClosed, ConnectionSet, type Front } from '../http/front.js';

export interface TcpProxyOptions {
  server: SecureServer;
  group: UpstreamGroup;
  native: Native | null;
  stats: TrafficStats;
  upstreamIdleTimeoutMs: number;
  /** --idle-timeout: a tunnel with no byte either way for this long is closed on both sides. */
  idleTimeoutMs: number;
  log: Logger;
}

/** `tcp` on a listener: each finished handshake goes to a new front. */
export function startTcpProxy(o: TcpProxyOptions): Front {
  const front = createTcpProxy(o);
  onSecureConnections(o.server, o.log, o.stats, (conn) => front.accept(conn));
  return front;
}

/** The tunnel front: one upstream connection per client; draining lets tunnels run to their end. */
export function createTcpProxy(o: Omit<TcpProxyOptions, 'server'>): Front {
  const pipes = o.native ? new PipePool(o.native) : null;
  const conns = new ConnectionSet();
  /** Each tunnel until its line is written: drained means every tunnel said how it ended. */
  const tunnels = new Set<Promise<void>>();
  return {
    accept(conn) {
      conns.add(conn);
      const t = forward(conn).finally(() => tunnels.delete(t));
      tunnels.add(t);
    },
    drain: async () => {
      await conns.emptied();
      await Promise.all([...tunnels]);
    },
    get connections() {
      return conns.size;
    },
  };

  async function forward(conn: SecureConnection): Promise<void> {
    const started = process.hrtime.bigint();
    // Bytes the client sends before the upstream is connected wait in the stream.
    conn.pause();
    let upstream = '';
    try {
      const peer = o.group.pick();
      upstream = peer.upstream.url;
      let lease;
      try {
        lease = await o.group.lease(peer, true);
      } catch (err) {
        o.group.fail(peer, (err as { code?: string }).code ?? 'ERR_UNKNOWN');
        o.stats.upstreamError(upstream, (err as { code?: string }).code ?? 'ERR_UNKNOWN');
        throw err;
      }
      o.group.succeed(peer);
      // One idle limit, the tunnel's (nginx stream has one, proxy_timeout): both settings count
      // bytes either way, so the smaller governs, and a tunnel quiet that long is closed as idle,
      // not failed (the upstream's own timer raced it, and won with a warning at equal values).
      lease.stream.setIdleTimeout(0, upstreamIdle);
      const r = await tunnel({ conn, upstream: lease.stream, pipes, log: o.log, idleTimeoutMs: Math.min(o.idleTimeoutMs, o.upstreamIdleTimeoutMs) });
      o.stats.body(conn, r.downPath, r.down);
      o.log.info({ conn: conn.id, upstream, up: r.up, down: r.down, body: r.downPath, ...cryptoSite(conn.tls), ms: msSince(started) }, 'tunnel closed');
    } catch (err) {
      // What the tunnel carried before it ended is counted and said, however it ended.
      const r = tunnelResultOf(err);
      if (r !== null) o.stats.body(conn, r.downPath, r.down);
      const moved = r !== null ? { up: r.up, down: r.down } : {};
      if (err instanceof TunnelIdleError) {
        // Closed as configured, not a failure: one info line, as nginx's proxy_timeout ends a session.
        o.log.info({ conn: conn.id, upstream, ...moved, reason: 'idle timeout', idleMs: err.idleMs, ms: msSince(started) }, 'tunnel closed');
        conn.destroy();
        return;
      }
      if (wasCutAtShutdown(conn)) {
        // Cut at the --shutdown-timeout deadline (or by QUIT): the admin's stop, which its own
        // warning already reports, not the tunnel's failure (nginx's worker_shutdown_timeout).
        o.log.info({ conn: conn.id, upstream, ...moved, reason: 'shutdown', ms: msSince(started) }, 'tunnel closed');
        return;
      }
      const code = (err as { code?: string }).code ?? 'ERR_UNKNOWN';
      // The upstream's reset or refusal is a warning (nginx logs its recv() failure at error); the
      // client's going is info, as for an HTTP client that leaves.
      const level = !isUpstreamFailure(err) && (code === 'ECONNRESET' || code === 'EPIPE') ? 'info' : 'warn';
      o.log[level]({ conn: conn.id, upstream, error: code, detail: (err as Error).message, ...moved, ms: msSince(started) }, 'tunnel failed');
      // An upstream that failed after answering: the tunnel closes the client with a linger.
      if (!beingClosed(conn)) conn.destroy();
    }
  }
}

/** The upstream's own idle timer is off in a tunnel: its error is never made. */
const upstreamIdle = (): Error => new Error('upstream idle');

function msSince(t: bigint): number {
  return Math.round(Number(process.hrtime.bigint() - t) / 1e4) / 100;
}

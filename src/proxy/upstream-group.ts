/**
 * The upstreams behind one listener: round-robin over the live ones, passive
 * health (nginx max_fails / fail_timeout: failures within the window mark a
 * peer down for the window), optional active checks (a TCP connect, or a GET
 * of a path for HTTP upstreams, every interval), and a keep-alive pool of idle
 * connections per upstream (nginx `keepalive N`).
 *
 * Health only steers requests between peers; it never refuses one by itself.
 * As in nginx, a group's only upstream is never marked down by passive
 * checks (one failed connection would otherwise fail every request for
 * fail_timeout), and when every peer is down the one that failed least
 * recently is tried instead of answering 502 without trying.
 */
import type { Logger } from '../log/logger.js';
import type { Native } from '../native/binding.js';
import type { UpstreamTlsContexts } from '../tls/upstream-client.js';
import type { HealthCheck, Upstream } from '../config/proxy-settings.js';
import { UpstreamTimeoutError } from '../errors.js';
import { connectUpstream, type UpstreamStream } from './upstream-stream.js';
import { requestHead, statusCodeOf } from '../http/h1-wire.js';
import { wallNow } from '../http/wall-clock.js';

/**
 * How long idle connections past --upstream-keepalive stay pooled: long
 * enough to outlast the swings of a steady load (milliseconds), short
 * enough that a burst's connections are soon down to the limit again.
 */
const SURPLUS_GRACE_MS = 1000;

/** A pooled connection's idle timer is off: its error is never made. */
const idleError = (): Error => new Error('idle');

export interface Peer {
  readonly upstream: Upstream;
  /** Failures inside the current window. */
  fails: number;
  windowStart: number;
  /** Down until this time (ms since epoch); 0 = up. */
  downUntil: number;
  /** Marked down by the last active check (cleared by the next good one). */
  activeDown: boolean;
  /** When it last failed a request or an active check (ms since epoch); 0 = never. */
  lastFailAt: number;
  idle: Array<{ stream: UpstreamStream; since: number }>;
}

export interface GroupOptions {
  /** null: no addon; plain upstreams go through node:net. */
  native: Native | null;
  /** TLS upstreams on the system OpenSSL, kTLS where the kernel takes it (src/tls/upstream-client.ts); null: node:tls. */
  systemTls: UpstreamTlsContexts | null;
  upstreams: readonly Upstream[];
  health: HealthCheck;
  connectTimeoutMs: number;
  keepAlive: { maxIdle: number; idleTimeoutMs: number };
  log: Logger;
}

export interface Lease {
  peer: Peer;
  stream: UpstreamStream;
  /** Came from the idle pool: the upstream may have closed it just now (retry-worthy). */
  reused: boolean;
}

export class UpstreamGroup {
  readonly peers: Peer[];
  private readonly o: GroupOptions;
  private next = 0;
  private readonly timers: NodeJS.Timeout[] = [];
  private trimTimer: NodeJS.Timeout | null = null;

  constructor(o: GroupOptions) {
    this.o = o;
    this.peers = o.upstreams.map((upstream) => ({ upstream, fails: 0, windowStart: 0, downUntil: 0, activeDown: false, lastFailAt: 0, idle: [] }));
    // Idle connections past their time are closed even when no request comes to reuse them.
    if (o.keepAlive.maxIdle > 0) this.every(Math.max(1000, Math.floor(o.keepAlive.idleTimeoutMs / 2)), () => this.sweepIdle());
    if (o.health.intervalMs > 0) this.every(o.health.intervalMs, () => { for (const p of this.peers) void this.activeCheck(p); });
  }

  private every(ms: number, fn: () => void): void {
    const t = setInterval(fn, ms);
    t.unref();
    this.timers.push(t);
  }

  /** In rotation: not marked down by passive checks (until downUntil) or by the last active check. */
  isUp(p: Peer, now: number): boolean {
    return !p.activeDown && p.downUntil <= now;
  }

  /** The next live peer in round-robin order; when none is live, the one that failed least recently. */
  pick(): Peer {
    // The clock only for a peer marked down until some time (downUntil 0: never was): a
    // Date.now() per request was about 0.2k instructions (bench/request-cost.ts).
    let now = 0;
    for (let i = 0; i < this.peers.length; i++) {
      const p = this.peers[(this.next + i) % this.peers.length]!;
      if (p.downUntil > 0 && now === 0) now = Date.now();
      if (this.isUp(p, now)) {
        this.next = (this.next + i + 1) % this.peers.length;
        return p;
      }
    }
    return this.peers.reduce((a, b) => (b.lastFailAt < a.lastFailAt ? b : a));
  }

  /**
   * The most recently pooled connection to `p` that is still alive, or null
   * (then lease() connects). Synchronous: the common case costs no promise.
   * `retrySafe`: the caller sends the request again on a fresh connection if
   * this one turns out dead before any answer, so readiness having reported
   * nothing is check enough (isIdleAlive); others get the recv check.
   */
  leaseIdle(p: Peer, retrySafe: boolean): Lease | null {
    const now = wallNow();
    while (p.idle.length > 0) {
      const { stream, since } = p.idle.pop()!;
      if (now - since < this.o.keepAlive.idleTimeoutMs && stream.isIdleAlive(retrySafe)) return { peer: p, stream, reused: true };
      stream.destroy();
    }
    return null;
  }

  /** An idle pooled connection to `p` that is still alive (recv-checked), else a new one. */
  async lease(p: Peer, fresh = false): Promise<Lease> {
    const idle = fresh ? null : this.leaseIdle(p, false);
    if (idle !== null) return idle;
    const ms = this.o.connectTimeoutMs;
    const stream = await connectUpstream({ native: this.o.native, systemTls: this.o.systemTls, upstream: p.upstream, timeoutMs: ms, onTimeout: () => new UpstreamTimeoutError('connect', ms, p.upstream.url) });
    return { peer: p, stream, reused: false };
  }

  /**
   * A connection whose exchange ended cleanly, framed and complete, goes back
   * to the pool. Past --upstream-keepalive it is pooled all the same for a
   * moment (trimSurplus): under a load of more concurrent requests than
   * that, the number in flight swings, and a connection closed on one
   * release was a new connect (socket, handshake, close) a few requests
   * later, several percent of the proxy's CPU at 64 clients with the
   * default 32.
   */
  release(l: Lease): void {
    const p = l.peer;
    const max = this.o.keepAlive.maxIdle;
    if (l.stream.destroyed || max === 0) {
      l.stream.destroy();
      return;
    }
    l.stream.setIdleTimeout(0, idleError);
    l.stream.watchIdle?.(this.idleStirred);
    p.idle.push({ stream: l.stream, since: wallNow() });
    if (p.idle.length > max && this.trimTimer === null) this.scheduleTrim();
  }

  /**
   * Readiness saw something on a pooled connection: the origin closed it (a
   * FIN, a RST; its keepalive_timeout) or spoke unasked. Closed at once, as
   * nginx's ngx_http_upstream_keepalive_close_handler does: left pooled, it
   * sat in CLOSE-WAIT until the next lease or sweep, each holding a
   * descriptor while a busy origin closes hundreds. A wake-up with nothing
   * to read (isIdleAlive's recv finds EAGAIN) keeps it and watches again.
   * One function for every connection (no closure per release).
   */
  private readonly idleStirred = (stream: UpstreamStream): void => {
    for (const p of this.peers) {
      const i = p.idle.findIndex((e) => e.stream === stream);
      if (i < 0) continue;
      if (stream.isIdleAlive()) {
        stream.watchIdle?.(this.idleStirred);
        return;
      }
      p.idle.splice(i, 1);
      stream.destroy();
      return;
    }
    // Not pooled (leased again meanwhile): its exchange reads what came.
  };

  private scheduleTrim(): void {
    this.trimTimer = setTimeout(() => {
      this.trimTimer = null;
      this.trimSurplus();
    }, SURPLUS_GRACE_MS);
    this.trimTimer.unref();
  }

  /**
   * Closes pooled connections past --upstream-keepalive that have been idle
   * for SURPLUS_GRACE_MS, least recently used first (as nginx's keepalive
   * cache drops its oldest); leases take the most recent, so the surplus is
   * what the load has not needed meanwhile.
   */
  private trimSurplus(): void {
    const max = this.o.keepAlive.maxIdle;
    const old = Date.now() - SURPLUS_GRACE_MS;
    let left = false;
    for (const p of this.peers) {
      let drop = 0;
      while (p.idle.length - drop > max && p.idle[drop]!.since <= old) drop++;
      for (const e of p.idle.splice(0, drop)) e.stream.destroy();
      if (p.idle.length > max) left = true;
    }
    if (left) this.scheduleTrim();
  }

  /** Passive health: an upstream that failed to connect or answer. */
  fail(p: Peer, why: string): void {
    const now = Date.now();
    const { maxFails, failTimeoutMs } = this.o.health;
    p.lastFailAt = now;
    if (maxFails <= 0 || this.peers.length === 1) return;
    if (now - p.windowStart > failTimeoutMs) {
      p.windowStart = now;
      p.fails = 0;
    }
    if (++p.fails >= maxFails && p.downUntil <= now) {
      p.downUntil = now + failTimeoutMs;
      this.o.log.warn({ upstream: p.upstream.url, fails: p.fails, forMs: failTimeoutMs, reason: why }, 'upstream marked down');
    }
  }

  succeed(p: Peer): void {
    p.fails = 0;
  }

  private sweepIdle(): void {
    const now = Date.now();
    for (const p of this.peers) {
      p.idle = p.idle.filter((e) => {
        const keep = now - e.since < this.o.keepAlive.idleTimeoutMs && e.stream.isIdleAlive();
        if (!keep) e.stream.destroy();
        return keep;
      });
    }
  }

  /** TCP connect (and, with a path, GET path expecting 2xx/3xx) within the check timeout. */
  private async activeCheck(p: Peer): Promise<void> {
    const { timeoutMs, path } = this.o.health;
    let ok = false;
    let reason = '';
    let stream: UpstreamStream | null = null;
    try {
      stream = await connectUpstream({ native: this.o.native, systemTls: this.o.systemTls, upstream: p.upstream, timeoutMs, onTimeout: () => new UpstreamTimeoutError('connect', timeoutMs, p.upstream.url) });
      if (path !== null && p.upstream.protocol !== 'tcp') {
        stream.setIdleTimeout(timeoutMs, () => new UpstreamTimeoutError('headers', timeoutMs, p.upstream.url));
        await stream.write(requestHead('GET', path, hostHeader(p.upstream), ['User-Agent', 'aludel-health-check', 'Connection', 'close']));
        const first = await stream.read();
        const status = first ? statusCodeOf(first) : null;
        ok = status !== null && status < 400;
        reason = status !== null ? `status ${status}` : 'no HTTP response';
      } else {
        ok = true;
      }
    } catch (err) {
      reason = (err as { code?: string }).code ?? (err as Error).message;
    } finally {
      stream?.destroy();
    }
    if (!ok) p.lastFailAt = Date.now();
    if (ok === !p.activeDown) return; // no change
    p.activeDown = !ok;
    if (ok) this.o.log.info({ upstream: p.upstream.url }, 'upstream healthy again (active check)');
    else this.o.log.warn({ upstream: p.upstream.url, reason }, 'upstream marked down (active check)');
  }

  close(): void {
    for (const t of this.timers) clearInterval(t);
    if (this.trimTimer !== null) clearTimeout(this.trimTimer);
    this.trimTimer = null;
    for (const p of this.peers) {
      for (const e of p.idle) e.stream.destroy();
      p.idle = [];
    }
  }
}

/** Host header value for requests Aludel makes itself (health checks). */
export function hostHeader(u: Upstream): string {
  const host = u.host.includes(':') ? `[${u.host}]` : u.host;
  const dflt = u.protocol === 'https' ? 443 : 80;
  return u.port === dflt ? host : `${host}:${u.port}`;
}

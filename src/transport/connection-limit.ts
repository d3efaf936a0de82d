/**
 * --max-connections: at most `max` live connections per listener, TLS
 * handshakes in progress included. One over is accepted and closed at once,
 * without reading a byte: the kernel completed its TCP handshake already
 * (there is no refusing in listen(2)'s backlog), and closing with unread data
 * queued makes the kernel answer with a RST (RFC 9293 §3.6.1, tcp_close),
 * so the client learns at once instead of waiting out a handshake timeout.
 * That costs one accept(2) and one close(2) per refused connection, and no
 * memory. The warning is rate-limited: one line when the cap first binds,
 * then at most one per second with the number refused since.
 */
import type { Logger } from '../log/logger.js';

/** Lines about refused connections, at most one per this interval. */
const LOG_INTERVAL_MS = 1000;

export class ConnectionLimit {
  /** null: no limit. */
  readonly max: number | null;
  private readonly log: Logger;
  private readonly live: () => number;
  /** What sets the cap, for the log line: the option, or how the bound was chosen. */
  private readonly setting: string;
  private refusedSince = 0;
  private refusedTotal = 0;
  /** Idle connections closed to make room for new ones (side listeners, capSideListener). */
  private reclaimedSince = 0;
  private timer: NodeJS.Timeout | null = null;

  /** `live`: the listener's connections now (handshaking or open); `setting`: what set `max` (default: --max-connections). */
  constructor(max: number | null, log: Logger, live: () => number, setting = `--max-connections ${max}`) {
    this.max = max !== null && max > 0 ? max : null;
    this.log = log;
    this.live = live;
    this.setting = setting;
  }

  /** Whether one more connection may start now. */
  admits(): boolean {
    return this.max === null || this.live() < this.max;
  }

  /** Counts a refused connection; logs now if nothing was logged in the last second, else later. */
  refused(): void {
    this.refusedSince++;
    this.refusedTotal++;
    if (this.timer) return;
    this.report();
  }

  /** Counts an idle connection closed to admit a new one; logged as refusals are. */
  reclaimed(): void {
    this.reclaimedSince++;
    if (this.timer) return;
    this.report();
  }

  /** Connections refused since the listener started. */
  get total(): number {
    return this.refusedTotal;
  }

  private report(): void {
    const fields = { maxConnections: this.max, live: this.live(), refused: this.refusedSince, refusedTotal: this.refusedTotal };
    if (this.reclaimedSince === 0) this.log.warn(fields, `connection limit reached (${this.setting}): new connections are closed unread`);
    // As nginx's "N worker_connections are not enough, reusing connections" (ngx_drain_connections).
    else this.log.warn({ ...fields, reclaimed: this.reclaimedSince }, `connection limit reached (${this.setting}): the oldest idle connections are closed to admit new ones`);
    this.reclaimedSince = 0;
    this.refusedSince = 0;
    this.timer = setTimeout(() => {
      this.timer = null;
      // Refusals during the quiet second are reported now, and the next second stays quiet too.
      if (this.refusedSince > 0 || this.reclaimedSince > 0) this.report();
    }, LOG_INTERVAL_MS);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

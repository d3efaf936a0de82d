/**
 * What an Upgrade request (a WebSocket) leaves behind when it ends, once:
 * its access-log line and its body counters. nginx writes a WebSocket
 * request's access-log line when the connection closes, with $status 101,
 * $body_bytes_sent the bytes the tunnel carried to the client and
 * $request_time the tunnel's whole life; a line at the 101 would say 0 bytes
 * for every tunnel. Refused upgrades (400, a relayed 426, a 502) get theirs
 * as any request does.
 */
import type http from 'node:http';
import type { AccessLog } from '../log/access-log.js';
import type { TrafficStats } from '../metrics/traffic-stats.js';
import type { SecureConnection } from '../tls/types.js';
import type { BodyPath } from '../transport/copy-file.js';
import { cryptoSite, requestFields } from '../http/serve.js';
import { errCode } from './upstream-exchange.js';

export class UpgradeRecord {
  readonly started = process.hrtime.bigint();
  /** The status the client got (101, a refusal's, ours), or 499 when it left before any. */
  status = 0;
  upstream: string | null = null;
  /** How long until the upstream's response head came, as nginx's $upstream_header_time. */
  upstreamMs: number | null = null;
  /** Body bytes sent to the client: after a 101, what the tunnel carried to it. */
  bytes = 0;
  bodyPath: BodyPath = 'none';
  private ended = false;

  constructor(
    private readonly o: { access: AccessLog; stats: TrafficStats },
    readonly req: http.IncomingMessage,
    readonly conn: SecureConnection,
  ) {}

  /** The upstream's head has come. */
  answered(upstream: string, status: number): void {
    this.upstream = upstream;
    this.status = status;
    this.upstreamMs = this.msSoFar();
  }

  msSoFar(): number {
    return Math.round(Number(process.hrtime.bigint() - this.started) / 1e4) / 100;
  }

  /**
   * Counts the body and writes the access-log line (at most once): warn for
   * a failure worth an admin's look; `more`, fields of the tunnel's end the
   * line carries where no other line says them (upgrade.ts tunnelEnded).
   */
  end(level: 'info' | 'warn', error: unknown = null, more?: Record<string, unknown>): void {
    if (this.ended) return;
    this.ended = true;
    this.o.stats.body(this.conn, this.bodyPath, this.bytes);
    if (!this.o.access.enabled) return;
    const t = this.conn.tls;
    this.o.access.write(level, {
      ...requestFields(this.req, this.conn, this.status, this.bytes, this.started), body: this.bodyPath,
      upstream: this.upstream, upstreamMs: this.upstreamMs, tls: t.version, cipher: t.cipher, ...cryptoSite(t),
      ...more, ...(error !== null ? { error: errCode(error), detail: (error as Error).message } : {}),
    });
  }
}

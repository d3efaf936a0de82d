/**
 * HTTP/2 limits with nginx-like defaults, mapped onto node:http2 (nghttp2)
 * options, and the one defence node 20 does not offer as an option: a cap
 * on streams the client resets (HTTP/2 "rapid reset", CVE-2023-44487).
 *
 * What each limit stops:
 * - stream exhaustion: SETTINGS_MAX_CONCURRENT_STREAMS (RFC 9113 §6.5.2),
 *   nginx's http2_max_concurrent_streams 128; nghttp2 refuses streams past it
 *   (RST_STREAM REFUSED_STREAM) and node ends a session that keeps trying
 *   (maxSessionRejectedStreams).
 * - CONTINUATION floods and HPACK bombs: a header block is bounded by
 *   SETTINGS_MAX_HEADER_LIST_SIZE (--max-header-size, the decoded size as
 *   §6.5.2 counts it: name + value + 32 per field) and by maxHeaderListPairs;
 *   node resets a stream over either (RST_STREAM ENHANCE_YOUR_CALM) while the
 *   block is still arriving, and nghttp2 >= 1.61 caps CONTINUATION frames
 *   per block (CVE-2024-28182; node 20.12.1 took it in, with its own fix of
 *   CVE-2024-27983). The decoder's dynamic table is ours to size
 *   (headerTableSize 4096, RFC 7541 §4.2), so one small reference cannot
 *   expand past a 4 KiB entry.
 * - SETTINGS and PING floods: maxSettings entries per frame; nghttp2 ends a
 *   session whose unanswered ACKs pile up (its max_outbound_ack, 1000: the
 *   peer sends frames that need an ACK and never reads ours, CVE-2019-9512
 *   and CVE-2019-9515); maxOutstandingPings bounds our own; maxSessionMemory caps what one session may hold (node refuses new
 *   streams with ENHANCE_YOUR_CALM past it).
 * - invalid-frame floods: maxSessionInvalidFrames (CVE-2019-9514 and friends).
 * - zero-window stalls (CVE-2019-9517 style: the client opens streams and never
 *   grants flow-control window): each stream times out after --idle-timeout
 *   without progress, and the session after --idle-timeout without a frame.
 */
import type { ServerOptions } from 'node:http2';

export interface H2Limits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS, default 128 (nginx http2_max_concurrent_streams). */
  maxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: --max-header-size (nginx: large_client_header_buffers). */
  maxHeaderSize: number;
  /** Stream send/receive stall and idle session timeout: --idle-timeout (nginx keepalive_timeout, send_timeout). */
  idleTimeoutMs: number;
}

/** Fixed limits; each is node's default or lower, written out so that they are documented and tested. */
export const H2_FIXED = {
  /** Header fields per block, pseudo-headers included (node's default; the smallest useful is 4). */
  maxHeaderListPairs: 128,
  /** HPACK dynamic table the client may make us keep (RFC 7541 §4.2; the protocol default). */
  headerTableSize: 4096,
  /** MB one session may hold in nghttp2 buffers (node's default). */
  maxSessionMemoryMb: 10,
  /** Entries in one SETTINGS frame (node's default; RFC 9113 defines 6). */
  maxSettings: 32,
  /** Our own PINGs awaiting an ACK (node's default); the client's PINGs are bounded by nghttp2's max_outbound_ack. */
  maxOutstandingPings: 10,
  /** Invalid frames (bad flags, bad lengths) before the session is ended. */
  maxSessionInvalidFrames: 100,
  /** Streams refused (over the concurrent limit, out of memory) before the session is ended (node's default). */
  maxSessionRejectedStreams: 100,
} as const;

/** The node:http2 server options for these limits. */
export function h2ServerOptions(l: H2Limits): ServerOptions {
  return {
    settings: {
      maxConcurrentStreams: l.maxConcurrentStreams,
      maxHeaderListSize: l.maxHeaderSize,
      headerTableSize: H2_FIXED.headerTableSize,
      // A server never receives pushes and sends none (RFC 9113 §8.4).
      enablePush: false,
    },
    maxHeaderListPairs: H2_FIXED.maxHeaderListPairs,
    maxSessionMemory: H2_FIXED.maxSessionMemoryMb,
    maxSettings: H2_FIXED.maxSettings,
    maxOutstandingPings: H2_FIXED.maxOutstandingPings,
    maxSessionInvalidFrames: H2_FIXED.maxSessionInvalidFrames,
    maxSessionRejectedStreams: H2_FIXED.maxSessionRejectedStreams,
  };
}

/**
 * How many streams a client may reset before its session is ended. Rapid
 * reset (CVE-2023-44487) opens a stream and cancels it at once, so the
 * concurrent-stream limit never binds while the server starts work for
 * every one. nghttp2 1.57+ has such a limit (burst 1000, 33/s), but node 20
 * neither exposes it (streamResetBurst/streamResetRate came later) nor says
 * when it fires; this one binds first, and is logged. The burst is twice
 * the concurrent streams, the bound nginx 1.25.3 put on new streams per
 * event-loop turn; the rate is nghttp2's.
 */
export function resetBudgetFor(l: H2Limits): { burst: number; perSecond: number } {
  return { burst: 2 * l.maxConcurrentStreams, perSecond: 33 };
}

/**
 * A token bucket: `burst` events at once, then `perSecond` on average.
 * Pure apart from the clock, which is injectable for tests.
 */
export class ResetBudget {
  private tokens: number;
  private at: number;
  /** Events counted so far, for the log line. */
  spent = 0;

  constructor(
    readonly burst: number,
    readonly perSecond: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.at = now();
  }

  /** Counts one event; false once the budget is exhausted. */
  spend(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.at) / 1000) * this.perSecond);
    this.at = t;
    this.spent++;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/**
 * The size of a header list as RFC 9113 §6.5.2 counts it: each field's
 * name and value octets plus 32. rawHeaders as node gives them.
 */
export function headerListSize(rawHeaders: readonly string[]): number {
  let n = 0;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) n += Buffer.byteLength(rawHeaders[i]!) + Buffer.byteLength(rawHeaders[i + 1]!) + 32;
  return n;
}

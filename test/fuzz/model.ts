/** The shapes shared by the generator, the drivers and the checks. */

export type Target = 'serve' | 'proxy' | 'tcp';
export const TARGETS: readonly Target[] = ['serve', 'proxy', 'tcp'];

/**
 * What RFC 9112 makes of one request head the generator emitted:
 * - ok: well-formed; must be answered (and, by the proxy, forwarded) unless an
 *   earlier request ended the connection.
 * - either: the RFC lets the recipient reject it or accept (and repair) it.
 * - reject: a recipient MUST NOT process it (e.g. §6.3 invalid framing, §3.2
 *   duplicate Host): never forwarded, answered 4xx or closed.
 * - cut-head: the head never completes in this case: never forwarded.
 * - cut-body: the body never completes: the head may be forwarded.
 * - unknown: the bytes were mutated blindly: nothing is predicted.
 */
export type Verdict = 'ok' | 'either' | 'reject' | 'cut-head' | 'cut-body' | 'unknown';

export interface ReqInfo {
  /** "K.J": case index and position; carried in the target (?fz=) and in X-Fz. */
  marker: string;
  method: string;
  verdict: Verdict;
  /** Every conforming recipient agrees where this request ends (so later heads are in play). */
  clear: boolean;
  /** The server must close after answering it (Connection: close, HTTP/1.0; RFC 9112 §9.3, §9.6). */
  closes: boolean;
  /** For `reject`: whether framing (CL/TE/chunks) or a field is at fault. */
  severity?: 'framing' | 'field';
  /**
   * For `reject`: every fault is in the body's chunk framing, which a server
   * meets only after the head. A streaming proxy may then have sent the head
   * on, and serve may have answered it; but the request must never complete at
   * the origin, and nothing after it may be processed.
   */
  late?: boolean;
  /** Expected answer of an `ok` request: status, and the exact body when known (null: no body, e.g. HEAD). */
  expect?: { status: number; body?: Buffer | null };
  /** The mutations applied, for the report. */
  why: string[];
  /** The head as sent (latin1), for classifying findings. */
  head: string;
}

export interface FuzzCase {
  target: Target;
  seed: number;
  index: number;
  family: string;
  /** Written in order, one write (so one or more TLS records) each. */
  writes: Buffer[];
  /** The heads the generator sent as requests, in order (empty for tcp). */
  reqs: ReqInfo[];
  /** Markers of requests hidden inside bodies: seeing one at the origin is smuggling. */
  smuggled: string[];
  /** tcp: half-close after the bytes and expect the close to come back. */
  endClose: boolean;
}

export interface Finding {
  kind: string;
  target: Target;
  seed: number;
  /** Case index, or null for run-level findings (fd leak, RSS, crash without a case). */
  index: number | null;
  detail: string;
  /** Escaped bytes: the case, or what the origin received. */
  bytes?: string;
}

export function caseBytes(c: FuzzCase): Buffer {
  return Buffer.concat(c.writes);
}

/**
 * What one Aludel process has carried, counted where it happens, as
 * Prometheus metrics (prom-client) in a registry of its own: successful and
 * failed handshakes, connections and body bytes by where the crypto ran (tx/rx
 * kernel or user) and the path the bytes took (sendfile / splice keep them in
 * the kernel, write copies them through user space), upstream errors, and what the proxy's cache did.
 * `aludel serve`, `proxy` and `tcp` all report here; the admin listener
 * (admin-server.ts) exposes the registry, and the proxies log the totals at
 * shutdown.
 *
 * The per-connection and per-request calls are the hot path: every label
 * child whose labels are known up front (tx/rx x body path) is resolved once
 * here, the others (version x cipher, error codes) once per new tuple, so a
 * call is one cached lookup and prom-client's increment.
 */
import { Counter, Histogram, Registry } from 'prom-client';
import type { BodyPath } from '../transport/copy-file.js';
import type { SecureConnection } from '../tls/types.js';

const BODY_PATHS: readonly BodyPath[] = ['sendfile', 'splice', 'write', 'none'];
/**
 * The index of `p` in BODY_PATHS. A switch, not a lookup by name in an
 * object (BODY_PATH_INDEX[path]): a keyed load that sees a second name goes
 * megamorphic in V8 (keyed ICs are monomorphic in one name only), so once two
 * paths had been counted, every call probed the stub cache; the cases of
 * the switch compare the internalized strings by identity.
 */
export function bodyPathIndex(p: BodyPath): number {
  switch (p) {
    case 'sendfile': return 0;
    case 'splice': return 1;
    case 'write': return 2;
    case 'none': return 3;
  }
}
/**
 * What the cache did for one request (`aludel proxy --cache`): hit (fresh,
 * from disk), revalidated (stale or no-cache, the origin's 304 confirmed it),
 * collapsed (followed another request's fill), miss (forwarded, stored when
 * allowed), stale (validation brought a new response), bypass (a method or
 * precondition the cache does not answer), stale-while-revalidate (a stale
 * response sent at once, revalidated in the background, RFC 5861 §3),
 * stale-if-error (a stale response sent instead of an upstream error, §4).
 */
export type CacheOutcome = 'hit' | 'revalidated' | 'collapsed' | 'miss' | 'stale' | 'bypass' | 'stale-while-revalidate' | 'stale-if-error';
const CACHE_OUTCOMES: readonly CacheOutcome[] = ['hit', 'revalidated', 'collapsed', 'miss', 'stale', 'bypass', 'stale-while-revalidate', 'stale-if-error'];
/**
 * The index of `o` in CACHE_OUTCOMES, by a switch as bodyPathIndex's: a
 * lookup by name (CACHE_OUTCOME_INDEX[outcome]) went megamorphic once a
 * second outcome was counted (the misses that fill the cache, then hits),
 * one stub-cache probe per hit after that.
 */
export function cacheOutcomeIndex(o: CacheOutcome): number {
  switch (o) {
    case 'hit': return 0;
    case 'revalidated': return 1;
    case 'collapsed': return 2;
    case 'miss': return 3;
    case 'stale': return 4;
    case 'bypass': return 5;
    case 'stale-while-revalidate': return 6;
    case 'stale-if-error': return 7;
  }
}

/** tx/rx label values by index (ktlsTx ? 2 : 0) + (ktlsRx ? 1 : 0). */
const SIDES = [
  { tx: 'user', rx: 'user' },
  { tx: 'user', rx: 'kernel' },
  { tx: 'kernel', rx: 'user' },
  { tx: 'kernel', rx: 'kernel' },
] as const;

function side(conn: SecureConnection): number {
  return (conn.tls.ktlsTx ? 2 : 0) + (conn.tls.ktlsRx ? 1 : 0);
}

/**
 * From a completed handshake (the kTLS set-up included) on loopback, about a
 * millisecond natively and ~0.1 s on an emulated CPU, to a distant client's
 * round trips; the default --handshake-timeout is 10 s.
 */
const HANDSHAKE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type CounterChild = ReturnType<Counter<string>['labels']>;
type HistogramChild = ReturnType<Histogram<string>['labels']>;

/** Counts by body path, the same shape in /status and the shutdown log. */
export type PathTotals = Record<BodyPath, { bodies: number; bytes: number }>;

export interface TrafficTotals {
  connections: { total: number; kernelTx: number; kernelRx: number };
  handshakes: { ok: number; failed: number };
  bodies: PathTotals;
  upstreamErrors: Record<string, number>;
  /** Responses and body bytes by what the cache did (all zero without --cache). */
  cache: { responses: Record<CacheOutcome, number>; bytes: Record<CacheOutcome, number> };
}

/**
 * Counts of events and their bytes in plain numbers, by the index of a pair
 * of counter children, moved into those children when the counters are read
 * (prom-client calls collect() before each read): inc() builds its label
 * hash on every call, even on a child whose labels are fixed. Exact as
 * integers up to 2^53.
 */
class FoldedCounts {
  private readonly events: Float64Array;
  private readonly bytes: Float64Array;

  constructor(
    private readonly eventChildren: readonly CounterChild[],
    /** null: events only (no bytes are ever added for that index). */
    private readonly byteChildren: readonly (CounterChild | null)[],
  ) {
    this.events = new Float64Array(eventChildren.length);
    this.bytes = new Float64Array(eventChildren.length);
  }

  add(i: number, bytes: number): void {
    this.events[i] = this.events[i]! + 1;
    this.bytes[i] = this.bytes[i]! + bytes;
  }

  fold(): void {
    for (let i = 0; i < this.events.length; i++) {
      const events = this.events[i]!;
      const bytes = this.bytes[i]!;
      if (events === 0 && bytes === 0) continue;
      this.events[i] = 0;
      this.bytes[i] = 0;
      if (events > 0) this.eventChildren[i]!.inc(events);
      if (bytes > 0) this.byteChildren[i]?.inc(bytes);
    }
  }
}

/**
 * Increments of one counter child kept as a plain number until the counter is
 * read (FoldedCounts' reason): for the children made on the fly, one per
 * (version, cipher) or kernel mode seen, bumped once per handshake.
 */
class FoldedChild {
  pending = 0;
  constructor(private readonly child: CounterChild) {}

  fold(): void {
    if (this.pending === 0) return;
    this.child.inc(this.pending);
    this.pending = 0;
  }
}

type HandshakeChildren = { count: FoldedChild; seconds: HistogramChild };

export class TrafficStats {
  /** This process's registry (never prom-client's global one): tests and embedders may run several. */
  readonly registry = new Registry();

  private readonly connections: Counter<'tx' | 'rx'>;
  private readonly kernelConf: Counter<'tx_conf' | 'rx_conf'>;
  private readonly bodies: Counter<'path' | 'tx' | 'rx'>;
  private readonly bodyBytes: Counter<'path' | 'tx' | 'rx'>;
  private readonly handshakes: Counter<'version' | 'cipher' | 'result' | 'error'>;
  private readonly handshakeSeconds: Histogram<'version'>;
  private readonly upstreamErrors: Counter<'upstream' | 'code'>;

  /** Connections by side(), folded into the counter's children when it is read. */
  private readonly connectionCounts: FoldedCounts;
  /** body()'s counts, by path index * SIDES.length + side. */
  private readonly bodyCounts: FoldedCounts;
  private readonly handshakeChildren = new Map<string, HandshakeChildren>();
  /** The last handshake's (interned) version and cipher and their children: one Map lookup and key string less per handshake. */
  private lastVersion: string | null = null;
  private lastCipher: string | null = null;
  private lastHandshake: HandshakeChildren | null = null;
  private readonly failureChildren = new Map<string, CounterChild>();
  private readonly upstreamErrorChildren = new Map<string, CounterChild>();
  private readonly kernelConfChildren = new Map<string, FoldedChild>();
  private readonly cacheResponses: Counter<'outcome'>;
  private readonly cacheBytes: Counter<'outcome'>;
  /** cache()'s counts, by CACHE_OUTCOMES index. */
  private readonly cacheCounts: FoldedCounts;

  constructor() {
    const registers = [this.registry];
    this.connections = new Counter({
      name: 'aludel_connections_total',
      help: 'TLS connections established, by where record encryption (tx) and decryption (rx) run: kernel (kTLS) or user (OpenSSL)',
      labelNames: ['tx', 'rx'],
      registers,
      collect: () => this.connectionCounts.fold(),
    });
    this.kernelConf = new Counter({
      name: 'aludel_connections_kernel_tls_total',
      help: "kTLS connections by the kernel's own word (sock_diag ULP info, as ss -tie shows it): tx_conf / rx_conf sw (kernel software), hw (NIC offload), hw-record (TOE), none",
      labelNames: ['tx_conf', 'rx_conf'],
      registers,
      collect: () => { for (const c of this.kernelConfChildren.values()) c.fold(); },
    });
    // prom-client calls collect() before each read of a metric (get(), the registry's output).
    const collect = (): void => this.bodyCounts.fold();
    this.bodies = new Counter({
      name: 'aludel_bodies_total',
      help: 'Response bodies (aludel tcp: upstream-to-client tunnel directions) by the path they took: sendfile, splice, write, none (no body)',
      labelNames: ['path', 'tx', 'rx'],
      registers,
      collect,
    });
    this.bodyBytes = new Counter({
      name: 'aludel_body_bytes_total',
      help: 'Body bytes sent to clients (headers excluded) by path (sendfile and splice stay in the kernel, write is copied through user space) and crypto site',
      labelNames: ['path', 'tx', 'rx'],
      registers,
      collect,
    });
    this.handshakes = new Counter({
      name: 'aludel_handshakes_total',
      help: 'TLS handshakes by negotiated version and cipher and result (ok or failed); failed ones have version and cipher "none" and the error code',
      labelNames: ['version', 'cipher', 'result', 'error'],
      registers,
      collect: () => { for (const c of this.handshakeChildren.values()) c.count.fold(); },
    });
    this.handshakeSeconds = new Histogram({
      name: 'aludel_handshake_duration_seconds',
      help: 'From accept to a completed handshake with kTLS set up, by TLS version',
      labelNames: ['version'],
      buckets: HANDSHAKE_BUCKETS,
      registers,
    });
    this.upstreamErrors = new Counter({
      name: 'aludel_upstream_errors_total',
      help: 'Upstream failures (connect, response head) by upstream and error code: the ones passive health checks (max-fails) count',
      labelNames: ['upstream', 'code'],
      registers,
    });
    const collectCache = (): void => this.cacheCounts.fold();
    this.cacheResponses = new Counter({
      name: 'aludel_cache_responses_total',
      help: 'Responses of aludel proxy --cache by outcome: hit, revalidated (304 from the origin), collapsed (followed a fill in progress), miss, stale (replaced), bypass, stale-while-revalidate, stale-if-error (RFC 5861)',
      labelNames: ['outcome'],
      registers,
      collect: collectCache,
    });
    this.cacheBytes = new Counter({
      name: 'aludel_cache_body_bytes_total',
      help: 'Body bytes of aludel proxy --cache responses by outcome (also in aludel_body_bytes_total by path)',
      labelNames: ['outcome'],
      registers,
      collect: collectCache,
    });
    const byOutcome = (c: Counter<'outcome'>): CounterChild[] => CACHE_OUTCOMES.map((outcome) => c.labels({ outcome }));
    this.cacheCounts = new FoldedCounts(byOutcome(this.cacheResponses), byOutcome(this.cacheBytes));
    const connectionChildren = SIDES.map((s) => this.connections.labels(s));
    this.connectionCounts = new FoldedCounts(connectionChildren, connectionChildren.map(() => null));
    const byPath = (c: Counter<'path' | 'tx' | 'rx'>): CounterChild[] => BODY_PATHS.flatMap((path) => SIDES.map((s) => c.labels({ path, ...s })));
    this.bodyCounts = new FoldedCounts(byPath(this.bodies), byPath(this.bodyBytes));
  }

  /** A completed handshake; `ms` from accept to kTLS set up. */
  handshake(conn: SecureConnection, ms: number): void {
    const { version, cipher, engine } = conn.tls;
    let c = this.lastHandshake;
    if (c === null || version !== this.lastVersion || cipher !== this.lastCipher) {
      c = this.handshakeChildrenOf(version, cipher);
      this.lastVersion = version;
      this.lastCipher = cipher;
      this.lastHandshake = c;
    }
    c.count.pending++;
    // node:tls (the fallback) does not say when its handshake started: no duration to record.
    if (engine === 'system-openssl') c.seconds.observe(ms / 1000);
    this.connectionCounts.add(side(conn), 0);
    const k = conn.tls.kernel;
    if (k !== null) {
      // Bounded: the kernel knows four modes per direction.
      const kk = `${k.txConf} ${k.rxConf}`;
      let kc = this.kernelConfChildren.get(kk);
      if (kc === undefined) {
        kc = new FoldedChild(this.kernelConf.labels({ tx_conf: k.txConf, rx_conf: k.rxConf }));
        this.kernelConfChildren.set(kk, kc);
      }
      kc.pending++;
    }
  }

  /** Bounded: versions and ciphers are those this listener's configuration allows. */
  private handshakeChildrenOf(version: string | null, cipher: string | null): HandshakeChildren {
    const key = `${version} ${cipher}`;
    let c = this.handshakeChildren.get(key);
    if (c === undefined) {
      const v = version ?? 'none';
      c = { count: new FoldedChild(this.handshakes.labels({ version: v, cipher: cipher ?? 'none', result: 'ok' })), seconds: this.handshakeSeconds.labels({ version: v }) };
      this.handshakeChildren.set(key, c);
    }
    return c;
  }

  /**
   * A handshake that did not complete. The error code is bounded: it comes from
   * Aludel (ERR_TLS_HANDSHAKE_TIMEOUT), the OS (ECONNRESET) or OpenSSL's
   * fixed reason codes, never from text the client sent.
   */
  handshakeFailed(err: Error & { code?: string }): void {
    const code = err.code ?? 'ERR_UNKNOWN';
    let c = this.failureChildren.get(code);
    if (c === undefined) {
      c = this.handshakes.labels({ version: 'none', cipher: 'none', result: 'failed', error: code });
      this.failureChildren.set(code, c);
    }
    c.inc();
  }

  /**
   * A response (or tunnel direction) body of `bytes` sent to `conn` by `path`
   * (once or twice per request: hence FoldedCounts).
   */
  body(conn: SecureConnection, path: BodyPath, bytes: number): void {
    this.bodyCounts.add(bodyPathIndex(path) * SIDES.length + side(conn), bytes);
  }

  /**
   * A response the cache answered or forwarded, with its body bytes (also
   * counted by body()); kept as body()'s are: two inc() calls were about 1 %
   * of the proxy's CPU in a profile of 1 KiB cache hits.
   */
  cache(outcome: CacheOutcome, bytes: number): void {
    this.cacheCounts.add(cacheOutcomeIndex(outcome), bytes);
  }

  /** `upstream` is a configured upstream URL, so the label set is bounded by the configuration. */
  upstreamError(upstream: string, code: string): void {
    const key = `${upstream} ${code}`;
    let c = this.upstreamErrorChildren.get(key);
    if (c === undefined) {
      c = this.upstreamErrors.labels({ upstream, code });
      this.upstreamErrorChildren.set(key, c);
    }
    c.inc();
  }

  /** Sums over the labels, for /status and the shutdown log. */
  async snapshot(): Promise<TrafficTotals> {
    const [connections, bodies, bodyBytes, handshakes, upstreamErrors, cacheResponses, cacheBytes] = await Promise.all([
      this.connections.get(),
      this.bodies.get(),
      this.bodyBytes.get(),
      this.handshakes.get(),
      this.upstreamErrors.get(),
      this.cacheResponses.get(),
      this.cacheBytes.get(),
    ]);
    const zero = (): Record<CacheOutcome, number> => Object.fromEntries(CACHE_OUTCOMES.map((o) => [o, 0])) as Record<CacheOutcome, number>;
    const out: TrafficTotals = {
      connections: { total: 0, kernelTx: 0, kernelRx: 0 },
      handshakes: { ok: 0, failed: 0 },
      bodies: Object.fromEntries(BODY_PATHS.map((p) => [p, { bodies: 0, bytes: 0 }])) as PathTotals,
      upstreamErrors: {},
      cache: { responses: zero(), bytes: zero() },
    };
    for (const { value, labels } of connections.values) {
      out.connections.total += value;
      if (labels.tx === 'kernel') out.connections.kernelTx += value;
      if (labels.rx === 'kernel') out.connections.kernelRx += value;
    }
    for (const { value, labels } of bodies.values) out.bodies[labels.path as BodyPath].bodies += value;
    for (const { value, labels } of bodyBytes.values) out.bodies[labels.path as BodyPath].bytes += value;
    for (const { value, labels } of handshakes.values) out.handshakes[labels.result === 'ok' ? 'ok' : 'failed'] += value;
    for (const { value, labels } of upstreamErrors.values) out.upstreamErrors[`${labels.upstream} ${labels.code}`] = value;
    for (const { value, labels } of cacheResponses.values) out.cache.responses[labels.outcome as CacheOutcome] = value;
    for (const { value, labels } of cacheBytes.values) out.cache.bytes[labels.outcome as CacheOutcome] = value;
    return out;
  }
}

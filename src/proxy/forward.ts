/**
 * The upstream exchange step: one client request sent to an upstream of the
 * group and its answer handed over. Picks a peer, leases a connection (a
 * pooled one when there is one), writes the request head and streams the
 * body, waits for the response head under --upstream-headers-timeout
 * (forwarding interim 1xx answers), retries once on a fresh connection when
 * a reused one turns out dead before any answer, and keeps the group's
 * passive health. What happens to the answer is the caller's (Forward).
 * The cache's background revalidations (RFC 5861 §3) go the same way,
 * detached from the client whose request started them.
 */
import { Http2ServerRequest } from 'node:http2';
import type { Logger } from '../log/logger.js';
import type { ProxySettings } from '../config/proxy-settings.js';
import type { ResponseHead } from '../http/response-head.js';
import { buildUpstreamRequestHead, copyOfUpstreamRequest, filterResponseHeaders, sameUpstreamRequest, type UpstreamRequestInput } from '../http/forward-headers.js';
import { ClientGoneError, RequestBodyCutError, UpstreamTimeoutError } from '../errors.js';
import { isClientFault } from '../http/failures.js';
import { wallNow } from '../http/wall-clock.js';
import { h1Response, type Exchange } from '../http/exchange.js';
import type { TrafficStats } from '../metrics/traffic-stats.js';
import type { PipePool } from '../transport/pipe-pool.js';
import type { Forward, UpstreamAnswer } from '../cache/cache-layer.js';
import type { Lease, UpstreamGroup } from './upstream-group.js';
import { checkTransferCoding, errCode, isConnectionLoss, peekWholeHead, readResponseHead, readStreamHead, sendRequestBody, takeWholeAnswer } from './upstream-exchange.js';
import { UpstreamResponse } from './upstream-answer.js';
import { SENT } from '../transport/plain-socket.js';
import type { UpstreamStream } from './upstream-stream.js';

/**
 * The detached request's copy of `x`: its own lease, counters and cache
 * outcome, the rest shared. Written out in newExchange's field order, the
 * two fields after it as proxyExchange adds them (http-proxy.ts), so the
 * copy has the very map of a client's exchange. By spread ({ ...x, lease,
 * ... }) each copy had a map of its own (V8 11.3, node 20), and after a few
 * background revalidations exchange()'s reads of every exchange went
 * megamorphic (test/unit/one-map.test.ts).
 */
export function detachedExchange(x: ProxyExchange): ProxyExchange {
  const own: Exchange = {
    req: x.req, res: x.res, conn: x.conn, h2: x.h2, fields: x.fields, malformed: x.malformed, upstream: x.upstream, bodyPath: 'none', bytes: 0,
    upstreamMs: x.upstreamMs, cache: null, cacheStatus: null, cacheDetail: x.cacheDetail, cacheConsumed: x.cacheConsumed,
  };
  const p = own as ProxyExchange;
  p.lease = null;
  p.reusable = false;
  return p;
}

/** Methods a proxy may send twice (RFC 9110 §9.2.2) when a reused connection died before any answer. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** An exchange as the proxy holds it: the client's side, and the upstream connection it leased. */
export interface ProxyExchange extends Exchange {
  lease: Lease | null;
  /** The upstream connection may carry another request afterwards. */
  reusable: boolean;
}

export interface ForwarderOptions {
  settings: ProxySettings;
  group: UpstreamGroup;
  stats: TrafficStats;
  pipes: PipePool | null;
  log: Logger;
}

type Peer = ReturnType<UpstreamGroup['pick']>;

export class Forwarder {
  private readonly s: ProxySettings;
  private readonly limits: { maxHeaderSize: number; maxHeaderCount: number };
  private readonly timeouts = new Map<string, TimeoutErrors>();
  /** Each client connection's last upstream request head and what it was built from (upstreamHead). */
  private readonly lastHeads = new WeakMap<object, { from: UpstreamRequestInput; head: Buffer }>();

  constructor(private readonly o: ForwarderOptions) {
    this.s = o.settings;
    this.limits = { maxHeaderSize: this.s.maxHeaderSize, maxHeaderCount: this.s.maxHeaderCount };
  }

  /** Sends x's request on as `fwd` says; resolves with the status the client got. Sets x.reusable. */
  forward(x: ProxyExchange, fwd: Forward = PLAIN): Promise<number> {
    return fwd.detached ? this.detached(x, fwd) : this.exchange(x, fwd, false);
  }

  /**
   * The cache's own request (Forward.detached): on a copy of the exchange
   * with a lease of its own, released here when it ends cleanly. The copy
   * shares only what the request head is built from (method, target, the
   * client's address for X-Forwarded-For); the client's exchange and its
   * lease are not touched, so the client may come and go meanwhile.
   */
  private async detached(x: ProxyExchange, fwd: Forward): Promise<number> {
    // The default answer, relay, writes to the client: a detached request takes its answer itself.
    if (fwd.answer === undefined) throw new Error('a detached upstream request needs its own answer handler');
    const own = detachedExchange(x);
    let ok = false;
    try {
      const status = await this.exchange(own, fwd, true);
      ok = true;
      return status;
    } finally {
      if (own.lease !== null) {
        if (ok && own.reusable) this.o.group.release(own.lease);
        else own.lease.stream.destroy();
      }
    }
  }

  /**
   * The request head's bytes: the last ones made on this client connection
   * when the request gives the same head (sameUpstreamRequest: a keep-alive
   * client's requests nearly always do), else built and encoded anew. Keyed
   * by connection, not one entry for all: Forwarded's for= carries the
   * client's port, so requests of different connections never share a head.
   * The Buffer is only ever read (written upstream), so it may be written
   * again; it goes with its connection (a WeakMap).
   */
  private upstreamHead(x: ProxyExchange, input: UpstreamRequestInput): Buffer {
    const last = this.lastHeads.get(x.conn);
    if (last !== undefined && sameUpstreamRequest(last.from, input)) return last.head;
    const head = Buffer.from(buildUpstreamRequestHead(input), 'latin1');
    this.lastHeads.set(x.conn, { from: copyOfUpstreamRequest(input), head });
    return head;
  }

  private async exchange(x: ProxyExchange, fwd: Forward, detached: boolean): Promise<number> {
    const { req } = x;
    // A detached request is a GET of the cache's own: no body, whatever the client's request had.
    const body = detached ? NO_BODY : requestBody(x);
    const head = this.upstreamHead(x, {
      method: req.method ?? 'GET', url: req.url ?? '/', rawHeaders: fwd.rawHeaders ?? x.fields,
      clientAddress: x.conn.remoteAddress ?? '', clientPort: x.conn.remotePort, proto: 'https', trustForwarded: this.s.trustForwarded,
      bodyFraming: body.framing, contentLength: body.declared ?? undefined, keepAlive: true,
    });
    const method = req.method ?? 'GET';
    // A reused idle connection may have been closed by the upstream a moment ago: when
    // nothing came back and the request can be sent again, retry once on a new one.
    const retrySafe = body.framing === 'none' && IDEMPOTENT.has(method);
    for (let attempt = 0; ; attempt++) {
      const peer = this.o.group.pick();
      x.upstream = peer.upstream.url;
      // A pooled connection without a promise when there is one. Only a request that may be
      // retried trusts readiness for the connection's health; others get the recv check.
      const lease = (attempt === 0 ? this.o.group.leaseIdle(peer, retrySafe) : null) ?? await this.leaseOrFail(peer, attempt > 0);
      x.lease = lease;
      // Sent again on a new connection when a reused one proves dead before any answer.
      const mayRetry = lease.reused && attempt === 0 && retrySafe;
      let answer: UpstreamResponse;
      let bodySent: Promise<void> | null;
      try {
        const started = this.sendRequest(x, peer, head, body.framing, detached);
        const sending = started instanceof Promise ? await started : started;
        try {
          // Waited for here rather than in a function of its own: the answer is read in the turn
          // its readiness comes (readHead), nearly always whole, and no other async function's
          // promise settles to resume this one (one promise and one microtask fewer per request:
          // the microtask queue 1.4k instructions less per proxied 1 KiB GET in one count,
          // bench/request-cost.ts, docs/benchmarks.md).
          if (sending.u.plain !== null) await sending.u.plain.readable();
          const read = this.readHead(x, sending, detached);
          answer = this.answered(x, sending, read instanceof Promise ? await read : read);
        } finally {
          sending.resume(sending.timedX);
        }
        bodySent = sending.bodySent;
      } catch (err) {
        const retry = mayRetry && isConnectionLoss(err);
        lease.stream.destroy();
        x.lease = null;
        if (retry) continue;
        // The client leaving is no fault of the upstream: passive health must not count it.
        if (!isClientFault(err)) this.failed(peer, err);
        throw err;
      }
      if (mayRetry && answer.head.status === 408) {
        // RFC 9110 §15.5.9: a 408 read on a connection taken from the pool is the upstream closing
        // it as idle, written before our request arrived (a lease that trusted readiness cannot
        // have seen it yet), so the request was not processed: sent again on a new connection,
        // as browsers do with a reused connection's 408.
        lease.stream.destroy();
        x.lease = null;
        continue;
      }
      this.o.group.succeed(peer);
      lease.stream.setIdleTimeout(this.s.upstreamIdleTimeoutMs, this.timeoutErrors(peer.upstream.url).body);
      fwd.onHead?.(answer.head);
      checkTransferCoding(answer.head);
      // The default answer of a small body that came with its head is sent in this turn (relayWhole).
      const now = fwd.answer === undefined ? answer.relayWhole() : null;
      const status = typeof now === 'number' ? now : await (now ?? (fwd.answer ?? relay)(answer));
      // The request body must be complete before the connection can carry another exchange
      // (null: there was none, and no promise is made to say so).
      const requestDone = bodySent === null || await bodySent.then(() => true, () => false);
      x.reusable = requestDone && answer.head.keepAlive && this.endsAtAnswer(x, lease, answer);
      return status;
    }
  }

  /**
   * Whether nothing follows the answer on its connection, so that it may go
   * back to the pool. The body's reader says whether it met bytes past the
   * framing's end (answer.reusable false for a framed body; one ended by the
   * upstream's close is never reused). Where it stopped exactly there
   * (Content-Length, the last chunk: RFC 9112 §6.3), what follows is still
   * in the kernel, and one recv asks. An upstream that sent more (a body
   * longer than announced, an answer nobody asked for) had those bytes read
   * as the answer to the next request sent on the connection: another
   * client's (seen: 358 of 1,920 answers). The pool's readiness watch sees
   * them only at the loop's next poll, and a request in the same turn may
   * lease the connection before that (the pool gives out the one released
   * last). nginx closes such a connection too ("upstream sent more data than
   * specified"). A FIN here is the upstream closing, not its error.
   */
  private endsAtAnswer(x: ProxyExchange, lease: Lease, answer: UpstreamResponse): boolean {
    const after = answer.reusable ? (answer.endsQuiet() ? 'quiet' : lease.stream.afterAnswer()) : answer.head.framing.kind === 'close' ? 'closed' : 'bytes';
    if (after === 'bytes') {
      this.o.log.warn({ conn: x.conn.id, upstream: x.upstream, url: x.req.url }, 'upstream sent more data than its answer framed: the connection is closed, not reused');
    }
    return after === 'quiet';
  }

  /**
   * Head and body upstream (the head written in this turn when the socket
   * takes it at once, nearly always); interim answers go on to the client
   * (readHead). A detached request has no client: its answer does not
   * depend on the client's connection, whose timer it leaves alone.
   */
  private sendRequest(x: ProxyExchange, peer: Peer, head: Buffer, framing: BodyFraming, detached: boolean): Sending | Promise<Sending> {
    const u = x.lease!.stream;
    const errors = this.timeoutErrors(peer.upstream.url);
    if (!detached && x.conn.destroyed) u.destroy(new ClientGoneError());
    u.setIdleTimeout(this.s.upstreamIdleTimeoutMs, errors.body);
    const sentAt = wallNow();
    // A head the socket took at once goes on in this turn: no await of a settled promise.
    const written = u.write(head);
    if (written === SENT) return this.sendBody(x, u, errors, sentAt, framing, detached);
    return written.then(() => this.sendBody(x, u, errors, sentAt, framing, detached));
  }

  /** sendRequest() once the head is written: the body sent on, the timers for the answer's head set, the client's paused. */
  private sendBody(x: ProxyExchange, u: UpstreamStream, errors: TimeoutErrors, sentAt: number, framing: BodyFraming, detached: boolean): Sending {
    const sending: Sending = { u, sentAt, bodySent: null, answered: false, resume: noop, timedX: null };
    if (framing !== 'none') {
      const body = sendRequestBody(x.req, u, framing === 'chunked', this.s.maxBodySize, bodyCut(x.req));
      // A body that cannot be sent whole (over --max-body-size, the client gone) leaves the
      // upstream waiting for the rest: stop waiting for its head, which then never comes.
      body.catch((err: unknown) => { if (!sending.answered) u.destroy(err as Error); });
      sending.bodySent = body;
      // --upstream-headers-timeout starts once the whole request is upstream, as nginx's
      // proxy_read_timeout: a slow upload is the client's pace (its --idle-timeout runs), not an
      // upstream failing to answer. Started with the head, it answered a slow but steady upload
      // 504 and counted it against a healthy upstream. The head is still read meanwhile (an
      // upstream may answer early, RFC 9110 §15.5.14's 413), with no timer of its own.
      u.setIdleTimeout(0, errors.headers);
      body.then(() => { if (!sending.answered) u.setIdleTimeout(this.s.upstreamHeadersTimeoutMs, errors.headers); }, noop);
    } else {
      u.setIdleTimeout(this.s.upstreamHeadersTimeoutMs, errors.headers);
    }
    if (detached) {
      // No client: its timer is not ours.
    } else if (framing === 'none') {
      // The whole request is upstream already: paused now, without a promise turn.
      x.req.setTimeout(0);
      sending.resume = this.resumeClientTimer;
      sending.timedX = x;
    } else {
      // framing is not 'none' here: bodySent is the body being sent.
      sending.resume = this.pauseClientTimer(x, sending.bodySent!);
    }
    return sending;
  }

  /**
   * The response head, once the upstream is readable (exchange waits for a
   * plain socket's readiness itself): taken in this turn when it came
   * whole, as nearly always (takeWholeAnswer, or peekWholeHead where splice
   * needs the body left in the kernel), else read as it comes.
   */
  private readHead(x: ProxyExchange, sending: Sending, detached: boolean): HeadRead | Promise<HeadRead> {
    const { u } = sending;
    const take = UpstreamResponse.takeWithHead(x, u, this.o.pipes);
    const method = x.req.method ?? 'GET';
    if (u.plain !== null) {
      if (UpstreamResponse.takesAll(take)) {
        // No byte has to stay in the kernel (no splice): taken at once, not peeked first (takeWholeAnswer).
        const taken = takeWholeAnswer(u.plain, method, this.limits);
        if (taken !== null) return 'head' in taken ? taken : readStreamHead(u, method, this.limits, false, this.interimTo(x, detached), taken);
      } else {
        const whole = peekWholeHead(u.plain, method, this.limits, take);
        if (whole !== null) return whole;
      }
    }
    return readResponseHead(u, method, this.limits, false, this.interimTo(x, detached), take);
  }

  /** The answer whose head `read` is: from now on a request body still going up no longer stops the wait for it. */
  private answered(x: ProxyExchange, sending: Sending, read: HeadRead): UpstreamResponse {
    sending.answered = true;
    x.upstreamMs = wallNow() - sending.sentAt;
    return new UpstreamResponse(x, sending.u, read.head, read.rest, sending.sentAt, this.o.pipes, read.room, read.drained);
  }

  /**
   * Where x's interim answers go (forwardInterim; a detached request has no
   * client): made only for the reads that may meet one, not for an answer
   * whose final head came whole at once (nearly every one), where the
   * closure was an allocation per request.
   */
  private interimTo(x: Exchange, detached: boolean): ((interim: ResponseHead) => void) | undefined {
    return detached ? undefined : (interim) => this.forwardInterim(x, interim);
  }

  /** pauseClientTimer()'s restart for a request sent whole at once (no body): one function, not one per request. */
  private readonly resumeClientTimer = (x: Exchange | null): void => {
    if (x !== null && !x.conn.destroyed) x.req.setTimeout(this.s.idleTimeoutMs);
  };

  /**
   * While the upstream prepares its answer, the client is idle by no fault of
   * its own: its timer (--idle-timeout, node's socket timeout) stops once the
   * whole request has gone upstream, so that --upstream-headers-timeout
   * decides and the client gets a 504 naming the upstream, as with nginx's
   * proxy_read_timeout. A client still sending its body stays timed.
   * Returns the function that restarts the timer (idempotent).
   */
  private pauseClientTimer(x: Exchange, requestSent: Promise<void>): () => void {
    let state: 'waiting' | 'paused' | 'done' = 'waiting';
    requestSent.then(() => {
      if (state !== 'waiting') return;
      state = 'paused';
      x.req.setTimeout(0);
    }, () => undefined);
    return () => {
      if (state === 'paused' && !x.conn.destroyed) x.req.setTimeout(this.s.idleTimeoutMs);
      state = 'done';
    };
  }

  /**
   * The idle-timeout errors for one upstream (by URL), made once: a closure
   * per request and phase was two allocations per request. Bounded by the
   * configured upstreams.
   */
  private timeoutErrors(url: string): TimeoutErrors {
    let t = this.timeouts.get(url);
    if (t === undefined) {
      const s = this.s;
      t = {
        body: () => new UpstreamTimeoutError('body', s.upstreamIdleTimeoutMs, url),
        headers: () => new UpstreamTimeoutError('headers', s.upstreamHeadersTimeoutMs, url),
      };
      this.timeouts.set(url, t);
    }
    return t;
  }

  /** A lease on a connection to `peer` (fresh: never a pooled one); a failure counts against the peer. */
  async leaseOrFail(peer: Peer, fresh: boolean): Promise<Lease> {
    try {
      return await this.o.group.lease(peer, fresh);
    } catch (err) {
      this.failed(peer, err);
      throw err;
    }
  }

  private failed(peer: Peer, err: unknown): void {
    this.o.group.fail(peer, errCode(err));
    this.o.stats.upstreamError(peer.upstream.url, errCode(err));
  }

  /**
   * Interim responses (RFC 9110 §15.2): a proxy forwards them, except to
   * HTTP/1.0 clients and except 100 Continue, which node already answered for
   * the client (Expect is not forwarded). Node writes 102 and 103 for us; it
   * has no way to write other 1xx codes, which no deployed server sends.
   * Never stored: only final responses are.
   */
  private forwardInterim(x: Exchange, head: ResponseHead): void {
    if (x.req.httpVersion === '1.0' || x.res.headersSent) return;
    if (head.status === 102) {
      // HTTP/2 has no use for 102 (node cannot write it there); RFC 9110 §15.2 lets a proxy drop it.
      // HTTP/1.1: node's response or the lane's, which writes the same 102 (h1-wire.ts PROCESSING_HEAD).
      h1Response(x.res)?.writeProcessing();
    } else if (head.status === 103) {
      const hints: Record<string, string | string[]> = {};
      const fields = filterResponseHeaders(head.headers, { keepFraming: false });
      for (let i = 0; i < fields.length; i += 2) {
        const name = fields[i]!.toLowerCase();
        const prior = hints[name];
        hints[name] = prior === undefined ? fields[i + 1]! : [prior, fields[i + 1]!].flat();
      }
      try {
        // Node refuses hints without a well-formed Link (its reason to exist, RFC 8297).
        x.res.writeEarlyHints(hints);
      } catch (err) {
        this.o.log.debug({ conn: x.conn.id, err }, '103 Early Hints not forwarded');
      }
    }
  }
}

const noop = (): void => undefined;

/** Forward's default: the client's request, its answer relayed (one object, not a {} per request). */
const PLAIN: Forward = Object.freeze({});

/** The default answer handler: the upstream's answer goes on to the client. */
const relay = (a: UpstreamAnswer): Promise<number> => a.relay();

/** A request on its way upstream (sendRequest): what reading its answer needs. */
interface Sending {
  u: UpstreamStream;
  sentAt: number;
  /** The request body being sent, or null: there is none. */
  bodySent: Promise<void> | null;
  /** The answer's head has been read (answered). */
  answered: boolean;
  /** Restarts the client's timer paused while the upstream prepares the answer (idempotent), given timedX. */
  resume: (x: Exchange | null) => void;
  timedX: Exchange | null;
}

/** A response head read, and the bytes read behind it (readHead). */
type HeadRead = { head: ResponseHead; rest: Buffer; room?: Buffer | null; drained?: boolean };

interface TimeoutErrors {
  body: () => Error;
  headers: () => Error;
}

type BodyFraming = 'chunked' | 'length' | 'none';

const NO_BODY: { framing: BodyFraming; declared: number | null } = { framing: 'none', declared: null };

/**
 * sendRequestBody's check of the client's end. A client that resets its
 * HTTP/2 stream (RST_STREAM) mid-body fails the request's stream while our
 * answer is still open, but once the answer has ended (an upstream that
 * answered early, RFC 9110 §15.5.14's 413) node's compatibility layer ends
 * it as at END_STREAM. What tells them apart then: the stream's reset code,
 * set before that end, and the count against content-length (RFC 9113
 * §8.1.1: DATA that do not add up to it make the request malformed). A body
 * cut so must not look whole upstream: its last chunk written, or the
 * connection pooled short of the declared bytes, where the next request
 * would be read as the rest of this body. (node's HTTP/1.1 parser fails a
 * cut body itself.) A reset with NO_ERROR (code 0) mid-body is not told.
 */
function bodyCut(req: Exchange['req']): (total: number) => Error | null {
  const cl = req.headers['content-length'];
  const declared = cl !== undefined ? Number(cl) : null;
  return (total) => {
    const reset = req instanceof Http2ServerRequest && (req.aborted || (req.stream.rstCode ?? 0) !== 0);
    return reset || (declared !== null && total < declared) ? new RequestBodyCutError(total, declared) : null;
  };
}

/**
 * How the client's request body is framed upstream (the checks on it, 413
 * and 400, ran before: http-proxy.ts). HTTP/2 has no Transfer-Encoding: a
 * body without content-length is there when the HEADERS frame did not end
 * the stream (RFC 9113 §8.1), and goes upstream chunked.
 */
function requestBody(x: Exchange): { framing: BodyFraming; declared: number | null } {
  const h = x.req.headers;
  const declared = h['content-length'] !== undefined ? Number(h['content-length']) : null;
  const chunked = x.req instanceof Http2ServerRequest ? declared === null && !x.req.stream.endAfterHeaders : h['transfer-encoding'] !== undefined;
  return { framing: chunked ? 'chunked' : declared !== null && declared > 0 ? 'length' : 'none', declared };
}

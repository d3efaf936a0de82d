/**
 * The oracles: what a case's responses may be (judgeResponses), what the
 * origin may receive (OriginJudge).
 */
import { escapeBytes } from './escape.js';
import { generateCase } from './cases.js';
import { caseBytes, type Finding, type FuzzCase, type ReqInfo, type Target } from './model.js';
import type { Resp } from './response-reader.js';

/** Methods a proxy may send twice (RFC 9110 §9.2.2). */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);
import type { StrictEnd, StrictEvent, StrictRequest } from './strict-http.js';

/**
 * How many responses are owed: requests in order while each is well-formed or
 * optional-but-clearly-framed, up to and including one that closes (RFC 9112
 * §9.6). After a request whose framing is unclear nothing more is owed.
 */
export function dueResponses(c: FuzzCase): number {
  let due = 0;
  for (const r of c.reqs) {
    if ((r.verdict !== 'ok' && r.verdict !== 'either') || !r.clear) break;
    due++;
    if (r.closes) break;
  }
  return due;
}

/** Index of a request that MUST be refused right after the owed ones, else -1. */
export function rejectIndex(c: FuzzCase): number {
  const due = dueResponses(c);
  if (due > 0 && c.reqs[due - 1]!.closes) return -1;
  return c.reqs[due]?.verdict === 'reject' ? due : -1;
}

/** Whether every response of this case is predicted (no blind mutation, no trailing garbage). */
export function predicted(c: FuzzCase): boolean {
  return c.family !== 'garbage' && c.reqs.every((r) => r.verdict !== 'unknown');
}

export interface Observation {
  responses: Resp[];
  closed: boolean;
  parseError?: string;
  upgraded: boolean;
  ms: number;
}

function finding(c: FuzzCase, kind: string, detail: string): Finding {
  return { kind, target: c.target, seed: c.seed, index: c.index, detail, bytes: escapeBytes(caseBytes(c)) };
}

function describe(r: ReqInfo | undefined): string {
  return r ? `${r.marker} ${r.method} [${r.verdict}${r.why.length ? `: ${r.why.join('; ')}` : ''}]` : '(none)';
}

/** Whether anything after request i is not a well-formed request (so a 4xx may be meant for it). */
function laterInvalid(c: FuzzCase, i: number): boolean {
  return c.family === 'garbage' || c.reqs.slice(i + 1).some((r) => r.verdict !== 'ok');
}

/**
 * 501 (method not implemented, RFC 9110 §15.6.2) and 505 (version not
 * supported, §15.6.6) are the right answers to some requests; any other 5xx
 * from serve, or from the proxy in front of a healthy origin, is a bug.
 */
const LEGIT_5XX = new Set([501, 505]);

/**
 * What answerClientError answers a request node's parser refused
 * (src/http/parse-error.ts). Not its 405 and 501 to a method node's parser
 * does not know: serve's 405 to a POST and the proxy's 501 to a transfer
 * coding answer well-formed requests too, with close.
 */
const PARSE_ERROR_STATUSES = new Set([400, 408, 414, 431]);

export function judgeResponses(c: FuzzCase, o: Observation): Finding[] {
  const out: Finding[] = [];
  let due = dueResponses(c);
  const rs = o.responses;
  // A response with Connection: close ends the connection's requests (RFC 9112 §9.6): the
  // server "MUST NOT process any further requests", so nothing after it is owed.
  const closedAt = rs.findIndex((r) => r.close);
  if (closedAt >= 0 && closedAt + 1 < due) due = closedAt + 1;
  rs.forEach((r, i) => {
    if (r.status >= 500 && !LEGIT_5XX.has(r.status)) out.push(finding(c, '5xx', `response ${i} is ${r.status} for request ${describe(c.reqs[i])}`));
  });
  for (let i = 0; i < Math.min(due, rs.length); i++) {
    const r = rs[i]!;
    if (r.status < 400 || r.status >= 500 || r.status === c.reqs[i]!.expect?.status) continue;
    // The refusals Aludel writes itself on a parse error (answerClientError, parse-error.ts), with close.
    const closeThenMore = c.reqs.some((x, j) => x.closes && j < c.reqs.length - 1);
    if (c.reqs[i]!.verdict === 'ok' && r.close && PARSE_ERROR_STATUSES.has(r.status) && (laterInvalid(c, i) || closeThenMore)) {
      // RFC 9112 §9.3.2: responses go out in request order. A refusal of a later request
      // written ahead of the answers still owed loses them and misleads the client.
      out.push(finding(c, 'pipeline-order', `response ${i} is ${r.status}${r.close ? ' (close)' : ''} though request ${describe(c.reqs[i])} is well-formed: the refusal of a later pipelined request overtook ${due - i} owed response(s)`));
      return out;
    }
    if (c.reqs[i]!.verdict !== 'ok') {
      // Refusing an optional request ends what is owed (the connection then closes).
      due = i + 1;
      break;
    }
  }
  if (rs.length < due && !o.upgraded) {    const missing = c.reqs[rs.length];
    const closeThenMore = c.reqs.slice(0, rs.length + 1).some((r) => r.closes) && c.reqs.length > rs.length + 1;
    if (o.closed && (laterInvalid(c, rs.length - 1) || closeThenMore)) {
      out.push(finding(c, 'pipeline-order', `closed after ${rs.length} of ${due} owed responses; a later pipelined request is invalid, and its refusal ended the connection first (first missing: ${describe(missing)})`));
      return out;
    }
    out.push(finding(c, o.closed ? 'closed-without-response' : 'no-response', `${rs.length} of ${due} owed responses within ${o.ms} ms; first missing: ${describe(missing)}`));
  }
  for (let i = 0; i < Math.min(due, rs.length); i++) {
    const want = c.reqs[i]!.expect;
    const got = rs[i]!;
    if (!want || got.status >= 500) continue;
    if (got.status !== want.status) out.push(finding(c, 'wrong-response', `request ${describe(c.reqs[i])}: status ${got.status}, expected ${want.status}`));
    else if (want.body === null && got.body.length !== 0) out.push(finding(c, 'wrong-response', `request ${describe(c.reqs[i])}: ${got.body.length} body bytes, expected none`));
    else if (want.body && !got.body.equals(want.body)) out.push(finding(c, 'wrong-response', `request ${describe(c.reqs[i])}: body ${JSON.stringify(escapeBytes(got.body, 120))}, expected ${JSON.stringify(escapeBytes(want.body, 120))}`));
  }
  for (let i = 0; i < due; i++) {
    // A 4xx refusing the bytes after the close is not processing them.
    const later = rs.slice(i + 1).filter((r) => r.status < 400).length;
    if (c.reqs[i]!.closes && later > 0) out.push(finding(c, 'processed-after-close', `request ${describe(c.reqs[i])} asked to close, yet ${later} later requests were answered`));
  }
  const rj = due === dueResponses(c) ? rejectIndex(c) : -1;
  if (rj >= 0) {
    const r = rs[rj];
    // A fault in the body comes after the head, which serve may answer (a 405 to a POST) first.
    if (r && r.status < 400 && !c.reqs[rj]!.late) out.push(finding(c, 'accepted-invalid', `request ${describe(c.reqs[rj])} answered ${r.status}, a 4xx is due`));
    if (!r && !o.closed && !o.upgraded) out.push(finding(c, 'reject-unanswered', `request ${describe(c.reqs[rj])} neither refused nor closed within ${o.ms} ms`));
    const later = rs.slice(rj + 1).filter((x) => x.status < 400).length;
    if (c.reqs[rj]!.severity === 'framing' && later > 0) out.push(finding(c, 'processed-after-reject', `${later} requests answered after invalid framing in ${describe(c.reqs[rj])}`));
  }
  if (predicted(c) && !o.upgraded && rs.length > c.reqs.length) out.push(finding(c, 'extra-response', `${rs.length} responses to ${c.reqs.length} requests (response splitting or smuggling)`));
  if (o.parseError && predicted(c) && c.reqs.every((r) => r.clear)) out.push(finding(c, 'bad-response', o.parseError));
  return out;
}

/** The fields that carry a client's address or the original host and scheme (a blind mutation may rename one). */
const FORWARDING_FIELD = /^(forwarded|x-forwarded-(for|host|proto|port|server)|x-real-ip|x-client-ip|true-client-ip|client-ip)$/i;

/** Judges what reached the origin against the case that sent it (regenerated from seed and index). */
export class OriginJudge {
  private cache = new Map<number, FuzzCase>();
  /** Markers seen, by bucket of 4096 case indices, so a long run does not keep them all. */
  private seen = new Map<number, Set<string>>();
  private highest = 0;

  constructor(
    readonly target: Target,
    readonly seed: number,
    readonly report: (f: Finding) => void,
  ) {}

  private caseOf(k: number): FuzzCase {
    let c = this.cache.get(k);
    if (!c) {
      c = generateCase(this.target, this.seed, k);
      this.cache.set(k, c);
      if (this.cache.size > 256) this.cache.delete(this.cache.keys().next().value!);
    }
    return c;
  }

  private readonly retried = new Set<string>();

  /** The first repeat of a marker (a retry); later ones are duplicates. */
  private firstRetry(k: number, marker: string): boolean {
    const key = `${k}/${marker}`;
    if (this.retried.has(key)) return false;
    this.retried.add(key);
    return true;
  }

  private firstSeen(k: number, marker: string): boolean {
    const bucket = Math.floor(k / 4096);
    let s = this.seen.get(bucket);
    if (!s) {
      s = new Set();
      this.seen.set(bucket, s);
    }
    if (k > this.highest) {
      this.highest = k;
      for (const b of this.seen.keys()) if (b < bucket - 64) this.seen.delete(b);
    }
    if (s.has(marker)) return false;
    s.add(marker);
    return true;
  }

  private emit(kind: string, k: number | null, detail: string, raw: Buffer): void {
    const c = k === null ? undefined : this.caseOf(k);
    const f: Finding = { kind, target: this.target, seed: this.seed, index: k, detail: `${detail}; origin received: "${escapeBytes(raw, 1500)}"`, bytes: c ? escapeBytes(caseBytes(c)) : undefined };
    this.report(f);
  }

  /** Whether the head of request `marker` (as sent, or anywhere in a blindly mutated case) has a Connection naming X-Fz-Hop. */
  private namedInConnection(k: number, marker: string | null): boolean {
    const c = this.caseOf(k);
    const req = c.reqs.find((r) => r.marker === marker);
    const text = req && c.family !== 'bytes' && c.family !== 'garbage' ? req.head : caseBytes(c).toString('latin1');
    // Named as a member of a Connection field (RFC 9110 §7.6.1): a mutated name ("Cgnnection") or a
    // member that is another token ("-X-Fz-Hop", "!X-Fz-Hop") names nothing a proxy must remove.
    for (const m of text.matchAll(/(?:^|\n)connection[ \t]*:([^\r\n]*)/gi)) {
      if (m[1]!.split(',').some((member) => member.trim().toLowerCase() === 'x-fz-hop')) return true;
    }
    return false;
  }

  /**
   * Whether a blindly mutated case near the run's front sent this marker-less
   * request whole: a byte mutation can make a request line of its own (e.g.
   * "HEAD /fz\r\n", an HTTP/0.9 request) out of a piece of a header.
   */
  private blindSource(r: StrictRequest): boolean {
    // The request line as sent, ended where a parser would end the target.
    const lines = [r.target, r.target.replace(/^https?:\/\/[^/]*/i, '')].flatMap((t) => ['\r', '\n', ' ', '\t'].map((e) => Buffer.from(`${r.method} ${t}${e}`, 'latin1')));
    for (let k = Math.max(0, this.highest - 1000); k <= this.highest + 1000; k++) {
      const c = this.caseOf(k);
      if (c.family !== 'bytes' && c.family !== 'garbage') continue;
      const b = caseBytes(c);
      if (lines.some((l) => b.includes(l))) return true;
    }
    return false;
  }

  /** A request whose body completed at the origin: never one with invalid body framing. */
  private onEnd(e: StrictEnd): void {
    const m = /^(\d+)\.(\d+)$/.exec(e.request.marker ?? '');
    if (!m) return;
    const k = Number(m[1]);
    const req = this.caseOf(k).reqs[Number(m[2])];
    if (req?.verdict === 'reject' && req.late) this.emit('forwarded-invalid', k, `request ${describe(req)} completed at the origin (${e.bodyLength} body bytes): its invalid chunk framing was passed off as valid`, e.request.head);
  }

  onRequest(r: StrictEvent): void {
    if ('end' in r) return this.onEnd(r);
    const m = /^(\d+)\.(s?)(\d+)$/.exec(r.marker ?? '');
    const k = m ? Number(m[1]) : null;
    if ('error' in r) return this.emit('forwarded-invalid', k, r.error, r.raw);
    const raw = r.head;
    for (const [name, value] of r.fields) {
      if (name.includes('_')) this.emit('underscore-forwarded', k, `field ${name} forwarded`, raw);
      // X-Fz-Hop is hop-by-hop only while a Connection field names it (a blind mutation may have broken that).
      if (/^proxy-authorization$/i.test(name) || (/^x-fz-hop$/i.test(name) && (k === null || this.namedInConnection(k, r.marker)))) this.emit('hop-by-hop-forwarded', k, `field ${name} forwarded (RFC 9110 §7.6.1)`, raw);
      if (FORWARDING_FIELD.test(name) && value.includes('6.6.6.6')) this.emit('spoof-forwarded', k, `client-sent ${name}: ${value} forwarded`, raw);
    }
    if (r.marker?.startsWith('probe.')) return;
    if (!m || k === null) {
      if (this.blindSource(r)) return;
      return this.emit('unattributed', null, 'a request the fuzzer never sent whole (no marker)', raw);
    }
    const c = this.caseOf(k);
    if (m[2] === 's') return this.emit('smuggled', k, `the request hidden in a body (${r.marker}) reached the origin`, raw);
    const j = Number(m[3]);
    const req = c.reqs[j];
    if (!req) return this.emit('unattributed', k, `marker ${r.marker} names no request of the case`, raw);
    // A proxy may send an idempotent request again when the reused connection it went on died
    // before any answer (RFC 9110 §9.2.2; nginx's proxy_next_upstream does the same): once.
    if (!this.firstSeen(k, r.marker!) && !(IDEMPOTENT.has(req.method) && this.firstRetry(k, r.marker!))) this.emit('duplicate-forward', k, `request ${r.marker} reached the origin twice`, raw);
    // A head whose only faults are in its body may stream on before they are seen (onEnd).
    if ((req.verdict === 'reject' && !req.late) || req.verdict === 'cut-head') this.emit('forwarded-invalid', k, `request ${describe(req)} must not be forwarded`, raw);
    for (let i = 0; i < j; i++) {
      const p = c.reqs[i]!;
      if (p.verdict === 'unknown') break;
      if (p.verdict === 'reject' && p.severity === 'framing') this.emit('forwarded-after-reject', k, `request ${r.marker} forwarded after ${describe(p)} (desync)`, raw);
      else if (p.closes && (p.verdict === 'ok' || p.verdict === 'either')) this.emit('forwarded-after-close', k, `request ${r.marker} forwarded after ${describe(p)} (RFC 9112 §9.6)`, raw);
      if (!p.clear || p.closes || p.verdict === 'reject') break;
    }
  }
}

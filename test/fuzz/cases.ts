/**
 * Case generation: HTTP/1.1 request heads built from a model and mutated with
 * knowledge of what RFC 9112 makes of each mutation (see Verdict), plus blind
 * byte mutations, truncation and garbage. generateCase(target, seed, k) is a
 * pure function of its arguments: the origin's checker regenerates a case to
 * judge what reached it, and --replay K runs case K alone.
 */
import crypto from 'node:crypto';
import { caseSeed, Rng } from './prng.js';
import type { FuzzCase, ReqInfo, Target, Verdict } from './model.js';
import { SERVE_FILES } from './serve-files.js';

/** What the recording origin answers to a request it accepted (see recording-origin.ts). */
export function originAnswer(marker: string | null, bodyLength: number, sha16: string): Buffer {
  return Buffer.from(`ok ${marker ?? '-'} ${bodyLength} ${sha16}\n`, 'latin1');
}

export function originBody(marker: string | null, body: Buffer): Buffer {
  return originAnswer(marker, body.length, crypto.createHash('sha256').update(body).digest('hex').slice(0, 16));
}

interface Line {
  text: string;
  eol: string;
  /** Holds the marker: byte mutations leave it alone, so every forwarded request stays attributable. */
  marker?: boolean;
}

/** One request under construction; serialized with serialize(). */
class Draft {
  method = 'GET';
  target = '/';
  version = 'HTTP/1.1';
  /** The two separators of the request line (§3: one SP each, unless mutated). */
  separators: [string, string] = [' ', ' '];
  lines: Line[] = [];
  /** Framed body bytes (latin1) as sent. */
  body = '';
  /** The body as the origin should decode it. */
  data = '';
  verdict: Verdict = 'ok';
  clear = true;
  closes = false;
  severity: 'framing' | 'field' | undefined;
  why: string[] = [];
  expectation?: ReqInfo['expect'];
  /** A mutation has already set this request's framing. */
  reframed = false;
  /** The "no Host" mutation removed Host: a reject for HTTP/1.1 (RFC 9112 §3.2), if none was added back. */
  noHost = false;
  /** Parts of the request line a mutation has already replaced. */
  replaced = new Set<RequestLinePart>();

  constructor(readonly marker: string) {}

  header(name: string, value: string, eol = '\r\n'): this {
    this.lines.push({ text: `${name}: ${value}`, eol });
    return this;
  }

  has(name: string): boolean {
    const n = name.toLowerCase();
    return this.lines.some((l) => l.text.toLowerCase().startsWith(`${n}:`));
  }

  remove(name: string): void {
    const n = name.toLowerCase();
    this.lines = this.lines.filter((l) => !l.text.toLowerCase().startsWith(`${n}:`));
  }

  /** A reject reason lies in the head (not only in the body's chunk framing). */
  headFault = false;

  /**
   * Downgrades the verdict: reject beats either beats ok. `late`: the fault lies
   * in the body (chunk framing), seen only once the head has gone by.
   */
  mark(v: 'either' | 'reject', why: string, opts: { clear?: boolean; severity?: 'framing' | 'field'; late?: boolean } = {}): void {
    this.why.push(why);
    if (v === 'reject' && !opts.late) this.headFault = true;
    if (v === 'reject') {
      this.verdict = 'reject';
      this.severity = this.severity === 'framing' ? 'framing' : (opts.severity ?? 'field');
    } else if (this.verdict === 'ok') this.verdict = 'either';
    if (opts.clear === false) this.clear = false;
  }
}

interface Piece {
  bytes: string;
  /** [start, end) ranges byte mutations must not touch. */
  protect: Array<[number, number]>;
  headLength: number;
}

function serialize(d: Draft): Piece {
  const protect: Array<[number, number]> = [];
  let s = `${d.method}${d.separators[0]}${d.target}${d.separators[1]}${d.version}`;
  const m = s.indexOf(`fz=${d.marker}`);
  if (m >= 0) protect.push([m, m + 3 + d.marker.length]);
  s += '\r\n';
  for (const l of d.lines) {
    if (l.marker) protect.push([s.length, s.length + l.text.length + l.eol.length]);
    s += l.text + l.eol;
  }
  s += '\r\n';
  return { bytes: s + d.body, protect, headLength: s.length };
}

const BODY_ALPHABET = 'abcdefghijklmnopqrstuvwxyz';

export class CaseGenerator {
  readonly rng: Rng;
  private reqs: Draft[] = [];
  private smuggled: string[] = [];

  constructor(
    readonly target: Target,
    readonly seed: number,
    readonly index: number,
  ) {
    this.rng = new Rng(caseSeed(seed, target, index));
  }

  private newDraft(): Draft {
    return new Draft(`${this.index}.${this.reqs.length}`);
  }

  /** A well-formed request for this target (RFC 9112 §3, §5, §6). */
  validRequest(): Draft {
    const r = this.rng;
    const d = this.newDraft();
    const httpish = this.target === 'serve' ? 'serve' : 'proxy';
    if (httpish === 'serve') {
      d.method = r.weighted([[6, 'GET'], [2, 'HEAD'], [1, 'POST'], [1, 'OPTIONS']] as const);
      const files = [...SERVE_FILES.keys()];
      const path = r.chance(0.8) ? r.pick(files) : `/missing-${r.text(5)}`;
      d.target = `${path}?fz=${d.marker}`;
    } else {
      d.method = r.weighted([[5, 'GET'], [2, 'HEAD'], [3, 'POST'], [1, 'PUT'], [1, 'DELETE'], [1, 'OPTIONS'], [1, 'PATCH']] as const);
      d.target = `/fz/${r.text(r.int(0, 12), 'abcdefghijklmnopqrstuvwxyz0123456789-._~')}?fz=${d.marker}`;
    }
    d.header('Host', r.pick(['localhost', 'localhost:443', '127.0.0.1', 'example.com']));
    d.lines.push({ text: `X-Fz: ${d.marker}`, eol: '\r\n', marker: true });
    for (let i = r.int(0, 4); i > 0; i--) {
      d.header(r.pick(['User-Agent', 'Accept', 'Accept-Language', 'X-Custom', 'Cookie', 'Cache-Control', 'If-None-Match', 'Referer']), r.text(r.int(0, 40), 'abcdefghijklmnopqrstuvwxyz0123456789 =;,/.-"'));
    }
    if (d.method === 'POST' || d.method === 'PUT' || d.method === 'PATCH') this.validBody(d);
    this.setExpect(d);
    return d;
  }

  /** Gives `d` a valid body (making it a POST when its method takes none). */
  validBody(d: Draft, framing: 'length' | 'chunked' = this.rng.chance(0.5) ? 'length' : 'chunked'): void {
    const r = this.rng;
    if (d.method === 'GET' || d.method === 'HEAD' || d.method === 'OPTIONS' || d.method === 'DELETE') d.method = 'POST';
    const size = r.weighted([[3, 0], [5, r.int(1, 100)], [2, r.int(100, 5000)], [1, r.int(5000, 40000)]] as const);
    d.data = r.text(size, BODY_ALPHABET);
    d.remove('content-length');
    d.remove('transfer-encoding');
    if (framing === 'length') {
      d.header('Content-Length', String(size));
      d.body = d.data;
      return;
    }
    d.header('Transfer-Encoding', 'chunked');
    d.body = this.chunked(d.data, r.chance(0.2), r.chance(0.2));
  }

  /** RFC 9112 §7.1: chunk-size [ chunk-ext ] CRLF chunk-data CRLF ... last-chunk trailer-section CRLF. */
  chunked(data: string, ext: boolean, trailers: boolean): string {
    const r = this.rng;
    let out = '';
    for (let off = 0; off < data.length; ) {
      const n = Math.min(data.length - off, r.weighted([[3, r.int(1, 16)], [3, r.int(16, 2000)], [1, 16384]] as const));
      const hex = n.toString(16);
      out += `${r.chance(0.3) ? hex.toUpperCase() : hex}${ext ? this.chunkExt() : ''}\r\n${data.slice(off, off + n)}\r\n`;
      off += n;
    }
    out += `0${ext ? this.chunkExt() : ''}\r\n`;
    if (trailers) out += `X-Trailer-${this.rng.text(3)}: ${this.rng.text(8)}\r\n`;
    return `${out}\r\n`;
  }

  /** chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] ) */
  private chunkExt(): string {
    const r = this.rng;
    return r.pick([';a', ';a=b', ';name="quoted value"', `;${r.text(r.int(1, 200))}=${r.text(r.int(1, 200))}`]);
  }

  private setExpect(d: Draft): void {
    if (this.target === 'serve') {
      const path = d.target.slice(0, d.target.indexOf('?'));
      const file = SERVE_FILES.get(path);
      if (d.method === 'GET' || d.method === 'HEAD') {
        const status = file ? 200 : 404;
        d.expectation = { status, body: d.method === 'HEAD' ? null : status === 200 ? file! : undefined };
      }
      return;
    }
    d.expectation = { status: 200, body: d.method === 'HEAD' ? null : originBody(d.marker, Buffer.from(d.data, 'latin1')) };
  }

  // ---- structure-aware mutations: each sets the verdict RFC 9112 gives it ----

  mutate(d: Draft): void {
    const r = this.rng;
    // One framing mutation per request: a second would re-frame the body and void the first's verdict.
    // Nor may a mutation replace a part of the request line another one already set: the first one's
    // verdict would stay on a part that is gone (a method "GE T" marked reject, then replaced by TRACE).
    const ops = MUTATIONS.filter((m) => !(d.reframed && REFRAMES.has(m)) && !(REPLACES.get(m) ?? []).some((p) => d.replaced.has(p)));
    const op = r.pick(ops);
    if (REFRAMES.has(op)) d.reframed = true;
    for (const p of REPLACES.get(op) ?? []) d.replaced.add(p);
    op(this, d, r);
    // A mutated request's exact answer is no longer predicted, only its class.
    if (d.verdict !== 'ok') d.expectation = undefined;
  }

  build(family: string, drafts: Draft[], extra: { cutAt?: number; byteMutations?: number; garbage?: Buffer; splitWrites?: boolean } = {}): FuzzCase {
    const r = this.rng;
    let all = '';
    const protect: Array<[number, number]> = [];
    const heads: number[] = [];
    for (const d of drafts) {
      const p = serialize(d);
      for (const [a, b] of p.protect) protect.push([all.length + a, all.length + b]);
      heads.push(all.length + p.headLength);
      all += p.bytes;
    }
    for (const d of drafts) {
      if (d.noHost && !d.has('host') && d.version === 'HTTP/1.1') {
        d.noHost = false;
        d.mark('reject', 'so no Host in HTTP/1.1');
        d.expectation = undefined;
      }
    }
    const infos: ReqInfo[] = drafts.map((d) => ({
      marker: d.marker,
      method: d.method,
      verdict: d.verdict,
      clear: d.clear,
      closes: d.closes,
      severity: d.severity,
      late: d.verdict === 'reject' && !d.headFault ? true : undefined,
      expect: d.expectation,
      why: d.why,
      head: serialize(d).bytes.slice(0, serialize(d).headLength),
    }));
    let bytes: Buffer = Buffer.from(all, 'latin1');
    if (extra.cutAt !== undefined && drafts.length > 0) {
      const last = infos[infos.length - 1]!;
      const start = bytes.length - serialize(drafts[drafts.length - 1]!).bytes.length;
      const cut = start + Math.max(1, Math.min(extra.cutAt, bytes.length - start - 1));
      last.verdict = cut < heads[heads.length - 1]! ? 'cut-head' : 'cut-body';
      last.clear = false;
      last.why.push(`truncated at ${cut - start}`);
      last.expect = undefined;
      bytes = bytes.subarray(0, cut);
    }
    if (extra.byteMutations) {
      bytes = mutateBytes(r, bytes, protect, extra.byteMutations);
      for (const i of infos) {
        i.verdict = 'unknown';
        i.expect = undefined;
        i.clear = false;
      }
    }
    if (extra.garbage) {
      bytes = Buffer.concat([bytes, extra.garbage]);
      if (infos.length > 0) infos[infos.length - 1]!.clear = false;
    }
    return { target: this.target, seed: this.seed, index: this.index, family, writes: split(r, bytes, extra.splitWrites ?? r.chance(0.25)), reqs: infos, smuggled: this.smuggled, endClose: false };
  }

  /** Adds a draft to the case (so markers number in order). */
  add(d: Draft): Draft {
    this.reqs.push(d);
    return d;
  }

  /** A full request with its own smuggle marker, to hide inside a body: if the origin ever sees it, framing was misread. */
  hiddenRequest(): string {
    const m = `${this.index}.s${this.smuggled.length}`;
    this.smuggled.push(m);
    return `GET /fz/hidden?fz=${m} HTTP/1.1\r\nHost: localhost\r\nX-Fz: ${m}\r\n\r\n`;
  }
}

/** Several writes (so several TLS records), split at random points. */
function split(r: Rng, bytes: Buffer, doSplit: boolean): Buffer[] {
  if (!doSplit || bytes.length < 2) return [bytes];
  const cuts = new Set<number>();
  for (let i = r.int(1, 4); i > 0; i--) cuts.add(r.int(1, bytes.length - 1));
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...cuts].sort((a, b) => a - b)) {
    out.push(bytes.subarray(prev, c));
    prev = c;
  }
  out.push(bytes.subarray(prev));
  return out;
}

const INTERESTING = [0x00, 0x09, 0x0a, 0x0d, 0x20, 0x3a, 0x3b, 0x2c, 0x7f, 0x80, 0xff, 0x30, 0x39, 0x66, 0x2d, 0x22];

/** Blind mutations (flip, set, insert, delete, duplicate) at positions outside the protected markers. */
function mutateBytes(r: Rng, input: Buffer, protect: Array<[number, number]>, count: number): Buffer {
  let b = Buffer.from(input);
  let ranges = protect.map(([a, c]) => [a, c] as [number, number]);
  const free = (i: number): boolean => !ranges.some(([a, c]) => i >= a && i < c);
  const shift = (at: number, by: number): void => {
    ranges = ranges.map(([a, c]) => (a >= at ? [a + by, c + by] : [a, c]));
  };
  for (let n = 0; n < count; n++) {
    if (b.length === 0) break;
    let pos = -1;
    for (let tries = 0; tries < 8 && pos < 0; tries++) {
      const p = r.int(0, b.length - 1);
      if (free(p)) pos = p;
    }
    if (pos < 0) continue;
    switch (r.int(0, 4)) {
      case 0:
        b[pos] = b[pos]! ^ (1 << r.int(0, 7));
        break;
      case 1:
        b[pos] = r.chance(0.7) ? r.pick(INTERESTING) : r.int(0, 255);
        break;
      case 2:
        b = Buffer.concat([b.subarray(0, pos), Buffer.from([r.chance(0.7) ? r.pick(INTERESTING) : r.int(0, 255)]), b.subarray(pos)]);
        shift(pos, 1);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, pos), b.subarray(pos + 1)]);
        shift(pos + 1, -1);
        break;
      default: {
        const len = Math.min(r.int(1, 16), b.length - pos);
        b = Buffer.concat([b.subarray(0, pos + len), b.subarray(pos, pos + len), b.subarray(pos + len)]);
        shift(pos + len, len);
      }
    }
  }
  return b;
}

type Mutation = (g: CaseGenerator, d: Draft, r: Rng) => void;
type RequestLinePart = 'method' | 'target' | 'version';

/** The request-line parts each mutation replaces (see CaseGenerator.mutate). */
const REPLACES = new Map<Mutation, RequestLinePart[]>();
function replacing(parts: RequestLinePart[], m: Mutation): Mutation {
  REPLACES.set(m, parts);
  return m;
}

const TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~";

function setHeader(d: Draft, name: string, value: string): void {
  d.remove(name);
  d.header(name, value);
}

/**
 * Adds a connection option to the request's Connection field (RFC 9110 §7.6.1), keeping those
 * already there: a later mutation must not silently drop an earlier one's "close" or "X-Fz-Hop".
 */
function addConnectionOption(d: Draft, option: string): void {
  const line = d.lines.find((l) => /^connection:/i.test(l.text));
  if (line) line.text = `${line.text}, ${option}`;
  else d.header('Connection', option);
}

/** A non-marker, non-framing header line index, added when there is none. */
function plainLine(d: Draft, r: Rng): number {
  const idx = d.lines.map((l, i) => ({ l, i })).filter(({ l }) => !l.marker && !/^(host|content-length|transfer-encoding):/i.test(l.text));
  if (idx.length > 0) return r.pick(idx).i;
  d.header('X-Extra', r.text(8));
  return d.lines.length - 1;
}

/**
 * Each mutation documents its verdict. "either" where RFC 9112 lets a recipient
 * choose; "reject" where it says MUST (400) or where framing cannot be known.
 */
const MUTATIONS: Mutation[] = [
  // §3: method = token; llhttp knows a fixed set, so unknown or lowercase ones may be refused.
  replacing(['method'], (_g, d, r) => {
    d.method = r.pick(['get', 'FUZZ', 'PROPFIND', 'M-SEARCH', 'TRACE', 'PURGE', r.text(r.int(1, 60), TOKEN_CHARS)]);
    d.mark('either', `method ${d.method}`);
  }),
  // §3: a method that is not a token: the request-line is invalid.
  replacing(['method'], (_g, d, r) => {
    d.method = r.pick(['GE T', 'GE\x00T', 'G(T', 'GET\t', '', 'G\x7fT', 'GÉT']);
    d.mark('reject', 'method not a token');
  }),
  // CONNECT (RFC 9110 §9.3.6) with authority-form: refused or tunnelled, but answered.
  replacing(['method', 'target'], (_g, d, r) => {
    d.method = 'CONNECT';
    d.target = r.pick(['localhost:443', '127.0.0.1:80', 'example.com:22']);
    d.mark('either', 'CONNECT authority-form');
  }),
  // §3.2.4 asterisk-form, §3.2.2 absolute-form: valid forms.
  replacing(['method', 'target'], (_g, d, r) => {
    if (r.chance(0.5)) {
      d.target = '*';
      d.method = r.pick(['OPTIONS', 'GET']);
      d.mark('either', `asterisk-form with ${d.method}`);
    } else {
      d.target = `http://${r.pick(['localhost', 'example.com', 'other.invalid:8080'])}${d.target}`;
      d.mark('either', 'absolute-form');
    }
  }),
  // §3.2: request-target with bytes outside VCHAR: invalid request-line.
  replacing(['target'], (_g, d, r) => {
    const bad = r.pick(['\x01', '\x7f', '\x00', '\t', '\x80', '\xff', '"', '<', '{']);
    d.target = `/fz/a${bad}b?fz=${d.marker}`;
    if (bad <= ' ' || bad === '\x7f') d.mark('reject', 'CTL in target');
    else d.mark('either', 'non-URI byte in target');
  }),
  // Targets that stress path handling: traversal, encodings, length, fragments.
  replacing(['target'], (_g, d, r) => {
    const t = r.pick(['/../../../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/%00', '/a%zz', '/a#frag', '//double//slash', `/${'a'.repeat(r.int(1000, 20000))}`, '/..%2f..%2f', '/\\..\\..\\']);
    d.target = `${t}${t.includes('?') ? '&' : '?'}fz=${d.marker}`;
    d.mark('either', 'odd target');
  }),
  // §2.3: HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive.
  replacing(['version'], (_g, d, r) => {
    const v = r.pick(['HTTP/1.0', 'HTTP/1.2', 'HTTP/2.0', 'HTTP/9.9', 'HTTP/1', 'http/1.1', 'HTTP/1.1x', 'HTTP/01.1', 'HTTP/1.10', '']);
    d.version = v;
    if (v === 'HTTP/1.0') {
      // §9.3: without keep-alive a 1.0 connection is not persistent.
      d.closes = true;
      d.mark('either', 'HTTP/1.0');
    } else if (/^HTTP\/\d\.\d$/.test(v)) d.mark('either', `version ${v}`);
    else d.mark('reject', `bad version "${v}"`, { severity: 'field' });
  }),
  // §3: one SP between the parts; extra whitespace may be parsed leniently.
  (_g, d, r) => {
    const sep = r.pick(['  ', '\t', ' \t']);
    d.separators = [sep, r.chance(0.5) ? sep : ' '];
    d.mark('either', 'request-line whitespace');
  },
  // §3.2: a server MUST answer 400 to more than one Host.
  (_g, d, r) => {
    // After a "no Host" mutation there is none left to duplicate: add two.
    if (!d.has('host')) d.header('Host', 'localhost');
    d.header('Host', r.pick(['localhost', 'evil.example', '']));
    d.mark('reject', 'duplicate Host');
  },
  // §3.2: ... and to an HTTP/1.1 request without Host.
  (_g, d) => {
    // A duplicate-Host draft keeps its Hosts: its reject verdict names them.
    if (d.why.includes('duplicate Host')) return;
    d.remove('host');
    // Only HTTP/1.1 requires Host: the verdict is settled in build(), once the version is final.
    d.noHost = true;
    d.why.push('no Host');
  },
  // §3.2: ... and to a Host with an invalid value.
  (_g, d, r) => {
    setHeader(d, 'Host', r.pick(['a b', 'a/b', 'a@b', 'localhost:99999999', '[::1', 'a\x7fb', 'localhost, other']));
    d.mark('reject', 'invalid Host');
  },
  // §5.1: no whitespace between field name and colon: MUST 400.
  (_g, d, r) => {
    const i = plainLine(d, r);
    d.lines[i]!.text = d.lines[i]!.text.replace(':', r.pick([' :', '\t:']));
    d.mark('reject', 'whitespace before colon');
  },
  // §5.2: obs-fold: reject, or replace with SP before forwarding.
  (_g, d, r) => {
    const i = plainLine(d, r);
    d.lines.splice(i + 1, 0, { text: `${r.pick([' ', '\t', '  '])}${r.text(r.int(0, 10))}`, eol: '\r\n' });
    d.mark('either', 'obs-fold');
  },
  // §2.2: a bare LF may be taken as a line end; a bare CR must be rejected or replaced by SP.
  (_g, d, r) => {
    const i = plainLine(d, r);
    if (r.chance(0.5)) {
      d.lines[i]!.eol = '\n';
      d.mark('either', 'bare LF line end');
    } else {
      d.lines[i]!.text += `\r${r.text(3)}`;
      d.mark('either', 'bare CR in field');
    }
  },
  // §5.1 field-name = token.
  (_g, d, r) => {
    const name = r.pick(['X@Y', 'X Y', 'Xé', '', 'X\x00Y', 'X"Y', '(X)', 'X\x7f']);
    d.header(name, 'v');
    d.mark('reject', `field name ${JSON.stringify(name)}`);
  },
  // Underscores are tchar, but CGI-style apps fold them onto "-" (header spoofing).
  (_g, d, r) => {
    d.header(r.pick(['X_Custom', 'Content_Length', 'X_Forwarded_For', 'Transfer_Encoding', 'Host_']), r.pick(['1', '6.6.6.6', 'chunked']));
    d.mark('either', 'underscore field name');
  },
  // RFC 9110 §5.5: NUL/CR/LF in a value: reject or replace; other CTLs are invalid.
  (_g, d, r) => {
    const i = plainLine(d, r);
    d.lines[i]!.text += r.pick(['\x00', '\x01', '\x7f', '\x1b[0m', '\x0b', '\x0c']);
    d.mark('either', 'CTL in field value');
  },
  // obs-text (0x80-0xFF) is a valid field-vchar.
  (_g, d, r) => {
    d.header('X-Obs', Buffer.from(r.bytes(r.int(1, 20)).map((b) => 0x80 | b)).toString('latin1'));
    d.mark('either', 'obs-text value');
  },
  // Header block size around the limit (431 expected above it).
  (_g, d, r) => {
    d.header('X-Big', r.text(r.pick([4000, 8000, 15000, 16500, 20000, 65000])));
    d.mark('either', 'huge field');
  },
  // Field count around the proxy's limit (100): 431 expected above it.
  (_g, d, r) => {
    for (let i = r.pick([50, 98, 101, 150, 500]); i > 0; i--) d.header(`X-N${i}`, 'v');
    d.mark('either', 'many fields');
  },
  // §9.6: "close" ends the connection after the response; later requests MUST NOT be processed.
  (_g, d, r) => {
    addConnectionOption(d, r.pick(['close', 'Close', 'keep-alive, close', 'CLOSE']));
    d.closes = true;
    d.why.push('Connection: close');
  },
  // RFC 9110 §7.6.1: fields named in Connection are hop-by-hop and must not be forwarded.
  (_g, d, r) => {
    addConnectionOption(d, 'X-Fz-Hop');
    d.header('X-Fz-Hop', 'secret');
    if (r.chance(0.5)) d.header('Proxy-Authorization', 'Basic c2VjcmV0');
    if (r.chance(0.5)) d.header('Keep-Alive', 'timeout=5');
    d.why.push('hop-by-hop fields');
  },
  // Forwarding fields from an untrusted client must not reach the origin.
  (_g, d, r) => {
    d.header(r.pick(['X-Forwarded-For', 'Forwarded', 'X-Forwarded-Host', 'X_Forwarded_For']), r.pick(['6.6.6.6', 'for=6.6.6.6', '6.6.6.6, 127.0.0.1']));
    d.why.push('spoofed forwarding field');
  },
  // RFC 9110 §10.1.1: Expect: 100-continue gets an interim 100 (or a final answer); others 417.
  (g, d, r) => {
    if (d.method === 'GET' || d.method === 'HEAD') {
      d.method = 'POST';
      g.validBody(d);
    }
    d.header('Expect', r.pick(['100-continue', '100-Continue', 'something-else']));
    d.mark('either', 'Expect');
  },
  // Upgrade (RFC 9110 §7.8): later bytes may belong to the new protocol.
  (_g, d, r) => {
    addConnectionOption(d, 'Upgrade');
    d.header('Upgrade', r.pick(['websocket', 'h2c', 'echo', 'TLS/1.2']));
    d.mark('either', 'Upgrade', { clear: false });
  },
  // §6.3 item 5: an invalid Content-Length is unrecoverable: 400 and close.
  (g, d, r) => {
    g.validBody(d, 'length');
    setHeader(d, 'Content-Length', r.pick(['-1', '+5', '0x10', '1e3', '5 5', '', 'abc', '5;', '1_000', '٣']));
    d.mark('reject', 'invalid Content-Length', { severity: 'framing', clear: false });
  },
  // A length no one can send: refuse (413/400) or wait; never 5xx.
  (g, d, r) => {
    g.validBody(d, 'length');
    setHeader(d, 'Content-Length', r.pick(['9007199254740992', '9007199254740993', '18446744073709551616', '99999999999999999999', '4294967296', '1000000000000']));
    d.mark('either', 'huge Content-Length', { clear: false });
  },
  // §6.3 item 5: identical repeated values MAY be merged; differing ones are invalid.
  (g, d, r) => {
    g.validBody(d, 'length');
    const n = d.data.length;
    if (r.chance(0.5)) {
      if (r.chance(0.5)) d.header('Content-Length', String(n));
      else setHeader(d, 'Content-Length', `${n}, ${n}`);
      d.mark('either', 'repeated equal Content-Length');
    } else {
      d.header('Content-Length', String(n + r.int(1, 5)));
      d.mark('reject', 'differing Content-Length', { severity: 'framing', clear: false });
    }
  },
  // Leading zeros are still 1*DIGIT.
  (g, d) => {
    g.validBody(d, 'length');
    setHeader(d, 'Content-Length', `000${d.data.length}`);
    d.mark('either', 'Content-Length leading zeros');
  },
  // §6.1/§6.3 item 4: chunked must be final; unknown codings 501; case-insensitive names.
  (g, d, r) => {
    g.validBody(d, 'chunked');
    const te = r.pick(['Chunked', 'CHUNKED', ' chunked', 'chunked, chunked', 'gzip, chunked', 'chunked, gzip', 'identity', 'xchunked', 'chunked;q=1', '"chunked"', 'chunked\x0b', '\tchunked']);
    setHeader(d, 'Transfer-Encoding', te);
    // Ending in chunked, the framing is clear even when an earlier coding is unknown (501).
    if (/^\s*chunked\s*$/i.test(te) || te === 'gzip, chunked') d.mark('either', `TE ${te}`);
    else d.mark('reject', `TE ${JSON.stringify(te)}`, { severity: 'framing', clear: false });
  },
  // Chunk sizes: huge (absurd but within 64 bits, or overflowing them), malformed.
  (g, d, r) => {
    g.validBody(d, 'chunked');
    const size = r.pick(['ffffffffffffffff', '7fffffffffffffff', '10000000000000000', 'fffffffffffff', '100000000', '-1', 'g', '0x5', '+5', ' 5', '']);
    d.body = `${size}\r\n${d.data}\r\n0\r\n\r\n`;
    // docs/proxy.md: a huge size that fits in 64 bits is not refused up front (node's parser
    // does not report chunk sizes): the body streams, bounded by --max-body-size and the idle
    // timeout. So it may be refused, answered, or left waiting for data; framing stays unclear.
    if (/^[0-9a-fA-F]{1,16}$/.test(size)) d.mark('either', `huge chunk size "${size}" (docs/proxy.md)`, { clear: false });
    else d.mark('reject', `chunk size "${size}"`, { severity: 'framing', clear: false, late: true });
  },
  // Chunk data longer than its size: the CRLF after chunk-data is missing.
  (g, d, r) => {
    g.validBody(d, 'chunked');
    const data = r.text(r.int(2, 50));
    d.body = `${(data.length - 1).toString(16)}\r\n${data}\r\n0\r\n\r\n`;
    d.mark('reject', 'chunk longer than its size', { severity: 'framing', clear: false, late: true });
  },
  // §7.1.1 allows BWS around ";" in chunk-ext, which llhttp refuses: optional.
  (g, d) => {
    g.validBody(d, 'chunked');
    d.body = d.body.replace(/\r\n0\r\n|^0\r\n/, (m) => m.replace('0', '0 ;x=1'));
    d.mark('either', 'BWS before chunk-ext');
  },
  // Chunk extensions: long ones may be refused, but never misframe.
  (g, d, r) => {
    g.validBody(d, 'chunked');
    // With no data the extended chunk is the last-chunk itself (a second "0" would be a stray request).
    const ext = `;${r.text(r.int(1, 20000))}`;
    d.body = d.data.length > 0 ? `${d.data.length.toString(16)}${ext}\r\n${d.data}\r\n0\r\n\r\n` : `0${ext}\r\n\r\n`;
    d.mark('either', 'long chunk extension');
  },
  // Trailers (§7.1.2): valid ones, and framing fields that MUST NOT be used from them.
  (g, d, r) => {
    g.validBody(d, 'chunked');
    const trailer = r.pick(['X-T: v', 'Content-Length: 5', 'Transfer-Encoding: chunked', 'Host: evil', 'X@T: bad']);
    d.body = `${d.data.length ? `${d.data.length.toString(16)}\r\n${d.data}\r\n` : ''}0\r\n${trailer}\r\n\r\n`;
    // An invalid trailer name makes the message invalid, but the trailer section still ends at the empty line.
    d.mark('either', `trailer ${trailer}`);
  },
  // Bare LF inside chunked framing.
  (g, d) => {
    g.validBody(d, 'chunked');
    d.body = d.body.replace(/\r\n/g, '\n');
    d.mark('either', 'bare LF in chunked framing', { clear: false });
  },
];

/** The mutations that (re)build the body and its framing (they call validBody). */
const REFRAMES: ReadonlySet<Mutation> = new Set(MUTATIONS.filter((m) => m.toString().includes('validBody')));

export interface CaseOptions {
  /** Only structure-valid cases (the liveness baseline in tests). */
  validOnly?: boolean;
}

/** Smuggling carriers (RFC 9112 §6.1, §6.3): a hidden request sits where a wrong framing would find it. */
function smuggleCase(g: CaseGenerator): Draft {
  const r = g.rng;
  const d = g.add(g.validRequest());
  d.method = 'POST';
  d.remove('content-length');
  d.remove('transfer-encoding');
  const hidden = g.hiddenRequest();
  const variant = r.int(0, 4);
  if (variant === 0 || variant === 1) {
    // TE.CL: chunked carries the hidden request as data; CL ends just before it.
    const sizeLine = `${hidden.length.toString(16)}\r\n`;
    d.body = `${sizeLine}${hidden}\r\n0\r\n\r\n`;
    d.data = hidden;
    const te = variant === 0 ? r.pick(['chunked', 'Chunked', '\tchunked']) : r.pick(['xchunked', 'chunked, identity', 'identity', 'chunked\x0b', '"chunked"']);
    const lines = [`Content-Length: ${sizeLine.length}`, `Transfer-Encoding: ${te}`];
    if (r.chance(0.5)) lines.reverse();
    for (const l of lines) d.lines.push({ text: l, eol: '\r\n' });
    // §6.3 item 3: TE overrides CL (a proxy must drop CL), or the message is refused as an error.
    if (variant === 0) d.mark('either', 'TE.CL carrier');
    else d.mark('reject', `TE.CL carrier with TE ${JSON.stringify(te)}`, { severity: 'framing', clear: false });
  } else if (variant === 2) {
    // CL.CL: two lengths; the shorter one ends where the hidden request starts.
    const pad = r.text(r.int(0, 20));
    d.body = `${pad}${hidden}`;
    d.header('Content-Length', String(pad.length));
    d.header('Content-Length', String(d.body.length));
    d.mark('reject', 'differing Content-Length carrier', { severity: 'framing', clear: false });
  } else if (variant === 3) {
    // TE hidden from one parser: obs-folded, space before colon, or a second TE line.
    const sizeLine = `${hidden.length.toString(16)}\r\n`;
    d.body = `${sizeLine}${hidden}\r\n0\r\n\r\n`;
    d.header('Content-Length', String(sizeLine.length));
    const form = r.int(0, 2);
    if (form === 0) d.lines.push({ text: 'Transfer-Encoding:', eol: '\r\n' }, { text: ' chunked', eol: '\r\n' });
    else if (form === 1) d.lines.push({ text: 'Transfer-Encoding : chunked', eol: '\r\n' });
    else d.lines.push({ text: 'Transfer-Encoding: chunked', eol: '\r\n' }, { text: 'Transfer-Encoding: x', eol: '\r\n' });
    d.mark('reject', `hidden TE form ${form}`, { severity: 'framing', clear: false });
  } else {
    // A chunk size that overflows: a wrapping parser reads a tiny chunk and then the hidden request.
    d.header('Transfer-Encoding', 'chunked');
    d.body = `1${'0'.repeat(16)}2\r\nab\r\n${hidden}0\r\n\r\n`;
    d.mark('reject', 'overflowing chunk size carrier', { severity: 'framing', clear: false, late: true });
  }
  d.expectation = undefined;
  return d;
}

/** Case K of a run: a pure function of (target, seed, index). */
export function generateCase(target: Target, seed: number, index: number, opts: CaseOptions = {}): FuzzCase {
  const g = new CaseGenerator(target, seed, index);
  const r = g.rng;
  const n = r.weighted([[6, 1], [3, 2], [2, 3], [1, r.int(4, 8)]] as const);
  const family = opts.validOnly ? 'valid' : r.weighted([[15, 'valid'], [40, 'struct'], [10, 'smuggle'], [20, 'bytes'], [8, 'truncate'], [7, 'garbage']] as const);
  const drafts: Draft[] = [];
  if (family === 'smuggle') {
    if (r.chance(0.3)) drafts.push(g.add(g.validRequest()));
    drafts.push(smuggleCase(g));
    if (r.chance(0.6)) drafts.push(g.add(g.validRequest()));
  } else {
    for (let i = 0; i < n; i++) drafts.push(g.add(g.validRequest()));
    if (family === 'struct' || family === 'bytes') {
      for (let m = r.weighted([[6, 1], [2, 2], [1, 3]] as const); m > 0; m--) g.mutate(r.pick(drafts));
    }
  }
  let c: FuzzCase;
  if (family === 'bytes') c = g.build(family, drafts, { byteMutations: r.weighted([[4, 1], [3, 2], [2, 4], [1, 16]] as const) });
  else if (family === 'truncate') c = g.build(family, drafts, { cutAt: r.int(1, 400) });
  else if (family === 'garbage') c = g.build(family, drafts.slice(0, r.int(0, drafts.length)), { garbage: garbageBytes(r) });
  else c = g.build(family, drafts);
  if (target === 'tcp') return tcpCase(c, r);
  return c;
}

function garbageBytes(r: Rng): Buffer {
  const kind = r.int(0, 3);
  if (kind === 0) return r.bytes(r.int(1, 3000));
  if (kind === 1) return Buffer.from(r.text(r.int(1, 200), 'GETPOST /HTTP1.\r\n: '), 'latin1');
  // Bytes that look like a TLS record or an HTTP/2 preface inside the stream.
  if (kind === 2) return Buffer.concat([Buffer.from([0x17, 0x03, 0x03, r.int(0, 0x40), r.int(0, 255)]), r.bytes(r.int(0, 100))]);
  return Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
}

/** tcp: the same bytes, or binary noise, tunnelled as they are; sometimes ended by a half-close. */
function tcpCase(c: FuzzCase, r: Rng): FuzzCase {
  const bytes = r.chance(0.3) ? r.bytes(r.weighted([[5, r.int(1, 200)], [3, r.int(200, 20000)], [1, r.int(20000, 200000)]] as const)) : Buffer.concat(c.writes);
  return { ...c, writes: split(r, bytes, r.chance(0.5)), reqs: [], smuggled: [], endClose: r.chance(0.05) };
}

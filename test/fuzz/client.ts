/**
 * The fuzz client: a Lane is one TLS connection that runs cases one after
 * another, reusing the connection whenever the previous case left it open in
 * a known state (a full handshake costs milliseconds), and a fresh one
 * otherwise. probe() is the known-good request on its own connection.
 */
import tls from 'node:tls';
import { caseBytes, type FuzzCase, type Target } from './model.js';
import { dueResponses, predicted, rejectIndex, type Observation } from './checks.js';
import { parseResponses } from './response-reader.js';
import { originBody } from './cases.js';
import { SERVE_FILES } from './serve-files.js';
import { escapeBytes } from './escape.js';

export interface Timing {
  /** A case whose answers are not all owed ends after this long without news. */
  quietMs: number;
  /** Owed answers (and refusals) are waited for this long before a hang is reported. */
  longMs: number;
}

function connect(port: number, session: Buffer | undefined, timeoutMs: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, session });
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`TLS handshake not done within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once('secureConnect', () => {
      clearTimeout(t);
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(t);
      reject(err);
    });
  });
}

/** Triage hook (fd-watch.ts): which client port each case went out on. */
export const trace: { onCase?: (index: number, localPort: number | undefined) => void } = {};

export class Lane {
  private sock: tls.TLSSocket | null = null;
  private chunks: Buffer[] = [];
  private size = 0;
  private closed = false;
  private wake: (() => void) | null = null;
  private session: Buffer | undefined;
  handshakes = 0;

  constructor(
    readonly port: number,
    readonly timing: Timing,
  ) {}

  private async ensure(): Promise<tls.TLSSocket> {
    if (this.sock && !this.closed) return this.sock;
    const s = await connect(this.port, this.session, Math.max(5000, this.timing.longMs));
    this.handshakes++;
    this.sock = s;
    this.closed = false;
    this.chunks = [];
    this.size = 0;
    s.on('session', (sess: Buffer) => (this.session = sess));
    s.on('data', (d: Buffer) => {
      if (s !== this.sock) return;
      this.chunks.push(d);
      this.size += d.length;
      this.wake?.();
    });
    s.on('error', (e) => { if (process.env.FUZZ_DEBUG) console.error('lane error', e); });
    s.on('close', () => {
      if (s !== this.sock) return;
      this.closed = true;
      this.wake?.();
    });
    return s;
  }

  /** Resolves on data or close, or after ms. */
  private news(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = null;
        resolve(false);
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        this.wake = null;
        resolve(true);
      };
    });
  }

  private received(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  drop(): void {
    this.sock?.destroy();
    this.sock = null;
  }

  private async write(s: tls.TLSSocket, c: FuzzCase): Promise<void> {
    for (const w of c.writes) {
      if (this.closed) return;
      await new Promise<void>((resolve) => (s.write(w) ? resolve() : s.once('drain', resolve)));
    }
  }

  /** Runs one HTTP case (serve, proxy); the connection is kept only when its state is known. */
  async runHttp(c: FuzzCase): Promise<Observation> {
    const s = await this.ensure();
    trace.onCase?.(c.index, s.localPort);
    this.chunks = [];
    this.size = 0;
    const started = Date.now();
    const due = dueResponses(c);
    const rj = rejectIndex(c);
    const methodOf = (i: number): string | undefined => c.reqs[i]?.method;
    void this.write(s, c);
    let parsed = parseResponses(Buffer.alloc(0), methodOf, false);
    let last = Date.now();
    for (;;) {
      parsed = parseResponses(this.received(), methodOf, this.closed);
      const n = parsed.responses.length;
      if (this.closed || parsed.error || parsed.upgraded) break;
      // All answered: done, when nothing else can come. After a request that is not well-formed
      // a refusal may still follow the answers (e.g. a 400 for a body fault after serve's 405
      // to its head), so such a case waits out the quiet time to see any extra response.
      if (n >= c.reqs.length && parsed.rest === 0 && c.reqs.length > 0 && c.reqs.every((r) => r.verdict === 'ok')) break;
      // Owed answers (or a refusal owed at rj) get the long wait; anything else the quiet one.
      const owed = n < due || (rj >= 0 && n <= rj);
      const deadline = owed ? started + this.timing.longMs : last + this.timing.quietMs;
      const left = deadline - Date.now();
      if (left <= 0) break;
      if (await this.news(left)) last = Date.now();
    }
    const raw = this.received();
    const parseError = parsed.error && `${parsed.error}; received: "${escapeBytes(raw.subarray(0, 2000), 2000)}"`;
    const obs: Observation = { responses: parsed.responses, closed: this.closed, parseError, upgraded: parsed.upgraded, ms: Date.now() - started };
    const clean =
      !this.closed &&
      !parsed.error &&
      !parsed.upgraded &&
      parsed.rest === 0 &&
      predicted(c) &&
      c.reqs.length > 0 &&
      // Only well-formed requests provably leave the server waiting for a fresh request: after an
      // `either` one (a 4xx sent at the head while the parser still reads, or rejects later, its
      // body; an Expect; an odd chunk extension) a 400 may still be on its way, or the parser may
      // be mid-body, and the next case's bytes would be judged against that state.
      c.reqs.every((r) => r.verdict === 'ok') &&
      due === c.reqs.length &&
      parsed.responses.length === c.reqs.length &&
      !parsed.responses.some((r) => r.close);
    if (!clean) this.drop();
    return obs;
  }

  /** Runs one tcp case: the echo must come back byte for byte; a half-close must travel back as a close. */
  async runTcp(c: FuzzCase): Promise<{ error?: string; sent: number }> {
    const s = await this.ensure();
    this.chunks = [];
    this.size = 0;
    const want = caseBytes(c);
    const started = Date.now();
    // Written while the echo is read (a large case would otherwise fill both directions' buffers).
    void this.write(s, c).then(() => c.endClose && s.end());
    while (this.size < want.length && !this.closed) {
      const left = started + this.timing.longMs - Date.now();
      if (left <= 0 || !(await this.news(left))) break;
    }
    const got = this.received();
    let error: string | undefined;
    if (got.length < want.length) error = `${got.length} of ${want.length} bytes echoed within ${Date.now() - started} ms${this.closed ? ' (closed)' : ''}`;
    else if (!got.subarray(0, want.length).equals(want)) {
      let i = 0;
      while (got[i] === want[i]) i++;
      error = `echo differs at byte ${i}: got "${escapeBytes(got.subarray(i, i + 40))}"`;
    } else if (got.length > want.length) error = `${got.length - want.length} bytes more than sent came back`;
    if (!error && c.endClose) {
      while (!this.closed) {
        const left = started + this.timing.longMs - Date.now();
        if (left <= 0 || !(await this.news(left))) break;
      }
      if (!this.closed) error = 'half-close did not come back as a close';
    }
    if (error || c.endClose || this.closed) this.drop();
    return { error, sent: want.length };
  }
}

/** The known-good request on a fresh connection; null when answered correctly, else what went wrong. */
export async function probe(target: Target, port: number, n: number, timeoutMs: number): Promise<string | null> {
  let s: tls.TLSSocket | undefined;
  try {
    s = await connect(port, undefined, timeoutMs);
    const sock = s;
    const marker = `probe.${n}`;
    const request =
      target === 'tcp'
        ? Buffer.from(`probe ${n}\r\n`)
        : Buffer.from(`GET ${target === 'serve' ? '/probe.txt' : '/probe'}?fz=${marker} HTTP/1.1\r\nHost: localhost\r\nX-Fz: ${marker}\r\nConnection: close\r\n\r\n`);
    const got = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const t = setTimeout(() => reject(new Error(`no complete answer within ${timeoutMs} ms`)), timeoutMs);
      sock.on('data', (d: Buffer) => {
        chunks.push(d);
        if (target === 'tcp' && Buffer.concat(chunks).length >= request.length) sock.end();
      });
      sock.on('error', () => undefined);
      sock.on('close', () => {
        clearTimeout(t);
        resolve(Buffer.concat(chunks));
      });
      sock.write(request);
    });
    if (target === 'tcp') return got.equals(request) ? null : `echo "${escapeBytes(got, 80)}"`;
    const parsed = parseResponses(got, () => 'GET', true);
    const r = parsed.responses[0];
    const want = target === 'serve' ? SERVE_FILES.get('/probe.txt')! : originBody(marker, Buffer.alloc(0));
    if (!r) return `no response: "${escapeBytes(got, 200)}"`;
    if (r.status !== 200 || !r.body.equals(want)) return `status ${r.status}, body "${escapeBytes(r.body, 80)}"`;
    return null;
  } catch (err) {
    return (err as Error).message;
  } finally {
    s?.destroy();
  }
}

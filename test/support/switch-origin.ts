/**
 * A plain HTTP/1.1 origin (node:http on 127.0.0.1) whose answer the test
 * switches between requests, for the tests of serving stale responses
 * (RFC 5861): the same URL first answers normally, then fails in the way
 * the test chose.
 *
 * `answer` decides what every request gets from then on:
 * - 'ok': 200 with fields from the query string (`cc` Cache-Control, `age`
 *   Age, `etag` ETag, sent quoted) and the JSON body `{"n": N}`, N counting
 *   the 200s sent, so a test tells a stored answer from a new one; a
 *   request whose If-None-Match names that ETag gets a 304 with the same
 *   fields. While `gate` is set, these answers wait for it: the test decides
 *   exactly when the head leaves, no sleeping.
 *   `fresh` (when set) replaces the query's `cc` and drops its `age`, so
 *   the next stored response is fresh.
 * - 500, 502, 503, 504: that status with a short text body;
 * - 'reset': the connection is reset (RST) as soon as the request arrives;
 * - 'hang': no answer at all (until stop()).
 * stop() closes the listener and every connection: later connections to the
 * port are refused.
 *
 * Every request is recorded in `requests`, before it is answered.
 */
import http from 'node:http';
import type net from 'node:net';

export type OriginAnswer = 'ok' | 'reset' | 'hang' | 500 | 502 | 503 | 504;

export interface SwitchRecord {
  url: string;
  ifNoneMatch: string | null;
  /** What it got (or will get, once the gate opens). */
  answer: OriginAnswer;
}

export interface SwitchOrigin {
  port: number;
  answer: OriginAnswer;
  gate: Promise<void> | null;
  fresh: string | null;
  requests: SwitchRecord[];
  /** The requests received for exactly this URL. */
  count(url: string): number;
  stop(): Promise<void>;
}

export async function startSwitchOrigin(): Promise<SwitchOrigin> {
  let n = 0;
  const origin: SwitchOrigin = {
    port: 0,
    answer: 'ok',
    gate: null,
    fresh: null,
    requests: [],
    count: (url) => origin.requests.filter((r) => r.url === url).length,
    stop: () => Promise.resolve(),
  };

  async function ok(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (origin.gate !== null) await origin.gate;
    const q = new URL(req.url ?? '/', 'http://origin.invalid').searchParams;
    const fields: Record<string, string> = {};
    const cc = origin.fresh ?? q.get('cc');
    if (cc !== null) fields['Cache-Control'] = cc;
    if (origin.fresh === null && q.has('age')) fields.Age = q.get('age')!;
    if (q.has('etag')) fields.ETag = `"${q.get('etag')}"`;
    if (fields.ETag !== undefined && req.headers['if-none-match'] === fields.ETag) {
      res.writeHead(304, fields).end();
      return;
    }
    const body = `${JSON.stringify({ n: ++n })}\n`;
    res.writeHead(200, { ...fields, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) }).end(body);
  }

  const server = http.createServer((req, res) => {
    const answer = origin.answer;
    origin.requests.push({ url: req.url ?? '', ifNoneMatch: req.headers['if-none-match'] ?? null, answer });
    if (answer === 'ok') void ok(req, res);
    else if (answer === 'reset') req.socket.resetAndDestroy();
    else if (answer !== 'hang') res.writeHead(answer, { 'Content-Type': 'text/plain', 'Content-Length': 6 }).end('error\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  origin.port = (server.address() as net.AddressInfo).port;
  origin.stop = async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  };
  return origin;
}

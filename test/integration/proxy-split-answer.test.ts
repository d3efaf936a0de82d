/**
 * The proxy's read of an upstream answer (src/proxy/upstream-exchange.ts:
 * takeWholeAnswer's one consuming recv into the connection's answerRoom,
 * with no kTLS TX for splice, as here) when the answer does not come whole: the origin
 * writes it one byte at a time (TCP_NODELAY, each byte its own segment as the
 * proxy reads in between), or sends a body longer than the answer room
 * (16 KiB) at once. Heads, 1xx answers, chunked and Content-Length bodies
 * must arrive as sent, and an upstream that closes in the middle of a body
 * must not be taken for a complete answer. Bodies of the copy path's size
 * (upstream-answer.ts COPY_MIN, 64 KiB) written with their head at once go
 * to an HTTP/1.1 client by the copy path, which starts with the body bytes
 * the recv took along with the head (TakenFirstSource): every byte must
 * arrive once and in order (sha256), Content-Length, chunked, or ended by
 * the upstream's close.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http2 from 'node:http2';
import https from 'node:https';
import { describe, test } from 'node:test';
import { proxyOnRawOrigin } from '../support/raw-origin-proxy.js';

/** A body longer than the answer room, no two 16 KiB pieces alike. */
const LONG = Array.from({ length: 40 * 1024 / 8 }, (_, i) => String(i).padStart(8, '.')).join('');

const ANSWERS: Record<string, string> = {
  '/len': 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello',
  '/chunked': 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n',
  '/interim': 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok',
  '/long': `HTTP/1.1 200 OK\r\nContent-Length: ${LONG.length}\r\n\r\n${LONG}`,
  '/cut': 'HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf!',
};
const BODIES: Record<string, string> = { '/len': 'hello', '/chunked': 'abcde', '/interim': 'ok', '/long': LONG };

/** Bodies for the copy path, head and body written at once: /big/<kind>/<bytes>, kind len, chunked (8 KiB chunks) or close. */
const BIG = crypto.randomBytes(1024 * 1024);

function bigAnswer(kind: string, n: number): Buffer {
  const body = BIG.subarray(0, n);
  if (kind === 'len') return Buffer.concat([Buffer.from(`HTTP/1.1 200 OK\r\nContent-Length: ${n}\r\n\r\n`), body]);
  if (kind === 'close') return Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n'), body]);
  const parts: Buffer[] = [Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n')];
  for (let at = 0; at < n; at += 8192) {
    const piece = body.subarray(at, Math.min(n, at + 8192));
    parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n'));
  }
  parts.push(Buffer.from('0\r\n\r\n'));
  return Buffer.concat(parts);
}

const setup = proxyOnRawOrigin((sock, target) => {
  if (target.startsWith('/big/')) {
    const [kind, n] = target.split('/').slice(2) as [string, string];
    sock.write(bigAnswer(kind, Number(n)), () => { if (kind === 'close') sock.end(); });
    return;
  }
  const [path, how] = target.split('?') as [string, string | undefined];
  const answer = ANSWERS[path] ?? ANSWERS['/len']!;
  const done = (): void => { if (path === '/cut') sock.end(); };
  if (how !== 'bytes') {
    sock.write(answer, 'latin1', done);
    return;
  }
  sock.setNoDelay(true);
  let i = 0;
  const next = (): void => {
    if (i === answer.length) return done();
    sock.write(answer[i++]!, 'latin1');
    setTimeout(next, 1);
  };
  next();
});

/** An HTTP/1.1 GET through the proxy (keep-alive: the lane takes it); status, body, or the error. */
function getH1(path: string, agent: https.Agent): Promise<{ status: number; body: string } | Error> {
  return new Promise((resolve) => {
    const req = https.get({ host: '127.0.0.1', port: setup.p.port, path, ca: setup.fx.certPem, servername: 'localhost', agent }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode!, body }));
      res.on('error', (err) => resolve(err));
      res.on('aborted', () => resolve(new Error('aborted')));
    });
    req.on('error', (err) => resolve(err));
  });
}

/**
 * The same over HTTP/2, on a session of its own: a session kept open across
 * the byte-at-a-time answers (40 KiB at 1 ms a byte, longer on a loaded host)
 * sat idle while the HTTP/1.1 request before it ran, past the proxy's idle
 * timeout, which then closed it (ERR_HTTP2_INVALID_SESSION on the next request).
 */
async function getH2(path: string): Promise<{ status: number; body: string } | Error> {
  const session = http2.connect(`https://127.0.0.1:${setup.p.port}`, { ca: setup.fx.certPem, servername: 'localhost' });
  session.on('error', () => undefined);
  try {
    return await requestH2(session, path);
  } finally {
    session.close();
  }
}

function requestH2(session: http2.ClientHttp2Session, path: string): Promise<{ status: number; body: string } | Error> {
  return new Promise((resolve) => {
    const s = session.request({ ':path': path });
    let status = 0;
    let body = '';
    s.setEncoding('latin1');
    s.on('response', (h) => { status = Number(h[':status']); });
    s.on('data', (c: string) => { body += c; });
    s.on('end', () => resolve(s.rstCode ? new Error(`reset ${s.rstCode}`) : { status, body }));
    s.on('error', (err) => resolve(err));
  });
}

describe('aludel proxy: an upstream answer that does not come whole', () => {
  for (const how of ['bytes', 'whole']) {
    test(`${how === 'bytes' ? 'one byte at a time' : 'at once'}: HTTP/1.1 and HTTP/2 clients get each answer as sent`, async () => {
      const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
      try {
        for (const path of Object.keys(BODIES)) {
          for (const [client, r] of [['h1', await getH1(`${path}?${how}`, agent)], ['h2', await getH2(`${path}?${how}`)]] as const) {
            assert.ok(!(r instanceof Error), `${client} ${path}: ${String(r)}`);
            assert.equal(r.status, 200, `${client} ${path}`);
            assert.ok(r.body === BODIES[path], `${client} ${path}: ${r.body.length} bytes, not ${BODIES[path]!.length}`);
          }
        }
        // Closed after 5 of 10 body bytes: the client's response is cut, never complete.
        const h1 = await getH1(`/cut?${how}`, agent);
        assert.ok(h1 instanceof Error || h1.body.length < 10, `h1 /cut: ${JSON.stringify(h1)}`);
        const h2 = await getH2(`/cut?${how}`);
        assert.ok(h2 instanceof Error || h2.body.length < 10, `h2 /cut: ${JSON.stringify(h2)}`);
      } finally {
        agent.destroy();
      }
    });
  }

  test('bodies of the copy path\'s size, written with their head at once, reach an HTTP/1.1 client whole (sha256)', async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (const kind of ['len', 'chunked', 'close']) {
        for (const n of [64 * 1024, 64 * 1024 + 1, 200 * 1024 + 7, 1024 * 1024]) {
          const got = await getH1Bytes(`/big/${kind}/${n}`, agent);
          assert.ok(!(got instanceof Error), `${kind} ${n}: ${String(got)}`);
          assert.equal(got.length, n, `${kind} ${n}: length`);
          assert.equal(sha(got), sha(BIG.subarray(0, n)), `${kind} ${n}: sha256`);
        }
      }
      // And the pooled connections still carry the next answers whole.
      const r = await getH1('/len', agent);
      assert.ok(!(r instanceof Error) && r.body === 'hello', String(r));
    } finally {
      agent.destroy();
    }
  });
});

function sha(b: Buffer): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}

/** getH1's bytes, for a binary body. */
function getH1Bytes(path: string, agent: https.Agent): Promise<Buffer | Error> {
  return new Promise((resolve) => {
    const req = https.get({ host: '127.0.0.1', port: setup.p.port, path, ca: setup.fx.certPem, servername: 'localhost', agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(res.statusCode === 200 ? Buffer.concat(chunks) : new Error(`status ${res.statusCode}`)));
      res.on('error', (err) => resolve(err));
      res.on('aborted', () => resolve(new Error('aborted')));
    });
    req.on('error', (err) => resolve(err));
  });
}

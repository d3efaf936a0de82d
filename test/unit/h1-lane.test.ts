/**
 * The lane's head reader (src/http/h1-lane.ts simpleHead): it takes only a
 * whole, plain GET or HEAD head; everything else is left whole for node's
 * server, which answers it as before.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Socket } from 'node:net';
import { Duplex, PassThrough } from 'node:stream';
import { LaneConnection, LaneResponse, simpleHead, type LaneRequest } from '../../src/http/h1-lane.js';
import type { SecureConnection } from '../../src/tls/types.js';

const head = (text: string): Buffer => Buffer.from(text, 'latin1');

describe('simpleHead', () => {
  it('takes a plain GET and HEAD, with its fields, and says where the next request begins', () => {
    const buf = head('GET /a/b.txt?x=1 HTTP/1.1\r\nHost: example.test\r\nUser-Agent:  curl/8 \r\nRange: bytes=0-9\r\n\r\nGET /next');
    const got = simpleHead(buf, 16384);
    assert.ok(got !== null);
    assert.equal(got.req.method, 'GET');
    assert.equal(got.req.url, '/a/b.txt?x=1');
    assert.equal(got.req.headers.host, 'example.test');
    assert.equal(got.req.headers['user-agent'], 'curl/8', 'optional whitespace around the value is not part of it (RFC 9110 §5.5)');
    assert.equal(got.req.headers.range, 'bytes=0-9');
    assert.deepEqual(got.req.rawHeaders, ['Host', 'example.test', 'User-Agent', 'curl/8', 'Range', 'bytes=0-9']);
    assert.equal(buf.subarray(got.length).toString('latin1'), 'GET /next');
    assert.equal(simpleHead(head('HEAD / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n'), 16384)?.req.method, 'HEAD');
  });

  it('names its fields in lowercase however they were sent, the same each time; a name twice in two cases is refused', () => {
    for (let i = 0; i < 3; i++) {
      const got = simpleHead(head('GET / HTTP/1.1\r\nHOST: a\r\nuser-agent: b\r\nAcCePt: c\r\n\r\n'), 16384);
      assert.deepEqual(Object.keys(got?.req.headers ?? {}), ['host', 'user-agent', 'accept']);
      assert.deepEqual(got?.req.rawHeaders, ['HOST', 'a', 'user-agent', 'b', 'AcCePt', 'c']);
    }
    assert.equal(simpleHead(head('GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nx-a: 2\r\n\r\n'), 16384), null);
    assert.equal(simpleHead(head('GET / HTTP/1.1\r\nHost: a\r\nCONTENT-LENGTH: 0\r\n\r\n'), 16384), null, 'a framing field in any case goes to node');
  });

  it('leaves to node every head that is not whole and plain', () => {
    const refused: Array<[string, string]> = [
      ['incomplete', 'GET / HTTP/1.1\r\nHost: a\r\n'],
      ['another method', 'POST / HTTP/1.1\r\nHost: a\r\n\r\n'],
      ['a lower-case method', 'get / HTTP/1.1\r\nHost: a\r\n\r\n'],
      ['HTTP/1.0', 'GET / HTTP/1.0\r\nHost: a\r\n\r\n'],
      ['no Host', 'GET / HTTP/1.1\r\nAccept: */*\r\n\r\n'],
      ['two Host fields', 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'],
      ['a repeated field', 'GET / HTTP/1.1\r\nHost: a\r\nAccept: x\r\naccept: y\r\n\r\n'],
      ['a body (Content-Length)', 'GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n'],
      ['a body (Transfer-Encoding)', 'GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
      ['Upgrade', 'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n'],
      ['Expect', 'GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n'],
      ['Connection: close', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'],
      ['an absolute-form target', 'GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n'],
      ['the asterisk-form target', 'GET * HTTP/1.1\r\nHost: a\r\n\r\n'],
      ['a control byte in the target', 'GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n'],
      ['obs-text in the target', 'GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n'],
      ['a field without a colon', 'GET / HTTP/1.1\r\nHost: a\r\nnonsense\r\n\r\n'],
      ['a space before the colon', 'GET / HTTP/1.1\r\nHost : a\r\n\r\n'],
      ['obs-fold', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n'],
      ['a control byte in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n'],
      ['a bare LF', 'GET / HTTP/1.1\nHost: a\n\n'],
    ];
    for (const [what, text] of refused) assert.equal(simpleHead(head(text), 16384), null, what);
  });

  it('leaves to node a head over the size limit (its 431)', () => {
    const text = `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${'x'.repeat(200)}\r\n\r\n`;
    assert.ok(simpleHead(head(text), text.length) !== null);
    assert.equal(simpleHead(head(text), text.length - 1), null);
  });
});

describe('LaneResponse', () => {
  const written = (conn: PassThrough): string => {
    const parts: Buffer[] = [];
    let chunk: Buffer | null;
    while ((chunk = conn.read() as Buffer | null) !== null) parts.push(chunk);
    return Buffer.concat(parts).toString('latin1');
  };
  const make = (method: string, closing = false): { conn: PassThrough; res: LaneResponse; done: LaneResponse[] } => {
    const conn = new PassThrough();
    const done: LaneResponse[] = [];
    const req = { method, url: '/', headers: {}, rawHeaders: [], httpVersion: '1.1', httpVersionMajor: 1, httpVersionMinor: 1, complete: true, socket: conn } as unknown as LaneRequest;
    const res = new LaneResponse(req, conn as unknown as SecureConnection, 60, closing, (r) => done.push(r));
    return { conn, res, done };
  };

  it('writes node\'s head: status line, the fields in order, Date, Connection and Keep-Alive; then the body once', async () => {
    const { conn, res, done } = make('GET');
    res.writeHead(200, ['Content-Type', 'text/plain', 'Content-Length', 2]);
    res.end(Buffer.from('ok'));
    res.end(Buffer.from('again'));
    await new Promise((r) => setImmediate(r));
    const out = written(conn);
    assert.match(out, /^HTTP\/1\.1 200 OK\r\nContent-Type: text\/plain\r\nContent-Length: 2\r\nDate: [A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\nok$/);
    assert.equal(done.length, 1, 'done once');
    assert.ok(res.writableFinished && res.closed);
  });

  it('writes from writeHead\'s list without changing it: a field set or removed afterwards changes the response\'s own copy', () => {
    // The static handler gives the same list to every response of a file (file-validators.ts fullFields).
    const shared: Array<string | number> = ['Content-Type', 'text/plain', 'Content-Length', 2];
    const { res } = make('GET');
    res.writeHead(200, shared);
    res.setHeader('X-After', '1');
    res.removeHeader('content-type');
    assert.deepEqual(shared, ['Content-Type', 'text/plain', 'Content-Length', 2]);
    const again = make('GET');
    again.res.writeHead(200, shared);
    again.res.end(Buffer.from('ok'));
    assert.match(written(again.conn), /^HTTP\/1\.1 200 OK\r\nContent-Type: text\/plain\r\nContent-Length: 2\r\n/);
  });

  it('writeHeadAfter writes what writeHead writes with both lists as one; the fixed list is never changed, a field set afterwards goes after both', async () => {
    const fixed = ['Content-Type', 'text/plain', 'ETag', '"a"'];
    const one = make('GET');
    one.res.writeHead(200, 'OK', [...fixed, 'Age', '1', 'Content-Length', 2]);
    one.res.end(Buffer.from('ok'));
    const two = make('GET');
    two.res.writeHeadAfter(200, 'OK', fixed, ['Age', '1', 'Content-Length', 2]);
    two.res.end(Buffer.from('ok'));
    const changed = make('GET');
    changed.res.writeHeadAfter(200, 'OK', fixed, ['Age', '1', 'Content-Length', 2]);
    changed.res.setHeader('X-After', '1');
    changed.res.removeHeader('etag');
    // A field set before: it comes first, as writeHead puts the given list after it.
    const before = make('GET');
    before.res.setHeader('X-Before', '1');
    before.res.writeHeadAfter(200, 'OK', fixed, ['Content-Length', 2]);
    before.res.end(Buffer.from('ok'));
    await new Promise((r) => setImmediate(r));
    assert.equal(written(two.conn), written(one.conn));
    assert.deepEqual(fixed, ['Content-Type', 'text/plain', 'ETag', '"a"']);
    assert.match(written(before.conn), /^HTTP\/1\.1 200 OK\r\nX-Before: 1\r\nContent-Type: text\/plain\r\nETag: "a"\r\nContent-Length: 2\r\n/);
  });

  it('HEAD gets the head without the body; a closing response says Connection: close', async () => {
    const head = make('HEAD');
    head.res.setHeader('Content-Length', 5);
    head.res.end('hello');
    const closing = make('GET', true);
    closing.res.statusCode = 404;
    closing.res.setHeader('Content-Length', 0);
    closing.res.end();
    await new Promise((r) => setImmediate(r));
    assert.match(written(head.conn), /^HTTP\/1\.1 200 OK\r\nContent-Length: 5\r\nDate: [^\r]+\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\n$/);
    assert.match(written(closing.conn), /^HTTP\/1\.1 404 Not Found\r\nContent-Length: 0\r\nDate: [^\r]+\r\nConnection: close\r\n\r\n$/);
  });

  it('as node\'s for the proxy: the reason phrase given, a Date given kept alone, Connection: close given closing', async () => {
    const { conn, res } = make('GET');
    res.writeHead(200, 'Fine Thanks', ['Date', 'Mon, 01 Jan 2024 00:00:00 GMT', 'Content-Length', 2]);
    res.end(Buffer.from('ok'));
    const closing = make('GET');
    closing.res.writeHead(502, { 'Content-Type': 'text/plain', Connection: 'close' });
    closing.res.end('Bad Gateway\n');
    await new Promise((r) => setImmediate(r));
    assert.equal(written(conn), 'HTTP/1.1 200 Fine Thanks\r\nDate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\nok');
    // node's writeHead stores the head at once: no length known, so the body is chunked (RFC 9112 §7.1).
    assert.match(written(closing.conn), /^HTTP\/1\.1 502 Bad Gateway\r\nContent-Type: text\/plain\r\nConnection: close\r\nDate: [^\r]+\r\nTransfer-Encoding: chunked\r\n\r\nc\r\nBad Gateway\n\r\n0\r\n\r\n$/);
    assert.ok(closing.res.closing, 'its own Connection: close closes the connection after it');
  });

  it('reads the fields it frames by in any case (RFC 9110 §5.1), and no other name as one of them', async () => {
    const given = make('GET');
    given.res.writeHead(200, ['DATE', 'Mon, 01 Jan 2024 00:00:00 GMT', 'content-LENGTH', 2, 'connection', 'Close']);
    given.res.end(Buffer.from('ok'));
    const alike = make('GET');
    alike.res.writeHead(200, ['Dat-', 'x', 'Content-Lengtx', 1, 'Connectio-', 'close', 'Content_Length', 3]);
    alike.res.end(Buffer.from('ok'));
    await new Promise((r) => setImmediate(r));
    assert.equal(written(given.conn), 'HTTP/1.1 200 OK\r\nDATE: Mon, 01 Jan 2024 00:00:00 GMT\r\ncontent-LENGTH: 2\r\nconnection: Close\r\n\r\nok');
    assert.ok(given.res.closing, 'its own connection: Close closes the connection after it');
    assert.match(written(alike.conn), /^HTTP\/1\.1 200 OK\r\nDat-: x\r\nContent-Lengtx: 1\r\nConnectio-: close\r\nContent_Length: 3\r\nDate: [^\r]+\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n$/);
    assert.ok(!alike.res.closing);
  });

  it('a body of unknown length is chunked, each write a chunk, the last chunk at end; a given Transfer-Encoding: chunked is not repeated', async () => {
    const { conn, res } = make('GET');
    res.writeHead(200, 'OK', ['X-A', '1']);
    let taken = 0;
    res.write(Buffer.from('abc'), () => taken++);
    res.write(Buffer.from('de'), () => taken++);
    const ended = new Promise<void>((r) => res.end(undefined, r));
    await ended;
    assert.equal(taken, 2);
    assert.match(written(conn), /^HTTP\/1\.1 200 OK\r\nX-A: 1\r\nDate: [^\r]+\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n$/);
    const given = make('GET');
    given.res.writeHead(200, 'OK', ['Transfer-Encoding', 'chunked']);
    given.res.end();
    await new Promise((r) => setImmediate(r));
    assert.match(written(given.conn), /^HTTP\/1\.1 200 OK\r\nTransfer-Encoding: chunked\r\nDate: [^\r]+\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\n0\r\n\r\n$/);
  });

  it('204, 304 and HEAD get no framing and no body (RFC 9110 §6.4.1); end() given the whole body first says its Content-Length', async () => {
    const out: string[] = [];
    for (const [method, status] of [['GET', 204], ['GET', 304], ['HEAD', 200]] as const) {
      const { conn, res } = make(method);
      res.writeHead(status, ['X-B', '2']);
      res.end();
      await new Promise((r) => setImmediate(r));
      out.push(written(conn));
    }
    for (const o of out) assert.match(o, /^HTTP\/1\.1 \d{3} [^\r]+\r\nX-B: 2\r\nDate: [^\r]+\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\n$/);
    const whole = make('GET');
    whole.res.end('hello');
    await new Promise((r) => setImmediate(r));
    assert.match(written(whole.conn), /^HTTP\/1\.1 200 OK\r\nDate: [^\r]+\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\nContent-Length: 5\r\n\r\nhello$/);
  });

  it('chunkedEncoding says what node\'s ServerResponse says once the head is made: chunked for a GET without a length, not with one, not for HEAD or 304', () => {
    const cases: Array<[string, number, Array<string | number>]> = [['GET', 200, []], ['GET', 200, ['Content-Length', 5]], ['HEAD', 200, []], ['GET', 304, []], ['GET', 200, ['Transfer-Encoding', 'chunked']]];
    for (const [method, status, fields] of cases) {
      const lane = make(method).res;
      assert.equal(lane.chunkedEncoding, false, 'before the head');
      lane.writeHead(status, fields);
      // node's response reads its request's method and version when it is made (HEAD: no body; HTTP/1.1: chunked by default).
      const nodeReq = Object.assign(new http.IncomingMessage(new Socket()), { method, httpVersionMajor: 1, httpVersionMinor: 1 });
      const nodeRes = new http.ServerResponse(nodeReq);
      nodeRes.writeHead(status, fields);
      assert.equal(lane.chunkedEncoding, nodeRes.chunkedEncoding, `${method} ${status} ${fields.join(' ')}`);
    }
  });

  it('a whole response goes by the connection\'s writeWhole when it has one: the same bytes, finish after end() returns, the body let go at once; else by the stream', async () => {
    type Whole = { head: string; body: Buffer | string | undefined };
    const make2 = (method: string, takes: boolean): { conn: PassThrough; res: LaneResponse; calls: Whole[] } => {
      const m = make(method);
      const calls: Whole[] = [];
      Object.assign(m.conn, {
        writeWhole<T>(head: string, body: Buffer | string | undefined, done: (arg: T) => void, arg: T): boolean {
          if (!takes) return false;
          calls.push({ head, body });
          m.conn.write(body === undefined ? head : Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(body)]));
          process.nextTick(done, arg);
          return true;
        },
      });
      return { conn: m.conn, res: m.res, calls };
    };
    const whole = make2('GET', true);
    whole.res.writeHead(200, ['Content-Length', 2]);
    let finished = false;
    whole.res.on('finish', () => (finished = true));
    whole.res.end(Buffer.from('ok'));
    assert.equal(finished, false, 'finish comes after end() returns, as node\'s');
    assert.ok(whole.res.bodyCopied);
    await new Promise((r) => setImmediate(r));
    assert.ok(finished && whole.res.closed);
    assert.equal(whole.calls.length, 1);
    assert.match(written(whole.conn), /^HTTP\/1\.1 200 OK\r\nContent-Length: 2\r\nDate: [^\r]+\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\nok$/);
    const head = make2('HEAD', true);
    head.res.end('hello');
    assert.equal(head.calls[0]?.body, undefined, 'HEAD: no body (RFC 9110 §9.3.2)');
    const chunked = make2('GET', true);
    chunked.res.writeHead(200, ['X-A', '1']);
    chunked.res.end(Buffer.from('abc'));
    assert.equal(chunked.calls.length, 0, 'a chunked body goes by the stream');
    const refused = make2('GET', false);
    refused.res.end(Buffer.from('ok'));
    assert.equal(refused.res.bodyCopied, false);
    await new Promise((r) => setImmediate(r));
    assert.match(written(refused.conn), /^HTTP\/1\.1 200 OK\r\nDate: [^\r]+\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\nContent-Length: 2\r\n\r\nok$/);
    assert.ok(refused.res.writableFinished);
  });

  it('endsInTurn: a response the connection took whole within end() finishes there when nobody listens and it keeps its connection; else a tick later', async () => {
    type Taken = boolean | 'taken';
    /** A response on a connection whose writeWhole takes every byte within the call, or (`partly`) calls back later. */
    const make3 = (closing: boolean, partly = false): { conn: PassThrough; res: LaneResponse; done: LaneResponse[]; asked: boolean[] } => {
      const conn = new PassThrough();
      const done: LaneResponse[] = [];
      const asked: boolean[] = [];
      Object.assign(conn, {
        writeWhole<T>(head: string, body: Buffer | string | undefined, cb: (arg: T) => void, arg: T, inCall = false): Taken {
          asked.push(inCall);
          conn.write(body === undefined ? head : Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(body)]));
          if (inCall && !partly) return 'taken';
          process.nextTick(cb, arg);
          return true;
        },
      });
      const req = { method: 'GET', url: '/', headers: {}, rawHeaders: [], httpVersion: '1.1', httpVersionMajor: 1, httpVersionMinor: 1, complete: true, socket: conn } as unknown as LaneRequest;
      const res = new LaneResponse(req, conn as unknown as SecureConnection, 60, closing, (r) => done.push(r), true);
      return { conn, res, done, asked };
    };
    const quiet = make3(false);
    quiet.res.writeHead(200, ['Content-Length', 2]);
    quiet.res.end(Buffer.from('ok'));
    assert.deepEqual(quiet.asked, [true]);
    assert.ok(quiet.res.writableFinished && quiet.res.closed && quiet.res.bodyCopied, 'finished within end()');
    assert.equal(quiet.done.length, 1, 'done within end()');
    quiet.res.end(Buffer.from('again'));
    await new Promise((r) => setImmediate(r));
    assert.equal(quiet.done.length, 1, 'done once');
    assert.match(written(quiet.conn), /^HTTP\/1\.1 200 OK\r\nContent-Length: 2\r\nDate: [^\r]+\r\nConnection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\nok$/);
    // A listener, a close watcher, a closing answer, end()'s callback: finished after end() returns, as node's.
    const heard = make3(false);
    const events: string[] = [];
    heard.res.on('finish', () => events.push('finish'));
    heard.res.once('close', () => events.push('close'));
    heard.res.end(Buffer.from('ok'));
    const watched = make3(false);
    watched.res.closeWatch = () => events.push('watched');
    watched.res.end(Buffer.from('ok'));
    const closing = make3(true);
    closing.res.end(Buffer.from('ok'));
    const called = make3(false);
    called.res.end(Buffer.from('ok'), () => events.push('cb'));
    const partly = make3(false, true);
    partly.res.end(Buffer.from('ok'));
    for (const m of [heard, watched, closing, called, partly]) {
      assert.equal(m.res.writableFinished, false, 'not finished within end()');
      assert.equal(m.done.length, 0);
    }
    assert.deepEqual([heard, watched, closing, called, partly].map((m) => m.asked[0]), [false, false, false, false, true]);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(events, ['finish', 'close', 'watched', 'cb']);
    for (const m of [heard, watched, closing, called, partly]) assert.ok(m.res.writableFinished && m.res.closed && m.done.length === 1);
  });

  it('103 Early Hints and 102 Processing go out at once, as node writes them', async () => {
    const { conn, res } = make('GET');
    res.writeEarlyHints({ link: '</s.css>; rel=preload', 'x-c': '3' });
    res.writeProcessing();
    assert.throws(() => res.writeEarlyHints({ link: 'no angle brackets' }), { code: 'ERR_INVALID_ARG_VALUE' });
    await new Promise((r) => setImmediate(r));
    assert.equal(written(conn), 'HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nx-c: 3\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n');
    assert.equal(res.headersSent, false);
  });
});

describe('LaneConnection', () => {
  /**
   * A connection whose client sends pipelined heads and reads no answer: every write
   * stalls (its callback held, as a full socket holds it) until release() lets the
   * writes so far complete, as a client reading one answer would.
   */
  class StalledConn extends Duplex {
    held: Array<() => void> = [];
    pushed = 0;
    override _read(): void {}
    override _write(_c: Buffer, _e: BufferEncoding, cb: () => void): void {
      this.held.push(cb);
    }
    override _writev(_c: unknown[], cb: () => void): void {
      this.held.push(cb);
    }
    setTimeout(): this {
      return this;
    }
    release(): void {
      const held = this.held;
      this.held = [];
      for (const cb of held) cb();
    }
    send(b: Buffer): void {
      this.pushed += b.length;
      this.push(b);
    }
  }
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };

  it('takes no more from a client that sends faster than it reads than a bounded buffer: the heads waiting stay within twice --max-header-size and a read', async () => {
    const conn = new StalledConn();
    const maxHeaderSize = 1024;
    const one = 'GET /a HTTP/1.1\r\nHost: a\r\n\r\n';
    let answered = 0;
    const lane = new LaneConnection(conn as unknown as SecureConnection, {
      maxHeaderSize, idleTimeoutMs: 0, headersTimeoutMs: 0, silent: () => undefined, draining: () => false, takes: () => true,
      handle: (_req, res) => {
        answered++;
        res.setHeader('Content-Length', 1);
        res.end('x');
      },
      handOver: () => assert.fail('handed over'), closeAfterAnswer: () => assert.fail('closed'), left: () => undefined,
    });
    assert.ok(lane);
    // 512 heads a read, 64 reads: far more than the lane should hold while no answer is read.
    const chunk = Buffer.from(one.repeat(16), 'latin1');
    for (let i = 0; i < 64; i++) conn.send(chunk);
    await settle();
    const bound = 2 * maxHeaderSize + chunk.length;
    for (let round = 0; round < 40; round++) {
      const taken = conn.pushed - conn.readableLength;
      const waiting = taken - answered * one.length;
      assert.ok(waiting <= bound, `after ${answered} answers the lane holds ${waiting} bytes of heads (at most ${bound})`);
      conn.release();
      await settle();
    }
    assert.ok(answered >= 40, `every answer read lets the next request be answered (${answered})`);
    conn.destroy();
  });
});

/**
 * The lane's byte reader of request heads (src/http/lane-head.ts) against
 * the text reader it replaced (kept here, as the oracle only): the same heads
 * taken, with the same method, target, fields and length, and the same
 * refused (for node's server), over odd heads and many generated ones.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { simpleHead } from '../../src/http/lane-head.js';
import { isToken } from '../../src/text/char-classes.js';

interface Taken { method: string; url: string; headers: Record<string, string>; rawHeaders: string[]; length: number }

/** The reader before lane-head.ts (h1-lane.ts at 09c0745), as it was but for its request's fixed members. */
function oracle(buf: Buffer, maxHeaderSize: number, start = 0, stop = buf.length): Taken | null {
  const all = buf.toString('latin1', start, Math.min(stop, start + maxHeaderSize));
  const end = all.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const text = all.slice(0, end);
  const lineEnd = text.indexOf('\r\n');
  const line = lineEnd < 0 ? text : text.slice(0, lineEnd);
  let method: string;
  if (line.startsWith('GET ')) method = 'GET';
  else if (line.startsWith('HEAD ')) method = 'HEAD';
  else return null;
  if (!line.endsWith(' HTTP/1.1')) return null;
  const url = line.slice(method.length + 1, line.length - 9);
  if (url.length === 0 || url.charCodeAt(0) !== 0x2f) return null;
  for (let i = 0; i < url.length; i++) {
    const c = url.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f) return null;
  }
  const headers: Record<string, string> = Object.create(null);
  const rawHeaders: string[] = [];
  let at = lineEnd < 0 ? text.length : lineEnd + 2;
  while (at < text.length) {
    let next = text.indexOf('\r\n', at);
    if (next < 0) next = text.length;
    const colon = text.indexOf(':', at);
    if (colon < 0 || colon >= next) return null;
    const name = text.slice(at, colon);
    if (!isToken(name)) return null;
    let vs = colon + 1;
    let ve = next;
    while (vs < ve && (text.charCodeAt(vs) === 0x20 || text.charCodeAt(vs) === 0x09)) vs++;
    while (ve > vs && (text.charCodeAt(ve - 1) === 0x20 || text.charCodeAt(ve - 1) === 0x09)) ve--;
    const value = text.slice(vs, ve);
    for (let i = 0; i < value.length; i++) {
      const c = value.charCodeAt(i);
      if ((c < 0x20 && c !== 0x09) || c === 0x7f) return null;
    }
    const lower = name.toLowerCase();
    if (headers[lower] !== undefined) return null;
    if (lower === 'content-length' || lower === 'transfer-encoding' || lower === 'upgrade' || lower === 'expect') return null;
    if (lower === 'connection' && value.toLowerCase() !== 'keep-alive') return null;
    headers[lower] = value;
    rawHeaders.push(name, value);
    if (rawHeaders.length > 2 * 64) return null;
    at = next + 2;
  }
  if (headers.host === undefined) return null;
  return { method, url, headers, rawHeaders, length: end + 4 };
}

/** What the new reader gives, in the oracle's terms. */
function read(buf: Buffer, maxHeaderSize: number, start?: number, stop?: number): Taken | null {
  const got = simpleHead(buf, maxHeaderSize, start, stop);
  if (got === null) return null;
  const r = got.req;
  assert.equal(r.httpVersion, '1.1');
  assert.equal(r.complete, true);
  return { method: r.method, url: r.url, headers: r.headers, rawHeaders: r.rawHeaders, length: got.length };
}

/** Both readers agree on buf (and on it placed in a larger buffer, read from an offset). */
function agree(buf: Buffer, maxHeaderSize: number, what: string): Taken | null {
  const want = oracle(buf, maxHeaderSize);
  const got = read(buf, maxHeaderSize);
  const plain = (t: Taken | null): unknown => t === null ? null : { ...t, headers: Object.entries(t.headers) };
  assert.deepEqual(plain(got), plain(want), what);
  const padded = Buffer.concat([Buffer.from('GET /x HTTP/1.1\r\n'), buf, Buffer.from('\r\n\r\ntrailing')]);
  const start = 17;
  assert.deepEqual(plain(read(padded, maxHeaderSize, start, start + buf.length)), plain(oracle(padded, maxHeaderSize, start, start + buf.length)), `${what} (at an offset)`);
  return got;
}

const b = (text: string): Buffer => Buffer.from(text, 'latin1');

describe('lane-head simpleHead against the reader it replaced', () => {
  it('agrees on odd heads', () => {
    const fields64 = Array.from({ length: 63 }, (_, i) => `X-F${i}: ${i}\r\n`).join('');
    const cases: Array<[string, string]> = [
      ['plain', 'GET /one.bin HTTP/1.1\r\nHost: 127.0.0.1:29001\r\nuser-agent: h2load nghttp2/1.52.0\r\n\r\n'],
      ['HEAD', 'HEAD / HTTP/1.1\r\nHost: a\r\n\r\n'],
      ['obs-text in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xe9 \xff\r\n\r\n'],
      ['obs-text in a name', 'GET / HTTP/1.1\r\nHost: a\r\nX-\xe9: a\r\n\r\n'],
      ['obs-text in the target', 'GET /caf\xe9 HTTP/1.1\r\nHost: a\r\n\r\n'],
      ['DEL in the target', 'GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n'],
      ['DEL in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: a\x7f\r\n\r\n'],
      ['tabs around and in a value', 'GET / HTTP/1.1\r\nHost:\ta\t\r\nX-A: \t b\tc \t\r\n\r\n'],
      ['empty values', 'GET / HTTP/1.1\r\nHost:\r\nX-A:   \r\nX-B:\t\r\n\r\n'],
      ['a field twice in two cases', 'GET / HTTP/1.1\r\nHost: a\r\nAccept: x\r\nACCEPT: y\r\n\r\n'],
      ['Host twice in two cases', 'GET / HTTP/1.1\r\nHost: a\r\nhOST: a\r\n\r\n'],
      ['Connection: keep-alive', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n'],
      ['Connection: Keep-Alive', 'GET / HTTP/1.1\r\nHost: a\r\nconnection: Keep-Alive\r\n\r\n'],
      ['Connection: KEEP-ALIVE with OWS', 'GET / HTTP/1.1\r\nHost: a\r\nCONNECTION:  KEEP-ALIVE \t\r\n\r\n'],
      ['Connection: close', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'],
      ['Connection: keep-alive, x', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, x\r\n\r\n'],
      ['Connection: keep_alive', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: keep_alive\r\n\r\n'],
      ['Connection with a bare CR', 'GET / HTTP/1.1\r\nHost: a\r\nConnection: keep\rALIVE\r\n\r\n'],
      ['Connection empty', 'GET / HTTP/1.1\r\nHost: a\r\nConnection:\r\n\r\n'],
      ['64 fields', `GET / HTTP/1.1\r\nHost: a\r\n${fields64}\r\n`],
      ['65 fields', `GET / HTTP/1.1\r\nHost: a\r\n${fields64}X-Last: z\r\n\r\n`],
      ['a bare CR in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n'],
      ['a bare LF in a value', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\nc\r\n\r\n'],
      ['a CR before the CRLF', 'GET / HTTP/1.1\r\nHost: a\r\r\n\r\n'],
      ['a bare LF ending a line', 'GET / HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n'],
      ['LF lines', 'GET / HTTP/1.1\nHost: a\n\n'],
      ['no fields', 'GET / HTTP/1.1\r\n\r\n'],
      ['no line end', 'GET / HTTP/1.1'],
      ['a space in the target', 'GET /a b HTTP/1.1\r\nHost: a\r\n\r\n'],
      ['two spaces', 'GET  / HTTP/1.1\r\nHost: a\r\n\r\n'],
      ['empty target', 'GET  HTTP/1.1\r\nHost: a\r\n\r\n'],
      ['GET HTTP/1.1 alone', 'GET HTTP/1.1\r\nHost: a\r\n\r\n'],
      ['HTTP/1.10', 'GET / HTTP/1.10\r\nHost: a\r\n\r\n'],
      ['http/1.1', 'GET / http/1.1\r\nHost: a\r\n\r\n'],
      ['a space after the version', 'GET / HTTP/1.1 \r\nHost: a\r\n\r\n'],
      ['a name with every tchar', "GET / HTTP/1.1\r\nHost: a\r\n!#$%&'*+-.^_`|~09AZaz: v\r\n\r\n"],
      ['a space in a name', 'GET / HTTP/1.1\r\nHost: a\r\nX A: v\r\n\r\n'],
      ['an empty name', 'GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n'],
      ['a colon in a value', 'GET / HTTP/1.1\r\nHost: a:1\r\nX-A: b: c\r\n\r\n'],
      ['obs-fold', 'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n'],
      ['__proto__ and constructor as names', 'GET / HTTP/1.1\r\nHost: a\r\n__proto__: p\r\nconstructor: c\r\ntoString: t\r\n\r\n'],
      ['Content-Length', 'GET / HTTP/1.1\r\nHost: a\r\ncontent-LENGTH: 0\r\n\r\n'],
      ['Transfer-Encoding', 'GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n'],
      ['Upgrade', 'GET / HTTP/1.1\r\nHost: a\r\nUPGRADE: h2c\r\n\r\n'],
      ['Expect', 'GET / HTTP/1.1\r\nHost: a\r\nexpect: 100-continue\r\n\r\n'],
      ['a long name', `GET / HTTP/1.1\r\nHost: a\r\nX-${'n'.repeat(300)}: v\r\n\r\n`],
      ['pipelined heads', 'GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n'],
      ['a head and a partial one', 'GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTT'],
    ];
    for (const [what, text] of cases) for (const max of [16384, 40]) agree(b(text), max, `${what}, maxHeaderSize ${max}`);
    const got = read(b('GET / HTTP/1.1\r\nHost: a\r\n__proto__: p\r\nconstructor: c\r\n\r\n'), 16384);
    assert.equal(got?.headers['__proto__'], 'p');
    assert.deepEqual(Object.keys(got?.headers ?? {}), ['host', '__proto__', 'constructor']);
    const plain = read(b('GET / HTTP/1.1\r\nHost: a\r\n\r\n'), 16384)!;
    for (const key of ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf']) assert.equal(plain.headers[key], undefined, `no ${key} the client did not send`);
  });

  it('agrees on a head at exactly maxHeaderSize, one byte over, and cut at every byte', () => {
    const text = 'GET /a?b=c HTTP/1.1\r\nHost: example.test\r\nUser-Agent: x\r\nAccept: */*\r\n\r\nGET /next HTTP/1.1\r\n';
    const head = text.indexOf('\r\n\r\n') + 4;
    for (const max of [head - 1, head, head + 1]) agree(b(text), max, `maxHeaderSize ${max}`);
    assert.equal(read(b(text), head)?.length, head);
    assert.equal(read(b(text), head - 1), null);
    for (let cut = 0; cut <= text.length; cut++) agree(b(text.slice(0, cut)), 16384, `cut at ${cut}`);
  });

  it('gives each name as sent, whichever casing came before it (the table of names is keyed by every byte)', () => {
    for (const host of ['Host', 'HOST', 'host', 'hOst', 'Host']) {
      const got = read(b(`GET / HTTP/1.1\r\n${host}: a\r\nX-A: 1\r\nX-B: 2\r\nX-Ab: 3\r\nx-a: 4\r\n\r\n`), 16384);
      assert.equal(got, null, 'X-A and x-a: a field twice');
      const ok = read(b(`GET / HTTP/1.1\r\n${host}: a\r\nX-A: 1\r\nX-B: 2\r\nX-Ab: 3\r\nX-a_: 4\r\n\r\n`), 16384);
      assert.deepEqual(ok?.rawHeaders, [host, 'a', 'X-A', '1', 'X-B', '2', 'X-Ab', '3', 'X-a_', '4']);
      assert.deepEqual(Object.keys(ok?.headers ?? {}), ['host', 'x-a', 'x-b', 'x-ab', 'x-a_']);
    }
  });

  it('gives the Host value sent, whichever came before it', () => {
    const hosts = ['a', 'b', 'ab', 'a', 'A', '', 'a:1', 'a:2', 'x'.repeat(47), 'x'.repeat(48), 'x'.repeat(49), 'x'.repeat(49), 'caf\xe9', 'a'];
    for (const host of hosts) {
      const got = agree(b(`GET / HTTP/1.1\r\nHost: ${host}\r\n\r\n`), 16384, `Host ${host}`);
      assert.equal(got?.headers.host, host);
      assert.deepEqual(got?.rawHeaders, ['Host', host]);
    }
  });

  it('never gives one name for another of the same length (thousands of names, more than the table holds)', () => {
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 5000; i++) {
        const name = `X-${i.toString(36).padStart(4, '0')}`;
        const other = `x-${((i * 7919) % 5000).toString(36).padStart(4, '0')}`;
        const got = read(b(`GET / HTTP/1.1\r\nHost: a\r\n${name}: 1\r\n${other}: 2\r\n\r\n`), 16384);
        if (name.toLowerCase() === other) assert.equal(got, null);
        else assert.deepEqual(got?.rawHeaders, ['Host', 'a', name, '1', other, '2']);
      }
    }
  });

  it('agrees on every byte value in the target, a name, a value and the version line', () => {
    // The reader compares target and value bytes as ranges, not by a table: each of the 256 values at each place.
    for (let c = 0; c < 256; c++) {
      const x = String.fromCharCode(c);
      for (const [where, text] of [
        ['target', `GET /a${x}b HTTP/1.1\r\nHost: a\r\n\r\n`],
        ['target end', `GET /a${x} HTTP/1.1\r\nHost: a\r\n\r\n`],
        ['name', `GET / HTTP/1.1\r\nHost: a\r\nX-${x}b: v\r\n\r\n`],
        ['name end', `GET / HTTP/1.1\r\nHost: a\r\nX${x}: v\r\n\r\n`],
        ['value', `GET / HTTP/1.1\r\nHost: a\r\nX-A: v${x}w\r\n\r\n`],
        ['value start', `GET / HTTP/1.1\r\nHost: a\r\nX-A:${x}w\r\n\r\n`],
        ['value end', `GET / HTTP/1.1\r\nHost: a${x}\r\n\r\n`],
        ['empty value', `GET / HTTP/1.1\r\nHost: a\r\nX-A:${x}\r\n\r\n`],
        ['version', `GET / HTTP/1.${x}\r\nHost: a\r\n\r\n`],
      ] as const) agree(b(text), 16384, `byte 0x${c.toString(16)} in the ${where}`);
    }
  });

  it('agrees where a CRLFCRLF lies inside a line it refuses, or a bare LF ends a line', () => {
    const cases = [
      'GET /a\r\n\r\n HTTP/1.1\r\nHost: a\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\nc: d\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\nX A\r\n\r\n: d\r\n\r\n',
      'GET / HTTP/1.1\r\nHost\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\n\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: a\r\n\n',
      'GET / HTTP/1.1\r\nHost: a\r\n\r',
    ];
    for (const text of cases) for (const max of [16384, text.indexOf('\r\n\r\n') + 4]) agree(b(text), max, `${JSON.stringify(text)}, maxHeaderSize ${max}`);
  });

  it('agrees over generated heads, many more names than the table holds, each read twice', () => {
    let seed = 0x2545f491;
    const rand = (n: number): number => {
      seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const pick = <T>(xs: readonly T[]): T => xs[rand(xs.length)]!;
    const names = ['Host', 'host', 'HOST', 'User-Agent', 'user-agent', 'Accept', 'Accept-Encoding', 'Connection', 'connection', 'Range', 'If-None-Match',
      'Cookie', 'X-Forwarded-For', 'Content-Length', 'Transfer-Encoding', 'Upgrade', 'Expect', 'X-\xe9', 'X A', '', '__proto__', 'Sec-Fetch-Site', 'Sec-Fetch-Mode'];
    const values = ['a', '', ' ', '\t', ' a ', 'keep-alive', 'Keep-Alive', 'close', 'caf\xe9', 'a\x00b', 'a\x7fb', 'a\rb', 'a\nb', 'bytes=0-9', '"etag"', 'x'.repeat(40)];
    const targets = ['/', '/one.bin', '/a?b=c', '/caf\xe9', '*', 'http://a/', '/a b', '/a\x01', '', '/%20'];
    const ends = ['\r\n', '\r\n', '\r\n', '\r\n', '\n', '\r'];
    const good = ['\r\n'];
    let taken = 0;
    for (let n = 0; n < 8000; n++) {
      // Most heads well formed but for their fields, so that the reader gets as far as the names.
      const clean = rand(4) !== 0;
      const lineEnds = clean && rand(2) === 0 ? good : ends;
      const method = clean ? pick(['GET', 'HEAD']) : pick(['GET', 'GET', 'GET', 'HEAD', 'POST', 'get', 'GET ']);
      let text = clean ? `${method} ${pick(['/', '/one.bin', '/a?b=c'])} HTTP/1.1\r\nHost: a\r\n`
        : `${method} ${pick(targets)} ${pick(['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/1.1 '])}${pick(ends)}`;
      const count = rand(10) === 0 ? 60 + rand(8) : rand(6);
      for (let i = 0; i < count; i++) {
        const name = rand(3) === 0 ? `X-G${rand(3000)}${rand(2) === 0 ? '' : 'z'.repeat(rand(60))}` : rand(2) === 0 ? `x-g${rand(3000)}` : pick(names);
        text += `${name}:${pick(['', ' ', '\t', '  '])}${pick(values)}${pick(['', ' ', '\t'])}${pick(lineEnds)}`;
      }
      text += pick(['\r\n', '\r\n', '\r\n', '', '\n']);
      if (rand(4) === 0) text += 'GET /next HTTP/1.1\r\nHost: a\r\n\r\n';
      if (rand(6) === 0) text = text.slice(0, rand(text.length + 1));
      const max = rand(5) === 0 ? 1 + rand(text.length + 8) : 16384;
      agree(b(text), max, `generated ${n}: ${JSON.stringify(text)}, maxHeaderSize ${max}`);
      agree(b(text), max, `generated ${n} again`);
      if (read(b(text), max) !== null) taken++;
    }
    assert.ok(taken > 500, `only ${taken} generated heads were taken: the test would not reach the field names`);
  });
});

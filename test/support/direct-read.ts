/**
 * The connection's direct reads (src/tls/ktls-connection.ts readInto) and
 * the lane reading through them (src/http/h1-lane.ts), on a real listener
 * of ours and a real TLS client (node:tls), with `offload` as given: the
 * unit test runs them on userspace OpenSSL, the kTLS one with the kernel
 * decrypting (kTLS RX, checked).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { OffloadMode } from '../../src/config/tls-settings.js';
import type { Native } from '../../src/native/binding.js';
import { probeCapabilities } from '../../src/offload/capabilities.js';
import { createKtlsServer } from '../../src/tls/create-server.js';
import type { KtlsConnection } from '../../src/tls/ktls-connection.js';
import type { SecureServer } from '../../src/tls/types.js';
import { LaneConnection, type LaneOptions } from '../../src/http/h1-lane.js';
import { makeLeaf, type Pair } from './sni-certs.js';

/** A connection of ours and its client. */
interface Pairing {
  conn: KtlsConnection;
  client: tls.TLSSocket;
  /** The client's TCP socket under its TLS: end() sends a bare FIN, no close_notify. */
  raw: net.Socket;
}

/** Waits (turn by turn, no clock) until `ok()`, for at most `turns` 10 ms polls. */
async function until(ok: () => boolean, what: string, turns = 3000): Promise<void> {
  for (let i = 0; i < turns; i++) {
    if (ok()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.fail(`never: ${what}`);
}

/** Writes `b` as the client and resolves once it is handed to its socket. */
function send(client: tls.TLSSocket, b: Buffer | string): Promise<void> {
  return new Promise((resolve, reject) => client.write(b, (err) => (err ? reject(err) : resolve())));
}

/** A pattern no two positions of which repeat within 251 bytes: a byte out of place shows. */
function pattern(n: number, from = 0): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (from + i) % 251;
  return b;
}

/**
 * `version`: the client's only one. kTLS RX needs TLS 1.2 on OpenSSL 3.0
 * (its TLS 1.3 gives TX only, docs/data-plane.md).
 */
/**
 * `nativeOf`: the addon the listener is given, made from the real one (an
 * addon without some calls, to run the fallbacks of older builds).
 */
export function directReadTests(offload: OffloadMode, version: 'TLSv1.2' | 'TLSv1.3', wantRx: boolean, nativeOf?: (real: Native) => Native): void {
  let dir: string;
  let pair: Pair;
  let server: SecureServer;
  let port: number;
  const waiting: Array<(c: KtlsConnection) => void> = [];
  const opened: Pairing[] = [];

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-direct-read-'));
    pair = await makeLeaf(dir, 'a', 'ec', 'a.test', ['a.test']);
    // createKtlsServer takes the process's probed addon: swapped for this listener alone.
    const caps = probeCapabilities();
    const real = caps.native;
    if (nativeOf !== undefined && real !== null) caps.native = nativeOf(real);
    try {
      server = createKtlsServer({ certificates: [pair], offload, cipherSuites: 'TLS_AES_128_GCM_SHA256' });
    } finally {
      caps.native = real;
    }
    server.on('secureConnection', (c: KtlsConnection) => waiting.shift()?.(c));
    port = (await server.listen({ host: '127.0.0.1', port: 0 })).port;
  });

  after(async () => {
    for (const p of opened) {
      p.client.destroy();
      p.conn.destroy();
    }
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function open(): Promise<Pairing> {
    const conn = new Promise<KtlsConnection>((r) => waiting.push(r));
    const raw = net.connect(port, '127.0.0.1');
    const client = tls.connect({ socket: raw, servername: 'a.test', rejectUnauthorized: false, minVersion: version, maxVersion: version, ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' });
    await new Promise<void>((resolve, reject) => client.once('secureConnect', resolve).once('error', reject));
    const p = { conn: await conn, client, raw };
    assert.equal(p.conn.tls.version, version);
    assert.equal(p.conn.tls.ktlsRx, wantRx, `kTLS RX ${wantRx ? 'on' : 'off'} (${offload}, ${version})`);
    opened.push(p);
    return p;
  }

  describe(`direct reads (readInto), ${offload}, ${version}${nativeOf ? ', an addon of fewer calls' : ''}`, () => {
    it('gives every byte, in order, in reads no longer than a record, and no data event; bytesRead counts them', async () => {
      const { conn, client } = await open();
      const got: Buffer[] = [];
      let sizes = 0;
      assert.equal(conn.readInto((b, s, e) => {
        assert.ok(e - s > 0 && e - s <= 16384, `a read of ${e - s} bytes`);
        sizes += e - s;
        got.push(Buffer.from(b.subarray(s, e)));
      }), true);
      // A 'data' listener (the stream flowing) changes nothing: no byte is pushed while a reader is in.
      conn.on('data', () => assert.fail('a data event while a reader is installed'));
      const sent = pattern(300_000);
      let at = 0;
      for (const n of [1, 17, 16384, 16385, 100_000, 300_000 - 132_787]) {
        await send(client, sent.subarray(at, at + n));
        at += n;
      }
      await until(() => sizes === sent.length, 'all bytes read');
      assert.ok(Buffer.concat(got).equals(sent), 'the bytes in order');
      assert.equal(conn.bytesRead, sent.length);
    });

    it('declines once the stream was read, and takes nothing then', async () => {
      const { conn, client } = await open();
      const got: Buffer[] = [];
      conn.on('data', (d: Buffer) => got.push(d));
      assert.equal(conn.readInto(() => assert.fail('reader called')), false);
      await send(client, 'abc');
      await until(() => Buffer.concat(got).toString() === 'abc', 'the stream got the bytes');
    });

    it('holdReads stops reads until released; what came meanwhile follows in order', async () => {
      const { conn, client } = await open();
      const got: Buffer[] = [];
      let reads = 0;
      conn.readInto((b, s, e) => {
        reads++;
        got.push(Buffer.from(b.subarray(s, e)));
        if (reads === 1) conn.holdReads(true);
      });
      await send(client, 'one');
      await until(() => reads === 1, 'the first read');
      // The stream set flowing meanwhile does not restart them (its _read is the reader's then).
      conn.on('data', () => assert.fail('a data event while a reader is installed'));
      await send(client, 'two');
      client.end();
      // Held: neither 'two' nor the close_notify is read (they wait in the socket).
      const ended = new Promise<void>((r) => conn.once('end', r));
      for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(reads, 1, 'no read while held');
      assert.equal(conn.bytesRead, 3);
      assert.equal(conn.readableEnded, false, 'the FIN is not read while held');
      conn.holdReads(false);
      await ended;
      assert.equal(Buffer.concat(got).toString(), 'onetwo');
      assert.equal(conn.readableEnded, true);
    });

    it('a hold and release within the reader go on in the same loop, never reading over the bytes being read', async () => {
      const { conn, client } = await open();
      const got: string[] = [];
      conn.readInto((b, s, e) => {
        const before = b.toString('latin1', s, e);
        conn.holdReads(true);
        conn.holdReads(false);
        assert.equal(b.toString('latin1', s, e), before, 'the scratch is untouched during the call');
        got.push(before);
      });
      for (const t of ['a', 'b', 'c']) await send(client, t);
      await until(() => got.join('') === 'abc', 'all reads');
    });

    for (const how of ['close_notify', 'a bare FIN'] as const) {
      it(`the end of input (${how}) is the stream's end, after the last bytes`, async () => {
        const { conn, client, raw } = await open();
        let text = '';
        let endedAt = -1;
        conn.readInto((b, s, e) => {
          text += b.toString('latin1', s, e);
        });
        conn.on('end', () => { endedAt = text.length; });
        await send(client, 'last words');
        if (how === 'close_notify') client.end();
        else raw.end();
        await until(() => endedAt >= 0, "'end'");
        assert.equal(endedAt, 'last words'.length, "'end' after every byte");
        assert.equal(conn.readableEnded, true);
      });
    }

    for (const where of ['within the reader', 'while reads are held'] as const) {
      it(`handing the stream back ${where}: the bytes kept, unshifted, then those read after, each once and in order`, async () => {
        const { conn, client } = await open();
        const got: Buffer[] = [];
        const handBack = (rest: Buffer): void => {
          conn.readInto(null);
          conn.on('data', (d: Buffer) => got.push(d));
          conn.unshift(rest);
        };
        let kept: Buffer | null = null;
        conn.readInto((b, s, e) => {
          // The first 5 bytes are "taken"; the rest of the read is kept (a copy: the scratch is reused).
          const rest = Buffer.from(b.subarray(s + 5, e));
          if (where === 'within the reader') handBack(rest);
          else {
            kept = rest;
            conn.holdReads(true);
          }
        });
        const first = pattern(5000);
        await send(client, first);
        if (where === 'while reads are held') {
          await until(() => kept !== null, 'the first read');
          await send(client, pattern(3000, 5000));
          handBack(kept!);
        }
        await send(client, pattern(20_000, where === 'while reads are held' ? 8000 : 5000));
        const total = where === 'while reads are held' ? 28_000 : 25_000;
        await until(() => Buffer.concat(got).length >= total - 5, 'every byte through the stream');
        assert.ok(Buffer.concat(got).equals(pattern(total - 5, 5)), 'byte-exact, in order');
      });
    }
  });

  describe(`the lane on direct reads, ${offload}, ${version}${nativeOf ? ', an addon of fewer calls' : ''}`, () => {
    const get = (url: string): string => `GET ${url} HTTP/1.1\r\nHost: a\r\n\r\n`;
    /** A lane on `conn` answering each GET with its path; hand-overs and answers recorded. */
    function lane(conn: KtlsConnection, maxHeaderSize = 16384): { answered: string[]; handed: Promise<Buffer | null>; peak: () => number } {
      const answered: string[] = [];
      let taken = 0;
      let peak = 0;
      let handed!: (rest: Buffer | null) => void;
      const o: LaneOptions = {
        maxHeaderSize, idleTimeoutMs: 0, headersTimeoutMs: 0, silent: () => undefined, draining: () => false,
        takes: (req) => req.url !== '/node',
        handle: (req, res) => {
          answered.push(req.url);
          // Read but not yet taken, as each request is: what the lane holds.
          taken += get(req.url).length;
          peak = Math.max(peak, conn.bytesRead - taken);
          res.setHeader('Content-Length', req.url.length);
          res.end(req.url);
        },
        handOver: (_c, rest) => handed(rest),
        closeAfterAnswer: () => assert.fail('closed'),
        left: () => undefined,
      };
      assert.ok(new LaneConnection(conn, o));
      assert.equal(conn.listenerCount('data'), 0, 'the lane reads directly, not by data events');
      return { answered, handed: new Promise((r) => { handed = r; }), peak: () => peak };
    }

    it('answers pipelined heads in one read, in order', async () => {
      const { conn, client } = await open();
      const l = lane(conn);
      let answers = '';
      client.on('data', (d: Buffer) => { answers += d.toString('latin1'); });
      const urls = Array.from({ length: 50 }, (_, i) => `/${i}`);
      await send(client, urls.map(get).join(''));
      await until(() => l.answered.length === urls.length, 'every request answered');
      assert.deepEqual(l.answered, urls);
      await until(() => answers.endsWith('\r\n\r\n/49'), 'every answer');
    });

    it('a head split over two reads goes to node whole, the rest after it byte-exact', async () => {
      const { conn, client } = await open();
      const l = lane(conn);
      const head = get('/split');
      await send(client, head.slice(0, 20));
      await until(() => conn.bytesRead === 20, 'the first part read');
      await send(client, head.slice(20));
      const rest = await l.handed;
      // The lane hands over at the first read that has no whole head: what node gets then is that part.
      const got: Buffer[] = [rest ?? Buffer.alloc(0)];
      conn.on('data', (d: Buffer) => got.push(d));
      await send(client, 'after');
      await until(() => Buffer.concat(got).length === head.length + 5, 'all bytes');
      assert.equal(Buffer.concat(got).toString('latin1'), head + 'after');
      assert.deepEqual(l.answered, []);
    });

    it('hands over with the pipelined bytes behind a request it answered: node gets them once and in order', async () => {
      const { conn, client } = await open();
      const l = lane(conn);
      const tail = `${get('/node')}${get('/after')}`;
      const got: Buffer[] = [];
      const rest = l.handed.then((r) => {
        // As front.ts attachNode: node's listener first, then the bytes the lane kept.
        conn.on('data', (d: Buffer) => got.push(d));
        if (r !== null) conn.unshift(r);
        return r;
      });
      await send(client, get('/lane') + tail);
      assert.equal((await rest)?.toString('latin1'), tail);
      await send(client, 'more');
      await until(() => Buffer.concat(got).length === tail.length + 4, 'all bytes');
      assert.equal(Buffer.concat(got).toString('latin1'), tail + 'more');
      assert.deepEqual(l.answered, ['/lane']);
    });

    it('holds reads while more than twice maxHeaderSize of heads wait, and answers every one', async () => {
      const { conn, client } = await open();
      const maxHeaderSize = 1024;
      const l = lane(conn, maxHeaderSize);
      const urls = Array.from({ length: 2000 }, (_, i) => `/${i}`);
      let last = '';
      client.on('data', (d: Buffer) => { last = (last + d.toString('latin1')).slice(-16); });
      await send(client, urls.map(get).join(''));
      await until(() => l.answered.length === urls.length, 'every request answered');
      assert.deepEqual(l.answered, urls);
      // Read and not yet taken: at most the limit and the read that went past it (a record).
      assert.ok(l.peak() <= 2 * maxHeaderSize + 16384, `${l.peak()} bytes waited`);
      await until(() => last.endsWith('\r\n\r\n/1999'), 'the last answer');
    });

    it('endsInTurn: whole answers finish within end(); one written through the stream between them leaves the next its own head', async () => {
      const { conn, client } = await open();
      const finishedInEnd: boolean[] = [];
      const o: LaneOptions = {
        maxHeaderSize: 16384, idleTimeoutMs: 0, headersTimeoutMs: 0, silent: () => undefined, draining: () => false, endsInTurn: true,
        takes: () => true,
        handle: (req, res) => {
          if (req.url === '/s') {
            // Through the stream: a chunk gathered with the head over the connection's gather scratch.
            res.writeHead(200, ['X-S', 'streamed']);
            res.write(Buffer.from('abc'));
            res.end();
          } else {
            res.writeHead(200, ['Content-Length', 2]);
            res.end('ok');
          }
          finishedInEnd.push(res.writableFinished);
        },
        handOver: () => assert.fail('handed over'),
        closeAfterAnswer: () => assert.fail('closed'),
        left: () => undefined,
      };
      assert.ok(new LaneConnection(conn, o));
      let answers = '';
      client.on('data', (d: Buffer) => { answers += d.toString('latin1'); });
      const urls = ['/a', '/a', '/s', '/a', '/s', '/s', '/a', '/a'];
      await send(client, urls.map(get).join(''));
      const whole = 'HTTP/1\\.1 200 OK\r\nContent-Length: 2\r\nDate: [^\r]+\r\nConnection: keep-alive\r\nKeep-Alive: timeout=0\r\n\r\nok';
      const streamed = 'HTTP/1\\.1 200 OK\r\nX-S: streamed\r\nDate: [^\r]+\r\nConnection: keep-alive\r\nKeep-Alive: timeout=0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n';
      const expected = new RegExp(`^${urls.map((u) => (u === '/s' ? streamed : whole)).join('')}$`);
      await until(() => expected.test(answers), `every answer, byte-exact: ${JSON.stringify(answers)}`);
      // With kTLS TX a whole answer goes through the stream too (writeWhole declines: the kernel sends from our buffer).
      assert.deepEqual(finishedInEnd, urls.map((u) => u !== '/s' && !conn.tls.ktlsTx), 'a whole answer finished within end(), a streamed one later');
    });
  });
}

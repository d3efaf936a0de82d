/**
 * `aludel run` with no flag on the real legacy programs, against the kernel's
 * own counters (issue 11; run in the kTLS VM by scripts/run-tests.sh):
 * nginx 1.11.1 with OpenSSL 1.0.2f, Debian 11's nginx 1.18 with OpenSSL
 * 1.1.1w, and `openssl s_server -WWW` of both versions.
 *
 * - The matrix: every TLS version and suite that both the library and the
 *   kernel do (test/support/legacy.ts KERNEL_SUITES), with curl and
 *   `openssl s_client` of the system; 16 MiB and a small file; three requests
 *   on one keep-alive connection (nginx). Per row: sha256 equal, TlsTxSw and
 *   TlsRxSw +1 per connection, TlsDecryptError +0, the connection's own ULP
 *   state (sock_diag) sw/sw with the row's version and cipher, no
 *   [crit]/[alert] from nginx. nginx also with a request sent right behind
 *   the client's Finished (nginx turns OpenSSL's read-ahead on).
 * - Controls: the same programs without `aludel run`: counters +0, no ULP.
 * - Bad input on both nginx, each sent once the server has the connection in
 *   the kernel and beside a concurrent 16 MiB download (in the kernel too) that
 *   must arrive intact: a reset mid-body, a TLS 1.3 KeyUpdate with
 *   update_requested, a TLS 1.2 renegotiation, garbage after the handshake,
 *   close_notify in both directions.
 * - Outgoing TLS: `s_client` of 1.0.2f and 1.1.1w under `aludel run` against
 *   the system's `s_server -WWW` (which does not use kTLS): the client's
 *   connection in the kernel both ways.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import {
  connectionsUlp,
  fetchRow,
  KERNEL_SUITES,
  LIBRARY_OF,
  legacyPath,
  oneConnectionUlp,
  sClientFetch,
  spawnSClient,
  startLegacyServer,
  startRelay,
  tls12Ciphers,
  tlsRecords,
  wrappedPid,
  type ConnectionUlp,
  type KernelSuite,
  type LegacyOpenssl,
  type LegacyServer,
  type LegacyServerName,
  type RowFiles,
  type SClient,
} from '../support/legacy.js';
import { aludelRun, preloadLog, startSServer, type Started } from '../support/run-origins.js';
import { delta, hasKernelTls, readTlsStat } from '../support/tls-stat.js';
import { delay } from '../support/wait.js';

// ---------------------------------------------------------------------------
// What the preload writes (native/preload.c, native/preload-keys.c). Adjust here
// when its wording changes.

/** Its one line per process when it picks the strategy itself: `aludel-preload: pid N: strategy keys (why): ...`. */
const STRATEGY_KEYS_LINE = /^aludel-preload: pid (\d+): strategy keys\b/;
/** Any line of the preload; the event lines are those that are not the strategy line. */
const PRELOAD_LINE = /^aludel-preload: pid (\d+): /;

/**
 * The one event line each bad input gives, or null where the preload must
 * stay silent:
 * - a reset is the program's to report: the preload hands ECONNRESET/EPIPE
 *   back as SSL_ERROR_SYSCALL, as OpenSSL does, and nginx logs it at [info];
 * - close_notify either way is the normal end of a connection (RFC 8446 §6.1).
 */
const EVENTS = {
  reset: null,
  keyUpdate: /TLS 1\.3 KeyUpdate \(update_requested\).*connection ended/,
  renegotiation: /TLS 1\.2 renegotiation refused/,
  garbage: /failed authentication in the kernel \(EBADMSG/,
  closeNotifyFromClient: null,
  closeNotifyFromServer: null,
} satisfies Record<string, RegExp | null>;

// ---------------------------------------------------------------------------

const MiB = 1024 * 1024;
const FILES = { 'big.bin': 16 * MiB, 'small.bin': 16385 };
/** Start-up under `aludel run` in the VM: node loading the CLI on the emulated CPU takes seconds. */
const READY_MS = 180_000;
/** The server sets the kernel's keys just after its side of the handshake, which the client may finish first. */
const ULP_WAIT_MS = 20_000;

let fx: Fixtures<keyof typeof FILES>;
let files: RowFiles;

before(async () => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  assert.equal(process.geteuid?.(), 0, 'the kernel shows TLS ULP state (sock_diag) to CAP_NET_ADMIN only: run as root (the VM does)');
  for (const p of ['nginx-1.11.1', 'nginx-1.18', 'openssl-1.0.2f', 'openssl-1.1.1w'] as const) legacyPath(p);
  fx = await makeFixtures(FILES);
  files = { certFile: fx.certFile, outDir: fx.outDir, big: fx.files['big.bin'], small: fx.files['small.bin'] };
});

after(() => fx?.cleanup());

const isNginx = (name: LegacyServerName): boolean => name === 'nginx-1.11.1' || name === 'nginx-1.18';
const label = (name: LegacyServerName): string => (isNginx(name) ? name : `${name} s_server -WWW`);

/** sock_diag's view of a kTLS connection in both directions for `suite`. */
const kernelBothWays = (suite: KernelSuite) => ({ version: suite.version, cipher: suite.kernel, txConf: 'sw', rxConf: 'sw' });
const ulpView = (conns: ConnectionUlp[]) => conns.map((c) => (c.tls ? { version: c.tls.version, cipher: c.tls.cipher, txConf: c.tls.txConf, rxConf: c.tls.rxConf } : null));
const inKernel = (c: ConnectionUlp): boolean => c.tls !== null && c.tls.txConf !== 'none' && c.tls.rxConf !== 'none';

/** The preload's lines other than its strategy line. */
function events(lines: string[]): string[] {
  return lines.filter((l) => PRELOAD_LINE.test(l) && !STRATEGY_KEYS_LINE.test(l));
}

// ---------------------------------------------------------------------------
// The matrix and the controls

const SERVERS: LegacyServerName[] = ['nginx-1.11.1', 'nginx-1.18', 'openssl-1.0.2f', 'openssl-1.1.1w'];

/** A node:tls client (its own OpenSSL, userspace) to 127.0.0.1:port; `data` holds what arrived. */
async function nodeTls(port: number, version: 'TLSv1.2' | 'TLSv1.3') {
  const s = tls.connect({ host: '127.0.0.1', port, ca: fs.readFileSync(fx.certFile), servername: 'localhost', minVersion: version, maxVersion: version });
  let data = Buffer.alloc(0);
  let error: string | null = null;
  s.on('data', (d: Buffer) => (data = Buffer.concat([data, d])));
  s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
  const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    s.once('secureConnect', () => resolve());
    s.once('error', reject);
  });
  return {
    socket: s,
    closed,
    error: () => error,
    data: () => data,
    /** The response to a GET of small.bin has fully arrived (head and Content-Length bytes). */
    async smallResponse(): Promise<Buffer> {
      await until(() => {
        const end = data.indexOf('\r\n\r\n');
        return end >= 0 && data.length >= end + 4 + files.small.size;
      }, 60_000, 'the response');
      return data.subarray(data.indexOf('\r\n\r\n') + 4);
    },
  };
}

for (const name of SERVERS) {
  const lib = LIBRARY_OF[name];
  describe(`${label(name)} (OpenSSL ${lib}) under aludel run, no flag`, { timeout: 900_000 }, () => {
    let server: LegacyServer;
    let plain: LegacyServer;
    let log: ReturnType<typeof preloadLog>;

    before(async () => {
      log = preloadLog(fx.dir, name);
      const common = { root: fx.root, certFile: fx.certFile, keyFile: fx.keyFile, readyTimeoutMs: READY_MS };
      [server, plain] = await Promise.all([
        startLegacyServer(name, { ...common, wrapper: aludelRun(), env: { ALUDEL_PRELOAD_LOG: log.file } }),
        startLegacyServer(name, common),
      ]);
    });

    after(async () => {
      await Promise.all([server?.stop(), plain?.stop()]);
    });

    for (const suite of KERNEL_SUITES[lib]) {
      test(`TLS ${suite.version} ${suite.name}: bytes intact, +1 TlsTxSw/TlsRxSw per connection, sw/sw on the connection`, async (t) => {
        const t0 = Date.now();
        const before = readTlsStat();
        let ulp: ConnectionUlp[] = [];
        const row = await fetchRow(server, suite, files, async () => {
          ulp = await oneConnectionUlp(server.pid, inKernel, ULP_WAIT_MS);
        });
        const d = delta(before, readTlsStat());
        t.diagnostic(`${row.connections} connections in ${Date.now() - t0} ms (curl ${row.curlMs} ms); TlsTxSw +${d.TlsTxSw} TlsRxSw +${d.TlsRxSw} TlsDecryptError +${d.TlsDecryptError}; ulp ${JSON.stringify(ulpView(ulp))}`);
        assert.deepEqual(ulpView(ulp), [kernelBothWays(suite)], `the server's connection, as sock_diag shows it (TlsTxSw +${d.TlsTxSw}, TlsRxSw +${d.TlsRxSw})`);
        assert.equal(d.TlsTxSw, row.connections, `TlsTxSw: one per connection (${JSON.stringify(d)})`);
        assert.equal(d.TlsRxSw, row.connections, `TlsRxSw: one per connection (${JSON.stringify(d)})`);
        assert.equal(d.TlsDecryptError, 0, 'TlsDecryptError');
      });
    }

    if (isNginx(name)) {
      // nginx turns OpenSSL's read-ahead on (SSL_CTX_set_read_ahead in ngx_ssl_create), so a request
      // that arrives right behind the client's Finished can be in OpenSSL's buffer when the handshake
      // returns. In TLS 1.3 the client speaks last in the handshake (RFC 8446 §2), and browsers and
      // curl send their request at once; in a full TLS 1.2 handshake the server's Finished comes last.
      const top = lib === '1.0.2f' ? 'TLSv1.2' : 'TLSv1.3';
      test(`${top}: a request sent right behind the client's Finished (nginx reads ahead) is still served from the kernel`, async () => {
        const before = readTlsStat();
        const c = await nodeTls(server.port, top);
        try {
          c.socket.write(`GET /${files.small.name} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
          const body = await c.smallResponse();
          assert.equal(sha256(body), files.small.sha256);
          const ulp = await oneConnectionUlp(server.pid, inKernel, ULP_WAIT_MS);
          const d = delta(before, readTlsStat());
          assert.deepEqual(ulp.map((x) => x.tls && { txConf: x.tls.txConf, rxConf: x.tls.rxConf }), [{ txConf: 'sw', rxConf: 'sw' }], `the connection stayed with OpenSSL (TlsTxSw +${d.TlsTxSw})`);
        } finally {
          c.socket.destroy();
        }
      });
    }

    test('the preload wrote one line, from the server, naming the keys strategy, and no event', () => {
      const lines = log.lines();
      assert.equal(lines.length, 1, lines.join('\n'));
      const m = STRATEGY_KEYS_LINE.exec(lines[0]!);
      assert.ok(m, lines[0]);
      assert.equal(Number(m[1]), server.pid);
    });

    // 1.0.2 has TLS 1.2 only; 1.1.1 cannot program the kernel at all, TLS 1.3 included.
    const controlSuite = KERNEL_SUITES[lib].find((s) => s.kernel === 'aes-gcm-128' && s.version === (lib === '1.0.2f' ? '1.2' : '1.3'))!;
    test(`control, without aludel run: TLS ${controlSuite.version} ${controlSuite.name} intact, counters +0, no ULP`, async (t) => {
      const before = readTlsStat();
      let ulp: ConnectionUlp[] = [];
      const row = await fetchRow(plain, controlSuite, files, async () => {
        ulp = await oneConnectionUlp(plain.pid, () => true, ULP_WAIT_MS);
      });
      const d = delta(before, readTlsStat());
      t.diagnostic(`${row.connections} connections (curl ${row.curlMs} ms); TlsTxSw +${d.TlsTxSw} TlsRxSw +${d.TlsRxSw}`);
      assert.deepEqual(ulpView(ulp), [null], 'no TLS ULP on the connection');
      assert.equal(d.TlsTxSw, 0, JSON.stringify(d));
      assert.equal(d.TlsRxSw, 0, JSON.stringify(d));
    });

    if (isNginx(name)) badInput(() => server, () => plain, () => log, lib);
  });
}

// ---------------------------------------------------------------------------
// Bad input (nginx: it serves connections concurrently, s_server -WWW one at a time)

/**
 * A GET of big.bin over node:tls that, once the server has this connection in
 * the kernel both ways (it is then the server's only connection), sends its
 * request, reads the first chunk and pauses until resume(); it hashes as it
 * streams (nothing kept in memory).
 */
async function pausedDownload(srv: LegacyServer): Promise<{ received(): number; resume(): void; done: Promise<{ status: string; size: number; sha256: string; error?: string }> }> {
  const s = tls.connect({ host: '127.0.0.1', port: srv.port, ca: fs.readFileSync(fx.certFile), servername: 'localhost' });
  await new Promise<void>((resolve, reject) => {
    s.once('secureConnect', () => resolve());
    s.once('error', reject);
  });
  const ulp = await oneConnectionUlp(srv.pid, inKernel, ULP_WAIT_MS);
  if (!(ulp.length === 1 && inKernel(ulp[0]!))) {
    s.destroy();
    assert.fail(`the concurrent download's connection is not in the kernel: ${JSON.stringify(ulpView(ulp))}`);
  }
  let head: Buffer | null = Buffer.alloc(0); // null once the head has been read
  let status = '';
  let size = 0;
  let error: string | undefined;
  const h = crypto.createHash('sha256');
  let first!: () => void;
  const started = new Promise<void>((resolve) => (first = resolve));
  s.on('data', (d: Buffer) => {
    if (head !== null) {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      status = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
      d = head.subarray(end + 4);
      head = null;
      s.pause();
      first();
    }
    h.update(d);
    size += d.length;
  });
  s.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
  const done = new Promise<{ status: string; size: number; sha256: string; error?: string }>((resolve) => s.once('close', () => resolve({ status, size, sha256: h.digest('hex'), error })));
  s.write(`GET /${files.big.name} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
  await Promise.race([started, done]);
  return { received: () => size, resume: () => s.resume(), done };
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out (${timeoutMs} ms) waiting for ${what}`);
    await delay(50);
  }
}

function badInput(server: () => LegacyServer, plain: () => LegacyServer, log: () => ReturnType<typeof preloadLog>, lib: '1.0.2f' | '1.1.1w'): void {
  const aes128 = (version: '1.2' | '1.3'): KernelSuite => KERNEL_SUITES[lib].find((s) => s.version === version && s.kernel === 'aes-gcm-128')!;
  const top = lib === '1.0.2f' ? '1.2' : '1.3';
  const topSClientArgs = (): string[] => (top === '1.2' ? ['-tls1_2', '-cipher', aes128('1.2').name] : ['-tls1_3', '-ciphersuites', aes128('1.3').name]);

  /**
   * Runs `bad` while a 16 MiB download on another connection is held mid-body,
   * then checks: that download completes intact; the preload logged exactly
   * the expected event (or none) to ALUDEL_PRELOAD_LOG; nginx logged no
   * [crit]/[alert]/[emerg].
   */
  async function withConcurrentDownload(expected: RegExp | null, bad: () => Promise<void>): Promise<void> {
    const srv = server();
    const nginx = srv.nginx!;
    const errFrom = nginx.errorLog().length;
    const logFrom = log().lines().length;
    const steady = await pausedDownload(srv);
    try {
      await bad();
      if (expected) {
        await until(() => events(log().lines().slice(logFrom)).length > 0, 15_000, `the preload's event line (${expected}) in ALUDEL_PRELOAD_LOG`).catch((err: Error) => {
          // nginx replaces its environment (ngx_set_environment keeps TZ and its `env` directives only),
          // so a path read from ALUDEL_PRELOAD_LOG after start-up is gone and the line lands on stderr: its error log.
          const elsewhere = nginx.errorLog().slice(errFrom).split('\n').filter((l) => PRELOAD_LINE.test(l));
          throw new Error(`${err.message}; ALUDEL_PRELOAD_LOG has:\n${log().lines().join('\n')}${elsewhere.length ? `\nbut nginx's error log (its stderr) has:\n${elsewhere.join('\n')}` : ''}`);
        });
      }
      assert.ok(steady.received() < files.big.size, `the concurrent download was still in progress during the bad input (${steady.received()} bytes so far)`);
    } finally {
      steady.resume();
    }
    const r = await steady.done;
    assert.equal(r.error, undefined, `concurrent download: ${r.error}`);
    assert.match(r.status, /^HTTP\/1\.1 200 /, 'concurrent download: status');
    assert.equal(r.size, files.big.size, 'concurrent download: size');
    assert.equal(r.sha256, files.big.sha256, 'concurrent download: sha256');
    const ev = events(log().lines().slice(logFrom));
    if (expected) {
      assert.equal(ev.length, 1, `exactly one event line:\n${ev.join('\n')}`);
      assert.match(ev[0]!, expected);
      assert.match(ev[0]!, new RegExp(`^aludel-preload: pid ${srv.pid}: `), 'from the server process');
    } else {
      assert.deepEqual(ev, [], 'no event line');
    }
    assert.deepEqual(nginx.severe(errFrom), [], 'nginx error log: no [crit]/[alert]/[emerg]');
  }

  /** s_client without -quiet (so it takes the K/R/Q commands), after one keep-alive request answered. */
  async function sClientAfterRequest(port: number, args: string[], opts: { openssl?: string; beforeRequest?: (c: SClient) => Promise<void> } = {}) {
    const c = spawnSClient({ port, openssl: opts.openssl, args: ['-CAfile', fx.certFile, ...args] });
    await c.waitFor('handshake', (o) => /Verify return code: 0/.test(o), 60_000);
    await (opts.beforeRequest ?? ((x: SClient) => serverInKernel(clientPort(x.child.pid!))))(c);
    c.write(`GET /${files.small.name} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    // The body is random bytes; the response is complete when stdout holds head and Content-Length bytes.
    await c.waitFor('the response', () => {
      const out = c.stdout();
      const head = out.indexOf('HTTP/1.1 200');
      const end = head >= 0 ? out.indexOf('\r\n\r\n', head) : -1;
      return end >= 0 && out.length >= end + 4 + files.small.size;
    }, 60_000);
    return c;
  }

  async function exitWithin(c: ReturnType<typeof spawnSClient>, ms: number, what: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([c.exited, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), ms)))]);
    clearTimeout(timer);
    if (r === null) {
      await c.stop(0);
      assert.fail(`${what}: s_client still connected after ${ms} ms:\n${c.output().slice(-3000)}`);
    }
  }

  /**
   * Waits until the server holds the connection whose peer port is `peerPort` in the kernel
   * both ways (it does so just after its side of the handshake), so that what the test sends
   * next goes through the kernel's RX, not OpenSSL's.
   */
  async function serverInKernel(peerPort: number): Promise<void> {
    const deadline = Date.now() + ULP_WAIT_MS;
    for (;;) {
      const mine = connectionsUlp(server().pid).find((c) => c.remotePort === peerPort);
      if (mine && inKernel(mine)) return;
      if (Date.now() > deadline) assert.fail(`the server's connection from port ${peerPort} is not in the kernel both ways: ${JSON.stringify(mine ?? 'not found')}`);
      await delay(50);
    }
  }

  /** The local port of a client process's one connection. */
  function clientPort(pid: number): number {
    const conns = connectionsUlp(pid);
    assert.equal(conns.length, 1, `one connection of pid ${pid}`);
    return conns[0]!.localPort;
  }

  const NO_UNDECRYPTABLE = /bad record mac|decryption failed|decrypt error/i;

  describe('bad input, each beside a concurrent 16 MiB download', () => {
    test('a client reset mid-body: nginx logs it at [info], the preload stays silent', async () => {
      const nginx = server().nginx!;
      const errFrom = nginx.errorLog().length;
      await withConcurrentDownload(EVENTS.reset, async () => {
        await new Promise<void>((resolve, reject) => {
          // resetAndDestroy() on the TCP socket under the TLS one sends an RST (SO_LINGER 0).
          const tcp = net.connect(server().port, '127.0.0.1');
          const s = tls.connect({ socket: tcp, ca: fs.readFileSync(fx.certFile), servername: 'localhost' }, () => {
            serverInKernel(tcp.localPort!).then(() => s.write(`GET /${files.big.name} HTTP/1.1\r\nHost: localhost\r\n\r\n`), reject);
          });
          s.once('data', () => {
            tcp.resetAndDestroy();
            resolve();
          });
          s.once('error', reject);
        });
        // errno 104 ECONNRESET or 32 EPIPE (nginx 1.11.1's own strerror table says "Unknown error" on current glibc).
        await until(() => /\[info\].*\((104|32): /.test(nginx.errorLog().slice(errFrom)), 30_000, "nginx's [info] line for the reset");
      });
    });

    if (lib === '1.1.1w') {
      test('a TLS 1.3 KeyUpdate with update_requested: the connection ends cleanly, one event line (no rekey before Linux 6.14)', async () => {
        const before = readTlsStat();
        let out = '';
        await withConcurrentDownload(EVENTS.keyUpdate, async () => {
          const c = await sClientAfterRequest(server().port, ['-tls1_3', '-ciphersuites', 'TLS_AES_128_GCM_SHA256']);
          c.write('K\n'); // s_client: "K" alone on a line sends KeyUpdate(update_requested) (man s_client, CONNECTED COMMANDS)
          await exitWithin(c, 30_000, 'after the KeyUpdate');
          out = c.output();
        });
        assert.match(out, /KEYUPDATE/, 's_client sent its KeyUpdate');
        assert.doesNotMatch(out, NO_UNDECRYPTABLE, `the client never got a record it could not decrypt:\n${out.slice(-3000)}`);
        assert.equal(delta(before, readTlsStat()).TlsDecryptError, 0);
      });
    }

    test('a TLS 1.2 renegotiation attempt: refused with no_renegotiation, one event line', async () => {
      const before = readTlsStat();
      let out = '';
      await withConcurrentDownload(EVENTS.renegotiation, async () => {
        // s_client of OpenSSL 1.1.1w: "R" renegotiates; it ends the connection when the server refuses (ssl3_read_bytes, SSL_R_NO_RENEGOTIATION).
        const c = await sClientAfterRequest(server().port, ['-tls1_2', '-cipher', aes128('1.2').name], { openssl: legacyPath('openssl-1.1.1w') });
        c.write('R\n');
        await exitWithin(c, 30_000, 'after the renegotiation attempt');
        out = c.output();
      });
      assert.match(out, /RENEGOTIATING/, 's_client tried');
      assert.match(out, /no renegotiation/i, `the server refused with no_renegotiation (RFC 5246 §7.2.2):\n${out.slice(-3000)}`);
      assert.doesNotMatch(out, NO_UNDECRYPTABLE, out.slice(-3000));
      assert.equal(delta(before, readTlsStat()).TlsDecryptError, 0);
    });

    test(`garbage after the handshake (a forged TLS ${top} application record): the kernel rejects it, one event line`, async () => {
      const relay = await startRelay(server().port);
      const before = readTlsStat();
      let clientError: string | null = null;
      try {
        await withConcurrentDownload(EVENTS.garbage, async () => {
          const c = await nodeTls(relay.port, top === '1.2' ? 'TLSv1.2' : 'TLSv1.3');
          const conn = relay.connections[0]!;
          // The request only once the server has its side in the kernel (see the read-ahead test above).
          await serverInKernel(conn.upstreamPort());
          c.socket.write(`GET /${files.small.name} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
          await c.smallResponse();
          // Application data (23), 0x0303 on the wire (TLS 1.3 records say so too, RFC 8446 §5.1), 32 random bytes: no key authenticates them.
          conn.inject(Buffer.concat([Buffer.from([0x17, 0x03, 0x03, 0x00, 0x20]), crypto.randomBytes(32)]));
          await Promise.race([c.closed, delay(30_000).then(() => assert.fail('the server kept the connection after the garbage'))]);
          clientError = c.error();
        });
      } finally {
        await relay.close();
      }
      const d = delta(before, readTlsStat());
      assert.equal(d.TlsDecryptError, 1, `the kernel (not OpenSSL) rejected the record: ${JSON.stringify(d)}`);
      assert.notEqual(clientError, 'ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC', 'the client never got a record it could not decrypt');
    });

    test(`close_notify from the client (s_client "Q", TLS ${top}): nginx ends the connection as it does without aludel run`, async () => {
      /** The server's records after the client's close_notify, how it closed, and whether nginx took it as an error. */
      async function afterQ(srv: LegacyServer) {
        const relay = await startRelay(srv.port);
        try {
          const errFrom = srv.nginx!.errorLog().length;
          const c = await sClientAfterRequest(relay.port, topSClientArgs(), {
            beforeRequest: async () => (srv === server() ? serverInKernel(relay.connections[0]!.upstreamPort()) : undefined),
          });
          const conn = relay.connections[0]!;
          const seen = tlsRecords(conn.fromServer()).length;
          c.write('Q\n'); // s_client: sends close_notify (SSL_shutdown) and exits
          await exitWithin(c, 30_000, 'after Q');
          const ended = await Promise.race([conn.serverEnded, delay(30_000).then(() => 'still open after 30 s')]);
          await delay(200); // nginx logs just after closing
          return {
            ended,
            records: tlsRecords(conn.fromServer()).slice(seen),
            readFailed: srv.nginx!.errorLog().slice(errFrom).split('\n').filter((l) => /SSL_read\(\) failed|SSL_shutdown\(\) failed/.test(l)),
          };
        } finally {
          await relay.close();
        }
      }
      let underRun: Awaited<ReturnType<typeof afterQ>> | undefined;
      await withConcurrentDownload(EVENTS.closeNotifyFromClient, async () => {
        underRun = await afterQ(server());
      });
      const alone = await afterQ(plain());
      // nginx takes a close_notify as the end (SSL_ERROR_ZERO_RETURN) and closes without answering it
      // (ngx_ssl_handle_recv sets no_send_shutdown): the same with the kernel doing the records.
      assert.deepEqual(underRun, alone, 'the same as nginx without aludel run');
      assert.equal(underRun!.ended, 'fin', 'closed in order (FIN, not RST)');
      assert.deepEqual(underRun!.readFailed, [], 'nginx saw a clean close, not an SSL_read error');
    });

    test(`close_notify from the server (Connection: close, TLS ${top}): s_client sees it before the FIN`, async () => {
      let out = '';
      await withConcurrentDownload(EVENTS.closeNotifyFromServer, async () => {
        const c = spawnSClient({ port: server().port, args: ['-msg', '-CAfile', fx.certFile, ...topSClientArgs()] });
        await c.waitFor('handshake', (o) => /Verify return code: 0/.test(o), 60_000);
        await serverInKernel(clientPort(c.child.pid!));
        c.write(`GET /${files.small.name} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
        await exitWithin(c, 30_000, 'after a Connection: close request');
        out = c.output();
      });
      assert.match(out, /HTTP\/1\.1 200/);
      assert.match(out, new RegExp(`<<< TLS ${top.replace('.', '\\.')}, Alert \\[length 0002\\], warning close_notify`), `s_client -msg shows the server's close_notify:\n${out.slice(-3000)}`);
      assert.doesNotMatch(out, /unexpected eof/i, 'not a bare FIN');
      assert.doesNotMatch(out, NO_UNDECRYPTABLE);
    });
  });
}

// ---------------------------------------------------------------------------
// Outgoing TLS: a legacy client under aludel run

const CLIENT_ROWS: Record<LegacyOpenssl, string[]> = {
  'openssl-1.0.2f': ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384'],
  'openssl-1.1.1w': ['ECDHE-ECDSA-CHACHA20-POLY1305', 'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384'],
};

describe('client side: legacy s_client under aludel run (no flag) against the system s_server -WWW', { timeout: 900_000 }, () => {
  let srv: Started;

  before(async () => {
    // OpenSSL 3's s_server uses kTLS only with Options = KTLS in its config, which this has not:
    // every kTLS context counted below is the client's.
    srv = await startSServer({ root: fx.root, certFile: fx.certFile, keyFile: fx.keyFile, args: ['-cipher', tls12Ciphers('1.1.1w')] });
  });

  after(async () => {
    await srv?.stop();
  });

  for (const client of ['openssl-1.0.2f', 'openssl-1.1.1w'] as LegacyOpenssl[]) {
    // Each row starts `aludel run` (node loading the CLI: 10-20 s in the VM), so not every suite:
    // the key derivation per suite is the servers' (above); here what the client side adds: the
    // directions swapped, both PRF hashes of 1.0.2, ChaCha20, and TLS 1.3 with the server's
    // NewSessionTickets arriving on the kernel's RX, under both HKDF hashes.
    const rows = CLIENT_ROWS[client];
    for (const suite of KERNEL_SUITES[LIBRARY_OF[client]].filter((s) => rows.includes(s.name))) {
      test(`${client} s_client, TLS ${suite.version} ${suite.name}: 16 MiB intact, the client's connection sw/sw, TlsTxSw/TlsRxSw +1`, async (t) => {
        const log = preloadLog(fx.dir, `client-${client}-${suite.name}`);
        const before = readTlsStat();
        let ulp: ConnectionUlp[] = [];
        let serverUlp: ConnectionUlp[] = [];
        const t0 = Date.now();
        const r = await sClientFetch({
          port: srv.port,
          certFile: fx.certFile,
          suite,
          path: `/${files.big.name}`,
          openssl: legacyPath(client),
          wrapper: aludelRun(),
          env: { ALUDEL_PRELOAD_LOG: log.file },
          timeoutMs: 60_000,
          held: async (c) => {
            const clientPid = wrappedPid(c.child.pid!);
            ulp = await oneConnectionUlp(clientPid, inKernel, ULP_WAIT_MS);
            serverUlp = connectionsUlp(srv.daemon.child.pid!);
          },
        });
        const d = delta(before, readTlsStat());
        t.diagnostic(`${Date.now() - t0} ms; TlsTxSw +${d.TlsTxSw} TlsRxSw +${d.TlsRxSw}; client ulp ${JSON.stringify(ulpView(ulp))}`);
        assert.match(r.status, /^HTTP\/1\.0 200/, r.client.stderr().slice(-2000));
        assert.equal(r.body.length, files.big.size, 'size');
        assert.equal(sha256(r.body), files.big.sha256, 'sha256');
        assert.deepEqual(ulpView(ulp), [kernelBothWays(suite)], "the client's connection, as sock_diag shows it");
        assert.deepEqual(ulpView(serverUlp), [null], 'the system s_server does not use kTLS');
        assert.equal(d.TlsTxSw, 1, JSON.stringify(d));
        assert.equal(d.TlsRxSw, 1, JSON.stringify(d));
        assert.equal(d.TlsDecryptError, 0);
        const lines = log.lines();
        assert.equal(lines.length, 1, lines.join('\n'));
        assert.match(lines[0]!, STRATEGY_KEYS_LINE);
      });
    }
  }
});

/**
 * What SSL_shutdown, SSL_write (and its retries after WANT_WRITE), SSL_read
 * on the peer's fatal alert and an SSL BIO's read return, and the error they
 * queue as ERR_error_string prints it, once the kernel
 * has a connection under `aludel run` (run in the kTLS VM by
 * scripts/run-tests.sh): a small OpenSSL server
 * (test/support/ssl-return-probe.c) prints what those calls return, under
 * run and alone; both must print the same. It is built twice: against the
 * real 1.0.2f headers and library, and against Debian 11's libssl.so.1.1
 * (OpenSSL 1.1.1w, whose package ships no headers: the system's 3.x headers
 * declare every function the probe calls with the same ABI, and its macros
 * expand to calls 1.1.1 exports). Both libraries print the same lines alone.
 * Programs act on these values: SSL_shutdown's 0 ("ours sent, the peer's not
 * yet received") against 1 ("both done") decides whether a program calls it
 * again to wait for the peer (OpenSSL's SSL_shutdown manual), and a BIO_read
 * of 0 is the end of the stream where -1 is an error or a retry.
 */
import assert from 'node:assert/strict';
import type net from 'node:net';
import path from 'node:path';
import type tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import type { Daemon } from '../support/daemon.js';
import { legacyPath, LEGACY_PREFIX } from '../support/legacy.js';
import { run } from '../support/run-process.js';
import { waitFor, withProbe } from '../support/ssl-probe.js';
import { hasKernelTls } from '../support/tls-stat.js';

const PROBE_SOURCE = fileURLToPath(new URL('../../../test/support/ssl-return-probe.c', import.meta.url));
type Mode = 'shutdown' | 'peer-first' | 'quiet' | 'bio' | 'write-shorter' | 'write-moved' | 'write-moved-accepted' | 'write-partial-shorter' | 'write-read' | 'write-after-reset';
type ClientPart = (s: tls.TLSSocket, d: Daemon, tcp: net.Socket) => Promise<void> | void;

type Library = '1.0.2f' | '1.1.1w';

let fx: Fixtures<'x.bin'>;
const probes = new Map<Library, string>();

/** How the probe ended: its "end: " line, or the signal that killed it (`aludel run` dies of its program's signal: endLike in src/run/run-program.ts). */
function outcome(d: Daemon): string | null {
  const line = /^end: .*$/m.exec(d.output());
  if (line) return line[0];
  if (d.alive()) return null;
  const ending = d.ending();
  if (ending === 'signal SIGPIPE') return 'killed by SIGPIPE';
  return `ended (${ending}) without its line:\n${d.output()}`;
}

/**
 * The probe in `mode` (under run or alone) and one TLS 1.2 client
 * (ssl-probe.ts): `then` does the client's part. Returns how the probe ended
 * and the kernel's counters.
 */
async function probeLine(lib: Library, underRun: boolean, mode: Mode, then: ClientPart, corruptFirst?: 21 | 23): Promise<{ line: string; tlsRxSw: number }> {
  const options = { probe: probes.get(lib)!, args: [mode], certFile: fx.certFile, keyFile: fx.keyFile, underRun, corruptFirst };
  const { result, tlsRxSw } = await withProbe(options, async ({ d, s, tcp }) => {
    await then(s, d, tcp);
    await waitFor(() => outcome(d) !== null, "the probe's last line or its end");
    return outcome(d)!;
  });
  return { line: result, tlsRxSw };
}

/** The same client part alone and under run: both lines, the one alone checked against what OpenSSL is known to print. */
async function compare(lib: Library, mode: Mode, expectedAlone: string, then: ClientPart, corruptFirst?: 21 | 23): Promise<void> {
  const alone = await probeLine(lib, false, mode, then, corruptFirst);
  assert.equal(alone.line, expectedAlone, `OpenSSL ${lib} alone`);
  const underRun = await probeLine(lib, true, mode, then, corruptFirst);
  assert.equal(underRun.tlsRxSw, 1, 'the connection was in the kernel');
  assert.equal(underRun.line, alone.line, 'under aludel run');
}

/** node answers a close_notify with its own (TLSSocket ends its writable side when the readable side ends). */
const nothing = (): void => undefined;

/** The client stops reading, so the probe's large write fills the socket and gets WANT_WRITE. */
async function paused(s: tls.TLSSocket, d: Daemon): Promise<void> {
  s.pause();
  await waitFor(() => /^first write /m.test(d.output()), "the probe's first write");
}

/** What each library prints alone where 1.0.2f and 1.1.1w differ (seen with both). */
const BY_LIB: Record<Library, { moved: string; partialShorter: string }> = {
  '1.0.2f': {
    // 1.0.2f only queues the error: the retry from the first buffer goes on (still WANT_WRITE), and SSL_shutdown waits to write.
    moved:
      'end: SSL_write=-1 SSL_get_error=3 then moved SSL_write=-1 SSL_get_error=1 error=error:1409F07F:SSL routines:ssl3_write_pending:bad write retry' +
      ' then SSL_write=-1 SSL_get_error=3 error=none then SSL_shutdown=-1 SSL_get_error=3 error=none',
    // "len < tot" only: in partial-write mode nothing was counted, so the 1-byte retry is taken (and waits).
    partialShorter: 'end: SSL_write=-1 SSL_get_error=3 then SSL_write(1)=-1 SSL_get_error=3 error=none',
  },
  '1.1.1w': {
    // SSLfatal: the state machine's error state, where SSL_write fails with nothing queued and SSL_shutdown refuses.
    moved:
      'end: SSL_write=-1 SSL_get_error=3 then moved SSL_write=-1 SSL_get_error=1 error=error:1409F07F:SSL routines:ssl3_write_pending:bad write retry' +
      ' then SSL_write=-1 SSL_get_error=5 error=none then SSL_shutdown=-1 SSL_get_error=1 error=error:140E0197:SSL routines:SSL_shutdown:shutdown while in init',
    // "len < wnum + wpend_tot": the record built and not yet written counts.
    partialShorter: 'end: SSL_write=-1 SSL_get_error=3 then SSL_write(1)=-1 SSL_get_error=1 error=error:1409E10F:SSL routines:ssl3_write_bytes:bad length',
  },
};

/** Builds the probe against `lib`; its path. */
async function buildProbe(lib: Library): Promise<string> {
  const out = path.join(fx.dir, `ssl-return-probe-${lib}`);
  let flags: string[];
  if (lib === '1.0.2f') {
    const dir = path.join(LEGACY_PREFIX, 'openssl-1.0.2f');
    flags = [`-I${dir}/include`, `-L${dir}/lib`, `-Wl,-rpath,${dir}/lib`, '-lssl', '-lcrypto'];
  } else {
    legacyPath('openssl-1.1.1w');
    const dir = path.join(LEGACY_PREFIX, 'debian11/root/usr/lib/x86_64-linux-gnu');
    flags = ['-Wno-deprecated-declarations', `-Wl,-rpath,${dir}`, `${dir}/libssl.so.1.1`, `${dir}/libcrypto.so.1.1`];
  }
  const cc = await run('cc', ['-Wall', '-Werror', '-o', out, PROBE_SOURCE, ...flags]);
  assert.equal(cc.code, 0, `building the probe against OpenSSL ${lib}: ${cc.stderr}`);
  return out;
}

describe('return values of OpenSSL 1.0.2f and 1.1.1w under aludel run and alone', { timeout: 3_000_000 }, () => {
  before(async () => {
    assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
    assert.equal(process.geteuid?.(), 0, 'the kernel shows TLS ULP state (sock_diag) to CAP_NET_ADMIN only: run as root (the VM does)');
    legacyPath('openssl-1.0.2f');
    fx = await makeFixtures({ 'x.bin': 1 });
    for (const lib of ['1.0.2f', '1.1.1w'] as const) probes.set(lib, await buildProbe(lib));
  });

  after(() => fx?.cleanup());

  for (const lib of ['1.0.2f', '1.1.1w'] as const) {
    describe(`OpenSSL ${lib}`, () => {
      test('SSL_shutdown returns 0 while the peer has not closed, then 1 once its close_notify came, as without aludel run', async () => {
        await compare(lib, 'shutdown', 'end: SSL_shutdown=0 SSL_get_error=5 shutdown=1 then SSL_shutdown=1 SSL_get_error=0 shutdown=3 error=none', nothing);
      });

      test("SSL_shutdown waiting for the peer's close_notify returns 1 on a fatal alert, the alert's error queued, as without aludel run", async () => {
        // The relay corrupts the probe's close_notify; the client answers with a fatal bad_record_mac (20), which OpenSSL takes as the peer's side shut.
        const expected =
          'end: SSL_shutdown=0 SSL_get_error=5 shutdown=1 then SSL_shutdown=1 SSL_get_error=0 shutdown=3 error=error:140943FC:SSL routines:ssl3_read_bytes:sslv3 alert bad record mac:SSL alert number 20';
        await compare(lib, 'shutdown', expected, nothing, 21);
      });

      test("SSL_read meeting the peer's fatal alert returns 0 with the alert's error, and 0 again after (ZERO_RETURN), as without aludel run", async () => {
        // The relay corrupts the probe's 1-byte record; the client answers with a fatal bad_record_mac (20).
        const expected =
          'end: SSL_write=1 then SSL_read=0 SSL_get_error=1 shutdown=2 error=error:140943FC:SSL routines:ssl3_read_bytes:sslv3 alert bad record mac:SSL alert number 20' +
          ' then SSL_read=0 SSL_get_error=6 error=none';
        await compare(lib, 'write-read', expected, nothing, 23);
      });

      test('SSL_shutdown after the peer closed first returns 1 at once, as without aludel run', async () => {
        await compare(lib, 'peer-first', 'end: SSL_read=0 SSL_get_error=6 SSL_shutdown=1 SSL_get_error=0 shutdown=3', (s) => void s.end());
      });

      test('a quiet SSL_shutdown returns 1 and marks both directions shut, as without aludel run', async () => {
        await compare(lib, 'quiet', 'end: SSL_shutdown=1 SSL_get_error=0 shutdown=3', nothing);
      });

      test("an SSL BIO's read returns 0 at the peer's close_notify, as without aludel run", async () => {
        await compare(lib, 'bio', 'end: BIO_read=0 BIO_should_retry=0 SSL_get_error=6', (s) => void s.end());
      });

      test('an SSL_write retried shorter than what it already wrote fails with SSL_R_BAD_LENGTH, as without aludel run', async () => {
        await compare(lib, 'write-shorter', 'end: SSL_write=-1 SSL_get_error=3 then SSL_write(1)=-1 SSL_get_error=1 error=error:1409E10F:SSL routines:ssl3_write_bytes:bad length', paused);
      });

      test('an SSL_write retried from another buffer fails with SSL_R_BAD_WRITE_RETRY, and what follows is as without aludel run', async () => {
        await compare(lib, 'write-moved', BY_LIB[lib].moved, paused);
      });

      test('with SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER an SSL_write retried from another buffer is taken, as without aludel run', async () => {
        const taken = 'end: SSL_write=-1 SSL_get_error=3 then moved SSL_write=-1 SSL_get_error=3 error=none then SSL_write=-1 SSL_get_error=3 error=none then SSL_shutdown=-1 SSL_get_error=3 error=none';
        await compare(lib, 'write-moved-accepted', taken, paused);
      });

      test('with SSL_MODE_ENABLE_PARTIAL_WRITE a shorter retry gets what this OpenSSL gives it without aludel run', async () => {
        await compare(lib, 'write-partial-shorter', BY_LIB[lib].partialShorter, paused);
      });

      test('an SSL_write to a reset connection raises SIGPIPE, as the write(2) of OpenSSL\'s socket BIO does without aludel run', async () => {
        // The reset reaches the probe's blocking SSL_read first (ECONNRESET), so its SSL_write meets a connection already gone (EPIPE).
        await compare(lib, 'write-after-reset', 'killed by SIGPIPE', (_s, _d, tcp) => void tcp.resetAndDestroy());
      });
    });
  }
});

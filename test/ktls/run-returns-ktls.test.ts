/**
 * What SSL_shutdown, SSL_write (and its retries after WANT_WRITE, and after
 * the peer's fatal alert), SSL_read on the peer's fatal alert, an SSL BIO's
 * read and the calls the preload refuses (SSL_renegotiate, SSL_key_update,
 * SSL_verify_client_post_handshake) return, and the error they
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
import { assertProbeHost, buildProbe, waitFor, withProbe, type ProbeLibrary } from '../support/ssl-probe.js';

const PROBE_SOURCE = fileURLToPath(new URL('../../../test/support/ssl-return-probe.c', import.meta.url));
type Mode =
  | 'shutdown' | 'peer-first' | 'quiet' | 'bio' | 'write-shorter' | 'write-moved' | 'write-moved-accepted' | 'write-partial-shorter' | 'write-read' | 'write-after-reset'
  | 'write-read-write' | 'renegotiate' | 'renegotiate-refused' | 'key-update' | 'key-update-bad' | 'pha';
type ClientPart = (s: tls.TLSSocket, d: Daemon, tcp: net.Socket) => Promise<void> | void;


let fx: Fixtures<'x.bin'>;
const probes = new Map<ProbeLibrary, string>();

/** How the probe ended: its "end: " line, or the signal that killed it (`aludel run` dies of its program's signal: endLike in src/run/run-program.ts). */
function outcome(d: Daemon): string | null {
  const line = /^end: .*$/m.exec(d.output());
  if (line) return line[0];
  if (d.alive()) return null;
  const ending = d.ending();
  if (ending === 'signal SIGPIPE') return 'killed by SIGPIPE';
  return `ended (${ending}) without its line:\n${d.output()}`;
}

/** How the client connects: through a relay corrupting the first record of a type (ssl-probe.ts), over TLS 1.3. */
interface Client {
  corruptFirst?: 21 | 23;
  tls13?: boolean;
}

/**
 * The probe in `mode` (under run or alone) and one TLS 1.2 client (TLS 1.3
 * with `client.tls13`; ssl-probe.ts): `then` does the client's part. Returns
 * how the probe ended and the kernel's counters.
 */
async function probeLine(lib: ProbeLibrary, underRun: boolean, mode: Mode, then: ClientPart, client: Client = {}): Promise<{ line: string; tlsRxSw: number }> {
  const options = { probe: probes.get(lib)!, args: [mode], certFile: fx.certFile, keyFile: fx.keyFile, underRun, ...client };
  const { result, tlsRxSw } = await withProbe(options, async ({ d, s, tcp }) => {
    await then(s, d, tcp);
    await waitFor(() => outcome(d) !== null, "the probe's last line or its end");
    return outcome(d)!;
  });
  return { line: result, tlsRxSw };
}

/** The same client part alone and under run: both lines, the one alone checked against what OpenSSL is known to print. */
async function compare(lib: ProbeLibrary, mode: Mode, expectedAlone: string, then: ClientPart, corruptFirst?: 21 | 23): Promise<void> {
  await compareModes(lib, mode, mode, expectedAlone, then, { corruptFirst });
}

/** `aloneMode` alone and `runMode` under run (the same unless OpenSSL alone must be made to refuse what the preload refuses): both lines, then the checks. */
async function compareModes(lib: ProbeLibrary, aloneMode: Mode, runMode: Mode, expectedAlone: string, then: ClientPart, client: Client = {}): Promise<void> {
  const alone = await probeLine(lib, false, aloneMode, then, client);
  const underRun = await probeLine(lib, true, runMode, then, client);
  assert.equal(alone.line, expectedAlone, `OpenSSL ${lib} alone (under aludel run: ${underRun.line})`);
  assert.equal(underRun.tlsRxSw, 1, 'the connection was in the kernel');
  assert.equal(underRun.line, alone.line, 'under aludel run');
}

/** The OpenSSL function an "end: " line's error names (ERR_error_string: error:CODE:LIBRARY:FUNCTION:REASON), or null. */
function functionNamed(line: string): string | null {
  return /error=error:[0-9A-F]+:[^:]*:([^:]*):/.exec(line)?.[1] ?? null;
}

/** node answers a close_notify with its own (TLSSocket ends its writable side when the readable side ends). */
const nothing = (): void => undefined;

/** The client stops reading, so the probe's large write fills the socket and gets WANT_WRITE. */
async function paused(s: tls.TLSSocket, d: Daemon): Promise<void> {
  s.pause();
  await waitFor(() => /^first write /m.test(d.output()), "the probe's first write");
}

/** What each library prints alone where 1.0.2f and 1.1.1w differ (seen with both). */
const BY_LIB: Record<ProbeLibrary, { moved: string; partialShorter: string; writeAfterAlert: string; renegotiateRefused: string }> = {
  '1.0.2f': {
    // 1.0.2f only queues the error: the retry from the first buffer goes on (still WANT_WRITE), and SSL_shutdown waits to write.
    moved:
      'end: SSL_write=-1 SSL_get_error=3 then moved SSL_write=-1 SSL_get_error=1 error=error:1409F07F:SSL routines:ssl3_write_pending:bad write retry' +
      ' then SSL_write=-1 SSL_get_error=3 error=none then SSL_shutdown=-1 SSL_get_error=3 error=none',
    // "len < tot" only: in partial-write mode nothing was counted, so the 1-byte retry is taken (and waits).
    partialShorter: 'end: SSL_write=-1 SSL_get_error=3 then SSL_write(1)=-1 SSL_get_error=3 error=none',
    // ssl3_read_bytes only queues the alert and marks the peer's side shut: the next SSL_write writes its record.
    writeAfterAlert: 'end: SSL_write=1 then SSL_read=0 SSL_get_error=1 then SSL_write=1 SSL_get_error=0 error=none',
    // ssl3_renegotiate under SSL3_FLAGS_NO_RENEGOTIATE_CIPHERS: 0 with nothing queued (1.0.2f names no function for it).
    renegotiateRefused: 'end: SSL_renegotiate=0 SSL_get_error=5 error=none then SSL_renegotiate_abbreviated=0 SSL_get_error=5 error=none',
  },
  '1.1.1w': {
    // SSLfatal: the state machine's error state, where SSL_write fails with nothing queued and SSL_shutdown refuses.
    moved:
      'end: SSL_write=-1 SSL_get_error=3 then moved SSL_write=-1 SSL_get_error=1 error=error:1409F07F:SSL routines:ssl3_write_pending:bad write retry' +
      ' then SSL_write=-1 SSL_get_error=5 error=none then SSL_shutdown=-1 SSL_get_error=1 error=error:140E0197:SSL routines:SSL_shutdown:shutdown while in init',
    // "len < wnum + wpend_tot": the record built and not yet written counts.
    partialShorter: 'end: SSL_write=-1 SSL_get_error=3 then SSL_write(1)=-1 SSL_get_error=1 error=error:1409E10F:SSL routines:ssl3_write_bytes:bad length',
    // ssl3_read_bytes takes a fatal alert with SSLfatal: the state machine's error state, where SSL_write fails with nothing
    // queued, and SSL_get_error says ZERO_RETURN (RECEIVED_SHUTDOWN with warn_alert 0, close_notify's number).
    writeAfterAlert: 'end: SSL_write=1 then SSL_read=0 SSL_get_error=1 then SSL_write=-1 SSL_get_error=6 error=none',
    // SSL_OP_NO_RENEGOTIATION: each call queues SSL_R_NO_RENEGOTIATION in its own name.
    renegotiateRefused:
      'end: SSL_renegotiate=0 SSL_get_error=1 error=error:14204153:SSL routines:SSL_renegotiate:no renegotiation' +
      ' then SSL_renegotiate_abbreviated=0 SSL_get_error=1 error=error:14222153:SSL routines:SSL_renegotiate_abbreviated:no renegotiation',
  },
};

describe('return values of OpenSSL 1.0.2f and 1.1.1w under aludel run and alone', { timeout: 3_000_000 }, () => {
  before(async () => {
    assertProbeHost();
    fx = await makeFixtures({ 'x.bin': 1 });
    for (const lib of ['1.0.2f', '1.1.1w'] as const) probes.set(lib, await buildProbe(PROBE_SOURCE, lib, path.join(fx.dir, `ssl-return-probe-${lib}`)));
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

      test("an SSL_write after the peer's fatal alert returns what this OpenSSL returns without aludel run", async () => {
        // The relay corrupts the probe's 1-byte record; the client answers with a fatal bad_record_mac (20).
        await compare(lib, 'write-read-write', BY_LIB[lib].writeAfterAlert, nothing, 23);
      });

      test('SSL_renegotiate refused in the kernel fails as this OpenSSL fails it when it refuses renegotiation itself', async () => {
        await compareModes(lib, 'renegotiate-refused', 'renegotiate', BY_LIB[lib].renegotiateRefused, nothing);
      });

      test('an SSL_write to a reset connection raises SIGPIPE, as the write(2) of OpenSSL\'s socket BIO does without aludel run', async () => {
        // The reset reaches the probe's blocking SSL_read first (ECONNRESET), so its SSL_write meets a connection already gone (EPIPE).
        await compare(lib, 'write-after-reset', 'killed by SIGPIPE', (_s, _d, tcp) => void tcp.resetAndDestroy());
      });
    });
  }

  describe('OpenSSL 1.1.1w, TLS 1.3', () => {
    /** A TLS 1.3 call the preload refuses: the error names the function OpenSSL names when it refuses the call itself (alone: `aloneMode`). */
    async function refusedAsOpenSsl(aloneMode: Mode, runMode: Mode, expectedAlone: string, expectedRun: string): Promise<void> {
      const alone = await probeLine('1.1.1w', false, aloneMode, nothing, { tls13: true });
      const underRun = await probeLine('1.1.1w', true, runMode, nothing, { tls13: true });
      assert.equal(alone.line, expectedAlone, `OpenSSL 1.1.1w alone (under aludel run: ${underRun.line})`);
      assert.equal(underRun.tlsRxSw, 1, 'the connection was in the kernel');
      assert.equal(functionNamed(underRun.line), functionNamed(alone.line), `the function named under aludel run: ${underRun.line}`);
      assert.equal(underRun.line, expectedRun);
    }

    test('SSL_key_update refused in the kernel names SSL_key_update, as OpenSSL does when it refuses one', async () => {
      await refusedAsOpenSsl(
        'key-update-bad',
        'key-update',
        'end: SSL_key_update=0 SSL_get_error=1 error=error:14203078:SSL routines:SSL_key_update:invalid key update type',
        'end: SSL_key_update=0 SSL_get_error=1 error=error:1420306D:SSL routines:SSL_key_update:cannot change cipher',
      );
    });

    test('SSL_verify_client_post_handshake refused in the kernel names it, as OpenSSL does when it refuses', async () => {
      // node's client offers no post-handshake authentication: OpenSSL alone refuses for that.
      await refusedAsOpenSsl(
        'pha',
        'pha',
        'end: SSL_verify_client_post_handshake=0 SSL_get_error=1 error=error:14268117:SSL routines:SSL_verify_client_post_handshake:extension not received',
        'end: SSL_verify_client_post_handshake=0 SSL_get_error=1 error=error:14268153:SSL routines:SSL_verify_client_post_handshake:no renegotiation',
      );
    });
  });
});

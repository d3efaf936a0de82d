/**
 * What SSL_shutdown, SSL_write and an SSL BIO's read return once the kernel
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
type Mode = 'shutdown' | 'peer-first' | 'quiet' | 'bio' | 'write-shorter' | 'write-after-reset';
type ClientPart = (s: tls.TLSSocket, d: Daemon, tcp: net.Socket) => Promise<void> | void;

type Library = '1.0.2f' | '1.1.1w';

let fx: Fixtures<'x.bin'>;
const probes = new Map<Library, string>();

/**
 * How the probe ended: its "end: " line, or the signal that killed it.
 * `aludel run` ends as its program ended, but its own process is node, which
 * ignores SIGPIPE, so a program killed by SIGPIPE makes it exit 128 + 13
 * (endLike in src/run/run-program.ts), the status a shell reports for the
 * signal (141) either way.
 */
function outcome(d: Daemon): string | null {
  const line = /^end: .*$/m.exec(d.output());
  if (line) return line[0];
  if (d.alive()) return null;
  const ending = d.ending();
  if (ending === 'signal SIGPIPE' || ending === 'exit 141') return 'killed by SIGPIPE';
  return `ended (${ending}) without its line:\n${d.output()}`;
}

/**
 * The probe in `mode` (under run or alone) and one TLS 1.2 client
 * (ssl-probe.ts): `then` does the client's part. Returns how the probe ended
 * and the kernel's counters.
 */
async function probeLine(lib: Library, underRun: boolean, mode: Mode, then: ClientPart): Promise<{ line: string; tlsRxSw: number }> {
  const { result, tlsRxSw } = await withProbe({ probe: probes.get(lib)!, args: [mode], certFile: fx.certFile, keyFile: fx.keyFile, underRun }, async ({ d, s, tcp }) => {
    await then(s, d, tcp);
    await waitFor(() => outcome(d) !== null, "the probe's last line or its end");
    return outcome(d)!;
  });
  return { line: result, tlsRxSw };
}

/** The same client part alone and under run: both lines, the one alone checked against what OpenSSL is known to print. */
async function compare(lib: Library, mode: Mode, expectedAlone: string, then: ClientPart): Promise<void> {
  const alone = await probeLine(lib, false, mode, then);
  assert.equal(alone.line, expectedAlone, `OpenSSL ${lib} alone`);
  const underRun = await probeLine(lib, true, mode, then);
  assert.equal(underRun.tlsRxSw, 1, 'the connection was in the kernel');
  assert.equal(underRun.line, alone.line, 'under aludel run');
}

/** node answers a close_notify with its own (TLSSocket ends its writable side when the readable side ends). */
const nothing = (): void => undefined;

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
        await compare(lib, 'shutdown', 'end: SSL_shutdown=0 SSL_get_error=5 shutdown=1 then SSL_shutdown=1 SSL_get_error=0 shutdown=3', nothing);
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
        // The client stops reading, so the probe's large write fills the socket and gets WANT_WRITE.
        const paused = async (s: tls.TLSSocket, d: Daemon): Promise<void> => {
          s.pause();
          await waitFor(() => /^first write /m.test(d.output()), "the probe's first write");
        };
        await compare(lib, 'write-shorter', 'end: SSL_write=-1 SSL_get_error=3 then SSL_write(1)=-1 SSL_get_error=1 reason=271 (bad length)', paused);
      });

      test('an SSL_write to a reset connection raises SIGPIPE, as the write(2) of OpenSSL\'s socket BIO does without aludel run', async () => {
        // The reset reaches the probe's blocking SSL_read first (ECONNRESET), so its SSL_write meets a connection already gone (EPIPE).
        await compare(lib, 'write-after-reset', 'killed by SIGPIPE', (_s, _d, tcp) => void tcp.resetAndDestroy());
      });
    });
  }
});

/**
 * TLS 1.3 early data (0-RTT, RFC 8446 §2.3, §4.2.10) under `aludel run`, on
 * this kernel, with the real Debian 11 programs (OpenSSL 1.1.1w).
 *
 * OpenSSL 1.1.1's SSL_read_early_data/SSL_write_early_data call SSL_accept,
 * SSL_connect, SSL_read_ex and SSL_write_ex through libssl's PLT, so these
 * reach the preload's hooks; the hooks used to finish the handshake there,
 * and OpenSSL then read the client's early data record where it expected the
 * client's Finished: nginx failed with "SSL_read_early_data() failed ...
 * unexpected record", and s_client under run hung. Here the session comes
 * from a first connection (-sess_out), and the second sends its request as
 * early data (-early_data): it must be accepted, answered, and the bytes
 * must be the file's.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { makeFixtures, sha256, type Fixtures } from '../support/fixtures.js';
import { legacyPath, splitHttp, startLegacyNginx, type LegacyNginx } from '../support/legacy.js';
import { aludelRun, preloadLog } from '../support/run-origins.js';
import { run } from '../support/run-process.js';

const FILES = { 'early.bin': 1024 * 1024 + 7, 'small.bin': 16385 };
let fx: Fixtures<keyof typeof FILES>;

before(async () => {
  fx = await makeFixtures(FILES);
});

after(() => fx?.cleanup());

/** nginx 1.18 with 0-RTT on; early data needs resumption, and OpenSSL 1.1.1's anti-replay wants the server's session cache. */
function startEarlyNginx(wrapper: string[] | undefined, env: NodeJS.ProcessEnv | undefined): Promise<LegacyNginx> {
  return startLegacyNginx({
    nginx: 'nginx-1.18',
    root: fx.root,
    certFile: fx.certFile,
    keyFile: fx.keyFile,
    protocols: 'TLSv1.2 TLSv1.3',
    ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256',
    serverLines: ['ssl_early_data on;', 'ssl_session_cache shared:early:1m;'],
    wrapper,
    env,
    readyTimeoutMs: 30_000,
  });
}

function request(file: string, connection: 'keep-alive' | 'close'): string {
  return `GET /${file} HTTP/1.1\r\nHost: localhost\r\nConnection: ${connection}\r\n\r\n`;
}

/** Each HTTP/1.1 response in `raw` (bodies by Content-Length), from its first status line on. */
function responses(raw: Buffer): Array<{ status: string; body: Buffer }> {
  const out: Array<{ status: string; body: Buffer }> = [];
  for (let at = raw.indexOf('HTTP/1.1 '); at >= 0 && at < raw.length; ) {
    const { status, head, body } = splitHttp(raw.subarray(at));
    const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? -1);
    if (!status || length < 0) break;
    out.push({ status, body: body.subarray(0, length) });
    at = raw.indexOf('HTTP/1.1 ', at + head.length + 4 + length);
  }
  return out;
}

/**
 * Debian 11's s_client (1.1.1w), optionally under `wrapper`: a first TLS 1.3
 * connection that saves its session, then a second that resumes it, sends a
 * keep-alive request for the big file as early data and, once the handshake
 * is done, one for the small file with Connection: close (so nginx reads the
 * client's Finished and closes cleanly; answering a Connection: close request
 * in 0-RTT, nginx closes with the client's Finished unread, and the client
 * sees a reset with or without run). Returns the second's output (s_client
 * prints "Early data was accepted" or "... was rejected") and the responses.
 */
async function earlyFetch(port: number, wrapper: string[] = [], env?: NodeJS.ProcessEnv): Promise<{ output: string; answers: Array<{ status: string; body: Buffer }> }> {
  const openssl = legacyPath('openssl-1.1.1w');
  const sess = path.join(fx.dir, `sess-${port}-${process.hrtime.bigint()}`);
  const reqFile = `${sess}.req`;
  fs.writeFileSync(reqFile, request(fx.files['early.bin'].name, 'keep-alive'));
  const cmd = [...wrapper, openssl, 's_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', '-CAfile', fx.certFile, '-tls1_3'];
  // -quiet implies -ign_eof: s_client reads to the server's close, by which time the session ticket has come.
  const first = await run(cmd[0]!, [...cmd.slice(1), '-quiet', '-sess_out', sess], { input: request(fx.files['small.bin'].name, 'close'), timeoutMs: 60_000, env });
  assert.equal(first.code, 0, `first connection: ${first.stderr}`);
  assert.equal(sha256(splitHttp(first.stdout).body), fx.files['small.bin'].sha256, 'first connection: body');
  assert.ok(fs.existsSync(sess), `no session saved by the first connection:\n${first.stderr}`);
  const second = await run(cmd[0]!, [...cmd.slice(1), '-sess_in', sess, '-early_data', reqFile, '-ign_eof'], {
    input: request(fx.files['small.bin'].name, 'close'),
    timeoutMs: 60_000,
    env,
  });
  const output = `${second.stdout.toString('latin1').slice(0, 3000)}\n--- stderr:\n${second.stderr}`;
  assert.equal(second.code, 0, `early data connection exited ${second.code} (${second.signal}):\n${output}`);
  // Without -quiet s_client prints the session first: the responses start at the first status line.
  return { output, answers: responses(second.stdout) };
}

function assertEarlyAnswered(r: { output: string; answers: Array<{ status: string; body: Buffer }> }): void {
  assert.match(r.output, /Early data was accepted/, `the session allowed no early data, or the server refused it:\n${r.output}`);
  assert.deepEqual(
    r.answers.map((a) => [a.status, a.body.length, sha256(a.body)]),
    [fx.files['early.bin'], fx.files['small.bin']].map((f) => ['HTTP/1.1 200 OK', f.size, f.sha256]),
    `the early request's answer, then the one sent after the handshake:\n${r.output}`,
  );
}

describe('TLS 1.3 early data under aludel run (OpenSSL 1.1.1w), this kernel', { timeout: 180_000 }, () => {
  test('server: nginx 1.18 (ssl_early_data on) under run answers a 0-RTT request from s_client 1.1.1w with the right bytes', async () => {
    const log = preloadLog(fx.dir, 'early-nginx');
    const nginx = await startEarlyNginx(aludelRun(), { ALUDEL_PRELOAD_LOG: log.file });
    try {
      assertEarlyAnswered(await earlyFetch(nginx.port));
      assert.doesNotMatch(nginx.errorLog(), /SSL_read_early_data\(\) failed|SSL_write_early_data\(\) failed/, 'nginx error log');
      assert.deepEqual(nginx.severe(), [], 'nginx error log: no [crit]/[alert]/[emerg]');
      assert.ok(log.lines().some((l) => /strategy keys/.test(l)), `the preload was in nginx: ${log.lines().join('\n')}`);
    } finally {
      await nginx.stop();
    }
  });

  test('client: s_client 1.1.1w under run sends 0-RTT data to nginx 1.18 and gets the right bytes', async () => {
    const nginx = await startEarlyNginx(undefined, undefined);
    const log = preloadLog(fx.dir, 'early-client');
    try {
      assertEarlyAnswered(await earlyFetch(nginx.port, aludelRun(), { ALUDEL_PRELOAD_LOG: log.file }));
      assert.ok(log.lines().some((l) => /strategy keys/.test(l)), `the preload was in s_client: ${log.lines().join('\n')}`);
    } finally {
      await nginx.stop();
    }
  });
});

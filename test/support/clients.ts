/** Real clients, as users run them: curl and openssl (s_client, version). */
import { spawn } from 'node:child_process';
import type http2 from 'node:http2';
import { reapOnExit, run, type RunResult } from './run-process.js';

export type TlsVersion = '1.2' | '1.3';

/** curl flags that pin one version and one suite. */
export function curlTlsArgs(version: TlsVersion, suite: string): string[] {
  return version === '1.2' ? ['--tlsv1.2', '--tls-max', '1.2', '--ciphers', suite] : ['--tlsv1.3', '--tls-max', '1.3', '--tls13-ciphers', suite];
}

/**
 * curl with the given arguments (always -sS and --max-time); never rejects: a non-zero exit is in `code`.
 * HTTP/1.1 unless `args` say --http2: `aludel serve` offers h2 too, which curl takes by
 * default, and most tests are about HTTP/1.1 (sendfile, keep-alive, Connection: close).
 */
export function curl(args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return run('curl', ['-sS', '--max-time', String(Math.ceil(timeoutMs / 1000)), '--http1.1', ...args], { timeoutMs: timeoutMs + 2000 });
}

/**
 * GET over `openssl s_client -quiet` (which keeps reading after stdin ends),
 * with Connection: close so the server ends the exchange. Returns the body.
 */
export async function sClientGet(port: number, path: string, version: TlsVersion, suite: string): Promise<{ status: string; body: Buffer; run: RunResult }> {
  const args = ['s_client', '-quiet', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost'];
  args.push(...(version === '1.2' ? ['-tls1_2', '-cipher', suite] : ['-tls1_3', '-ciphersuites', suite]));
  const r = await run('openssl', args, { input: `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`, timeoutMs: 300_000 });
  const end = r.stdout.indexOf('\r\n\r\n');
  const head = end >= 0 ? r.stdout.subarray(0, end).toString('latin1') : '';
  return { status: head.split('\r\n')[0] ?? '', body: end >= 0 ? r.stdout.subarray(end + 4) : Buffer.alloc(0), run: r };
}

/** A long-lived s_client whose stdin we control (for KeyUpdate 'K' and friends). */
export function sClientInteractive(port: number, args: string[]) {
  const child = reapOnExit(spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', ...args], { stdio: ['pipe', 'pipe', 'pipe'] }));
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
  child.stderr.on('data', (d: Buffer) => (out += d.toString('latin1')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

/** `openssl version`: the runtime library version ("Library: ..." part when present). */
export async function opensslCliLibraryVersion(): Promise<string> {
  const r = await run('openssl', ['version'], { timeoutMs: 5000 });
  if (r.code !== 0) throw new Error(`openssl version failed (${r.signal ?? r.code}): ${r.stderr}`);
  const out = r.stdout.toString('utf8').trim();
  const m = /\(Library: (.*)\)\s*$/.exec(out);
  return m ? m[1]!.trim() : out;
}

export interface Transfer {
  /** curl's %{size_download}: body bytes received (headers excluded, after chunked decoding). */
  bytes: number;
  /** curl's %{num_connects}: 1 when this transfer opened a connection, 0 when it reused one. */
  connects: number;
  status: number;
}

/**
 * One curl process fetching each of `transfers` (its URL last, with its own
 * flags before it), bodies discarded, over as few connections as curl's
 * keep-alive allows; what curl itself says it received, per transfer.
 */
export async function curlTransfers(common: string[], transfers: string[][], timeoutMs = 60_000): Promise<Transfer[]> {
  // --next: each transfer's own flags (-r, -I, ...) apply to it alone; the connection is still reused.
  const args = transfers.flatMap((t, i) => [...(i > 0 ? ['--next'] : []), ...common, '-w', '%{size_download} %{num_connects} %{http_code}\\n', '-o', '/dev/null', ...t]);
  const r = await curl(args, timeoutMs);
  if (r.code !== 0) throw new Error(`curl exited ${r.code}: ${r.stderr}`);
  const lines = r.stdout.toString('utf8').trim().split('\n');
  if (lines.length !== transfers.length) throw new Error(`curl reported ${lines.length} transfers, expected ${transfers.length}: ${r.stdout.toString('utf8')}`);
  return lines.map((l) => {
    const [bytes, connects, status] = l.split(' ').map(Number);
    return { bytes: bytes!, connects: connects!, status: status! };
  });
}

/** One request over HTTP/2 with node's client; resolves with the status, the fields and the body (and the stream's error code, if it failed). */
export function h2get(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, options?: http2.ClientSessionRequestOptions): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: Buffer; error?: string }> {
  return new Promise((resolve) => {
    const req = session.request(headers, options);
    const chunks: Buffer[] = [];
    let got: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (got = h));
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve({ status: Number(got[':status']), headers: got, body: Buffer.concat(chunks) }));
    req.on('error', (err: Error & { code?: string }) => resolve({ status: Number(got[':status'] ?? 0), headers: got, body: Buffer.concat(chunks), error: err.code ?? err.message }));
  });
}

/** Real clients, as users run them: curl and openssl s_client. */
import { execFile, spawn } from 'node:child_process';

export interface Run { code: number | null; stdout: Buffer; stderr: string }

export function run(cmd: string, args: string[], input?: string | null, timeoutMs = 300_000): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { encoding: 'buffer', maxBuffer: 512 * 1024 * 1024, timeout: timeoutMs }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: number | string }).code as number | null) ?? 1 : 0;
      resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr: stderr.toString() });
    });
    if (input !== undefined && input !== null) child.stdin!.end(input);
    else child.stdin!.end();
  });
}

export type TlsVersion = '1.2' | '1.3';

/** curl flags that pin one version and one suite. */
export function curlTlsArgs(version: TlsVersion, suite: string): string[] {
  return version === '1.2' ? ['--tlsv1.2', '--tls-max', '1.2', '--ciphers', suite] : ['--tlsv1.3', '--tls-max', '1.3', '--tls13-ciphers', suite];
}

export function curl(url: string, cacert: string, extra: string[] = []): Promise<Run> {
  return run('curl', ['-sS', '--fail', '--cacert', cacert, ...extra, url]);
}

/**
 * GET over `openssl s_client -quiet` (which keeps reading after stdin ends),
 * with Connection: close so the server ends the exchange. Returns the body.
 */
export async function sClientGet(port: number, path: string, version: TlsVersion, suite: string): Promise<{ status: string; body: Buffer; run: Run }> {
  const args = ['s_client', '-quiet', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost'];
  args.push(...(version === '1.2' ? ['-tls1_2', '-cipher', suite] : ['-tls1_3', '-ciphersuites', suite]));
  const r = await run('openssl', args, `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
  const end = r.stdout.indexOf('\r\n\r\n');
  const head = end >= 0 ? r.stdout.subarray(0, end).toString('latin1') : '';
  return { status: head.split('\r\n')[0] ?? '', body: end >= 0 ? r.stdout.subarray(end + 4) : Buffer.alloc(0), run: r };
}

/** A long-lived s_client whose stdin we control (for KeyUpdate 'K' and friends). */
export function sClientInteractive(port: number, args: string[]) {
  const child = spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
  child.stderr.on('data', (d: Buffer) => (out += d.toString('latin1')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

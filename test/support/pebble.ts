/**
 * Debian's `pebble` (Let's Encrypt's small ACME test server) on loopback for
 * the ACME tests: its config written here, its own TLS certificate made here
 * (Debian ships none), free ports, PEBBLE_VA_NOSLEEP so validations do not
 * wait, and no random nonce rejections (PEBBLE_WFE_NONCEREJECT=0) so the
 * tests do not depend on a client's retry.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { after } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';
import { createSelfSignedCert } from '../../src/tls/self-signed.js';
import { acceptsWithin, freePort } from './loopback-port.js';
import { reapOnExit } from './run-process.js';
import { waitUntil } from './wait.js';

export interface Pebble {
  directoryUrl: string;
  /** Pebble's own TLS certificate: give it to --acme-ca. */
  caFile: string;
  /** The port of the management interface (roots, intermediates). */
  managementPort: number;
  stop(): Promise<void>;
  output(): string;
}

export interface PebbleOptions {
  /** Where challenges are validated: the port of HTTP-01 (Aludel's --redirect-http). */
  httpPort?: number;
  tlsPort?: number;
  /** true: every challenge passes without a request (PEBBLE_VA_ALWAYS_VALID). */
  alwaysValid: boolean;
}

export function pebbleInstalled(): boolean {
  return fs.existsSync('/usr/bin/pebble');
}

/**
 * The `skip` of a suite that needs pebble: a reason where it is missing,
 * except under CI=true, where .ci/run installs it and a suite that cannot
 * run must fail (as a kTLS suite does), never pass as skipped.
 */
export function pebbleSkip(): false | string {
  if (pebbleInstalled() || process.env.CI === 'true') return false;
  return 'pebble is not installed (apt-get install pebble; the README\'s test command installs it)';
}

/**
 * Pebbles still running when the file's tests are done: a test that failed
 * between startPebble and its try (an Aludel that did not start in time) never
 * stops its pebble, whose open pipes then keep the test process, and the
 * whole run, waiting for ever (seen under load). reapOnExit alone cannot help:
 * 'exit' never comes while they are open.
 */
const running = new Set<ChildProcess>();
after(() => {
  for (const c of running) c.kill('SIGKILL');
});

export async function startPebble(dir: string, o: PebbleOptions): Promise<Pebble> {
  fs.mkdirSync(dir, { recursive: true });
  const tls = await createSelfSignedCert({ commonName: 'pebble test', altNames: ['localhost', '127.0.0.1'] });
  const caFile = path.join(dir, 'pebble-tls.pem');
  const keyFile = path.join(dir, 'pebble-tls.key');
  fs.writeFileSync(caFile, tls.certPem);
  fs.writeFileSync(keyFile, tls.keyPem, { mode: 0o600 });
  for (let attempt = 0; ; attempt++) {
    const [port, managementPort] = [await freePort(), await freePort()];
    const config = path.join(dir, 'pebble-config.json');
    fs.writeFileSync(config, JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${port}`,
        managementListenAddress: `127.0.0.1:${managementPort}`,
        certificate: caFile,
        privateKey: keyFile,
        httpPort: o.httpPort ?? 5002,
        tlsPort: o.tlsPort ?? 5001,
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
      },
    }));
    const env = { ...process.env, PEBBLE_VA_NOSLEEP: '1', PEBBLE_WFE_NONCEREJECT: '0', PEBBLE_VA_ALWAYS_VALID: o.alwaysValid ? '1' : '0' };
    const child: ChildProcess = reapOnExit(spawn('/usr/bin/pebble', ['-config', config], { env, stdio: ['ignore', 'pipe', 'pipe'] }));
    running.add(child);
    child.once('exit', () => running.delete(child));
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    let up = false;
    await waitUntil(() => child.exitCode !== null || out.includes('Listening on'), 10_000).catch(() => undefined);
    // pebble logs "Listening on" before it calls ListenAndServeTLS: a connect right then may be refused (a CI run failed so).
    if (child.exitCode === null) up = await acceptsWithin(port, 10_000, () => child.exitCode === null);
    if (!up) {
      child.kill('SIGKILL');
      await exited;
      if (attempt < 2 && /address already in use/.test(out)) continue;
      throw new Error(`pebble did not start:\n${out}`);
    }
    return {
      directoryUrl: `https://127.0.0.1:${port}/dir`,
      caFile,
      managementPort,
      output: () => out,
      stop: async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          await exited;
        }
      },
    };
  }
}

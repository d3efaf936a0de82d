/**
 * `aludel demo`: everything on embedded defaults. A sample legacy app (plain
 * HTTP) on a loopback port, a self-signed certificate, `aludel proxy` in front
 * of the app, and the commands to try. Each connection's log line says where
 * its crypto ran, each request line how its body moved (splice or write).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startLegacyApp } from '../demo/legacy-app.js';
import { createSelfSignedCert } from '../tls/self-signed.js';
import { writeCertFiles } from '../tls/write-cert-files.js';
import { runProxy } from './proxy-command.js';
import { resolveProxySettings } from './proxy-options.js';
import { describeOffload } from './listeners.js';

export async function runDemo(listen: string): Promise<void> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-demo-'));
  const pair = await createSelfSignedCert({ commonName: 'localhost' });
  const { certPath, keyPath } = await writeCertFiles(path.join(dir, 'tls'), pair);
  const app = await startLegacyApp();
  let proxy: Awaited<ReturnType<typeof runProxy>>;
  try {
    // One process: the demo's app and certificate live in this process, which workers would run again.
    proxy = await runProxy(await resolveProxySettings('http', { listen, cert: certPath, key: keyPath, to: [app.url], workers: '1' }));
  } catch (err) {
    // A demo that could not start (port taken, ...) leaves nothing behind.
    await app.close();
    await fs.promises.rm(dir, { recursive: true, force: true });
    throw err;
  }
  const bound = proxy.addresses[0]!;
  const url = `https://${bound.startsWith('0.0.0.0:') ? `127.0.0.1${bound.slice(7)}` : bound}`;
  process.stderr.write(
    [
      '',
      'Aludel demo is running: HTTPS with modern TLS in front of a legacy plain-HTTP app.',
      `  legacy app: ${app.url} (unchanged, knows no TLS)`,
      `  Aludel:     ${url} -> ${app.url}`,
      `  ${describeOffload(proxy.listeners.offload)}`,
      '',
      'Try:',
      `  curl --cacert ${certPath} ${url}/`,
      `  curl --cacert ${certPath} -s ${url}/big.bin | sha256sum     # expect ${app.bigSha256}`,
      `  curl --cacert ${certPath} ${url}/stream`,
      `  openssl s_client -connect ${url.slice(8)} -tls1_2 -CAfile ${certPath} </dev/null`,
      '',
      'Each "TLS established" log line gives tx/rx: kernel (kTLS) or user; each "request" line gives body: splice (the kernel moved it) or write.',
      'Ctrl-C stops it.',
      '',
    ].join('\n'),
  );
  const stop = (): void => {
    void proxy.serving.close()
      .then(() => app.close())
      .then(() => fs.promises.rm(dir, { recursive: true, force: true }))
      .then(() => process.exit(0));
  };
  // Every way a terminal session ends it: Ctrl-C, kill, Ctrl-\ (QUIT), and the terminal or SSH session
  // closing (HUP). The demo's directory holds a private key: QUIT and HUP left it behind (found by a tester).
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGHUP'] as const) process.once(signal, stop);
}

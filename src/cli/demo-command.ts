/**
 * `aludel demo`: everything on embedded defaults. A self-signed certificate,
 * sample content in a temporary directory, `aludel serve` on it, and the
 * commands to try. Each connection's log line says where its crypto ran.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createSelfSignedCert } from '../tls/self-signed.js';
import { writeCertFiles } from '../tls/write-cert-files.js';
import { describeOffload, runServe } from './serve-command.js';

export async function runDemo(listen: string): Promise<void> {
  const dir = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'aludel-demo-'));
  const root = path.join(dir, 'www');
  await fs.promises.mkdir(root);
  const pair = await createSelfSignedCert({ commonName: 'localhost' });
  const { certPath, keyPath } = await writeCertFiles(path.join(dir, 'tls'), pair);
  await fs.promises.writeFile(path.join(root, 'index.html'), '<!doctype html><title>Aludel demo</title><h1>Served by Aludel</h1>\n');
  // A 16 MiB file of random bytes: large enough for sendfile to matter, checkable by sha256.
  const fh = await fs.promises.open(path.join(root, 'big.bin'), 'w');
  const block = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < 16; i++) await fh.write(fillRandom(block));
  await fh.close();
  const { server, address, port } = await runServe({
    listen, cert: certPath, key: keyPath, root, offload: 'auto', handshakeTimeout: '10s', idleTimeout: '60s',
    headersTimeout: '20s', maxHeaderSize: '16k', tlsMin: '1.2', tlsMax: '1.3', logLevel: 'info',
  });
  const host = address.includes(':') ? `[${address}]` : address;
  const url = `https://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
  process.stderr.write(
    [
      '',
      'Aludel demo is running.',
      `  ${describeOffload(server.offload)}`,
      `  content: ${root}`,
      '',
      'Try:',
      `  curl --cacert ${certPath} ${url}/`,
      `  curl --cacert ${certPath} -o /dev/null -w '%{size_download} bytes\\n' ${url}/big.bin`,
      `  openssl s_client -connect ${url.slice(8)} -tls1_2 -CAfile ${certPath} </dev/null`,
      '',
      'Each "TLS established" log line gives tx/rx: kernel (kTLS) or user; each "request" line gives body: sendfile or write.',
      'Ctrl-C stops it.',
      '',
    ].join('\n'),
  );
  const stop = (): void => {
    void server.close().then(() => fs.promises.rm(dir, { recursive: true, force: true })).then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

function fillRandom(buf: Buffer): Buffer {
  for (let off = 0; off < buf.length; off += 65536) globalThis.crypto.getRandomValues(buf.subarray(off, off + 65536));
  return buf;
}

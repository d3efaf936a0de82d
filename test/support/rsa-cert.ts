/**
 * A self-signed RSA certificate for legacy origins: TLS 1.0-1.2 RSA key
 * exchange (AES128-SHA and friends, RFC 5246 §7.4.7.1) needs an RSA key in the
 * certificate, which Aludel's own ECDSA test certificate cannot provide.
 */
import path from 'node:path';
import { run } from './run-process.js';

export async function makeRsaCert(dir: string): Promise<{ certFile: string; keyFile: string }> {
  const certFile = path.join(dir, 'legacy-cert.pem');
  const keyFile = path.join(dir, 'legacy-key.pem');
  const r = await run(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '2', '-subj', '/CN=legacy.test',
      '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', keyFile, '-out', certFile],
    { timeoutMs: 30_000 },
  );
  if (r.code !== 0) throw new Error(`openssl req failed (${r.signal ?? r.code}); is the openssl package installed?\n${r.stderr}`);
  return { certFile, keyFile };
}

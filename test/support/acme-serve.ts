/**
 * `aludel serve` with managed certificates only, for the ACME integration
 * tests (one process and --workers): the command line, the log lines they
 * wait for, and the leaf a handshake presents.
 */
import tls from 'node:tls';
import { serveArgs } from './aludel-process.js';
import type { StandardFixtures } from './fixtures.js';
import type { Pebble } from './pebble.js';

export const ISSUED = 'acme: certificate issued and in service';
export const FAILED = 'acme: certificate order failed; the current certificate keeps serving';

/** The leaf a handshake with SNI localhost presents. */
export function peerCertificate(port: number): Promise<tls.PeerCertificate> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, () => {
      const c = s.getPeerCertificate();
      s.end();
      resolve(c);
    });
    s.once('error', reject);
  });
}

export function acmeArgs(fx: StandardFixtures, pebble: Pebble | { directoryUrl: string; caFile: string }, storage: string, ...extra: string[]): string[] {
  const args = serveArgs(fx, '--acme-domain', 'localhost', '--acme-directory', pebble.directoryUrl, '--acme-ca', pebble.caFile, '--acme-storage', storage, '--admin', '127.0.0.1:0', ...extra);
  // Only managed certificates: drop the fixtures' --cert/--key.
  const i = args.indexOf('--cert');
  args.splice(i, 4);
  return args;
}

/**
 * --acme-domain in a serving command: the manager made and its stand-ins
 * written before the listeners load their certificates, started once the
 * listeners (and the HTTP-01 responder on --redirect-http) are up. With
 * --workers N the manager runs in the primary only (primary.ts); a worker
 * gets a challenge registry filled by the primary (workerAcme).
 */
import type { Logger } from '../log/logger.js';
import type { HttpServerSettings } from '../config/proxy-settings.js';
import { AcmeManager } from '../tls/acme/acme-manager.js';
import { loadAcmeClient } from '../tls/acme/acme-order.js';
import type { AcmeChallengeCertificate } from '../tls/types.js';
import { InvalidOptionError } from '../errors.js';
import { ChallengeRegistry } from '../tls/acme/challenges.js';
import type { WorkerAcme } from './worker-link.js';
import type { Listeners } from './listeners.js';
import type { AcmeChallengeType } from '../config/tls-settings.js';

/**
 * The process that orders: the one process, or the primary of --workers N.
 * null without --acme-domain. `reload` hands a new pair to the listeners
 * (their reconfigure(); the primary's tells the workers).
 */
export async function prepareAcme(s: HttpServerSettings, log: Logger, reload: () => void): Promise<AcmeManager | null> {
  if (s.acme === null) return null;
  await loadAcmeClient();
  const manager = new AcmeManager(s.acme, log, reload);
  // Whatever ends a start before the first order (an error, exit 2, a signal) leaves no stand-in behind.
  process.once('exit', () => manager.discardStandIns());
  try {
    await manager.prepare();
  } catch (err) {
    // EACCES, EROFS, ENOSPC...: the storage directory is unusable; say which, without a stack.
    throw new InvalidOptionError(`--acme-storage ${s.acme.storage}: cannot keep the ACME account and certificates there (${(err as Error).message})`);
  }
  return manager;
}

/**
 * The challenge orders use, and why it may fail. --acme-challenge when given;
 * else HTTP-01 where --redirect-http answers it, else TLS-ALPN-01 where the
 * TLS engine can answer it (the system OpenSSL; not node:tls). Either way the
 * CA connects to the standard port of the name: 80 for HTTP-01 (RFC 8555
 * §8.3), 443 for TLS-ALPN-01 (RFC 8737 §3).
 */
export function chooseChallenge(configured: AcmeChallengeType | null, redirectHttp: boolean, answersTlsAlpn01: boolean): { type: AcmeChallengeType; warning: string | null } {
  const type = configured ?? (redirectHttp || !answersTlsAlpn01 ? 'http-01' : 'tls-alpn-01');
  if (type === 'http-01' && !redirectHttp) {
    return { type, warning: 'acme: no --redirect-http, so nothing here answers the HTTP-01 challenge on port 80; orders fail unless the CA reaches another server that does' };
  }
  if (type === 'tls-alpn-01' && !answersTlsAlpn01) {
    return { type, warning: 'acme: this TLS engine (node:tls, the system OpenSSL could not be loaded) cannot answer TLS-ALPN-01; orders fail; use --acme-challenge http-01 with --redirect-http' };
  }
  return { type, warning: null };
}

/** Once the listeners are up: TLS-ALPN-01 challenges go to them, and the first orders start. */
export function startAcme(manager: AcmeManager | null, s: HttpServerSettings, listeners: { answersTlsAlpn01: boolean; setAcmeChallenges(c: readonly AcmeChallengeCertificate[]): void }, log: Logger): void {
  if (manager === null || s.acme === null) return;
  const { type, warning } = chooseChallenge(s.acme.challenge, s.redirectHttp !== null, listeners.answersTlsAlpn01);
  if (warning !== null) log.warn({ domains: s.acme.domains, challenge: type }, warning);
  if (type === 'tls-alpn-01') manager.tlsAlpn01.attach((c) => listeners.setAcmeChallenges(c));
  manager.start(type);
}

/** For Serving's `others`: stops the renewal timers at shutdown. */
export function acmeCloser(manager: AcmeManager | null): { close(): Promise<void> } | null {
  return manager === null ? null : { close: async () => manager.close() };
}

/**
 * A worker's side of --acme-domain (null without it): the primary orders;
 * its TLS-ALPN-01 challenges go to this worker's listeners; `reload` takes the
 * stored pairs into service.
 */
export function workerAcme(s: HttpServerSettings, listeners: Pick<Listeners, 'setAcmeChallenges'>, log: Logger, reload: () => void): WorkerAcme | null {
  if (s.acme === null) return null;
  const install = (set: AcmeChallengeCertificate[]): void => {
    try {
      listeners.setAcmeChallenges(set);
    } catch (err) {
      // The file went with a challenge already done (the primary removes it after telling us), or the disk failed: the others still serve.
      log.warn({ error: (err as Error).message, names: set.map((c) => c.name) }, 'acme: cannot install the TLS-ALPN-01 challenge certificates from the primary');
    }
  };
  return { challenges: new ChallengeRegistry(install), reloadCertificates: reload };
}

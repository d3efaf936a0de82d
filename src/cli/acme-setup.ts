/**
 * --acme-domain in a serving command: the manager made and its stand-ins
 * written before the listeners load their certificates, started once the
 * listeners (and the HTTP-01 responder on --redirect-http) are up.
 */
import type { Logger } from '../log/logger.js';
import type { HttpServerSettings } from '../config/proxy-settings.js';
import { AcmeManager } from '../tls/acme/acme-manager.js';
import { InvalidOptionError } from '../errors.js';

/** null without --acme-domain. `reload` hands a new pair to the listeners (their reconfigure()). */
export async function prepareAcme(s: HttpServerSettings, log: Logger, reload: () => void): Promise<AcmeManager | null> {
  if (s.acme === null) return null;
  const manager = new AcmeManager(s.acme, log, reload);
  try {
    await manager.prepare();
  } catch (err) {
    // EACCES, EROFS, ENOSPC...: the storage directory is unusable; say which, without a stack.
    throw new InvalidOptionError(`--acme-storage ${s.acme.storage}: cannot keep the ACME account and certificates there (${(err as Error).message})`);
  }
  if (s.redirectHttp === null) {
    log.warn({ domains: s.acme.domains }, 'acme: no --redirect-http, so nothing here answers the HTTP-01 challenge on port 80; orders fail unless the CA reaches another server that does');
  }
  return manager;
}

/** For Serving's `others`: stops the renewal timers at shutdown. */
export function acmeCloser(manager: AcmeManager | null): { close(): Promise<void> } | null {
  return manager === null ? null : { close: async () => manager.close() };
}

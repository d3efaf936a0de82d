/**
 * Managed certificates (--acme-domain): one per name, kept in the storage
 * directory and renewed in the background; each new pair is handed to the
 * listeners by `onIssued` (the same reconfigure() a SIGHUP does: new
 * handshakes get it, connections in flight keep theirs, docs/certificates.md).
 *
 * Until a name has a certificate from the CA, a self-signed stand-in is served
 * for it (Caddy does the same), so the listeners can start, and answer the
 * CA, before the first order completes. A pair on disk that cannot be used is
 * set aside under a new name, never deleted. A failed order leaves the pair in
 * service as it is, logs why, shows it in /status, and retries with backoff
 * (renew-policy.ts). The lock (storage.ts) keeps two processes sharing the
 * directory from ordering the same name at once.
 */
import fs from 'node:fs';
import type { Logger } from '../../log/logger.js';
import { createSelfSignedCert } from '../self-signed.js';
import { loadCertificate } from '../certificates.js';
import { configureTransport, orderCertificate, AcmeOrderError } from './acme-order.js';
import { AriTracker, type AriStatus } from './ari-tracker.js';
import { ChallengeRegistry } from './challenges.js';
import { needsRenewal, parseRetryAfter, renewalTime, retryDelay } from './renew-policy.js';
import { acquireLock, ensureStorage, readStored, setAsideCorrupt, writeSecretFile } from './storage.js';
import { managedPaths, type ManagedPaths } from '../../config/acme-paths.js';
import type { AcmeChallengeType, AcmeSettings } from '../../config/tls-settings.js';

/** One managed name as /status and `aludel doctor` show it. */
export interface ManagedCertificateStatus {
  name: string;
  /** issued: from the CA; stand-in: self-signed until the first order completes. */
  state: 'issued' | 'stand-in';
  serial: string | null;
  issuer: string | null;
  notAfter: string | null;
  nextRenewal: string | null;
  lastError: string | null;
  lastErrorAt: string | null;
  failures: number;
  /** The CA's suggested renewal window (RFC 9773) for the certificate in service, when it gave one; nextRenewal is chosen in it. */
  ari?: AriStatus | null;
}

/**
 * Test-only controls, installed by a module the tests load into the process
 * (test/support/acme-test-hooks.ts): no flag, setting or variable of Aludel reaches them.
 */
interface TestHooks {
  /** The delay before renewing an issued certificate, instead of the policy's. */
  renewalDelay?(name: string, delayMs: number): number;
  /** Awaited before each renewal of an issued certificate. */
  beforeRenewal?(name: string): Promise<void>;
}
const TEST_HOOKS = Symbol.for('aludel.test.acme');

/** setTimeout fires at once beyond 2^31-1 ms (~24.8 days): wait in steps, deciding again each time. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Another process holds the lock: look again this soon whether it has stored the new pair. */
const LOCK_RECHECK_MS = 10_000;
/** Stand-ins are short-lived on purpose: nothing should trust or keep them. */
const STAND_IN_DAYS = 7;

interface Managed {
  name: string;
  paths: ManagedPaths;
  status: ManagedCertificateStatus;
  timer: NodeJS.Timeout | null;
  running: boolean;
}

export class AcmeManager {
  /** The pending challenges, answered here; with --workers, the primary sends each change to every worker (primary.ts). */
  readonly challenges = new ChallengeRegistry();
  readonly http01 = this.challenges.orderingHttp01();
  readonly tlsAlpn01 = this.challenges.orderingTlsAlpn01();
  /** Set by start(). */
  private challenge: AcmeChallengeType = 'http-01';
  private readonly managed: Managed[];
  private closed = false;
  private readonly hooks: TestHooks;
  /** Orders run one at a time: kinder to the CA, and each failure keeps its own Retry-After (acme-order.ts). */
  private queue: Promise<void> = Promise.resolve();
  private readonly ari: AriTracker;
  /** The stand-ins prepare() wrote, by name, as written; a start that fails before start() takes them away (discardStandIns). */
  private readonly standInsWritten = new Map<Managed, string>();
  private started = false;

  constructor(private readonly s: AcmeSettings, private readonly log: Logger, private readonly onIssued: () => void) {
    this.managed = s.domains.map((name) => ({
      name,
      paths: managedPaths(s.storage, name),
      status: { name, state: 'stand-in', serial: null, issuer: null, notAfter: null, nextRenewal: null, lastError: null, lastErrorAt: null, failures: 0 },
      timer: null,
      running: false,
    }));
    this.ari = new AriTracker(s.directoryUrl, () => configureTransport(s.caFile), log);
    this.hooks = ((globalThis as Record<symbol, unknown>)[TEST_HOOKS] as TestHooks | undefined) ?? {};
  }

  /** The pairs for the listeners, one per name, in --acme-domain order. */
  get certificates(): Array<{ certFile: string; keyFile: string }> {
    return this.managed.map((m) => ({ certFile: m.paths.certFile, keyFile: m.paths.keyFile }));
  }

  status(): ManagedCertificateStatus[] {
    return this.managed.map((m) => ({ ...m.status, ari: this.ari.status(m.name) }));
  }

  /** Before the listeners start: the directory (0700) and a loadable pair for every name. */
  async prepare(): Promise<void> {
    ensureStorage(this.s.storage, this.s.domains);
    for (const m of this.managed) {
      const stored = readStored(m.paths);
      if (stored.state === 'corrupt') {
        const aside = setAsideCorrupt(m.paths, Date.now());
        this.fail(m, `stored certificate unusable (${stored.reason}); kept as ${aside}, serving a self-signed stand-in until a new one is issued`);
      }
      if (stored.state !== 'valid') await this.writeStandIn(m);
      this.refresh(m);
    }
  }

  /** Schedules every name: at once for stand-ins and certificates due, else at their renewal time. */
  start(challenge: AcmeChallengeType): void {
    this.started = true;
    this.challenge = challenge;
    for (const m of this.managed) this.schedule(m, this.dueIn(m));
  }

  close(): void {
    this.closed = true;
    this.ari.close();
    for (const m of this.managed) if (m.timer) clearTimeout(m.timer);
  }

  private async writeStandIn(m: Managed): Promise<void> {
    const c = await createSelfSignedCert({ commonName: m.name, altNames: [m.name], days: STAND_IN_DAYS });
    const pem = `${c.certPem}${c.keyPem}`;
    writeSecretFile(m.paths.certFile, pem);
    this.standInsWritten.set(m, pem);
  }

  /**
   * Before start() (the start failed: a port taken, a --cert for the same
   * name, a worker that could not start): removes the stand-ins prepare()
   * wrote, so the storage directory is as this start found it and the next
   * start (or `aludel doctor`) sees no certificate for a name that never
   * served. A file that is no longer the one written (another process
   * sharing the directory stored its own since) stays. After start(): nothing.
   */
  discardStandIns(): void {
    if (this.started) return;
    for (const [m, pem] of this.standInsWritten) {
      try {
        if (fs.readFileSync(m.paths.certFile, 'latin1') === pem) fs.rmSync(m.paths.certFile, { force: true });
      } catch {
        // Gone already, or unreadable now: nothing of ours to remove.
      }
    }
    this.standInsWritten.clear();
  }

  /** The status fields that come from the pair on disk. */
  private refresh(m: Managed): void {
    const stored = readStored(m.paths);
    if (stored.state !== 'valid') return;
    m.status.state = stored.selfIssued ? 'stand-in' : 'issued';
    m.status.serial = stored.serial;
    m.status.issuer = stored.issuer;
    m.status.notAfter = new Date(stored.notAfter).toISOString();
    if (!stored.selfIssued) this.ari.watch(m.name, { certFile: m.paths.certFile, serial: stored.serial, notAfter: stored.notAfter }, () => this.ariChanged(m));
  }

  /** A new answer from the CA (RFC 9773): a planned renewal moves to it; a running order or a failure's backoff keeps its own timing. */
  private ariChanged(m: Managed): void {
    if (this.closed || m.running || m.status.failures > 0 || m.timer === null) return;
    this.schedule(m, this.dueIn(m));
  }

  private dueIn(m: Managed): number {
    const stored = readStored(m.paths);
    if (stored.state !== 'valid' || stored.selfIssued) return 0;
    const at = this.ari.renewalAt(m.name, stored.serial) ?? renewalTime(stored.notBefore, stored.notAfter);
    const delay = Math.max(0, at - Date.now());
    return this.hooks.renewalDelay?.(m.name, delay) ?? delay;
  }

  private schedule(m: Managed, delayMs: number): void {
    if (this.closed) return;
    if (m.timer) clearTimeout(m.timer);
    m.status.nextRenewal = new Date(Date.now() + delayMs).toISOString();
    this.persist(m);
    const step = Math.min(delayMs, MAX_TIMER_MS);
    m.timer = setTimeout(() => {
      m.timer = null;
      if (step < delayMs) this.schedule(m, this.dueIn(m));
      else this.queue = this.queue.then(() => this.renew(m));
    }, step);
    // The listeners keep the process alive; a pending renewal must not hold up a stop.
    m.timer.unref();
  }

  /** Never rejects (it runs on the order queue): anything unexpected is a failed attempt, retried with backoff. */
  private async renew(m: Managed): Promise<void> {
    if (this.closed || m.running) return;
    m.running = true;
    try {
      if (m.status.state === 'issued') await this.hooks.beforeRenewal?.(m.name);
      const lock = acquireLock(m.paths.lockFile);
      if ('heldBy' in lock) {
        this.log.info({ domain: m.name, pid: lock.heldBy }, 'acme: another process is ordering this certificate; using what it stores');
        this.adoptStored(m);
        return;
      }
      try {
        // Another process may have stored a new pair between our schedule and our lock: use it.
        if (this.storedByOther(m)) this.adoptStored(m);
        else await this.order(m);
      } finally {
        lock.release();
      }
    } catch (err) {
      const delay = retryDelay(m.status.failures + 1, Math.random(), null);
      this.fail(m, (err as Error).message, delay);
      this.schedule(m, delay);
    } finally {
      m.running = false;
    }
  }

  /** The pair on disk is from the CA, not the one this process serves, and not yet due. */
  private storedByOther(m: Managed): boolean {
    const stored = readStored(m.paths);
    return stored.state === 'valid' && !stored.selfIssued && stored.serial !== m.status.serial && !needsRenewal(Date.now(), stored);
  }

  /** After another process's order: serve what it stored if it is newer, and look again later. */
  private adoptStored(m: Managed): void {
    const before = m.status.serial;
    this.refresh(m);
    if (m.status.serial !== before) this.onIssued();
    const due = this.dueIn(m);
    this.schedule(m, due === 0 ? LOCK_RECHECK_MS : due);
  }

  private async order(m: Managed): Promise<void> {
    this.log.info({ domain: m.name, directory: this.s.directoryUrl, challenge: this.challenge }, 'acme: ordering a certificate');
    let issued;
    try {
      issued = await orderCertificate(this.s, m.name, { type: this.challenge, http01: this.http01, tlsAlpn01: this.tlsAlpn01, challengeFile: m.paths.challengeFile }, this.ari.replaces(m.name));
      // Checked (key matches, chain in order) before it replaces the pair in service.
      writeSecretFile(m.paths.certFile, `${issued.certPem.trim()}\n${issued.keyPem}`, (tmp) => void loadCertificate({ certFile: tmp, keyFile: tmp }, 0));
    } catch (err) {
      const e = err as Error;
      const retryAfter = err instanceof AcmeOrderError ? parseRetryAfter(err.retryAfter, Date.now()) : null;
      const delay = retryDelay(m.status.failures + 1, Math.random(), retryAfter);
      this.fail(m, e.message, delay);
      this.schedule(m, delay);
      return;
    }
    m.status.failures = 0;
    this.refresh(m);
    try {
      this.onIssued();
    } catch (err) {
      this.fail(m, `the new certificate was stored but not taken into service: ${(err as Error).message}`);
    }
    this.log.info({ domain: m.name, serial: m.status.serial, issuer: m.status.issuer, notAfter: m.status.notAfter }, 'acme: certificate issued and in service');
    this.schedule(m, this.dueIn(m));
  }

  /** Kept beside the pair for `aludel doctor --acme-storage` (acme-report.ts); a failure to write it is only logged. */
  private persist(m: Managed): void {
    try {
      writeSecretFile(m.paths.statusFile, `${JSON.stringify({ nextRenewal: m.status.nextRenewal, lastError: m.status.lastError, lastErrorAt: m.status.lastErrorAt, failures: m.status.failures, ari: this.ari.status(m.name) })}\n`);
    } catch (err) {
      this.log.warn({ domain: m.name, file: m.paths.statusFile, error: (err as Error).message }, 'acme: cannot record the renewal state');
    }
  }

  private fail(m: Managed, message: string, retryInMs?: number): void {
    m.status.failures++;
    m.status.lastError = message;
    m.status.lastErrorAt = new Date().toISOString();
    this.log.error({ domain: m.name, error: message, failures: m.status.failures, retryInMs, serving: m.status.state }, 'acme: certificate order failed; the current certificate keeps serving');
  }
}

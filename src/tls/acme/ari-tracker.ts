/**
 * Keeps, per managed name, the CA's renewal suggestion (RFC 9773) for the
 * certificate in service: checked when the certificate is taken into service
 * (§4.3: right after issuance, and at start-up), then again after each
 * answer's Retry-After; each new answer is handed to the scheduler
 * (acme-manager.ts), which renews at the time chosen in the window.
 *
 * Without an answer (the CA has no renewalInfo, the request fails, the window
 * is invalid) the scheduler keeps its two-thirds rule (renew-policy.ts); a
 * failed check is retried with the order backoff (§4.2: "retry at an
 * appropriate interval, renew on a fallback schedule"). The last valid answer
 * stays in force across a failed check: a CA that moved a window early (a
 * revocation coming, §1) should not see it forgotten for a network blip.
 */
import fs from 'node:fs';
import type https from 'node:https';
import type { Logger } from '../../log/logger.js';
import { ariCertId, fetchRenewalInfo, renewalInfoUrl, type RenewalInfo } from './ari.js';
import { ariCheckDelay, parseRetryAfter, retryDelay, timeInWindow } from './renew-policy.js';

/** The ARI part of a managed name's /status entry. */
export interface AriStatus {
  certId: string;
  windowStart: string;
  windowEnd: string;
  explanationURL: string | null;
}

/** What newOrder is to say it replaces (RFC 9773 §5), and whom to tell if the CA refuses that. */
export interface Replaces {
  certId: string;
  refused(reason: string): void;
}

interface Entry {
  name: string;
  serial: string;
  notAfter: number;
  certId: string | null;
  info: (RenewalInfo & { at: number }) | null;
  failures: number;
  timer: NodeJS.Timeout | null;
  onChange: () => void;
}

export class AriTracker {
  private readonly entries = new Map<string, Entry>();
  private closed = false;

  constructor(private readonly directoryUrl: string, private readonly agent: () => https.Agent, private readonly log: Logger) {}

  /**
   * Follows the certificate now in service for `name` (a new serial replaces
   * the one followed; the same serial again changes nothing). `onChange` is
   * called after each answer that sets the renewal time.
   */
  watch(name: string, cert: { certFile: string; serial: string; notAfter: number }, onChange: () => void): void {
    const old = this.entries.get(name);
    if (old?.serial === cert.serial) return;
    if (old?.timer) clearTimeout(old.timer);
    const entry: Entry = { name, serial: cert.serial, notAfter: cert.notAfter, certId: null, info: null, failures: 0, timer: null, onChange };
    this.entries.set(name, entry);
    void this.start(entry, cert.certFile);
  }

  /** The time chosen in the CA's window for this serial, or null (no answer: the caller's own rule applies). */
  renewalAt(name: string, serial: string): number | null {
    const e = this.entries.get(name);
    return e?.serial === serial && e.info ? e.info.at : null;
  }

  status(name: string): AriStatus | null {
    const e = this.entries.get(name);
    if (!e?.info || !e.certId) return null;
    return { certId: e.certId, windowStart: new Date(e.info.window.start).toISOString(), windowEnd: new Date(e.info.window.end).toISOString(), explanationURL: e.info.explanationURL };
  }

  /** §5: an order replacing a certificate ARI covered names it; null for one it did not. */
  replaces(name: string): Replaces | null {
    const e = this.entries.get(name);
    if (!e?.info || !e.certId) return null;
    const certId = e.certId;
    return {
      certId,
      refused: (reason) => this.log.warn({ domain: name, certId, error: reason }, 'acme: the CA refused the order as a replacement (RFC 9773 §5); ordering again without "replaces"'),
    };
  }

  close(): void {
    this.closed = true;
    for (const e of this.entries.values()) if (e.timer) clearTimeout(e.timer);
  }

  private current(e: Entry): boolean {
    return !this.closed && this.entries.get(e.name) === e;
  }

  private async start(e: Entry, certFile: string): Promise<void> {
    try {
      e.certId = await ariCertId(fs.readFileSync(certFile, 'utf8'));
    } catch (err) {
      this.log.warn({ domain: e.name, error: (err as Error).message }, 'acme: cannot read the certificate\'s ARI identifier (RFC 9773 §4.1); renewing at two thirds of its lifetime');
      return;
    }
    if (e.certId === null) {
      this.log.info({ domain: e.name }, 'acme: the certificate has no Authority Key Identifier, so no renewal information (RFC 9773 §4.1); renewing at two thirds of its lifetime');
      return;
    }
    await this.check(e);
  }

  /** One check of renewalInfo; arms the next one. */
  private async check(e: Entry): Promise<void> {
    e.timer = null;
    // §4.3: never for an expired certificate; nor for a replaced one (current() is false then).
    if (!this.current(e) || Date.now() >= e.notAfter) return;
    let answer;
    try {
      const agent = this.agent();
      const base = await renewalInfoUrl(this.directoryUrl, agent);
      if (base === null) {
        this.log.info({ domain: e.name, directory: this.directoryUrl }, 'acme: the CA offers no renewal information (RFC 9773); renewing at two thirds of the lifetime');
        return;
      }
      answer = await fetchRenewalInfo(base, e.certId!, agent);
    } catch (err) {
      if (this.current(e)) this.failed(e, (err as Error).message);
      return;
    }
    if (this.current(e)) this.answered(e, answer.info, answer.retryAfter);
  }

  private answered(e: Entry, info: RenewalInfo, retryAfter: string | undefined): void {
    e.failures = 0;
    e.info = { ...info, at: timeInWindow(info.window, Math.random(), e.info ?? undefined) };
    const nextCheckInMs = ariCheckDelay(parseRetryAfter(retryAfter, Date.now()));
    this.log.info(
      { domain: e.name, certId: e.certId, windowStart: new Date(info.window.start).toISOString(), windowEnd: new Date(info.window.end).toISOString(), explanationURL: info.explanationURL, renewAt: new Date(e.info.at).toISOString(), nextCheckInMs },
      'acme: renewal window from the CA (RFC 9773)',
    );
    this.arm(e, nextCheckInMs);
    e.onChange();
  }

  private failed(e: Entry, reason: string): void {
    e.failures++;
    const retryInMs = retryDelay(e.failures, Math.random(), null);
    const fallback = e.info ? 'keeping the last window the CA gave' : 'renewing at two thirds of the lifetime';
    this.log.warn({ domain: e.name, certId: e.certId, error: reason, failures: e.failures, retryInMs }, `acme: no usable renewal information (RFC 9773); ${fallback}`);
    this.arm(e, retryInMs);
  }

  private arm(e: Entry, delayMs: number): void {
    e.timer = setTimeout(() => void this.check(e), delayMs);
    // Like the renewal timers: nothing here may hold up a stop.
    e.timer.unref();
  }
}

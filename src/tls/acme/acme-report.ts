/**
 * `aludel doctor --acme-storage DIR`: the managed certificates as another
 * process sees them on disk (the pair, and the status.json the scheduler
 * keeps beside it), with findings: expired, renewal overdue, still a stand-in.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Finding } from '../../offload/doctor.js';
import type { ManagedCertificateStatus } from './acme-manager.js';
import { renewalTime } from './renew-policy.js';
import { managedPaths, readStored } from './storage.js';

export interface AcmeReportEntry extends Omit<ManagedCertificateStatus, 'state'> {
  state: ManagedCertificateStatus['state'] | 'missing' | 'corrupt';
}

function savedStatus(file: string): Partial<Pick<ManagedCertificateStatus, 'nextRenewal' | 'lastError' | 'lastErrorAt' | 'failures' | 'ari'>> {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as ReturnType<typeof savedStatus>;
  } catch {
    return {};
  }
}

/** One entry per directory under DIR/certificates; throws when DIR cannot be read. */
export function readAcmeReport(dir: string): AcmeReportEntry[] {
  const names = fs.readdirSync(path.join(dir, 'certificates'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  return names.map((name) => {
    const paths = managedPaths(dir, name);
    const stored = readStored(paths);
    const saved = savedStatus(paths.statusFile);
    const base = { name, nextRenewal: saved.nextRenewal ?? null, lastError: saved.lastError ?? null, lastErrorAt: saved.lastErrorAt ?? null, failures: saved.failures ?? 0, ari: saved.ari ?? null };
    if (stored.state !== 'valid') {
      return { ...base, state: stored.state, serial: null, issuer: null, notAfter: null, lastError: stored.state === 'corrupt' ? stored.reason : base.lastError };
    }
    return {
      ...base,
      state: stored.selfIssued ? 'stand-in' : 'issued',
      serial: stored.serial,
      issuer: stored.issuer,
      notAfter: new Date(stored.notAfter).toISOString(),
      nextRenewal: base.nextRenewal ?? new Date(renewalTime(stored.notBefore, stored.notAfter)).toISOString(),
    };
  });
}

/** Pure: what an admin should know about each entry at `now`. */
export function acmeFindings(entries: readonly AcmeReportEntry[], now: number): Finding[] {
  return entries.map((e): Finding => {
    const why = e.lastError ? ` (last error ${e.lastErrorAt ?? ''}: ${e.lastError})` : '';
    if (e.state === 'missing' || e.state === 'corrupt' || e.state === 'stand-in') {
      return { level: 'error', area: 'acme', what: `${e.name}: no certificate from the CA yet (${e.state})${why}`, advice: 'check that the CA reaches --redirect-http on port 80 for this name, and the log lines "acme: certificate order failed"' };
    }
    const notAfter = Date.parse(e.notAfter!);
    if (notAfter <= now) return { level: 'error', area: 'acme', what: `${e.name}: expired ${e.notAfter}${why}`, advice: 'clients refuse it; fix the cause of the failed renewals (see the last error) and restart or wait for the next attempt' };
    if (e.failures > 0) return { level: 'warn', area: 'acme', what: `${e.name}: renewal failing, ${e.failures} attempt(s); valid until ${e.notAfter}${why}`, advice: `the next attempt is at ${e.nextRenewal ?? '?'}; the current certificate serves meanwhile` };
    return { level: 'ok', area: 'acme', what: `${e.name}: valid until ${e.notAfter}, renewal at ${e.nextRenewal ?? '?'}`, advice: 'nothing to do' };
  });
}

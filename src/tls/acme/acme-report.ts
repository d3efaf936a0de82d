/**
 * `aludel doctor --acme-storage DIR`: the managed certificates as another
 * process sees them on disk (the pair, and the status.json the scheduler
 * keeps beside it), with findings: expired, renewal overdue, still a stand-in.
 */
import fs from 'node:fs';
import path from 'node:path';
import { InvalidOptionError } from '../../errors.js';
import type { Finding } from '../../offload/doctor.js';
import type { ManagedCertificateStatus } from './acme-manager.js';
import { renewalTime } from './renew-policy.js';
import { readStored } from './storage.js';
import { managedPaths } from '../../config/acme-paths.js';

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

function storageProblem(dir: string, err: unknown): InvalidOptionError {
  const code = (err as NodeJS.ErrnoException).code;
  const why =
    code === 'ENOENT' ? 'no such directory (give the --acme-storage of serve/proxy; its default is $STATE_DIRECTORY/acme, else ~/.local/share/aludel/acme of the user it runs as)'
    : code === 'ENOTDIR' ? 'not a directory'
    : code === 'EACCES' ? 'permission denied (it is 0700: run doctor as the user aludel runs as)'
    : (err as Error).message;
  return new InvalidOptionError(`--acme-storage ${dir}: ${why}`);
}

/**
 * The managed names: the directories under DIR/certificates. DIR/certificates
 * is made by the first order (storage.ts ensureStorage), so a DIR without it
 * holds no certificate yet: an empty list, not an error.
 */
function managedNames(dir: string): string[] {
  try {
    if (!fs.statSync(dir).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
  } catch (err) {
    throw storageProblem(dir, err);
  }
  try {
    return fs.readdirSync(path.join(dir, 'certificates'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw storageProblem(dir, err);
  }
}

/** One entry per directory under DIR/certificates; throws an InvalidOptionError when DIR cannot be read. */
export function readAcmeReport(dir: string): AcmeReportEntry[] {
  const names = managedNames(dir);
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
  if (entries.length === 0) {
    return [{ level: 'warn', area: 'acme', what: 'no managed certificate in this --acme-storage directory yet', advice: 'start serve/proxy with --acme-domain NAME and this --acme-storage; the first order writes certificates/NAME here' }];
  }
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

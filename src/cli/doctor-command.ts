/** `aludel doctor [--json] [--acme-storage DIR]`: where TLS crypto can run on this host, and what to do. */
import type { Command } from 'commander';
import { formatDoctorTable, runDoctor, type DoctorReport } from '../offload/doctor.js';
import { acmeFindings, readAcmeReport, type AcmeReportEntry } from '../tls/acme/acme-report.js';
import { textTable as table } from '../text/text-table.js';

/**
 * The host's report (offload/doctor.ts), and with --acme-storage the managed
 * certificates beside it (tls/acme/acme-report.ts): the doctor of the host
 * knows nothing of ACME, which is added here, above both.
 */
type FullReport = DoctorReport & { acme?: AcmeReportEntry[] };

/** --acme-storage: the managed certificates, and a finding for each. */
function withAcme(report: DoctorReport, dir: string): FullReport {
  const acme = readAcmeReport(dir);
  return { ...report, acme, findings: [...report.findings, ...acmeFindings(acme, Date.now())] };
}

function acmeTable(r: FullReport): string {
  if (!r.acme) return '';
  const rows = r.acme.map((e) => [e.name, e.state, e.notAfter ?? '-', e.nextRenewal ?? '-', e.lastError ?? '-']);
  return `\nACME certificates\n${table([['name', 'state', 'expires', 'next renewal', 'last error'], ...rows])}\n`;
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('show where TLS crypto can run on this host (kernel TLS, OpenSSL, crypto drivers), each finding with what to do; exit status 1 when a finding is an error')
    .option('--json', 'print the report as JSON (schema/doctor-report.schema.json)')
    .option('--acme-storage <dir>', "also show the certificates managed in this --acme-storage directory: expiry, next renewal, last error")
    .action((flags: { json?: boolean; acmeStorage?: string }) => {
      try {
        const base = runDoctor();
        const report: FullReport = flags.acmeStorage === undefined ? base : withAcme(base, flags.acmeStorage);
        process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatDoctorTable(report) + acmeTable(report));
        if (report.findings.some((f) => f.level === 'error')) process.exitCode = 1;
      } catch (err) {
        process.stderr.write(`aludel doctor: ${(err as Error).message}\n`);
        process.exitCode = 2;
      }
    });
}

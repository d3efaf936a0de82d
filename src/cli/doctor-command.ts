/** `aludel doctor [--json]`: where TLS crypto can run on this host, and what to do. */
import type { Command } from 'commander';
import { formatDoctorTable, runDoctor } from '../offload/doctor.js';

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('show where TLS crypto can run on this host (kernel TLS, OpenSSL, crypto drivers), each finding with what to do; exit status 1 when a finding is an error')
    .option('--json', 'print the report as JSON (schema/doctor-report.schema.json)')
    .action((flags: { json?: boolean }) => {
      try {
        const report = runDoctor();
        process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : formatDoctorTable(report));
        if (report.findings.some((f) => f.level === 'error')) process.exitCode = 1;
      } catch (err) {
        process.stderr.write(`aludel doctor: ${(err as Error).message}\n`);
        process.exitCode = 2;
      }
    });
}

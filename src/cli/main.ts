#!/usr/bin/env node
/** The `aludel` command line (commander: subcommands, help and errors as admins expect). */
// First: no signal's default action before the handlers are in place (early-signals.ts).
import './early-signals.js';
import './threadpool.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { createSelfSignedCert } from '../tls/self-signed.js';
import { writeCertFiles } from '../tls/write-cert-files.js';
import { runDemo } from './demo-command.js';
import { registerDoctor } from './doctor-command.js';
import { registerProxyCommands } from './proxy-command.js';
import { registerRunCommands } from './run-command.js';
import { LISTENER_RESTART, reportFatal, runServe } from './serve-command.js';
import { addProxyOptions, resolveServeSettings, type ProxyFlags } from './proxy-options.js';
import { handleServingSignals } from './signals.js';
import { runPrimary, startsWorkers } from './primary.js';
import { workerRole } from './worker-protocol.js';
import { reportWorkerReady } from './worker-link.js';
import { useHeldFiles } from '../config/held-files.js';
import { asStarted, HeldConfig, restartOnlyJson, startConfigText } from './held-config.js';

const program = new Command();
program.name('aludel').description('Modern, cheap TLS (Linux kernel TLS) in front of applications that cannot be changed');
program.version((JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version);

addProxyOptions(program.command('serve').description('serve static files over HTTPS/1.1, with kernel TLS and sendfile where the kernel allows'), 'serve')
  .action(async (flags: ProxyFlags) => {
    try {
      const role = workerRole(process.env);
      // A worker reads its certificate and ticket key files from the primary's copy while it starts (held-files.ts).
      useHeldFiles(role !== null);
      // Read once: the primary keeps the very text it validated (held-config.ts).
      const text = await startConfigText(flags.config, role);
      const s = asStarted(await resolveServeSettings(flags, text), LISTENER_RESTART, role);
      if (startsWorkers(s, role)) {
        const check = (t: string): Promise<unknown> => resolveServeSettings(flags, t);
        const primary = await runPrimary(s, text === undefined ? null : new HeldConfig(flags.config!, text, check, restartOnlyJson(s, LISTENER_RESTART)), () => resolveServeSettings(flags));
        handleServingSignals(primary.log, primary);
        return;
      }
      const { serving, log, addresses, listeners } = await runServe(s, (t) => resolveServeSettings(flags, t), role);
      handleServingSignals(log, serving, role !== null);
      if (role !== null) reportWorkerReady(addresses, listeners);
    } catch (err) {
      reportFatal(err);
    }
  });

program
  .command('cert')
  .description('make a self-signed development certificate (ECDSA P-256)')
  .option('--out <dir>', 'directory for cert.pem and key.pem', '.')
  .option('--name <names...>', 'DNS names and IP addresses', ['localhost', '127.0.0.1', '::1'])
  .option('--days <n>', 'validity in days', '30')
  .option('--force', 'overwrite existing files')
  .action(async (flags: { out: string; name: string[]; days: string; force?: boolean }) => {
    try {
      const pair = await createSelfSignedCert({ commonName: flags.name[0], altNames: flags.name, days: Number(flags.days) });
      const out = await writeCertFiles(path.resolve(flags.out), pair, { force: flags.force });
      process.stdout.write(`${out.certPath}\n${out.keyPath}\nSHA-256 fingerprint ${pair.fingerprint256}, valid until ${pair.notAfter.toISOString()}\n`);
    } catch (err) {
      process.stderr.write(`aludel cert: ${(err as Error).message}\n`);
      process.exit(2);
    }
  });

program
  .command('demo')
  .description('run a demo on embedded defaults: self-signed cert, sample content, prints what to curl')
  .option('--listen <addr:port>', 'listen address', '127.0.0.1:8443')
  .action(async (flags: { listen: string }) => {
    try {
      await runDemo(flags.listen);
    } catch (err) {
      reportFatal(err);
    }
  });

registerProxyCommands(program);
registerDoctor(program);
registerRunCommands(program);

await program.parseAsync(process.argv);

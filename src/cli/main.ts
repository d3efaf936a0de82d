#!/usr/bin/env node
/** The `aludel` command line (commander: subcommands, help and errors as admins expect). */
import './threadpool.js';
import path from 'node:path';
import { Command } from 'commander';
import { createSelfSignedCert } from '../tls/self-signed.js';
import { writeCertFiles } from '../tls/write-cert-files.js';
import { runDemo } from './demo-command.js';
import { registerDoctor } from './doctor-command.js';
import { registerProxyCommands } from './proxy-command.js';
import { registerRunCommands } from './run-command.js';
import { reportFatal, runServe, type ServeFlags } from './serve-command.js';
import { handleServingSignals } from './signals.js';

const program = new Command();
program.name('aludel').description('Modern, cheap TLS (Linux kernel TLS) in front of applications that cannot be changed');

program
  .command('serve')
  .description('serve static files over HTTPS/1.1, with kernel TLS and sendfile where the kernel allows')
  .requiredOption('--cert <file>', 'certificate chain (PEM)')
  .requiredOption('--key <file>', 'private key (PEM)')
  .requiredOption('--root <dir>', 'document root')
  .option('--listen <addr:port>', 'listen address', '127.0.0.1:8443')
  .option('--offload <mode>', 'auto (kernel where possible), kernel (refuse to start without kTLS), userspace', 'auto')
  .option('--offload-policy <policy>', 'default, or prefer-hw: TLS 1.2 AES-128-GCM only where the NIC offloads TLS (tls-hw-tx-offload on), so it can take the crypto', 'default')
  .option('--tls-min <version>', 'lowest TLS version: 1.2 or 1.3', '1.2')
  .option('--tls-max <version>', 'highest TLS version: 1.2 or 1.3', '1.3')
  .option('--ciphers <list>', 'TLS 1.2 cipher list (default: kernel-offloadable AEAD suites)')
  .option('--ciphersuites <list>', 'TLS 1.3 suites (default: AES-128-GCM, AES-256-GCM, ChaCha20-Poly1305)')
  .option('--handshake-timeout <time>', 'drop clients that have not finished the handshake', '10s')
  .option('--idle-timeout <time>', 'close connections idle this long (keep-alive and stalled sends)', '60s')
  .option('--headers-timeout <time>', 'time allowed to receive request headers', '20s')
  .option('--max-header-size <size>', 'largest request header block', '16k')
  .option('--log-level <level>', 'fatal, error, warn, info, debug', 'info')
  .option('--reuse-port', 'SO_REUSEPORT: several aludel processes may share the port (kernel load-balances)')
  .option('--admin <addr:port>', 'admin HTTP listener for Prometheus GET /metrics and GET /status (JSON); a bare port binds 127.0.0.1 (default: off)')
  .action(async (flags: ServeFlags) => {
    try {
      const { server, admin, log } = await runServe(flags);
      const stop = (signal: string): void => {
        log.info({ signal }, 'shutting down');
        void Promise.all([server.close(), admin?.close()]).then(() => process.exit(0));
      };
      handleServingSignals(log, stop);
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

import fs from 'node:fs';
import { createLogger, type Logger } from '../log/logger.js';
import { parseDuration, parseSize } from '../config/duration.js';
import { parseListen } from '../config/listen-address.js';
import { parseFlag } from '../config/setting-issues.js';
import { adminAddress, offloadPolicy } from '../config/setting-values.js';
import { AludelError, InvalidOptionError } from '../errors.js';
import { startServe } from '../http/serve.js';
import { startAdmin, type AdminServer } from '../metrics/admin-server.js';
import { TrafficStats } from '../metrics/traffic-stats.js';
import { createKtlsServer } from '../tls/create-server.js';
import { describeHwPolicy, resolveHwPolicy, type HwPolicyDecision } from '../tls/hw-offload-policy.js';
import type { OffloadDecision, OffloadMode, SecureServer } from '../tls/types.js';

export interface ServeFlags {
  listen: string;
  cert: string;
  key: string;
  root: string;
  offload: string;
  offloadPolicy: string;
  handshakeTimeout: string;
  idleTimeout: string;
  headersTimeout: string;
  maxHeaderSize: string;
  tlsMin: string;
  tlsMax: string;
  ciphers?: string;
  ciphersuites?: string;
  logLevel: string;
  reusePort?: boolean;
  admin?: string;
}

function offloadMode(v: string): OffloadMode {
  if (v === 'auto' || v === 'kernel' || v === 'userspace') return v;
  throw new InvalidOptionError(`--offload ${JSON.stringify(v)}: expected auto, kernel or userspace`);
}

function tlsVersion(flag: string, v: string): 'TLSv1.2' | 'TLSv1.3' {
  if (v === '1.2' || v === 'TLSv1.2') return 'TLSv1.2';
  if (v === '1.3' || v === 'TLSv1.3') return 'TLSv1.3';
  throw new InvalidOptionError(`${flag} ${JSON.stringify(v)}: expected 1.2 or 1.3 (older versions are what Aludel exists to retire)`);
}

/** One line that says where the crypto of this listener runs, and why. */
export function describeOffload(d: OffloadDecision): string {
  const lib = d.openssl ? `${d.openssl.version}` : 'node:tls (bundled OpenSSL)';
  if (d.ktls) return `crypto: kernel TLS (kTLS) wherever the negotiated suite allows; TLS library ${lib}`;
  if (d.requested === 'userspace') return `crypto: userspace (--offload userspace); TLS library ${lib}`;
  return `crypto: userspace; kTLS unavailable: ${d.reason ?? 'unknown reason'}; TLS library ${lib}`;
}

export function logOffload(log: Logger, d: OffloadDecision, address: string): void {
  const fields = { listen: address, offload: d.requested, ktls: d.ktls, engine: d.engine, openssl: d.openssl?.version ?? null, libssl: d.openssl?.libssl ?? null };
  // One warning, once, when auto had to fall back (the connections then say "user" in every line).
  if (d.requested === 'auto' && !d.ktls) log.warn({ ...fields, reason: d.reason }, describeOffload(d));
  else log.info(fields, describeOffload(d));
}

/** Under prefer-hw, one line saying whether the listener was narrowed to what the NIC takes, and why. */
export function logHwPolicy(log: Logger, d: HwPolicyDecision, address: string): void {
  if (d.policy === 'default') return;
  const interfaces = d.interfaces.map((i) => ({ name: i.name, tlsTx: i.tlsTx }));
  log.info({ listen: address, offloadPolicy: d.policy, preferHw: d.preferHw, interfaces, tlsMin: d.tls.minVersion, tlsMax: d.tls.maxVersion, reasons: d.reasons }, describeHwPolicy(d));
}

/** Checks the files the flags name before anything starts, so the error names the flag. */
async function checkPaths(flags: ServeFlags): Promise<void> {
  const checks: Array<[string, string, 'file' | 'dir']> = [['--cert', flags.cert, 'file'], ['--key', flags.key, 'file'], ['--root', flags.root, 'dir']];
  for (const [flag, p, kind] of checks) {
    let st: fs.Stats;
    try {
      st = await fs.promises.stat(p);
      await fs.promises.access(p, fs.constants.R_OK);
    } catch (err) {
      throw new InvalidOptionError(`${flag} ${p}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`);
    }
    if (kind === 'dir' && !st.isDirectory()) throw new InvalidOptionError(`${flag} ${p}: not a directory`);
    if (kind === 'file' && !st.isFile()) throw new InvalidOptionError(`${flag} ${p}: not a regular file`);
  }
}

export interface RunningServe {
  server: SecureServer;
  address: string;
  port: number;
  log: Logger;
  stats: TrafficStats;
  admin: AdminServer | null;
}

export async function runServe(flags: ServeFlags): Promise<RunningServe> {
  const log = createLogger({ level: flags.logLevel });
  await checkPaths(flags);
  const { host, port } = parseListen(flags.listen);
  const adminAt = flags.admin === undefined ? null : parseFlag(adminAddress, '--admin', flags.admin);
  const offload = offloadMode(flags.offload);
  const tls = { minVersion: tlsVersion('--tls-min', flags.tlsMin), maxVersion: tlsVersion('--tls-max', flags.tlsMax), cipherList: flags.ciphers };
  const hw = resolveHwPolicy(parseFlag(offloadPolicy, '--offload-policy', flags.offloadPolicy), host, offload, tls);
  const server = createKtlsServer({
    certFile: flags.cert,
    keyFile: flags.key,
    offload,
    ...hw.tls,
    cipherSuites: flags.ciphersuites,
    handshakeTimeoutMs: parseDuration('--handshake-timeout', flags.handshakeTimeout),
    log,
  });
  const stats = new TrafficStats();
  await startServe({
    server,
    stats,
    root: flags.root,
    log,
    idleTimeoutMs: parseDuration('--idle-timeout', flags.idleTimeout),
    headersTimeoutMs: parseDuration('--headers-timeout', flags.headersTimeout),
    maxHeaderSize: parseSize('--max-header-size', flags.maxHeaderSize),
  });
  const bound = await server.listen({ host, port, reusePort: flags.reusePort ?? false });
  const listen = `${bound.address}:${bound.port}`;
  logOffload(log, server.offload, listen);
  logHwPolicy(log, hw, listen);
  const admin = adminAt === null ? null : await startAdmin({ ...adminAt, command: 'serve', server, listen, stats, group: null, log });
  log.info({ listen, root: flags.root }, 'serving files over HTTPS');
  return { server, address: bound.address, port: bound.port, log, stats, admin };
}

/** For the CLI: a failure the user can act on prints its message alone; anything else, its stack. */
export function reportFatal(err: unknown): never {
  const code = (err as { code?: string })?.code;
  if (err instanceof AludelError || code === 'ERR_TLS_CONTEXT' || code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL') {
    const e = err as Error & { opensslErrors?: string[] };
    process.stderr.write(`aludel: ${e.message}\n`);
    for (const line of e.opensslErrors ?? []) process.stderr.write(`  openssl: ${line}\n`);
  } else {
    process.stderr.write(`aludel: ${(err as Error)?.stack ?? String(err)}\n`);
  }
  process.exit(2);
}

/**
 * What `aludel scan` recommends for one process, from what it can see:
 * - run: the program maps a shared OpenSSL that `aludel run` has a strategy
 *   for (strategy.ts: `option` for 3.x, `keys` for 1.1.1 and 1.0.2) and
 *   terminates TLS on at least one of its listening ports.
 * - proxy: the program's TLS cannot be reached in-process (statically linked,
 *   another library, or an OpenSSL without a strategy): `aludel proxy`/`aludel tcp`
 *   terminate TLS in front of it.
 * - cache: as proxy, for an HTTPS port: cached responses then leave by
 *   sendfile on a kTLS socket and the program serves only misses.
 * - none: kTLS is already on, the process is Aludel itself, there is nothing
 *   to front (no listening port, or libcrypto without libssl, e.g. SSH), or
 *   its OpenSSL serves no TLS on any of its ports (a plain-HTTP nginx).
 *
 * Whether a port speaks TLS comes from a probe (tls-probe.ts) where one is
 * possible, else from the port number (tlsByPort).
 */
import type { RunChoice } from './strategy.js';

export type Action = 'run' | 'proxy' | 'cache' | 'none';

export type KtlsUse = 'yes' | 'no' | 'idle' | 'unknown';

/** Whether a listening port speaks TLS: yes, no (plain), or unknown (not probed, and the port number says nothing). */
export type PortTls = 'yes' | 'no' | 'unknown';

export interface PortInfo {
  port: number;
  tls: PortTls;
  /** How that was found: 'probe: TLS handshake record', 'port 443 (https); not probed: ...'. */
  note: string;
}

export interface RecommendInput {
  /** What aludel run would do with the mapped libssl (strategy.ts chooseStrategy); null when no libssl is mapped. */
  run: RunChoice | null;
  libcryptoMapped: boolean;
  /** Another shared TLS library, e.g. 'GnuTLS (libgnutls.so.30)' (proc-maps.ts). */
  otherTls: string | null;
  listening: PortInfo[];
  ktls: KtlsUse;
  /** aludel-preload.so is mapped. */
  underRun: boolean;
  /** The process is Aludel (its addon is mapped). */
  aludel: boolean;
}

export interface Recommendation {
  action: Action;
  reason: string;
}

/** Ports where TLS starts with the connection (IANA service names; 8443 by common use). */
const TLS_PORTS = new Map([
  [443, 'https'], [8443, 'https-alt'], [465, 'submissions'], [563, 'nntps'], [636, 'ldaps'], [853, 'domain-s'],
  [989, 'ftps-data'], [990, 'ftps'], [992, 'telnets'], [993, 'imaps'], [995, 'pop3s'], [5061, 'sips'], [5671, 'amqps'], [6697, 'ircs-u'], [8883, 'secure-mqtt'],
]);

/**
 * Ports whose protocol switches to TLS in band (STARTTLS: RFC 3207 SMTP,
 * RFC 2595 IMAP/POP3, RFC 4217 FTP, RFC 4511 LDAP, RFC 6120 XMPP, RFC 4642
 * NNTP, RFC 5804 Sieve). The server speaks first in plain text, so a
 * ClientHello would only meet its banner (and an error line in its log):
 * these ports are never probed and count as TLS.
 */
const STARTTLS_PORTS = new Map([
  [21, 'ftp'], [25, 'smtp'], [110, 'pop3'], [119, 'nntp'], [143, 'imap'], [389, 'ldap'], [587, 'submission'], [4190, 'sieve'], [5222, 'xmpp-client'], [5269, 'xmpp-server'],
]);

/** Plain HTTP by convention (IANA http, http-alt). */
const PLAIN_PORTS = new Map([[80, 'http'], [8080, 'http-alt']]);

/** Ports where HTTPS is the convention: fronting them, `cache` rather than `proxy`. */
const HTTPS_PORTS = new Set([443, 8443]);

/** Where a listener on `address` can be reached over loopback (the only place scan probes); null when it cannot. */
export function loopbackTarget(address: string): '127.0.0.1' | '::1' | null {
  if (address === '0.0.0.0' || address === '127.0.0.1' || address === '::ffff:0.0.0.0' || address === '::ffff:127.0.0.1') return '127.0.0.1';
  if (address === '::' || address === '::1') return '::1';
  return null;
}

/** Whether to probe a listener: the loopback address to connect to, or why not. */
export function probePlan(address: string, port: number): { host: '127.0.0.1' | '::1' } | { skip: string } {
  const starttls = STARTTLS_PORTS.get(port);
  if (starttls) return { skip: `the ${starttls} server speaks first (STARTTLS)` };
  const host = loopbackTarget(address);
  return host ? { host } : { skip: `bound to ${address}, not reachable on 127.0.0.1 or ::1` };
}

/** A listening socket of a process whose ports are to be probed. */
export interface ProbeCandidate {
  pid: number;
  /** The socket's inode: nginx's master and workers hold the same one. */
  inode: number;
  address: string;
  port: number;
}

export interface ProbePlan {
  /** One connection each. */
  targets: Array<{ host: '127.0.0.1' | '::1'; port: number }>;
  /** `${pid} ${port}` -> index into targets; absent: not probed (see probePlan). */
  targetOf: Map<string, number>;
}

/**
 * At most one probe per port and program: listeners that share a socket
 * (master and workers) or a process (0.0.0.0:443 and [::]:443 of one nginx)
 * share one connection. Only another program on the same port (another
 * address) gets its own.
 */
export function planProbes(candidates: ProbeCandidate[]): ProbePlan {
  const groups: Array<{ target: number; port: number; inodes: Set<number>; pids: Set<number> }> = [];
  const plan: ProbePlan = { targets: [], targetOf: new Map() };
  for (const c of candidates) {
    const where = probePlan(c.address, c.port);
    if (!('host' in where)) continue;
    let group = groups.find((g) => g.port === c.port && (g.inodes.has(c.inode) || g.pids.has(c.pid)));
    if (!group) {
      group = { target: plan.targets.push({ host: where.host, port: c.port }) - 1, port: c.port, inodes: new Set(), pids: new Set() };
      groups.push(group);
    }
    group.inodes.add(c.inode);
    group.pids.add(c.pid);
    plan.targetOf.set(`${c.pid} ${c.port}`, group.target);
  }
  return plan;
}

/** What the port number alone says, for a listener that was not probed (`why`). */
export function tlsByPort(port: number, why: string): PortInfo {
  const tls = TLS_PORTS.get(port);
  if (tls) return { port, tls: 'yes', note: `port ${port} (${tls}); not probed: ${why}` };
  const starttls = STARTTLS_PORTS.get(port);
  if (starttls) return { port, tls: 'yes', note: `port ${port} (${starttls}): TLS after STARTTLS; not probed: ${why}` };
  const plain = PLAIN_PORTS.get(port);
  if (plain) return { port, tls: 'no', note: `port ${port} (${plain}); not probed: ${why}` };
  return { port, tls: 'unknown', note: `not probed: ${why}` };
}

/** Whether the listeners' TLS matters to the recommendation, i.e. whether scan should probe them; null: it should, else why not. */
export function probeNeeded(p: Pick<RecommendInput, 'run' | 'ktls' | 'aludel'>): string | null {
  if (p.aludel) return 'Aludel itself';
  if (p.ktls === 'yes') return 'its connections already use kernel TLS';
  if (p.run === null) return 'no shared OpenSSL: aludel run does not apply';
  if (p.run.strategy === null) return `aludel run has no strategy for ${p.run.label}`;
  return null;
}

export function recommend(p: RecommendInput): Recommendation {
  if (p.ktls === 'yes') return { action: 'none', reason: 'its TLS connections already use kernel TLS' };
  if (p.aludel) return { action: 'none', reason: 'Aludel itself: it sets up kernel TLS on its own where the kernel allows (see aludel doctor)' };
  if (p.listening.length === 0) return { action: 'none', reason: 'no listening TCP port (a client, a worker without sockets, or idle): nothing to front' };
  const ports = p.listening.map((l) => l.port);
  if (p.run !== null) return recommendRun(p, p.run);
  if (p.libcryptoMapped) return { action: 'none', reason: 'libcrypto without libssl: no OpenSSL TLS to offload here (e.g. SSH)' };
  if (p.otherTls !== null) return { action: frontAction(ports), reason: `${p.otherTls}: aludel run works with OpenSSL only; terminate TLS in front of it` };
  return {
    action: frontAction(ports),
    reason: 'TLS library not visible (statically linked, another TLS library, or plain TCP): terminate TLS in front of it',
  };
}

/** A process that maps libssl. */
function recommendRun(p: RecommendInput, run: RunChoice): Recommendation {
  if (run.strategy === null) return { action: frontAction(p.listening.map((l) => l.port)), reason: `${run.label}: no aludel run strategy (${run.why}); terminate TLS in front of it` };
  const tls = p.listening.filter((l) => l.tls === 'yes');
  const unknown = p.listening.filter((l) => l.tls === 'unknown');
  if (tls.length === 0 && unknown.length === 0) {
    return { action: 'none', reason: `no TLS on its ports (${unique(p.listening.map((l) => `${l.port}: ${l.note}`))}): nothing for kernel TLS to take over` };
  }
  const strategy = `${run.strategy}: ${run.why}`;
  if (p.underRun) {
    return { action: 'run', reason: `already under aludel run (${strategy}); ${p.ktls === 'no' ? 'its connections still lack kTLS: see aludel doctor (kernel tls module, cipher suites)' : 'kTLS shows once it has TLS connections'}` };
  }
  if (tls.length > 0) return { action: 'run', reason: `TLS on ${portList(tls)}: restart it under aludel run (${strategy})` };
  return { action: 'run', reason: `if it serves TLS (${unique(unknown.map((l) => `${l.port}: ${l.note}`))}): restart it under aludel run (${strategy})` };
}

/** A listener on 0.0.0.0 and one on :: often share a port and a verdict: say it once. */
function unique(items: string[]): string {
  return [...new Set(items)].join('; ');
}

function portList(ports: PortInfo[]): string {
  const numbers = [...new Set(ports.map((l) => l.port))];
  return `${numbers.length === 1 ? 'port' : 'ports'} ${numbers.join(', ')}`;
}

function frontAction(ports: number[]): Action {
  return ports.some((port) => HTTPS_PORTS.has(port)) ? 'cache' : 'proxy';
}

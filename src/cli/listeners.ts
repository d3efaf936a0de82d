/**
 * The TLS listeners of a command: one per --listen address, all with the
 * same certificates and TLS settings (narrowed per address by
 * --offload-policy prefer-hw, which looks at the NIC behind that address),
 * each with its own accept loop and --max-connections.
 */
import { InvalidOptionError } from '../errors.js';
import { silentLogger, type Logger } from '../log/logger.js';
import type { ListenerSettings } from '../config/proxy-settings.js';
import { certificateWarnings } from '../tls/certificates.js';
import { PLAIN_HTTP_ANSWER } from '../http/h1-wire.js';
import { createKtlsServer } from '../tls/create-server.js';
import { describeHwPolicy, resolveHwPolicy, type HwPolicyDecision } from '../tls/hw-offload-policy.js';
import { readTicketKeyFiles } from '../tls/ticket-keys.js';
import type { AcmeChallengeCertificate, OffloadDecision, SecureServer, TlsOptions } from '../tls/types.js';


interface Listener {
  server: SecureServer;
  host: string;
  port: number;
  hw: HwPolicyDecision;
}

/** Settings as the listeners see them: an HTTP command's also carry --http2. */
type WithHttp2 = ListenerSettings & { http2?: boolean };

/** The application protocols offered, in preference order: fixed, or from the settings (serve's --http2, which a reload may change). */
export type AlpnChoice = readonly string[] | ((s: WithHttp2) => readonly string[]);

export class Listeners {
  private readonly list: Listener[];
  private readonly alpn: AlpnChoice | undefined;

  /** Where warnings about the certificate and key files go: the log, or nowhere in all workers but the first. */
  private readonly fileLog: Logger;

  /**
   * `alpn`: the application protocols offered (default http/1.1; none for tcp).
   * `fileWarnings`: false in all workers but the first, so that a warning about
   * a file (expired certificate, key readable by others) is logged once per
   * load, not once per worker: every worker reads the same files.
   */
  constructor(s: ListenerSettings, log: Logger, alpn?: AlpnChoice, fileWarnings = true) {
    this.alpn = alpn;
    this.fileLog = fileWarnings ? log : silentLogger;
    this.list = s.listen.map(({ host, port }) => {
      const { tls, hw } = this.tlsFor(s, host);
      const server = namingCipherSetting(s, () => createKtlsServer({ ...tls, offload: s.offload, handshakeTimeoutMs: s.handshakeTimeoutMs, maxConnections: s.maxConnections, plainHttpAnswer: PLAIN_HTTP_ANSWER, log }));
      return { server, host, port, hw };
    });
    this.warnAboutCertificates();
    this.useTicketKeyFiles(s);
  }

  /**
   * The warnings about the certificates in force, each once (every address
   * loads the same files, so one per address would repeat it): at start-up
   * and after every reconfigure, as nginx says what it found at each reload.
   */
  private warnAboutCertificates(): void {
    const said = new Set<string>();
    for (const l of this.list) {
      for (const w of certificateWarnings(l.server.certificatePlan)) {
        const key = `${w.msg}\0${JSON.stringify(w.fields)}`;
        if (said.has(key)) continue;
        said.add(key);
        this.fileLog.warn(w.fields, w.msg);
      }
    }
  }

  /** Session ticket keys for every address: from --ticket-keys, or the primary's (a worker's). */
  setTicketKeys(keys: readonly Buffer[]): void {
    for (const l of this.list) l.server.setTicketKeys(keys);
  }

  /** --ticket-keys: read at start-up and again on every reload, so a rotated file takes effect on HUP (as nginx). */
  private useTicketKeyFiles(s: ListenerSettings): void {
    if (s.ticketKeyFiles.length > 0) this.setTicketKeys(readTicketKeyFiles(s.ticketKeyFiles, this.fileLog));
  }

  get servers(): SecureServer[] {
    return this.list.map((l) => l.server);
  }

  /** The engine and kTLS decision (the same for every address: one OpenSSL per process). */
  get offload(): OffloadDecision {
    return this.list[0]!.server.offload;
  }

  get connectionCount(): number {
    return this.list.reduce((n, l) => n + l.server.connectionCount, 0);
  }

  /**
   * Binds every address; logs where its crypto runs. Returns the bound
   * addresses, in order. A worker passes `fds`: the primary's listening
   * sockets, one per address in --listen order, accepted on as they are
   * (shared with the other workers, or its own under --reuse-port).
   */
  async listen(s: ListenerSettings, log: Logger, fds?: readonly number[]): Promise<string[]> {
    const bound: string[] = [];
    for (const [i, l] of this.list.entries()) {
      const a = await l.server.listen({ host: l.host, port: l.port, reusePort: s.reusePort, fd: fds?.[i], shared: !s.reusePort }).catch((err: Error & { code?: string }) => {
        throw listenError(l.host, l.port, err);
      });
      const address = formatAddress(a.address, a.port);
      logOffload(log, l.server.offload, address);
      logHwPolicy(log, l.hw, address);
      bound.push(address);
    }
    return bound;
  }

  /** Whether every address can answer TLS-ALPN-01 (RFC 8737): the system OpenSSL engine can, node:tls cannot. */
  get answersTlsAlpn01(): boolean {
    return this.list.every((l) => l.server.answersTlsAlpn01);
  }

  /** The TLS-ALPN-01 challenge certificates pending now, on every address. */
  setAcmeChallenges(challenges: readonly AcmeChallengeCertificate[]): void {
    for (const l of this.list) l.server.setAcmeChallenges(challenges);
  }

  /** SIGHUP: new certificates and TLS settings for new handshakes on every address. */
  reconfigure(s: WithHttp2): void {
    const keys = s.ticketKeyFiles.length > 0 ? readTicketKeyFiles(s.ticketKeyFiles, this.fileLog) : null;
    for (const l of this.list) {
      namingCipherSetting(s, () => l.server.reconfigure(this.tlsFor(s, l.host).tls));
    }
    this.warnAboutCertificates();
    if (keys !== null) this.setTicketKeys(keys);
  }

  private tlsFor(s: WithHttp2, host: string): { tls: TlsOptions; hw: HwPolicyDecision } {
    const hw = resolveHwPolicy(s.offloadPolicy, host, s.offload, { minVersion: s.tlsMin, maxVersion: s.tlsMax, cipherList: s.ciphers ?? undefined });
    const alpn = typeof this.alpn === 'function' ? this.alpn(s) : this.alpn;
    return { hw, tls: { certificates: s.certificates, ...hw.tls, cipherSuites: s.ciphersuites ?? undefined, ...(alpn ? { alpn } : {}) } };
  }
}

/**
 * Runs `build` (a TLS context made from `s`); where OpenSSL matched nothing in
 * --ciphers or --ciphersuites (SSL_CTX_set_cipher_list/_ciphersuites fail
 * only then), the error names the setting and its value, as nginx's
 * "SSL_CTX_set_cipher_list(\"...\") failed" quotes the list. TLS 1.3 names
 * are not TLS 1.2 ciphers: OpenSSL keeps them apart (SSL_CTX_set_ciphersuites(3)).
 */
function namingCipherSetting<T>(s: ListenerSettings, build: () => T): T {
  try {
    return build();
  } catch (err) {
    const e = err as Error & { code?: string; syscall?: string };
    const why = e.message.split('\n')[0]!.replace(/^SSL_CTX_\w+ failed: /, '');
    if (e.code === 'ERR_TLS_CONTEXT' && e.syscall === 'SSL_CTX_set_cipher_list' && s.ciphers) {
      const tls13 = s.ciphers.split(':').some((c) => c.startsWith('TLS_')) ? '; TLS 1.3 suites go in --ciphersuites' : '';
      throw new InvalidOptionError(`--ciphers ${JSON.stringify(s.ciphers)}: OpenSSL matches no TLS 1.2 cipher in it (${why})${tls13}`);
    }
    if (e.code === 'ERR_TLS_CONTEXT' && e.syscall === 'SSL_CTX_set_ciphersuites' && s.ciphersuites) {
      throw new InvalidOptionError(`--ciphersuites ${JSON.stringify(s.ciphersuites)}: OpenSSL matches no TLS 1.3 suite in it (${why}); e.g. TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256`);
    }
    throw err;
  }
}

/** host:port, IPv6 in brackets. */
export function formatAddress(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** The addon says "bind: Address already in use": name the address, as nginx does. */
export function listenError(host: string, port: number, err: Error & { code?: string }): Error {
  // bind(2) EACCES: a port below net.ipv4.ip_unprivileged_port_start (1024) without CAP_NET_BIND_SERVICE.
  const hint = err.code === 'EACCES' ? ' (ports below 1024 need root or CAP_NET_BIND_SERVICE)' : '';
  return Object.assign(new Error(`--listen ${formatAddress(host, port)}: ${err.message}${hint}`), { code: err.code });
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

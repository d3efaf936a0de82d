/**
 * TLS to an upstream on the system OpenSSL with kTLS in both directions, so
 * response bodies leave the upstream socket by splice(2) like a plain
 * upstream's: the kernel decrypts them on one socket and encrypts them on the
 * client's, and no byte enters user space (HAProxy 3.3 has this as an
 * experimental option; here it is the default where the kernel has TLS).
 *
 * OpenSSL 3.0 puts TLS 1.2 TX+RX and TLS 1.3 TX in the kernel itself; TLS 1.3
 * RX is programmed by the addon from the server's traffic secret
 * (native/tls-client.c). Once both directions are in the kernel the SSL is
 * freed and the socket is read and written as a plain one; records that are
 * not data go to ControlRecords.
 *
 * Where the kernel has no TLS (or --offload userspace), or OpenSSL kept TX in
 * user space, the connection stays with the system OpenSSL in user space
 * (src/proxy/ssl-upstream.ts: bodies on the copy path, decrypted straight
 * into its buffers). What the system OpenSSL side must not offer stays on
 * node:tls, and the log says why once per upstream: a version or cipher list
 * that allows more than TLS 1.2+ AEAD (legacy origins: CBC records cannot be
 * offloaded), or a handshake that failed in TLS itself.
 */
import type { Logger } from '../log/logger.js';
import type { ClientContextHandle, Native, SslHandle } from '../native/binding.js';
import type { Upstream, UpstreamTls } from '../config/proxy-settings.js';
import { InvalidOptionError, UpstreamCertificateError } from '../errors.js';
import type { PlainSocket } from '../transport/plain-socket.js';
import { TLS1_2, TLS1_3, TLS12_CIPHERS, TLS13_SUITES } from './policy.js';
import { ControlRecords } from './upstream-records.js';

/** Why this upstream cannot use kTLS whatever the handshake gives; null when it may. */
export function staticCopyReason(t: UpstreamTls): string | null {
  if (t.minVersion === 'TLSv1' || t.minVersion === 'TLSv1.1') return `--upstream-tls-min ${t.minVersion} allows versions kernel TLS cannot take (TLS 1.2 and 1.3 only)`;
  if (t.maxVersion === 'TLSv1' || t.maxVersion === 'TLSv1.1') return `--upstream-tls-max ${t.maxVersion}: kernel TLS takes TLS 1.2 and 1.3 only`;
  if (t.ciphers !== null) return '--upstream-ciphers is set (it may allow CBC suites, which kernel TLS cannot take)';
  return null;
}

/** "AB:CD:..." (node's fingerprint256 form) of a SHA-256 digest. */
export function fingerprint256(digest: Buffer): string {
  return [...digest].map((b) => b.toString(16).padStart(2, '0').toUpperCase()).join(':');
}

/**
 * SNI and the name checked, as node:tls gets them (upstreamTlsOptions): the
 * settings already default servername to the host when it is a name and to
 * none for an IP literal (RFC 6066 §3); the check falls back to the host.
 */
function names(u: Upstream): { sni: string; check: string } {
  const t = u.tls!;
  // A pin replaces the chain and name checks (upstreamTlsOptions does the same for node:tls).
  const check = !t.verify || t.fingerprint256 !== null ? '' : (t.servername ?? u.host);
  return { sni: t.servername ?? '', check };
}

export type KtlsUpstreamResult =
  /** Both directions in the kernel; OpenSSL's connection is freed. */
  | { ok: true; kernel: true; version: string; cipher: string; rx: 'openssl' | 'aludel' }
  /** The connection stays with OpenSSL in user space; the caller owns `ssl` (src/proxy/ssl-upstream.ts). */
  | { ok: true; kernel: false; version: string; cipher: string; ssl: SslHandle }
  | { ok: false; why: string };

/** One client context per upstream TLS settings (a reload makes new settings, and so new contexts). */
export class UpstreamTlsContexts {
  private readonly contexts = new WeakMap<UpstreamTls, ClientContextHandle>();
  /** Upstreams (by URL) whose handshakes did not end on kTLS: they stay on node:tls, said once. */
  private readonly copyPath = new Map<string, string>();
  private readonly announced = new Set<string>();

  /**
   * `kernel`: try kTLS on each connection (the kernel has TLS and --offload
   * is not userspace); false: every connection stays with the system OpenSSL
   * in user space, which still spares it node:tls (ssl-upstream.ts).
   */
  constructor(private readonly native: Native, private readonly log: Logger, private readonly kernel = true) {}

  /** Why `u` goes through node:tls; null: try kTLS. */
  copyReason(u: Upstream): string | null {
    const t = u.tls!;
    return staticCopyReason(t) ?? this.copyPath.get(u.url) ?? null;
  }

  /** Marks `u` for the copy path from now on, logged once. */
  giveUp(u: Upstream, why: string): void {
    if (this.copyPath.has(u.url)) return;
    this.copyPath.set(u.url, why);
    this.log.warn({ upstream: u.url, reason: why }, 'upstream TLS stays in user space (node:tls, bodies copied)');
  }

  /**
   * Builds the contexts of the upstreams that will try the system OpenSSL now,
   * as the settings are built, not at the first connection: like nginx's
   * proxy_ssl context, a CA file this OpenSSL cannot load fails the start or
   * the reload (InvalidOptionError) rather than every request with a 502.
   */
  prepare(upstreams: readonly Upstream[]): void {
    for (const u of upstreams) {
      if (u.tls === null || staticCopyReason(u.tls) !== null) continue;
      try {
        this.context(u.tls);
      } catch (err) {
        const e = err as Error & { opensslErrors?: string[] };
        const detail = e.opensslErrors?.length ? e.opensslErrors.join('; ') : e.message;
        throw new InvalidOptionError(`upstream ${u.url}: the system OpenSSL cannot build its TLS context${u.tls.caFile ? ` (upstream-ca ${u.tls.caFile})` : ''}: ${detail}`);
      }
    }
  }

  private context(t: UpstreamTls): ClientContextHandle {
    let ctx = this.contexts.get(t);
    if (ctx === undefined) {
      ctx = this.native.clientCtxNew({
        caPem: t.caPem,
        verify: t.verify && t.fingerprint256 === null ? 1 : 0,
        cipherList: TLS12_CIPHERS,
        cipherSuites: TLS13_SUITES,
        minVersion: t.minVersion === 'TLSv1.3' ? TLS1_3 : TLS1_2,
        maxVersion: t.maxVersion === 'TLSv1.2' ? TLS1_2 : TLS1_3,
        ktls: this.kernel ? 1 : 0,
      });
      this.contexts.set(t, ctx);
    }
    return ctx;
  }

  /**
   * The handshake on `sock` (connected), then both directions into the kernel
   * where it takes them; where it does not (no TLS in this kernel, or OpenSSL
   * kept TX in user space), the connection stays with OpenSSL in user space.
   * Throws UpstreamCertificateError for a certificate that is not trusted or
   * not pinned; any other failure is { ok: false } and `sock` is left to the
   * caller (to close, and connect again through node:tls).
   */
  async handshake(sock: PlainSocket, u: Upstream): Promise<KtlsUpstreamResult> {
    const { sni, check } = names(u);
    const ssl = this.native.clientSslNew(this.context(u.tls!), sock.fd, sni, check);
    let kept = false;
    try {
      try {
        await sock.drive(() => this.native.handshake(ssl));
      } catch (err) {
        const v = this.native.verifyResult(ssl);
        if (v !== null && check !== '') throw new UpstreamCertificateError(`upstream ${u.url}: certificate not accepted: ${v.reason}`);
        // Only a refusal in TLS itself (no shared suite or version) says node:tls may do better; a reset,
        // an EOF or the connect timeout is the upstream's trouble and fails this connection as node:tls would.
        const e = err as Error & { code?: string; opensslErrors?: string[] };
        if (sock.destroyed || e.code !== 'ERR_SSL_PROTOCOL') throw err;
        return { ok: false, why: `handshake failed: ${e.opensslErrors?.join('; ') || e.message}` };
      }
      this.checkPin(ssl, u);
      const info = this.native.info(ssl);
      const state = this.native.ktlsState(ssl);
      if ((state & 1) === 0) {
        kept = true;
        this.announceUser(u, info.version, info.cipher, this.kernel ? `OpenSSL kept TX in user space (${info.version} ${info.cipher})` : 'no kernel TLS here');
        return { ok: true, kernel: false, version: info.version ?? '?', cipher: info.cipher ?? '?', ssl };
      }
      let rx: 'openssl' | 'aludel' = 'openssl';
      if ((state & 2) === 0) {
        try {
          this.native.enableRx(ssl, sock.fd);
          rx = 'aludel';
        } catch (err) {
          return { ok: false, why: `kernel RX for ${info.version} ${info.cipher}: ${(err as Error).message}` };
        }
      }
      sock.setControlRecordReader(new ControlRecords(this.native, sock.fd, info.version === 'TLSv1.3', u.url));
      this.announce(u, info.version, info.cipher, rx);
      return { ok: true, kernel: true, version: info.version ?? '?', cipher: info.cipher ?? '?', rx };
    } finally {
      // On kTLS the kernel has the record state now (or the connection is given up): OpenSSL's is never used again.
      if (!kept) this.native.sslFree(ssl);
    }
  }

  /** The first user-space connection to each upstream on the system OpenSSL is logged, with why. */
  private announceUser(u: Upstream, version: string | null, cipher: string | null, why: string): void {
    if (!this.firstTime(u)) return;
    this.log.info({ upstream: u.url, version, cipher, reason: why }, 'upstream TLS in user space on the system OpenSSL: bodies copied');
  }

  /** The first kTLS connection to each upstream is logged, saying who programmed RX. */
  private announce(u: Upstream, version: string | null, cipher: string | null, rx: 'openssl' | 'aludel'): void {
    if (!this.firstTime(u)) return;
    this.log.info({ upstream: u.url, version, cipher, rx: rx === 'openssl' ? 'kernel (set by OpenSSL)' : 'kernel (set by Aludel from the TLS 1.3 secret)' }, 'upstream TLS on kTLS: bodies spliced');
  }

  /** True only the first time an upstream is met here: each is announced once, whichever way it went. */
  private firstTime(u: Upstream): boolean {
    if (this.announced.has(u.url)) return false;
    this.announced.add(u.url);
    return true;
  }

  private checkPin(ssl: SslHandle, u: Upstream): void {
    const pin = u.tls!.fingerprint256;
    if (pin === null) return;
    const digest = this.native.peerSha256(ssl);
    const seen = digest === null ? 'none' : fingerprint256(digest);
    if (seen !== pin) throw new UpstreamCertificateError(`upstream ${u.url} presented certificate ${seen}, not the pinned ${pin}`);
  }
}

/**
 * TlsOptions -> what an engine needs: the defaults applied, the certificates
 * read and checked (src/tls/certificates.ts), and for the system OpenSSL one
 * SSL_CTX per certificate context plus the SNI table on the listening one.
 * Used at start-up and by reconfigure(), so both fail the same way, before
 * anything changes.
 */
import { withHeldCopies } from '../config/held-files.js';
import type { ContextHandle, ContextOptions, Native } from '../native/binding.js';
import { InvalidOptionError } from '../errors.js';
import { planCertificates, type CertificatePlan } from './certificates.js';
import { TLS12_CIPHERS, TLS13_SUITES, alpnWire, versionNumber } from './policy.js';
import { ALPN_ACME_TLS, type AcmeChallengeCertificate, type TlsOptions } from './types.js';
import type { TlsVersionName } from '../config/tls-settings.js';

export interface ResolvedTls {
  plan: CertificatePlan;
  minVersion: TlsVersionName;
  maxVersion: TlsVersionName;
  cipherList: string;
  cipherSuites: string;
  alpn: readonly string[];
}

/** Applies the defaults and loads the certificates; throws CertificateError / InvalidOptionError. */
export function resolveTls(options: TlsOptions): ResolvedTls {
  const minVersion = options.minVersion ?? 'TLSv1.2';
  const maxVersion = options.maxVersion ?? 'TLSv1.3';
  if (versionNumber(minVersion) > versionNumber(maxVersion)) {
    throw new InvalidOptionError(`TLS minimum version ${minVersion} is above the maximum ${maxVersion}`);
  }
  const alpn = options.alpn ?? ['http/1.1'];
  try {
    alpnWire(alpn);
  } catch (err) {
    throw new InvalidOptionError((err as Error).message);
  }
  return {
    plan: planCertificates(options.certificates),
    minVersion,
    maxVersion,
    cipherList: options.cipherList ?? TLS12_CIPHERS,
    cipherSuites: options.cipherSuites ?? TLS13_SUITES,
    alpn,
  };
}

/** The system-OpenSSL side of one configuration. */
export interface NativeTls {
  /** What sslNew() is given: contexts[0] (the default), carrying the SNI table. */
  listen: ContextHandle;
  contexts: ContextHandle[];
  resolved: ResolvedTls;
}

/**
 * One SSL_CTX per certificate context, every one with the same settings (see
 * sniTableSet in native/tls.c for why), then the table on the first. Throws
 * (ERR_TLS_CONTEXT, naming the OpenSSL call and file) before anything is
 * installed anywhere; contexts built so far are released by the GC.
 */
export function buildNativeTls(native: Native, resolved: ResolvedTls, ktls: boolean): NativeTls {
  const { plan } = resolved;
  // A starting worker's held copies (held-files.ts): OpenSSL reads the pairs by path.
  const contexts = plan.contexts.map((combo) =>
    withHeldCopies(combo.map((i) => plan.certificates[i]!), (pairs) => native.ctxNew(contextOptions(resolved, pairs, ktls, resolved.alpn))),
  );
  const names = [...plan.table.keys()];
  native.sniTableSet(contexts[0]!, contexts, names, names.map((n) => plan.table.get(n)!));
  return { listen: contexts[0]!, contexts, resolved };
}

/**
 * The TLS-ALPN-01 challenge contexts, installed on the listening context of
 * `tls` (native acmeTableSet). Each has the listener's versions and ciphers,
 * its one challenge certificate, and offers only "acme-tls/1": the
 * validation handshake must negotiate exactly that protocol (RFC 8737 §3),
 * and OpenSSL reads the ALPN callback from the switched-to context.
 */
export function installAcmeChallenges(native: Native, tls: NativeTls, challenges: readonly AcmeChallengeCertificate[]): void {
  const contexts = challenges.map((c) => native.ctxNew(contextOptions(tls.resolved, [c], false, [ALPN_ACME_TLS])));
  native.acmeTableSet(tls.listen, contexts, challenges.map((c) => c.name.toLowerCase()), contexts.map((_, i) => i));
}

/** One context's settings: the listener's versions and ciphers, these pairs, this ALPN list. */
function contextOptions(resolved: ResolvedTls, pairs: ReadonlyArray<{ certFile: string; keyFile: string }>, ktls: boolean, alpn: readonly string[]): ContextOptions {
  return {
    certificates: pairs.map((p) => ({ certFile: p.certFile, keyFile: p.keyFile })),
    minVersion: versionNumber(resolved.minVersion),
    maxVersion: versionNumber(resolved.maxVersion),
    cipherList: resolved.cipherList,
    cipherSuites: resolved.cipherSuites,
    ktls,
    // Read-ahead from the ClientHello on, as nginx's connections read (one read(2) per flight
    // where a record's header and body took two: about 4 fewer system calls per full TLS 1.3
    // handshake). Never on a kTLS context: OpenSSL 3.0 then reads one record at a time during
    // the handshake so that nothing past the Finished is consumed before the kernel takes RX
    // over; bytes read ahead would be lost to it.
    readAhead: !ktls,
    alpn: alpnWire(alpn),
  };
}

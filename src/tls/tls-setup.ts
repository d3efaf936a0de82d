/**
 * TlsOptions -> what an engine needs: the defaults applied, the certificates
 * read and checked (src/tls/certificates.ts), and for the system OpenSSL one
 * SSL_CTX per certificate context plus the SNI table on the listening one.
 * Used at start-up and by reconfigure(), so both fail the same way, before
 * anything changes.
 */
import type { ContextHandle, Native } from '../native/binding.js';
import { InvalidOptionError } from '../errors.js';
import { planCertificates, type CertificatePlan } from './certificates.js';
import { TLS12_CIPHERS, TLS13_SUITES, alpnWire, versionNumber, type TlsVersionName } from './policy.js';
import type { TlsOptions } from './types.js';

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
  const contexts = plan.contexts.map((combo) =>
    native.ctxNew({
      certificates: combo.map((i) => ({ certFile: plan.certificates[i]!.certFile, keyFile: plan.certificates[i]!.keyFile })),
      minVersion: versionNumber(resolved.minVersion),
      maxVersion: versionNumber(resolved.maxVersion),
      cipherList: resolved.cipherList,
      cipherSuites: resolved.cipherSuites,
      ktls,
      alpn: alpnWire(resolved.alpn),
    }),
  );
  const names = [...plan.table.keys()];
  native.sniTableSet(contexts[0]!, contexts, names, names.map((n) => plan.table.get(n)!));
  return { listen: contexts[0]!, contexts, resolved };
}

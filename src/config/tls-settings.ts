/**
 * The TLS vocabulary of validated settings: what flags and config files
 * choose (versions, where crypto runs, certificate files, ACME), declared
 * here, where the settings are checked, and used by tls/ below them.
 */

export type TlsVersionName = 'TLSv1.2' | 'TLSv1.3';

export type OffloadMode = 'auto' | 'kernel' | 'userspace';
/** default: TLS settings as given; prefer-hw: TLS 1.2 AES-128-GCM where the NIC offloads TLS (src/tls/hw-offload-policy.ts). */
export type OffloadPolicy = 'default' | 'prefer-hw';

export interface CertificateFiles {
  certFile: string;
  keyFile: string;
  /**
   * How an error names this pair when it is not the admin's own --cert
   * (an --acme-domain's managed pair); default `--cert FILE`.
   */
  label?: string;
}

/** The ACME challenge types Aludel answers (RFC 8555 §8.3, RFC 8737). */
export type AcmeChallengeType = 'http-01' | 'tls-alpn-01';

export interface AcmeAccountSettings {
  directoryUrl: string;
  email: string | null;
  storage: string;
  /** --acme-ca: a PEM bundle trusted for the directory besides the system CAs; null = the system CAs only. */
  caFile: string | null;
}

export interface AcmeSettings extends AcmeAccountSettings {
  domains: string[];
  /** --acme-challenge; null: chosen at start from what the listeners can answer (acme-setup.ts chooseChallenge). */
  challenge: AcmeChallengeType | null;
}

/**
 * What `aludel proxy` (HTTP) and `aludel tcp` run on: every value validated,
 * defaulted and merged (defaults < config file < command line) by
 * resolveProxySettings() in src/cli/proxy-options.ts.
 */
import type { TlsVersionName } from '../tls/policy.js';
import type { OffloadPolicy } from '../tls/types.js';

export type { TlsVersionName };

/** Upstream connections may go below 1.2: the origins behind Aludel are the legacy side. */
export type UpstreamTlsVersion = 'TLSv1' | 'TLSv1.1' | 'TLSv1.2' | 'TLSv1.3';

export interface UpstreamTls {
  /** Default TLSv1.2; may go down to TLSv1 for legacy origins (OpenSSL 3 then also needs `@SECLEVEL=0` in `ciphers`). */
  minVersion: UpstreamTlsVersion;
  /** Default TLSv1.3. */
  maxVersion: UpstreamTlsVersion;
  /** OpenSSL cipher list for TLS <= 1.2 upstream connections (may include CBC / RSA key exchange); null = node's default. */
  ciphers: string | null;
  /** Verify the upstream certificate against this CA bundle (PEM). An absolute path or relative to the working directory. */
  caFile: string | null;
  /** Or pin the leaf certificate: SHA-256 in node's `fingerprint256` form, upper-case `AA:BB:...`. */
  fingerprint256: string | null;
  /** false = verification explicitly off (--upstream-insecure); true with neither caFile nor fingerprint = system CAs. */
  verify: boolean;
  /** SNI and the name checked against the certificate; default the URL host when it is a name, none for IP addresses (RFC 6066 §3 forbids IP literals in SNI). */
  servername: string | null;
}

export interface Upstream {
  /** As given, for logs. */
  url: string;
  protocol: 'http' | 'https' | 'tcp';
  /** IPv6 without brackets. */
  host: string;
  /** Default 80 for http, 443 for https; required for tcp. */
  port: number;
  /** Non-null only for https. */
  tls: UpstreamTls | null;
}

export interface HealthCheck {
  /** Active checks every interval; 0 = active checks off (the default, as nginx open source). */
  intervalMs: number;
  /** Default 2s, or the interval when that is shorter. */
  timeoutMs: number;
  /** HTTP GET path for http(s) upstreams (2xx/3xx = healthy); null = TCP connect only. */
  path: string | null;
  /** Passive: this many failures within failTimeoutMs mark it down (nginx max_fails, default 1; 0 = passive checks off). */
  maxFails: number;
  /** Passive: ... and keep it down this long (nginx fail_timeout, default 10s). */
  failTimeoutMs: number;
}

export interface ProxySettings {
  mode: 'http' | 'tcp';
  listen: { host: string; port: number };
  /** Certificate chain and private key files (PEM), checked readable at start-up. */
  cert: string;
  key: string;
  offload: 'auto' | 'kernel' | 'userspace';
  /** Default 'default'; 'prefer-hw': TLS 1.2 AES-128-GCM on the client side where the NIC offloads TLS (src/tls/hw-offload-policy.ts). */
  offloadPolicy: OffloadPolicy;
  tlsMin: TlsVersionName;
  tlsMax: TlsVersionName;
  /** null = the kernel-offloadable AEAD defaults of src/tls/policy.ts. */
  ciphers: string | null;
  ciphersuites: string | null;
  /** At least one; all http/https for mode http (may mix), all tcp for mode tcp. */
  upstreams: Upstream[];
  /** Default 10s. */
  handshakeTimeoutMs: number;
  /** Client keep-alive / stalled client, default 60s. */
  idleTimeoutMs: number;
  /** Client request headers, default 20s. */
  headersTimeoutMs: number;
  /** Upstream connect (nginx proxy_connect_timeout), default 5s. */
  connectTimeoutMs: number;
  /** Upstream response head (nginx proxy_read_timeout for the first byte), default 60s. */
  upstreamHeadersTimeoutMs: number;
  /** Upstream body read / write stall, default 60s. */
  upstreamIdleTimeoutMs: number;
  /** Request line + headers, default 16 KiB (also the upstream response head limit). */
  maxHeaderSize: number;
  /** Default 100. */
  maxHeaderCount: number;
  /** Client request body limit (nginx client_max_body_size), default null = unlimited. */
  maxBodySize: number | null;
  /** Upstream pool per upstream: default 32 idle connections, closed after 30s idle. */
  keepAlive: { maxIdle: number; idleTimeoutMs: number };
  /** Default false: client-sent X-Forwarded-* / Forwarded are dropped. */
  trustForwarded: boolean;
  healthCheck: HealthCheck;
  /**
   * The RFC 9111 shared cache (--cache DIR): responses stored in `dir` (created
   * if missing), at most `maxBytes` of bodies and metadata (--cache-size,
   * default 10 GiB), least recently used evicted first. null = no cache.
   */
  cache: { dir: string; maxBytes: number } | null;
  /** Default info. */
  logLevel: string;
  reusePort: boolean;
  /** The admin listener (/metrics, /status); null = off, the default. */
  admin: { host: string; port: number } | null;
  /** (no reload yet) */
  reloadable?: never;
}

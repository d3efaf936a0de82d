/**
 * What `aludel serve`, `aludel proxy` (HTTP) and `aludel tcp` run on: every
 * value validated, defaulted and merged (defaults < config file < command
 * line) by resolveServeSettings() / resolveProxySettings() in
 * src/cli/proxy-options.ts, one settings path for the three commands.
 */
import type { AccessFormat } from '../log/access-log.js';
import type { AcmeSettings, OffloadPolicy, TlsVersionName } from './tls-settings.js';

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
  /**
   * caFile's bytes, read once when these settings were loaded and checked
   * (held-files.ts: in a worker, its primary's copy), and what every context
   * and connection of these settings trusts: like nginx's
   * proxy_ssl_trusted_certificate, read at (re)load, never per connection.
   */
  caPem: Buffer | null;
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

/** What every listener has: the TLS side, client timeouts, logs and the admin listener. */
export interface ListenerSettings {
  /** One or more addresses (--listen repeated, or a list in the config file), each its own listener with the same settings. */
  listen: Array<{ host: string; port: number }>;
  /**
   * Certificate chain and private key files (PEM), paired in order (--cert/--key
   * repeated, or lists in the config file), checked readable at start-up. The
   * first pair is the default; the others are chosen by SNI (docs/certificates.md).
   */
  certificates: Array<{ certFile: string; keyFile: string; label?: string }>;
  offload: 'auto' | 'kernel' | 'userspace';
  /** Default 'default'; 'prefer-hw': TLS 1.2 AES-128-GCM on the client side where the NIC offloads TLS (src/tls/hw-offload-policy.ts). */
  offloadPolicy: OffloadPolicy;
  tlsMin: TlsVersionName;
  tlsMax: TlsVersionName;
  /** null = the kernel-offloadable AEAD defaults of src/tls/policy.ts. */
  ciphers: string | null;
  ciphersuites: string | null;
  /** Default 10s. */
  handshakeTimeoutMs: number;
  /** Live client connections per listener, handshakes included, beyond which new ones are closed unread; default null = no limit. */
  maxConnections: number | null;
  /** Client keep-alive / stalled client, default 60s. */
  idleTimeoutMs: number;
  /** SIGTERM/SIGINT: how long connections in flight may take to finish before they are cut, default 30s. */
  shutdownTimeoutMs: number;
  /** Default info. */
  logLevel: string;
  reusePort: boolean;
  /** The admin listener (/metrics, /status); null = off, the default. */
  admin: { host: string; port: number } | null;
  /**
   * Worker processes (--workers N|auto, `auto` resolved to the CPUs this process
   * may use); default auto. 1: one process, no primary. Above 1, a primary binds
   * the listeners and supervises the workers (src/cli/primary.ts, docs/data-plane.md).
   */
  workers: number;
  /**
   * `workers` came from auto (the default, or given): where workers cannot run,
   * one process serves instead, with an info line saying why (workersToStart).
   */
  workersAuto: boolean;
  /**
   * --ticket-keys FILE...: session ticket keys in nginx's ssl_session_ticket_key
   * format (80 or 48 bytes), the first encrypts, all decrypt; re-read on reload.
   * [] = keys made by the process (one set per listener, or with --workers the
   * primary's, shared and rotated).
   */
  ticketKeyFiles: string[];
}

/** serve and proxy: HTTP requests from clients, and their access log. */
export interface HttpServerSettings {
  /** Client request headers, default 20s. */
  headersTimeoutMs: number;
  /** Request line + headers, default 16 KiB (also the upstream response head limit). */
  maxHeaderSize: number;
  /** --access-log FILE (reopened on SIGUSR1), null = the main log on stdout; format json (default) or combined. */
  /** off: no request lines at all (nginx's access_log off); file null: the main log. */
  accessLog: { file: string | null; format: AccessFormat; off: boolean };
  /** --redirect-http ADDR: a plain-HTTP listener answering 308 to https://; null = off (plain HTTP to the TLS port then gets a 400). */
  redirectHttp: { host: string; port: number } | null;
  /**
   * --acme-domain and the other --acme-* settings: certificates ordered and
   * renewed from an ACME CA (src/tls/acme/, docs/acme.md), their files listed
   * first in `certificates`; null = none managed.
   */
  acme: AcmeSettings | null;
  /**
   * --http2 on|off, default on: ALPN offers h2 before http/1.1 (RFC 9113 §3.2).
   * `aludel proxy` accepts and checks it but still offers http/1.1 only: its
   * HTTP/2 side is not wired yet.
   */
  http2: boolean;
  /** HTTP/2 streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS), default 128 as nginx. */
  http2MaxConcurrentStreams: number;
}

export interface ServeSettings extends ListenerSettings, HttpServerSettings {
  mode: 'serve';
  /** Document root, checked to be a readable directory at start-up. */
  root: string;
}

export interface ProxySettings extends ListenerSettings, HttpServerSettings {
  mode: 'http' | 'tcp';
  /** At least one; all http/https for mode http (may mix), all tcp for mode tcp. */
  upstreams: Upstream[];
  /** Upstream connect (nginx proxy_connect_timeout), default 5s. */
  connectTimeoutMs: number;
  /** Upstream response head (nginx proxy_read_timeout for the first byte), default 60s. */
  upstreamHeadersTimeoutMs: number;
  /** Upstream body read / write stall, default 60s. */
  upstreamIdleTimeoutMs: number;
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
   * default 10 GiB), least recently used evicted first; `staleIfErrorMs`
   * (--cache-stale-if-error, default 0 = off): how long past its freshness a
   * response without a stale-if-error of its own may be sent instead of an
   * upstream error (RFC 5861 §4); `targeted` (--targeted-cache-control): a
   * response field honoured before CDN-Cache-Control (RFC 9213 §2.1), or
   * null. null = no cache.
   */
  cache: { dir: string; maxBytes: number; cookies: boolean; staleIfErrorMs: number; targeted: string | null } | null;
}

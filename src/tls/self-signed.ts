/**
 * Self-signed development certificates for `aludel cert` (an mkcert-lite,
 * comparable to Caddy's internal issuer for localhost).
 *
 * The certificate is a plain leaf (CA:false) that is its own issuer; clients
 * trust it by pinning it as a CA (`--cacert cert.pem`, `https.request({ ca })`,
 * `openssl s_client -CAfile cert.pem`).
 *
 * Key type: ECDSA P-256 (secp256r1 / prime256v1). Key generation is a single
 * scalar multiplication, so it takes well under a millisecond even on an
 * emulated CPU (qemu-user, CI runners) where RSA-2048 prime search can take
 * seconds; signatures are small and handshakes fast. And every TLS 1.2/1.3
 * client supports it: P-256 is a mandatory-to-implement curve in TLS 1.3
 * (RFC 8446 §9.1) and is universally deployed for ECDHE/ECDSA in TLS 1.2.
 */
import { createHash, webcrypto } from "node:crypto";
import { isIP } from "node:net";
import type * as X509 from "@peculiar/x509";

export interface SelfSignedCertOptions {
  /** Subject common name. Default "localhost". */
  commonName?: string;
  /** DNS names and IP addresses for the SubjectAlternativeName. Default ["localhost", "127.0.0.1", "::1"]. */
  altNames?: string[];
  /** Validity in days from now. Default 30. */
  days?: number;
}

export interface SelfSignedCert {
  /** "-----BEGIN CERTIFICATE-----" PEM, 64-character lines. */
  certPem: string;
  /** PKCS#8 "-----BEGIN PRIVATE KEY-----" PEM, 64-character lines. */
  keyPem: string;
  /** SHA-256 of the certificate DER as colon-separated uppercase hex (like node's X509Certificate.fingerprint256). */
  fingerprint256: string;
  notAfter: Date;
}

const DEFAULT_COMMON_NAME = "localhost";
const DEFAULT_ALT_NAMES: readonly string[] = ["localhost", "127.0.0.1", "::1"];
const DEFAULT_DAYS = 30;
const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;

const EC_ALGORITHM = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGNING_ALGORITHM = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

let x509Promise: Promise<typeof X509> | undefined;

/**
 * Loads @peculiar/x509 lazily (only `aludel cert` and the demo need it) and
 * points it at node's WebCrypto. Its tsyringe dependency throws at import time
 * without a Reflect metadata polyfill, hence reflect-metadata first.
 */
export function loadX509(): Promise<typeof X509> {
  x509Promise ??= (async () => {
    await import("reflect-metadata");
    const x509 = await import("@peculiar/x509");
    x509.cryptoProvider.set(webcrypto as unknown as Crypto);
    return x509;
  })();
  return x509Promise;
}

/** DER -> PEM with 64-character base64 lines and a trailing newline. */
function derToPem(der: ArrayBuffer | Uint8Array, label: string): string {
  const b64 = Buffer.from(der instanceof Uint8Array ? der : new Uint8Array(der)).toString("base64");
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** SHA-256 of `der` as "AB:CD:..." (the format of node's X509Certificate.fingerprint256). */
function fingerprint256(der: ArrayBuffer | Uint8Array): string {
  const digest = createHash("sha256")
    .update(der instanceof Uint8Array ? der : new Uint8Array(der))
    .digest("hex")
    .toUpperCase();
  return digest.match(/../g)!.join(":");
}

/** 16 random bytes as hex, high bit cleared (positive INTEGER) and first byte non-zero (minimal DER, exactly 16 bytes). */
function randomSerialHex(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  if (bytes[0] === 0) bytes[0] = 0x01;
  return Buffer.from(bytes).toString("hex");
}

function normalizeAltNames(altNames: readonly string[]): X509.JsonGeneralName[] {
  const seen = new Set<string>();
  const names: X509.JsonGeneralName[] = [];
  for (const raw of altNames) {
    // Accept "[::1]" as written in URLs.
    const value = raw.trim().replace(/^\[(.*)\]$/, "$1");
    if (value === "") throw new Error(`invalid subject alternative name: ${JSON.stringify(raw)}`);
    const type = isIP(value) !== 0 ? "ip" : "dns";
    const key = `${type}:${type === "dns" ? value.toLowerCase() : value}`;
    if (seen.has(key)) continue;
    seen.add(key);
    names.push({ type, value });
  }
  return names;
}

/**
 * Creates a self-signed ECDSA P-256 / SHA-256 X.509 v3 server certificate
 * (BasicConstraints CA:false critical, KeyUsage digitalSignature critical,
 * ExtendedKeyUsage serverAuth, SubjectAlternativeName with DNS/IP entries).
 * Validity: one hour back (tolerates clock skew) to `days` days from now.
 */
export async function createSelfSignedCert(opts: SelfSignedCertOptions = {}): Promise<SelfSignedCert> {
  const commonName = opts.commonName ?? DEFAULT_COMMON_NAME;
  const days = opts.days ?? DEFAULT_DAYS;
  if (!Number.isFinite(days) || days <= 0) {
    throw new Error(`days must be a positive number, got ${String(days)}`);
  }
  if (commonName === "") throw new Error("commonName must not be empty");
  const altNames = normalizeAltNames(opts.altNames ?? DEFAULT_ALT_NAMES);
  if (altNames.length === 0) throw new Error("at least one subject alternative name is required");

  const x509 = await loadX509();

  const keys = await webcrypto.subtle.generateKey(EC_ALGORITHM, true, ["sign", "verify"]);

  const now = Date.now();
  const notBefore = new Date(now - HOUR_MS);
  const notAfterRequested = new Date(now + Math.round(days * DAY_MS));

  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerialHex(),
    // JSON form rather than a "CN=..." string so commas/plus signs in the name need no escaping.
    name: [{ CN: [commonName] }],
    notBefore,
    notAfter: notAfterRequested,
    keys: keys as unknown as CryptoKeyPair,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension(altNames, false),
    ],
  });

  const der = new Uint8Array(cert.rawData);
  const pkcs8 = await webcrypto.subtle.exportKey("pkcs8", keys.privateKey);

  return {
    certPem: derToPem(der, "CERTIFICATE"),
    keyPem: derToPem(new Uint8Array(pkcs8), "PRIVATE KEY"),
    fingerprint256: fingerprint256(der),
    // X.509 times have one-second resolution; report what is actually encoded.
    notAfter: cert.notAfter,
  };
}

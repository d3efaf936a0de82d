/**
 * Default cipher policy: only AEAD suites the Linux kernel can take over
 * (AES-128-GCM, AES-256-GCM from 4.13/5.1, ChaCha20-Poly1305 from 5.11), with
 * forward secrecy, for TLS 1.2 and 1.3. The userspace mode uses the same list,
 * so kernel vs userspace comparisons are like for like.
 */
import type { TlsVersionName } from '../config/tls-settings.js';
export const TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * --offload-policy prefer-hw where the NIC offloads TLS: the suites every
 * kernel's device offload takes. tls_set_device_offload (net/tls/tls_device.c)
 * accepts TLS 1.2 only and, until recent kernels, TLS_CIPHER_AES_GCM_128 only;
 * OpenSSL follows the client's order, which often puts AES-256 first, so
 * AES-256-GCM is left out rather than hoped against.
 */
export const DEVICE_OFFLOAD_CIPHERS = ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256'].join(':');

export const TLS13_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'].join(':');

export const TLS1_2 = 0x0303;
export const TLS1_3 = 0x0304;


export function versionNumber(v: TlsVersionName): number {
  return v === 'TLSv1.2' ? TLS1_2 : TLS1_3;
}

/** ALPN protocol list in wire format (RFC 7301 §3.1): length-prefixed names. */
export function alpnWire(protocols: readonly string[]): Buffer {
  const parts: Buffer[] = [];
  for (const p of protocols) {
    const name = Buffer.from(p, 'latin1');
    if (name.length === 0 || name.length > 255) throw new RangeError(`bad ALPN protocol name: ${p}`);
    parts.push(Buffer.from([name.length]), name);
  }
  return Buffer.concat(parts);
}

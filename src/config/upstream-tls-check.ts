/**
 * The upstream TLS settings built once, as the settings are checked: nginx
 * builds its proxy_ssl context when it reads the config, so a
 * proxy_ssl_trusted_certificate with no certificate in it or a
 * proxy_ssl_ciphers OpenSSL cannot match ([emerg] SSL_CTX_load_verify_locations
 * / SSL_CTX_set_cipher_list failed) refuses the start or the reload. Built at
 * the first upstream connection instead, they were accepted and every
 * request then got 502.
 */
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import tls from 'node:tls';
import type { ProxyInput, ProxyKey } from './proxy-input.js';
import { pemBlocks } from '../tls/pem.js';

/** Why the upstream-ca file trusts nothing (null when it holds at least one certificate). */
export async function caFileProblem(file: string): Promise<string | null> {
  const text = await fs.promises.readFile(file, 'latin1');
  const blocks = pemBlocks(text, ['CERTIFICATE', 'TRUSTED CERTIFICATE']);
  for (const block of blocks) {
    try {
      new X509Certificate(block.replace(/TRUSTED CERTIFICATE/g, 'CERTIFICATE'));
    } catch (err) {
      return `a certificate in it does not parse (${(err as Error).message})`;
    }
  }
  return blocks.length === 0 ? 'no PEM certificate in it (give the CA certificates that sign the upstreams\', -----BEGIN CERTIFICATE-----)' : null;
}

/**
 * Problems of upstream-ca and upstream-ciphers, each labelled by `label(key)`.
 * The cipher list goes through node:tls as a connection would take it (the
 * system OpenSSL side uses its own fixed kTLS list: upstream-client.ts).
 */
export async function upstreamTlsProblems(s: ProxyInput, label: (key: ProxyKey) => string): Promise<string[]> {
  const problems: string[] = [];
  const ciphers = s['upstream-ciphers'];
  if (ciphers !== undefined) {
    try {
      tls.createSecureContext({ ciphers });
    } catch (err) {
      problems.push(`${label('upstream-ciphers')}: ${JSON.stringify(ciphers)}: OpenSSL matches no cipher in it (${(err as Error).message})`);
    }
  }
  const ca = s['upstream-ca'];
  if (ca !== undefined) {
    const why = await caFileProblem(ca);
    if (why !== null) problems.push(`${label('upstream-ca')}: ${ca}: ${why}`);
  }
  return problems;
}

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
import tls from 'node:tls';
import type { ProxyInput, ProxyKey } from './proxy-input.js';
import { pemBlocks } from '../text/pem.js';
import { FileReadProblem, readSmallRegularFileSync } from './readable-file.js';

/** A CA bundle larger than this is refused (Debian's whole system bundle is about 220 KiB). */
export const MAX_CA_FILE_BYTES = 4 * 1024 * 1024;

/**
 * The upstream-ca file's bytes, read once for the load that checks them: the
 * same bytes are checked (caBundleProblem), held for the workers (the
 * primary's recordReads, held-files.ts) and trusted by every upstream
 * connection of these settings. In a worker, they are its primary's copy.
 */
export function readCaFile(file: string): { pem: Buffer } | { problem: string } {
  try {
    const pem = readSmallRegularFileSync(file, MAX_CA_FILE_BYTES);
    const problem = caBundleProblem(pem.toString('latin1'));
    return problem === null ? { pem } : { problem };
  } catch (err) {
    if (!(err instanceof FileReadProblem)) throw err;
    return { problem: `cannot read it (${err.message})` };
  }
}

/** Why a CA bundle's text trusts nothing (null when it holds at least one certificate). */
function caBundleProblem(text: string): string | null {
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
 * Problems of upstream-ca and upstream-ciphers, each labelled by `label(key)`,
 * and the upstream-ca bytes they checked (null: none given, or a problem).
 * The cipher list goes through node:tls as a connection would take it (the
 * system OpenSSL side uses its own fixed kTLS list: upstream-client.ts).
 */
export function upstreamTlsProblems(s: ProxyInput, label: (key: ProxyKey) => string): { problems: string[]; caPem: Buffer | null } {
  const problems: string[] = [];
  let caPem: Buffer | null = null;
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
    const read = readCaFile(ca);
    if ('problem' in read) problems.push(`${label('upstream-ca')}: ${ca}: ${read.problem}`);
    else caPem = read.pem;
  }
  return { problems, caPem };
}

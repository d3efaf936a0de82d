/**
 * Certificates: which pair serves which server name (SNI, RFC 6066 §3).
 *
 * Everything here is TypeScript on purpose: the files are read and checked
 * (key matches certificate, chain in order) before OpenSSL sees them, so an
 * error names the file and says what is wrong; the names each certificate
 * covers come from the certificate itself; and the resulting plan (which
 * pairs share a context, which name selects which context) is plain data that
 * both engines use: the C addon installs it as a lookup table
 * (native/tls.c sniTableSet), node:tls consults lookupSni() in its SNICallback.
 *
 * Rules (docs/certificates.md):
 * - Names: the leaf's subjectAltName DNS entries; its subject CN only when it
 *   has no DNS entry (RFC 6125 §6.4.4). Lower case, without a trailing dot.
 *   A wildcard is a whole leftmost label, `*.example.com`, and covers exactly
 *   one label (RFC 6125 §6.4.3): a.example.com, not example.com nor
 *   b.a.example.com. Partial-label wildcards (`f*.example.com`) are ignored.
 * - Lookup: the exact name, else the wildcard of its parent domain, else the
 *   default context (unknown name, or no SNI at all).
 * - Per name, one certificate per key type (RSA, EC, ...): the first in the
 *   list that names it exactly, else the first whose wildcard covers it.
 *   OpenSSL then picks among the key types of the chosen context from the
 *   client's signature_algorithms (TLS 1.3) or cipher list (TLS 1.2).
 * - The default context holds the first pair, with the other key types of its
 *   first name.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { AludelError } from '../errors.js';
import { exposedMode, FileReadProblem, readSmallRegularFileWithModeSync } from '../config/readable-file.js';
import { pemBlocks } from '../text/pem.js';
import type { CertificateFiles } from '../config/tls-settings.js';

/** The pair as the admin gave it: `--cert FILE`, or what made it (an --acme-domain). */
function pairLabel(c: CertificateFiles): string {
  return c.label ?? `--cert ${c.certFile}`;
}

/** A certificate or key file that cannot serve: the message names the file and the problem. */
export class CertificateError extends AludelError {
  constructor(message: string) {
    super('ERR_TLS_CERTIFICATE', message);
  }
}

export interface LoadedCertificate extends CertificateFiles {
  /** Position in the configured list (0 = the default). */
  index: number;
  /** The CERTIFICATE blocks of certFile, leaf first, joined (what node:tls is given). */
  chainPem: string;
  /** The key file as read (what node:tls is given). */
  keyPem: Buffer;
  /** st_mode of the key file, as read (group or other bits set: others can read the key). */
  keyFileMode: number;
  /** DNS names the leaf covers, lower case; wildcards as `*.example.com`. */
  names: string[];
  /** OpenSSL's certificate slot: one per key type in a context (asymmetricKeyType: rsa, rsa-pss, ec, ed25519, ...). */
  keyType: string;
  subject: string;
  fingerprint256: string;
  /** Certificates in the file (leaf + intermediates). */
  chainLength: number;
  validFrom: string;
  validTo: string;
}

/** How the pairs become contexts, and which name selects which context. */
export interface CertificatePlan {
  certificates: LoadedCertificate[];
  /** Per context, indexes into `certificates` (one per key type). contexts[0] is the default. */
  contexts: number[][];
  /** Every name (exact or `*.parent`) -> index into `contexts`. */
  table: Map<string, number>;
}

/**
 * Largest certificate or key file read. A leaf with its intermediates is a
 * few kB, and even a whole CA bundle pasted in by mistake is well under it;
 * anything larger is not a certificate file (a log, an image, a disk image),
 * and reading it whole would cost that much memory in every worker, on
 * every reload.
 */
export const MAX_PEM_FILE_BYTES = 1024 * 1024;

const KEY_TYPE_LABEL: Record<string, string> = { rsa: 'RSA', 'rsa-pss': 'RSA-PSS', ec: 'EC', ed25519: 'Ed25519', ed448: 'Ed448', dsa: 'DSA', dh: 'DH', x25519: 'X25519', x448: 'X448' };

function keyLabel(k: KeyObject): string {
  const type = k.asymmetricKeyType ?? 'unknown';
  return KEY_TYPE_LABEL[type] ?? type;
}

/** "EC prime256v1", "RSA 2048": for messages where the types agree but the keys do not. */
function keyDetail(k: KeyObject): string {
  const d = k.asymmetricKeyDetails;
  const extra = d?.namedCurve ?? (d?.modulusLength !== undefined ? `${d.modulusLength}` : undefined);
  return extra ? `${keyLabel(k)} ${extra}` : keyLabel(k);
}

function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e?.code && e.message && !e.message.startsWith(e.code) ? `${e.code}: ${e.message}` : (e?.message ?? String(err));
}

/**
 * The file's bytes, bounded, from a regular file only: opened without
 * blocking and checked on the descriptor, so a FIFO or device swapped in
 * after the settings were checked cannot hang the event loop (this read is
 * synchronous) or fill memory.
 */
function readFile(flag: string, file: string): { bytes: Buffer; mode: number } {
  try {
    return readSmallRegularFileWithModeSync(file, MAX_PEM_FILE_BYTES);
  } catch (err) {
    // An errno keeps its code in the message (ENOENT: ...); a file of the wrong kind or size says which.
    const why = err instanceof FileReadProblem && err.cause === undefined ? `${err.message}; a certificate or key file is PEM text of at most 1 MiB` : reason(err instanceof FileReadProblem ? err.cause : err);
    throw new CertificateError(`${flag} ${file}: cannot read it (${why})`);
  }
}

/**
 * Whether a key file holds an encrypted key: PKCS#8 "ENCRYPTED PRIVATE KEY"
 * (RFC 5958 §3) or a traditional PEM with "Proc-Type: 4,ENCRYPTED" (RFC 1421
 * §4.6.1.1). Node 20 with OpenSSL 3 reports both, without a passphrase, as
 * ERR_OSSL_CRYPTO_INTERRUPTED_OR_CANCELLED, not ERR_MISSING_PASSPHRASE, so the
 * code alone does not say it (Aludel, like nginx without ssl_password_file,
 * takes unencrypted keys only).
 */
function encryptedKeyPem(text: string): boolean {
  return text.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----') || /^Proc-Type:\s*4,\s*ENCRYPTED\s*$/m.test(text);
}

/** "DNS:a.test, DNS:\"odd,name\", IP Address:127.0.0.1" -> the DNS values (node quotes values with special characters). */
function sanDnsNames(san: string | undefined): string[] {
  if (!san) return [];
  const out: string[] = [];
  const entry = /([A-Za-z][A-Za-z ]*):("(?:[^"\\]|\\.)*"|[^,]*)(?:, |$)/g;
  for (let m = entry.exec(san); m !== null && m[0] !== ''; m = entry.exec(san)) {
    if (m[1] !== 'DNS') continue;
    const raw = m[2]!;
    out.push(raw.startsWith('"') ? (JSON.parse(raw) as string) : raw);
  }
  return out;
}

/** The last CN of a subject as node prints it ("C=XX\nCN=default.test"). */
function subjectCommonName(subject: string): string | null {
  let cn: string | null = null;
  for (const line of subject.split('\n')) {
    if (!line.startsWith('CN=')) continue;
    const v = line.slice(3);
    cn = v.startsWith('"') ? (JSON.parse(v) as string) : v;
  }
  return cn;
}

/** Lower case, no trailing dot; null for what can never match an SNI name (IP literals, partial wildcards, empty). */
export function normalizeName(name: string): string | null {
  let n = name.trim().replace(/[A-Z]/g, (c) => c.toLowerCase());
  if (n.endsWith('.')) n = n.slice(0, -1);
  if (n === '' || n.length > 254) return null;
  if (n.includes('*') && !(n.startsWith('*.') && n.length > 2 && !n.slice(1).includes('*'))) return null;
  if (/^[0-9.]+$/.test(n) || n.includes(':')) return null; // RFC 6066 §3: no IP literals in SNI
  return n;
}

/** The names a certificate serves: its DNS subjectAltNames, else its subject CN. */
export function certificateNames(cert: X509Certificate): string[] {
  const dns = sanDnsNames(cert.subjectAltName);
  const raw = dns.length > 0 ? dns : [subjectCommonName(cert.subject)].filter((n): n is string => n !== null);
  const names: string[] = [];
  for (const r of raw) {
    const n = normalizeName(r);
    if (n !== null && !names.includes(n)) names.push(n);
  }
  return names;
}

/**
 * Reads and checks one pair: certFile holds PEM certificates, leaf first, each
 * issued by the next (the order TLS 1.2 requires, RFC 5246 §7.4.2); keyFile a
 * private key that belongs to the leaf.
 */
export function loadCertificate(files: CertificateFiles, index: number): LoadedCertificate {
  const { certFile, keyFile } = files;
  const certText = readFile('--cert', certFile).bytes.toString('latin1');
  const blocks = pemBlocks(certText, ['CERTIFICATE']);
  if (blocks.length === 0) throw new CertificateError(`--cert ${certFile}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)`);
  const chain = blocks.map((pem, i) => {
    try {
      return new X509Certificate(pem);
    } catch (err) {
      const which = blocks.length > 1 ? `certificate ${i + 1} of ${blocks.length}` : 'the certificate';
      throw new CertificateError(`--cert ${certFile}: ${which} cannot be parsed (${reason(err)})`);
    }
  });
  for (let i = 1; i < chain.length; i++) {
    if (!chain[i - 1]!.checkIssued(chain[i]!)) {
      throw new CertificateError(
        `--cert ${certFile}: certificate ${i + 1} (${chain[i]!.subject.replace(/\n/g, ', ')}) did not issue certificate ${i} (issuer ${chain[i - 1]!.issuer.replace(/\n/g, ', ')}); put the leaf first, then each intermediate after the one it issued`,
      );
    }
  }
  const leaf = chain[0]!;
  const { bytes: keyPem, mode: keyFileMode } = readFile('--key', keyFile);
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ERR_MISSING_PASSPHRASE' || encryptedKeyPem(keyPem.toString('latin1'))) {
      throw new CertificateError(`--key ${keyFile}: the key is encrypted; give an unencrypted key (openssl pkey -in KEY -out PLAIN.key)`);
    }
    throw new CertificateError(`--key ${keyFile}: no usable PEM private key in it (${reason(err)})`);
  }
  const certKey = leaf.publicKey;
  if (certKey.asymmetricKeyType !== key.asymmetricKeyType) {
    throw new CertificateError(`--key ${keyFile} does not match --cert ${certFile} (${keyLabel(key)} key, ${keyLabel(certKey)} certificate)`);
  }
  let matches = false;
  try {
    matches = leaf.checkPrivateKey(key);
  } catch {
    matches = false;
  }
  if (!matches) {
    const k = keyDetail(key);
    const c = keyDetail(certKey);
    const detail = k === c ? `both ${k}, but not the same key pair` : `${k} key, ${c} certificate`;
    throw new CertificateError(`--key ${keyFile} does not match --cert ${certFile} (${detail})`);
  }
  return {
    certFile,
    keyFile,
    ...(files.label === undefined ? {} : { label: files.label }),
    index,
    chainPem: blocks.join('\n') + '\n',
    keyPem,
    keyFileMode,
    names: certificateNames(leaf),
    keyType: key.asymmetricKeyType ?? 'unknown',
    subject: leaf.subject.replace(/\n/g, ', '),
    fingerprint256: leaf.fingerprint256,
    chainLength: chain.length,
    validFrom: leaf.validFrom,
    validTo: leaf.validTo,
  };
}

function typeLabel(keyType: string): string {
  return KEY_TYPE_LABEL[keyType] ?? keyType;
}

/**
 * "a" or "an" before a key type said as letters or a word: "an EC", "an RSA",
 * "an Ed25519", "an X25519", but "a DSA", "a DH". The letters said with a
 * vowel sound first (ef, aitch, ell, em, en, ar, ess, ex) take "an".
 */
function withArticle(label: string): string {
  return `${/^[aefhilmnorsx]/i.test(label) ? 'an' : 'a'} ${label}`;
}

/** The parent-domain wildcard that would cover an exact name ("a.b.c" -> "*.b.c"), or null. */
function wildcardFor(name: string): string | null {
  const dot = name.indexOf('.');
  return dot > 0 && dot < name.length - 1 ? `*${name.slice(dot)}` : null;
}

/**
 * Loads every pair and plans the contexts. Throws CertificateError (naming
 * the file) for unreadable or mismatched files, and for a pair that could
 * never be chosen.
 */
export function planCertificates(list: readonly CertificateFiles[]): CertificatePlan {
  if (list.length === 0) throw new CertificateError('no certificate configured: give at least one --cert/--key pair');
  const certs = list.map((files, i) => loadCertificate(files, i));
  for (const c of certs.slice(1)) {
    if (c.names.length === 0) {
      throw new CertificateError(`${pairLabel(c)} names no host (no subjectAltName DNS entry, no CN), so it could never be chosen; only the first certificate (the default) may do without names`);
    }
  }
  const listing = new Map<string, LoadedCertificate[]>();
  for (const c of certs) for (const n of c.names) listing.set(n, [...(listing.get(n) ?? []), c]);

  /** One certificate per key type for `name`: exact listings first, then the covering wildcard's. */
  const chooseFor = (name: string): LoadedCertificate[] => {
    const wild = name.startsWith('*.') ? null : wildcardFor(name);
    const candidates = [...(listing.get(name) ?? []), ...(wild ? (listing.get(wild) ?? []) : [])];
    const bySlot = new Map<string, LoadedCertificate>();
    for (const c of candidates) if (!bySlot.has(c.keyType)) bySlot.set(c.keyType, c);
    return [...bySlot.values()].sort((a, b) => a.index - b.index);
  };

  const contexts: number[][] = [];
  const contextOf = new Map<string, number>();
  const intern = (combo: LoadedCertificate[]): number => {
    const key = combo.map((c) => c.index).join(',');
    let i = contextOf.get(key);
    if (i === undefined) {
      i = contexts.length;
      contexts.push(combo.map((c) => c.index));
      contextOf.set(key, i);
    }
    return i;
  };
  const first = certs[0]!;
  intern(first.names.length > 0 ? chooseFor(first.names[0]!) : [first]);
  const table = new Map<string, number>();
  for (const name of listing.keys()) table.set(name, intern(chooseFor(name)));

  const used = new Set(contexts.flat());
  for (const c of certs) {
    if (used.has(c.index)) continue;
    const by = certs.find((o) => o.index < c.index && o.keyType === c.keyType && c.names.every((n) => o.names.includes(n)));
    throw new CertificateError(
      `${pairLabel(c)} would never be chosen: each of its names (${c.names.join(', ')}) already has ${withArticle(typeLabel(c.keyType))} certificate earlier in the list${by ? ` (${pairLabel(by)})` : ''}`,
    );
  }
  return { certificates: certs, contexts, table };
}

/**
 * The context index for a server name: exact, then the parent-domain wildcard,
 * then 0 (the default). The C servername callback (native/tls.c sni_lookup)
 * follows the same rules; node:tls's SNICallback calls this.
 */
export function lookupSni(table: ReadonlyMap<string, number>, servername: string | null | undefined): number {
  if (!servername) return 0;
  let name = servername.replace(/[A-Z]/g, (c) => c.toLowerCase());
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name === '' || name.length > 254) return 0;
  const exact = table.get(name);
  if (exact !== undefined) return exact;
  const wild = wildcardFor(name);
  const viaWildcard = wild !== null ? table.get(wild) : undefined;
  return viaWildcard ?? 0;
}

/** For logs: what each context serves. */
export function describePlan(plan: CertificatePlan): Array<{ context: number; default: boolean; names: string[]; certificates: Array<{ certFile: string; keyType: string; subject: string; chain: number; validTo: string }> }> {
  return plan.contexts.map((combo, i) => ({
    context: i,
    default: i === 0,
    names: [...plan.table].filter(([, t]) => t === i).map(([n]) => n),
    certificates: combo.map((ci) => {
      const c = plan.certificates[ci]!;
      return { certFile: c.certFile, keyType: typeLabel(c.keyType), subject: c.subject, chain: c.chainLength, validTo: c.validTo };
    }),
  }));
}

/** A pair that loads and serves, but that the admin should hear about. */
export interface CertificateWarning {
  fields: Record<string, unknown>;
  msg: string;
}

/**
 * Warnings about the loaded pairs, logged at start-up and after every
 * reconfigure. Like nginx, Aludel serves them anyway (the admin may be
 * mid-rotation, or the clients may not check), but says so once:
 * - a leaf outside its validity period (RFC 5280 §4.1.2.5): every verifying
 *   client refuses the handshake, and nothing else in the log says why;
 * - a key file that group or other users may read: whoever reads it can
 *   impersonate the server and, without forward secrecy, decrypt its traffic
 *   (the same warning as --ticket-keys; nginx does not check).
 */
export function certificateWarnings(plan: CertificatePlan, now: number = Date.now()): CertificateWarning[] {
  const out: CertificateWarning[] = [];
  for (const c of plan.certificates) {
    const notBefore = Date.parse(c.validFrom);
    const notAfter = Date.parse(c.validTo);
    const fields = { certFile: c.certFile, subject: c.subject, validFrom: c.validFrom, validTo: c.validTo };
    if (now > notAfter) out.push({ fields, msg: 'certificate expired: clients that verify it refuse the handshake; renew it and reload (SIGHUP)' });
    else if (now < notBefore) out.push({ fields, msg: 'certificate not valid yet: clients that verify it refuse the handshake until its validFrom (or the host clock is wrong)' });
    if (exposedMode(c.keyFileMode)) {
      out.push({ fields: { keyFile: c.keyFile, mode: (c.keyFileMode & 0o777).toString(8).padStart(4, '0') }, msg: 'the private key file is readable by group or other users; whoever reads it can impersonate this server: chmod 600 it' });
    }
  }
  return out;
}

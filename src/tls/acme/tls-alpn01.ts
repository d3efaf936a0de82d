/**
 * TLS-ALPN-01 (RFC 8737): the CA opens a TLS connection to port 443 of the
 * name, offering only the ALPN protocol "acme-tls/1", and expects a
 * self-signed certificate for exactly that name carrying the critical
 * acmeIdentifier extension (id-pe-acmeIdentifier, the SHA-256 of the key
 * authorization, §3). Answered on the TLS listeners themselves: this keeps
 * the pending challenge certificates (files of mode 0600 beside the name's
 * pair: they hold keys) and hands the whole set to the listeners, whose
 * engine serves them to acme-tls/1 handshakes only (native/tls.c).
 */
import fs from 'node:fs';
import type { AcmeChallengeCertificate } from '../types.js';
import { writeSecretFile } from './storage.js';

export class TlsAlpn01Responder {
  private readonly pending = new Map<string, string>();
  private install: (challenges: readonly AcmeChallengeCertificate[]) => void = () => {};

  /** Where the set goes each time it changes (the listeners' setAcmeChallenges). */
  attach(install: (challenges: readonly AcmeChallengeCertificate[]) => void): void {
    this.install = install;
    install(this.challenges());
  }

  /** `file`: where the pair is kept while pending (ManagedPaths.challengeFile). */
  add(name: string, file: string, certPem: string, keyPem: string): void {
    writeSecretFile(file, `${certPem.trim()}\n${keyPem}`);
    this.pending.set(name.toLowerCase(), file);
    this.install(this.challenges());
  }

  remove(name: string): void {
    const file = this.pending.get(name.toLowerCase());
    if (file === undefined) return;
    this.pending.delete(name.toLowerCase());
    this.install(this.challenges());
    fs.rmSync(file, { force: true });
  }

  challenges(): AcmeChallengeCertificate[] {
    return [...this.pending].map(([name, file]) => ({ name, certFile: file, keyFile: file }));
  }
}

/**
 * The ACME challenges pending in a process, whatever their kind, and who
 * answers them there. The process that orders (the one process, or the
 * primary of --workers N) fills it through acme-order.ts; with workers, each
 * change is also sent to every worker (primary.ts), whose own registry then
 * holds the same set (worker-link.ts): a challenge must be answerable by
 * whichever process the CA's connection reaches.
 *
 * A new kind is a variant of AcmeChallenge, its case in challengeKey(), its
 * case in answerer() that hands it to what answers it in this process, and,
 * on the ordering side, a responder whose adds and removes come here.
 */
import { Http01Responder } from './http01.js';
import { TlsAlpn01Responder } from './tls-alpn01.js';
import type { AcmeChallengeCertificate } from '../types.js';

/** A pending challenge as it travels between processes (JSON). */
export type AcmeChallenge =
  | { kind: 'http-01'; token: string; keyAuthorization: string }
  /**
   * RFC 8737: the name (lower case) and the file holding its challenge certificate and key, which the
   * ordering process keeps in the storage directory (0600) while pending; workers read it as they read pair.pem.
   */
  | { kind: 'tls-alpn-01'; name: string; file: string };

export interface ChallengeChange {
  op: 'add' | 'remove';
  challenge: AcmeChallenge;
}

/** What identifies a challenge within its kind: a second add replaces it, a remove names it. */
export function challengeKey(c: AcmeChallenge): string {
  switch (c.kind) {
    case 'http-01':
      return c.token;
    case 'tls-alpn-01':
      return c.name;
  }
}

/**
 * Test-only: awaited once a challenge is pending, before the CA is asked to
 * validate it (test/support/acme-test-hooks.ts), so a test can look at the
 * pending state. No flag, setting or variable of Aludel reaches it.
 */
interface ChallengeTestHooks {
  challengePending?(challenge: AcmeChallenge): Promise<void>;
}
const TEST_HOOKS = Symbol.for('aludel.test.acme');

function testHooks(): ChallengeTestHooks {
  return ((globalThis as Record<symbol, unknown>)[TEST_HOOKS] as ChallengeTestHooks | undefined) ?? {};
}

export class ChallengeRegistry {
  /** HTTP-01 answers, for a plain-HTTP listener of this process (--redirect-http). */
  readonly http01 = new Http01Responder();
  private readonly pending = new Map<string, AcmeChallenge>();
  private readonly watchers = new Set<(change: ChallengeChange) => void>();

  /**
   * `installTlsAlpn01`: where the whole TLS-ALPN-01 set goes on each change (a
   * worker's listeners). The ordering process leaves it out: its own
   * responder (tls-alpn01.ts) installs on its listeners.
   */
  constructor(private readonly installTlsAlpn01: (set: AcmeChallengeCertificate[]) => void = () => undefined) {}

  add(c: AcmeChallenge): void {
    this.pending.set(`${c.kind} ${challengeKey(c)}`, c);
    this.answerer(c).add();
    this.notify({ op: 'add', challenge: c });
  }

  /** By kind and key; the change sent on carries the challenge as it was added. */
  remove(kind: AcmeChallenge['kind'], key: string): void {
    const c = this.pending.get(`${kind} ${key}`);
    if (c === undefined) return;
    this.pending.delete(`${kind} ${key}`);
    this.answerer(c).remove();
    this.notify({ op: 'remove', challenge: c });
  }

  /** A change made in another process (a worker applying the primary's). */
  apply(change: ChallengeChange): void {
    if (change.op === 'add') this.add(change.challenge);
    else this.remove(change.challenge.kind, challengeKey(change.challenge));
  }

  /** Every challenge pending now: what a worker that starts later is given. */
  snapshot(): AcmeChallenge[] {
    return [...this.pending.values()];
  }

  watch(fn: (change: ChallengeChange) => void): void {
    this.watchers.add(fn);
  }

  /**
   * What acme-order.ts is handed for HTTP-01: its adds and removes go through
   * this registry (and so to the watchers), its answers are the registry's.
   */
  orderingHttp01(): Http01Responder {
    const registry = this;
    return new (class extends Http01Responder {
      // acme-order.ts returns this from acme-client's challengeCreateFn, which awaits it before asking the CA to validate.
      override add(token: string, keyAuthorization: string): Promise<void> | undefined {
        return registry.ordered({ kind: 'http-01', token, keyAuthorization });
      }

      override remove(token: string): void {
        registry.remove('http-01', token);
      }

      override answer(url: string | undefined): string | null {
        return registry.http01.answer(url);
      }
    })();
  }

  /** What acme-order.ts is handed for TLS-ALPN-01: it keeps the file and installs on this process's listeners; the change comes here too. */
  orderingTlsAlpn01(): TlsAlpn01Responder {
    const registry = this;
    return new (class extends TlsAlpn01Responder {
      override add(name: string, file: string, certPem: string, keyPem: string): Promise<void> | undefined {
        super.add(name, file, certPem, keyPem);
        return registry.ordered({ kind: 'tls-alpn-01', name: name.toLowerCase(), file });
      }

      override remove(name: string): void {
        // The workers drop it before the file goes.
        registry.remove('tls-alpn-01', name.toLowerCase());
        super.remove(name);
      }
    })();
  }

  private ordered(c: AcmeChallenge): Promise<void> | undefined {
    this.add(c);
    return testHooks().challengePending?.(c);
  }

  private answerer(c: AcmeChallenge): { add(): void; remove(): void } {
    switch (c.kind) {
      case 'http-01':
        return { add: () => this.http01.add(c.token, c.keyAuthorization), remove: () => this.http01.remove(c.token) };
      case 'tls-alpn-01': {
        const install = (): void => this.installTlsAlpn01(this.tlsAlpn01Set());
        return { add: install, remove: install };
      }
    }
  }

  private tlsAlpn01Set(): AcmeChallengeCertificate[] {
    return [...this.pending.values()].flatMap((c) => (c.kind === 'tls-alpn-01' ? [{ name: c.name, certFile: c.file, keyFile: c.file }] : []));
  }

  private notify(change: ChallengeChange): void {
    for (const fn of this.watchers) fn(change);
  }
}

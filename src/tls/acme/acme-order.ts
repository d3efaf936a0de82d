/**
 * One certificate order against an ACME server (RFC 8555 §7.4), through
 * acme-client: the account (registered once, its key kept in the storage
 * directory), a new ECDSA P-256 key and CSR per certificate, the challenge
 * (HTTP-01, http01.ts, or TLS-ALPN-01, tls-alpn01.ts), then the chain, leaf first.
 *
 * The directory's own TLS is verified: against the system CAs and
 * NODE_EXTRA_CA_CERTS (node's default), or, with --acme-ca, that file on top.
 */
import fs from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import type AcmeClient from 'acme-client';

type Acme = typeof AcmeClient;
let loaded: Acme | null = null;

/**
 * acme-client (with the axios under it) costs about 27 MiB of RSS and 0.4 s
 * of start-up in each process that imports it: every worker paid that before
 * any certificate was ordered. Only the process that orders (the one with
 * --acme-domain) loads it, before its first use.
 */
export async function loadAcmeClient(): Promise<void> {
  loaded ??= (await import('acme-client')).default;
}

function acmeLib(): Acme {
  if (!loaded) throw new Error('acme-client is not loaded: loadAcmeClient() comes first');
  return loaded;
}
import { writeSecretFile } from './storage.js';
import { accountKeyFile } from '../../config/acme-paths.js';
import type { Http01Responder } from './http01.js';
import type { TlsAlpn01Responder } from './tls-alpn01.js';
import { orderAsReplacement } from './ari.js';
import type { Replaces } from './ari-tracker.js';
import type { AcmeAccountSettings, AcmeChallengeType } from '../../config/tls-settings.js';

/** How an order answers its challenge. */
export interface ChallengeAnswer {
  type: AcmeChallengeType;
  http01: Http01Responder;
  tlsAlpn01: TlsAlpn01Responder;
  /** Where the TLS-ALPN-01 pair is kept while pending (ManagedPaths.challengeFile). */
  challengeFile: string;
}

/** A refusal or failure from the CA, with its Retry-After when it gave one (429, 503). */
export class AcmeOrderError extends Error {
  constructor(message: string, readonly retryAfter: string | undefined) {
    super(message);
  }
}

/** The longest one request to the CA may take, answer included (the directory probe's bound too). */
export const ACME_REQUEST_TIMEOUT_MS = 30_000;
/**
 * The largest answer taken from the CA. A directory, an order or an
 * authorization is a few hundred bytes, a chain a few kB (RFC 8555 §7.4.2);
 * axios's default is no limit, so a hostile or broken CA could fill memory.
 */
export const ACME_MAX_ANSWER_BYTES = 1024 * 1024;

/**
 * The axios instance acme-client shares: our trust store for the directory,
 * and no retries of its own (it would sleep through Retry-After inside the
 * request; the scheduler backs off instead, and keeps serving meanwhile).
 * Bounded as the directory probe is: axios's defaults have no timeout and no
 * size limit, so a CA that accepted the connection and never answered held
 * the order (and every later renewal of the name) for ever, with nothing
 * logged. No redirects: RFC 8555 has none, and following one would send the
 * signed requests to another host.
 */
export function configureTransport(caFile: string | null): https.Agent {
  const extra = [caFile, process.env.NODE_EXTRA_CA_CERTS].filter((f): f is string => typeof f === 'string' && f !== '');
  const defaults = acmeLib().axios.defaults as typeof AcmeClient.axios.defaults & { acmeSettings?: { retryMaxAttempts: number } };
  if (defaults.acmeSettings) defaults.acmeSettings.retryMaxAttempts = 0;
  const agent = caFile === null ? https.globalAgent : new https.Agent({ ca: [...tls.rootCertificates, ...extra.map((f) => fs.readFileSync(f, 'utf8'))] });
  defaults.httpsAgent = agent;
  defaults.maxContentLength = ACME_MAX_ANSWER_BYTES;
  defaults.maxRedirects = 0;
  if (!watching) {
    watching = true;
    // axios's timeout is the socket's idle time: a CA dripping a byte now and then would never reach it. A deadline per request.
    acmeLib().axios.interceptors.request.use((config) => {
      config.signal ??= requestDeadline(config.method, config.url);
      return config;
    });
    keepTransportErrors(acmeLib().axios.interceptors.response);
    // acme-client turns a refusal into a plain Error: keep the CA's Retry-After (RFC 8555 §6.6) aside.
    acmeLib().axios.interceptors.response.use(
      (r) => {
        if (r.status === 429 || r.status === 503) lastRetryAfter = r.headers['retry-after'] as string | undefined;
        return r;
      },
      (e: { response?: { headers?: Record<string, string> } }) => {
        lastRetryAfter = e?.response?.headers?.['retry-after'] ?? lastRetryAfter;
        return Promise.reject(e);
      },
    );
  }
  return agent;
}

/** Aborts a request that has not been answered whole within ACME_REQUEST_TIMEOUT_MS, saying so. */
function requestDeadline(method: string | undefined, url: string | undefined): AbortSignal {
  const ctl = new AbortController();
  const what = `${(method ?? 'get').toUpperCase()} ${url ?? '?'}`;
  setTimeout(() => ctl.abort(new Error(`no complete answer from the CA within ${ACME_REQUEST_TIMEOUT_MS / 1000} s (${what})`)), ACME_REQUEST_TIMEOUT_MS).unref();
  return ctl.signal;
}

/**
 * A request that got no answer (deadline, answer too large, connection
 * reset) reaches acme-client's retry interceptor with no response, which,
 * retries being off, reads `response.config` of undefined: every such
 * failure was logged as "Cannot read properties of undefined (reading
 * 'config')". Run first (axios runs response interceptors in the order of
 * `handlers`, which its InterceptorManager documents as public) and pass a
 * plain Error on, which acme-client's interceptor lets through untouched.
 */
function keepTransportErrors(chain: { use(ok: null, fail: (e: unknown) => unknown): number; handlers?: unknown[] }): void {
  chain.use(null, (e: unknown) => {
    const err = e as Error & { response?: { status?: number; headers?: Record<string, unknown> }; code?: string; config?: { method?: string; url?: string; signal?: AbortSignal } };
    if (err?.config === undefined) return Promise.reject(e);
    const status = err.response?.status ?? 0;
    if (status >= 300 && status < 400) {
      // maxRedirects 0: the redirect itself is the answer. acme-client would report it as "returned no data".
      const where = String(err.response?.headers?.location ?? '?').slice(0, 200);
      const what = `${(err.config.method ?? 'get').toUpperCase()} ${err.config.url ?? '?'}`;
      return Promise.reject(new Error(`${what}: the CA answered HTTP ${status} to ${where}; RFC 8555 has no redirects, and signed requests are not sent elsewhere`));
    }
    if (err.response !== undefined) return Promise.reject(e);
    // Our deadline: axios reports any abort as "canceled"; the signal keeps the reason.
    const reason: unknown = err.code === 'ERR_CANCELED' ? err.config.signal?.reason : undefined;
    if (reason instanceof Error) return Promise.reject(new Error(reason.message));
    const what = `${(err.config.method ?? 'get').toUpperCase()} ${err.config.url ?? '?'}`;
    return Promise.reject(new Error(`${what}: ${err.code && !err.message.includes(err.code) ? `${err.code}: ` : ''}${err.message}`));
  });
  const h = chain.handlers;
  if (Array.isArray(h) && h.length > 1) h.unshift(h.pop());
}

let watching = false;
/** The Retry-After of the last 429/503 answer during the current order. */
let lastRetryAfter: string | undefined;

/**
 * GET the directory first: a CA that cannot be reached (refused, TLS not
 * trusted, timeout) is reported as such. (acme-client, out of retries, would
 * report a network error as "Cannot read properties of undefined".)
 */
function probeDirectory(url: string, agent: https.Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { agent, timeout: ACME_REQUEST_TIMEOUT_MS }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve();
      else reject(new AcmeOrderError(`the ACME directory ${url} answered HTTP ${res.statusCode}`, res.headers['retry-after']));
    });
    req.once('timeout', () => req.destroy(new Error('no answer within 30 s')));
    req.once('error', (err: NodeJS.ErrnoException) => reject(new AcmeOrderError(`cannot reach the ACME directory ${url}: ${err.code && !err.message.includes(err.code) ? `${err.code}: ` : ''}${err.message}`, undefined)));
  });
}

/**
 * The client, registered: with the account URL kept beside its key when
 * there is one; else a new account (RFC 8555 §7.3), whose URL is then kept.
 * (acme-client's own path for a known key sends an update Pebble refuses.)
 */
async function accountClient(account: AcmeAccountSettings): Promise<AcmeClient.Client> {
  const key = await accountKey(account.storage);
  const urlFile = `${accountKeyFile(account.storage)}.url`;
  const known = fs.existsSync(urlFile) ? fs.readFileSync(urlFile, 'utf8').trim() : undefined;
  const { Client } = acmeLib();
  const client = new Client({ directoryUrl: account.directoryUrl, accountKey: key, ...(known ? { accountUrl: known } : {}) });
  if (!known) {
    await client.createAccount({ termsOfServiceAgreed: true, ...(account.email ? { contact: [`mailto:${account.email}`] } : {}) });
    writeSecretFile(urlFile, `${client.getAccountUrl()}\n`);
  }
  return client;
}

/** Reads the account key, or makes one (ECDSA P-256, mode 0600) on first use. */
async function accountKey(storage: string): Promise<Buffer> {
  const file = accountKeyFile(storage);
  try {
    return fs.readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const key = await acmeLib().crypto.createPrivateEcdsaKey('P-256');
  writeSecretFile(file, key);
  return key;
}

/** acme-client throws plain Errors; the HTTP answer, when there was one, hangs off axios's error. */
function orderError(err: unknown): AcmeOrderError {
  if (err instanceof AcmeOrderError) return err;
  const e = err as Error & { response?: { status?: number; headers?: Record<string, string> }; code?: string };
  const status = e.response?.status;
  const message = `${status !== undefined ? `HTTP ${status}: ` : ''}${e.message}${e.code && !e.message.includes(e.code) ? ` (${e.code})` : ''}`;
  return new AcmeOrderError(message, e.response?.headers?.['retry-after'] ?? lastRetryAfter);
}

export interface Issued {
  certPem: string;
  keyPem: string;
}

/** Orders a certificate for `name`, as the replacement of `replaces` when given (RFC 9773 §5); throws AcmeOrderError with the CA's reason. */
export async function orderCertificate(account: AcmeAccountSettings, name: string, answer: ChallengeAnswer, replaces: Replaces | null = null): Promise<Issued> {
  try {
    lastRetryAfter = undefined;
    await probeDirectory(account.directoryUrl, configureTransport(account.caFile));
    const client = await accountClient(account);
    if (replaces) orderAsReplacement(client, replaces);
    const [key, csr] = await acmeLib().crypto.createCsr({ commonName: name, altNames: [name] }, await acmeLib().crypto.createPrivateEcdsaKey('P-256'));
    const certPem = await client.auto({
      csr,
      email: account.email ?? undefined,
      termsOfServiceAgreed: true,
      // The CA checks; acme-client's own pre-check would fetch port 80 from here, which is not what the CA sees.
      skipChallengeVerification: true,
      // Only the configured type: an order the CA validates another way would wait on nothing we answer.
      challengePriority: [answer.type],
      challengeCreateFn: async (authz, challenge, keyAuthorization) => {
        // acme-client falls back to another type when the CA does not offer ours: refuse, saying which it offers.
        const type = challenge.type as string;
        if (type !== answer.type) throw new Error(`the CA offers no ${answer.type} challenge for ${name} (it offers ${authz.challenges.map((c) => c.type).join(', ')}); see --acme-challenge`);
        if (type === 'http-01') return answer.http01.add(challenge.token, keyAuthorization);
        // RFC 8737 §3: self-signed, SAN = the name, critical acmeIdentifier = SHA-256(key authorization).
        const [alpnKey, alpnCert] = await acmeLib().crypto.createAlpnCertificate(authz, keyAuthorization, await acmeLib().crypto.createPrivateEcdsaKey('P-256'));
        return answer.tlsAlpn01.add(name, answer.challengeFile, alpnCert.toString(), alpnKey.toString());
      },
      challengeRemoveFn: async (_authz, challenge) => {
        if ((challenge.type as string) === 'tls-alpn-01') answer.tlsAlpn01.remove(name);
        else answer.http01.remove(challenge.token);
      },
    });
    return { certPem, keyPem: key.toString() };
  } catch (err) {
    throw orderError(err);
  }
}

/**
 * ACME Renewal Information (ARI, RFC 9773): the certificate's identifier
 * (§4.1) and the CA's suggested renewal window for it (§4.2), fetched with a
 * plain GET (§4.2 allows it unauthenticated) through the same agent, and so the
 * same trust store, as the orders (acme-order.ts). acme-client 5 has no ARI,
 * and its crypto helpers (readCertificateInfo) give neither the Authority Key
 * Identifier nor the serial's bytes: @peculiar/x509, which the project
 * already uses for its self-signed certificates, reads them.
 */
import https from 'node:https';
import { loadX509 } from '../self-signed.js';
import type { RenewalWindow } from './renew-policy.js';
import { pemBlocks } from '../../text/pem.js';

/** What one renewalInfo answer says. */
export interface RenewalInfo {
  window: RenewalWindow;
  /** A page where the CA explains the window (§4.2), e.g. why it was moved early; null when absent or not an http(s) URL. */
  explanationURL: string | null;
}

/** An answer and its Retry-After header (RFC 9773 §4.3), as received. */
interface Answer {
  status: number;
  body: string;
  retryAfter: string | undefined;
}

const TIMEOUT_MS = 30_000;
/** A directory or a renewalInfo object is a few hundred bytes; anything far larger is not one. */
const MAX_BODY = 64 * 1024;

/** RFC 3339 date-time (§4.2 requires it for start and end). */
const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/**
 * The DER INTEGER's content bytes of a positive serial given as hex: minimal
 * two's complement, so a 0x00 goes first when the top bit is set (RFC 9773
 * §4.1 encodes these bytes, leading zero included).
 */
export function serialDerBytes(hex: string): Buffer {
  let h = hex.replace(/[^0-9a-fA-F]/g, '').replace(/^(00)+/, '');
  if (h.length % 2 === 1) h = `0${h}`;
  if (h === '') h = '00';
  const bytes = Buffer.from(h, 'hex');
  return bytes[0]! >= 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes;
}

/**
 * RFC 9773 §4.1: base64url (no padding) of the AKI keyIdentifier, ".", base64url
 * of the serial's DER content bytes. Of the first certificate (the leaf) in
 * `pem`; null when it has no AKI keyIdentifier (a self-signed stand-in): no ARI for it.
 */
export async function ariCertId(pem: string): Promise<string | null> {
  const leaf = pemBlocks(pem, ['CERTIFICATE'])[0];
  if (!leaf) return null;
  const x509 = await loadX509();
  const cert = new x509.X509Certificate(leaf);
  const keyId = cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId;
  if (!keyId) return null;
  return `${Buffer.from(keyId, 'hex').toString('base64url')}.${serialDerBytes(cert.serialNumber).toString('base64url')}`;
}

function rfc3339(v: unknown, field: string): number {
  const t = typeof v === 'string' && RFC3339.test(v) ? Date.parse(v) : NaN;
  if (Number.isNaN(t)) throw new Error(`suggestedWindow.${field} is not an RFC 3339 date-time: ${JSON.stringify(v)}`);
  return t;
}

/**
 * A renewalInfo body (RFC 9773 §4.2); throws why it is unusable. A window
 * whose end is not after its start is invalid, and §4.2 has clients treat it
 * as no answer at all.
 */
export function parseRenewalInfo(body: string): RenewalInfo {
  let doc: { suggestedWindow?: { start?: unknown; end?: unknown }; explanationURL?: unknown };
  try {
    doc = JSON.parse(body) as typeof doc;
  } catch {
    throw new Error('the answer is not JSON');
  }
  if (typeof doc?.suggestedWindow !== 'object' || doc.suggestedWindow === null) throw new Error('the answer has no suggestedWindow');
  const start = rfc3339(doc.suggestedWindow.start, 'start');
  const end = rfc3339(doc.suggestedWindow.end, 'end');
  if (end <= start) throw new Error(`suggestedWindow ends (${String(doc.suggestedWindow.end)}) before it starts (${String(doc.suggestedWindow.start)})`);
  const url = typeof doc.explanationURL === 'string' && /^https?:\/\/[^\s]+$/.test(doc.explanationURL) ? doc.explanationURL : null;
  return { window: { start, end }, explanationURL: url };
}

function get(url: string, agent: https.Agent): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { agent, timeout: TIMEOUT_MS, headers: { accept: 'application/json' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
        if (body.length > MAX_BODY) req.destroy(new Error(`answer larger than ${MAX_BODY} bytes`));
      });
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body, retryAfter: res.headers['retry-after'] }));
      res.once('error', reject);
    });
    req.once('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS / 1000} s`)));
    req.once('error', reject);
  });
}

/** The directory's renewalInfo URL (RFC 9773 §3), or null when the CA offers none. */
export async function renewalInfoUrl(directoryUrl: string, agent: https.Agent): Promise<string | null> {
  const a = await get(directoryUrl, agent);
  if (a.status !== 200) throw new Error(`the ACME directory answered HTTP ${a.status}`);
  const dir = JSON.parse(a.body) as { renewalInfo?: unknown };
  return typeof dir?.renewalInfo === 'string' && dir.renewalInfo !== '' ? dir.renewalInfo : null;
}

/** GET renewalInfo/certID (RFC 9773 §4.1): the window, and the Retry-After for the next check (§4.3). */
export async function fetchRenewalInfo(base: string, certId: string, agent: https.Agent): Promise<{ info: RenewalInfo; retryAfter: string | undefined }> {
  const a = await get(`${base.replace(/\/+$/, '')}/${certId}`, agent);
  if (a.status !== 200) throw new Error(`renewalInfo answered HTTP ${a.status}`);
  return { info: parseRenewalInfo(a.body), retryAfter: a.retryAfter };
}

/** acme-client's inner API object (client.api): every newOrder goes through its createOrder. */
interface AcmeApi {
  createOrder(data: Record<string, unknown>): Promise<AcmeResponse>;
  apiResourceRequest(resource: string, payload: unknown, validStatusCodes: number[]): Promise<AcmeResponse>;
}
interface AcmeResponse {
  status: number;
  data?: { type?: unknown; detail?: unknown };
}

/**
 * A refusal about `replaces` (RFC 9773 §5): alreadyReplaced (the error type RFC 9773 registers), or another
 * 4xx problem that names the field. A 429 is a rate limit, not about the field:
 * ordering again at once would only be refused again.
 */
export function refusedAsReplacement(status: number, problem: { type?: unknown; detail?: unknown } | undefined): boolean {
  if (status < 400 || status > 499 || status === 429) return false;
  return problem?.type === 'urn:ietf:params:acme:error:alreadyReplaced' || /replace/i.test(String(problem?.detail ?? ''));
}

/**
 * Makes the client's next newOrder carry `replaces` (RFC 9773 §5; acme-client's
 * auto() builds the payload itself, so the field is added on the way out). If
 * the CA refuses it as a replacement (the certificate was replaced already, or
 * the CA does not take the field), the order is placed once more without it:
 * a certificate is still needed, and §5 only asks clients to say what they replace.
 */
export function orderAsReplacement(client: object, replaces: { certId: string; refused(reason: string): void }): void {
  const api = (client as { api: AcmeApi }).api;
  const plain = api.createOrder.bind(api);
  api.createOrder = async (data) => {
    const resp = await api.apiResourceRequest('newOrder', { ...data, replaces: replaces.certId }, []);
    if (resp.status === 201) return resp;
    const detail = typeof resp.data?.detail === 'string' ? resp.data.detail : JSON.stringify(resp.data ?? null);
    if (!refusedAsReplacement(resp.status, resp.data)) throw new Error(detail);
    replaces.refused(`HTTP ${resp.status}: ${detail}`);
    return plain(data);
  };
}

/**
 * A tiny ACME directory (RFC 8555 §7.1): enough of the protocol for
 * acme-client to register and ask for an order, then either a problem
 * document (RFC 8555 §6.7) chosen per identifier, or, for the names given in
 * `issue`, a certificate: authorizations already valid (no challenge), the CSR
 * signed by a CA made here. With `issue.renewalInfo`, the directory offers
 * ACME Renewal Information (RFC 9773), which Debian's pebble does not. For the
 * bad-input and ARI tests, where a real CA cannot be made to answer on demand.
 */
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { randomBytes, webcrypto } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createSelfSignedCert, loadX509 } from '../../src/tls/self-signed.js';

export interface Refusal {
  status: number;
  type: string;
  detail: string;
  retryAfter?: string;
}

/** A renewalInfo answer (RFC 9773 §4.2) as the fake sends it. */
export interface FakeRenewalInfo {
  status?: number;
  body: unknown;
  retryAfter?: string;
}

export interface FakeIssuing {
  /** The names the fake issues certificates for. */
  names: string[];
  /** Offers renewalInfo: the answer for the certificate issued `index`-th (from 0). */
  renewalInfo?: (index: number) => FakeRenewalInfo;
  /** The first newOrder that carries `replaces` is refused with alreadyReplaced (RFC 9773 §5). */
  refuseReplacesOnce?: boolean;
}

export interface FakeAcme {
  directoryUrl: string;
  caFile: string;
  /** Identifiers of the newOrder requests received, in order. */
  orders: string[];
  /** The newOrder requests received: their identifier and `replaces` (RFC 9773 §5), if any. */
  newOrders: Array<{ name: string; replaces: string | undefined }>;
  /** The certificates issued, in order, with the ARI certID (RFC 9773 §4.1) the fake computed from the CA's key identifier and the serial it chose. */
  issued: Array<{ certId: string; serial: string }>;
  /** The certIDs asked for at renewalInfo, in order. */
  renewalInfoRequests: string[];
  close(): Promise<void>;
}

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

function payloadOf(body: string): Record<string, unknown> {
  try {
    const jws = JSON.parse(body) as { payload?: string };
    return jws.payload ? (JSON.parse(Buffer.from(jws.payload, 'base64url').toString('utf8')) as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** The issuing CA: its key, its certificate (with a subject key identifier), and a signer for CSRs. */
async function makeIssuer(): Promise<{ caPem: string; sign(csrB64u: string, name: string): Promise<{ pem: string; certId: string; serial: string }> }> {
  const x509 = await loadX509();
  const keys = (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey);
  const notBefore = new Date(Date.now() - 3600_000);
  const notAfter = new Date(Date.now() + 30 * 86_400_000);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01', name: 'CN=Fake ACME CA', notBefore, notAfter, keys, signingAlgorithm: ALG,
    extensions: [new x509.BasicConstraintsExtension(true, undefined, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true), ski],
  });
  const sign = async (csrB64u: string, name: string): Promise<{ pem: string; certId: string; serial: string }> => {
    const csr = new x509.Pkcs10CertificateRequest(Buffer.from(csrB64u, 'base64url'));
    // The top bit set: DER puts a 0x00 before it, which the certID keeps (RFC 9773 §4.1).
    const serial = Buffer.concat([Buffer.from([0]), randomBytes(16)]);
    serial[1] = serial[1]! | 0x80;
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: serial.toString('hex'), subject: `CN=${name}`, issuer: ca.subject, notBefore, notAfter: new Date(Date.now() + 7 * 86_400_000),
      publicKey: await csr.publicKey.export(), signingKey: keys.privateKey, signingAlgorithm: ALG,
      extensions: [await x509.AuthorityKeyIdentifierExtension.create(ca), new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: name }])],
    });
    const certId = `${Buffer.from(ski.keyId, 'hex').toString('base64url')}.${serial.toString('base64url')}`;
    return { pem: `${leaf.toString('pem')}\n${ca.toString('pem')}\n`, certId, serial: serial.toString('hex') };
  };
  return { caPem: ca.toString('pem'), sign };
}

type Json = (status: number, value: unknown, extra?: Record<string, string>) => void;
type Route = (req: IncomingMessage, body: string, json: Json, res: ServerResponse, headers: Record<string, string>) => void | Promise<void>;

/** An HTTPS server on a free loopback port: every answer with a fresh Replay-Nonce, JSON or a problem document (RFC 8555 §6.5, §6.7). */
async function listen(pair: { certPem: string; keyPem: string }, route: Route): Promise<https.Server> {
  let nonce = 0;
  const server = https.createServer({ cert: pair.certPem, key: pair.keyPem }, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => { body += c; });
    req.on('end', () => {
      const headers = { 'Replay-Nonce': `nonce${++nonce}`, 'Cache-Control': 'no-store' };
      const json: Json = (status, value, extra = {}) => {
        res.writeHead(status, { ...headers, 'Content-Type': status >= 400 ? 'application/problem+json' : 'application/json', ...extra }).end(JSON.stringify(value));
      };
      void Promise.resolve(route(req, body, json, res, headers)).catch((err: Error) => json(500, { type: 'urn:ietf:params:acme:error:serverInternal', detail: err.message, status: 500 }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return server;
}

export async function startFakeAcme(dir: string, refusals: Record<string, Refusal>, issuing?: FakeIssuing): Promise<FakeAcme> {
  const pair = await createSelfSignedCert({ commonName: 'fake acme', altNames: ['127.0.0.1'] });
  const caFile = path.join(dir, 'fake-acme.pem');
  fs.writeFileSync(caFile, pair.certPem);
  const issuer = issuing ? await makeIssuer() : null;
  const state: FakeAcme = { directoryUrl: '', caFile, orders: [], newOrders: [], issued: [], renewalInfoRequests: [], close: async () => undefined };
  const chains: string[] = [];
  let base = '';
  let replacesRefused = false;

  function route(req: IncomingMessage, body: string, json: Json, res: ServerResponse, headers: Record<string, string>): void | Promise<void> {
    const url = req.url ?? '';
    if (url === '/dir') {
      return json(200, { newNonce: `${base}/nonce`, newAccount: `${base}/account`, newOrder: `${base}/order`, revokeCert: `${base}/revoke`, keyChange: `${base}/key`, ...(issuing?.renewalInfo ? { renewalInfo: `${base}/renewal-info/` } : {}) });
    }
    if (url === '/nonce') return void res.writeHead(200, headers).end();
    if (url === '/account') return json(201, { status: 'valid', orders: `${base}/orders` }, { Location: `${base}/acct/1` });
    if (url === '/order') return newOrder(payloadOf(body), json);
    const m = /^\/(authz|finalize|cert|renewal-info)\/(.+)$/.exec(url);
    if (m?.[1] === 'authz') return json(200, { status: 'valid', identifier: { type: 'dns', value: state.newOrders[Number(m[2])]?.name }, challenges: [] });
    if (m?.[1] === 'finalize') return finalize(Number(m[2]), String(payloadOf(body).csr ?? ''), json);
    if (m?.[1] === 'cert') return void res.writeHead(200, { ...headers, 'Content-Type': 'application/pem-certificate-chain' }).end(chains[Number(m[2])]);
    if (m?.[1] === 'renewal-info' && req.method === 'GET') return renewalInfo(m[2]!, json);
    json(404, { type: 'urn:ietf:params:acme:error:malformed', detail: 'not found', status: 404 });
  }

  function newOrder(p: Record<string, unknown>, json: Json): void {
    const name = (p.identifiers as Array<{ value: string }> | undefined)?.[0]?.value ?? '';
    const replaces = typeof p.replaces === 'string' ? p.replaces : undefined;
    state.orders.push(name);
    state.newOrders.push({ name, replaces });
    const n = state.newOrders.length - 1;
    if (issuing?.names.includes(name) && !refusals[name]) {
      if (replaces !== undefined && issuing.refuseReplacesOnce && !replacesRefused) {
        replacesRefused = true;
        return json(409, { type: 'urn:ietf:params:acme:error:alreadyReplaced', detail: `the certificate ${replaces} was already replaced`, status: 409 });
      }
      return json(201, { status: 'ready', identifiers: [{ type: 'dns', value: name }], authorizations: [`${base}/authz/${n}`], finalize: `${base}/finalize/${n}` }, { Location: `${base}/orders/${n}` });
    }
    const r = refusals[name] ?? { status: 400, type: 'urn:ietf:params:acme:error:malformed', detail: `unexpected identifier ${name}` };
    json(r.status, { type: r.type, detail: r.detail, status: r.status }, r.retryAfter ? { 'Retry-After': r.retryAfter } : {});
  }

  async function finalize(n: number, csr: string, json: Json): Promise<void> {
    const name = state.newOrders[n]!.name;
    const c = await issuer!.sign(csr, name);
    chains[n] = c.pem;
    state.issued.push({ certId: c.certId, serial: c.serial });
    json(200, { status: 'valid', identifiers: [{ type: 'dns', value: name }], authorizations: [`${base}/authz/${n}`], finalize: `${base}/finalize/${n}`, certificate: `${base}/cert/${n}` });
  }

  function renewalInfo(certId: string, json: Json): void {
    state.renewalInfoRequests.push(certId);
    const index = state.issued.findIndex((c) => c.certId === certId);
    if (index < 0) return json(404, { type: 'urn:ietf:params:acme:error:malformed', detail: `no certificate ${certId}`, status: 404 });
    const a = issuing!.renewalInfo!(index);
    json(a.status ?? 200, a.body, a.retryAfter ? { 'Retry-After': a.retryAfter } : {});
  }

  const server = await listen(pair, route);
  base = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
  state.directoryUrl = `${base}/dir`;
  state.close = () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); });
  return state;
}

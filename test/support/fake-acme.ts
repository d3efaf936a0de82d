/**
 * A tiny ACME directory (RFC 8555 §7.1) that refuses: enough of the protocol
 * for acme-client to register and ask for an order, then a problem document
 * (RFC 8555 §6.7) chosen per identifier. For the bad-input tests, where a
 * real CA cannot be made to answer 429 on demand.
 */
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { createSelfSignedCert } from '../../src/tls/self-signed.js';

export interface Refusal {
  status: number;
  type: string;
  detail: string;
  retryAfter?: string;
}

export interface FakeAcme {
  directoryUrl: string;
  caFile: string;
  /** Identifiers of the newOrder requests received, in order. */
  orders: string[];
  close(): Promise<void>;
}

function payloadOf(body: string): Record<string, unknown> {
  try {
    const jws = JSON.parse(body) as { payload?: string };
    return jws.payload ? (JSON.parse(Buffer.from(jws.payload, 'base64url').toString('utf8')) as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

export async function startFakeAcme(dir: string, refusals: Record<string, Refusal>): Promise<FakeAcme> {
  const pair = await createSelfSignedCert({ commonName: 'fake acme', altNames: ['127.0.0.1'] });
  const caFile = path.join(dir, 'fake-acme.pem');
  fs.writeFileSync(caFile, pair.certPem);
  const orders: string[] = [];
  let base = '';
  let nonce = 0;
  const server = https.createServer({ cert: pair.certPem, key: pair.keyPem }, (req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => { body += c; });
    req.on('end', () => {
      const headers = { 'Replay-Nonce': `nonce${++nonce}`, 'Cache-Control': 'no-store' };
      const json = (status: number, value: unknown, extra: Record<string, string> = {}): void => {
        res.writeHead(status, { ...headers, 'Content-Type': status >= 400 ? 'application/problem+json' : 'application/json', ...extra }).end(JSON.stringify(value));
      };
      if (req.url === '/dir') return json(200, { newNonce: `${base}/nonce`, newAccount: `${base}/account`, newOrder: `${base}/order`, revokeCert: `${base}/revoke`, keyChange: `${base}/key` });
      if (req.url === '/nonce') return void res.writeHead(200, headers).end();
      if (req.url === '/account') return json(201, { status: 'valid', orders: `${base}/orders` }, { Location: `${base}/acct/1` });
      if (req.url === '/order') {
        const ids = (payloadOf(body).identifiers as Array<{ value: string }> | undefined) ?? [];
        const name = ids[0]?.value ?? '';
        orders.push(name);
        const r = refusals[name] ?? { status: 400, type: 'urn:ietf:params:acme:error:malformed', detail: `unexpected identifier ${name}` };
        return json(r.status, { type: r.type, detail: r.detail, status: r.status }, r.retryAfter ? { 'Retry-After': r.retryAfter } : {});
      }
      json(404, { type: 'urn:ietf:params:acme:error:malformed', detail: 'not found', status: 404 });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  base = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
  return {
    directoryUrl: `${base}/dir`,
    caFile,
    orders,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

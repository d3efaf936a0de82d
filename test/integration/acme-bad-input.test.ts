/**
 * ACME answers that must not break anything: a name the CA refuses
 * (rejectedIdentifier, RFC 8555 §6.7), a rate limit (429 with Retry-After,
 * RFC 8555 §6.6), a stored certificate that cannot be read. Each is logged
 * with the CA's reason and shown in /status; the listener keeps serving.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { serveArgs, startAludel, type LogLine } from '../support/aludel-process.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { startFakeAcme, type FakeAcme } from '../support/fake-acme.js';
import { adminAddress, status } from '../support/metrics.js';
import { createSelfSignedCert } from '../../src/tls/self-signed.js';

/**
 * A hostile CA: answers the first GET of its directory (Aludel's probe), then
 * `stall`s every later request (accepted, never answered), answers it with
 * `huge` (64 MiB of JSON string) or with a `redirect` to another host.
 * Returns its directory URL and CA file.
 */
async function startHostileCa(dir: string, mode: 'stall' | 'huge' | 'redirect'): Promise<{ directoryUrl: string; caFile: string; requests: string[]; close(): void }> {
  const pair = await createSelfSignedCert({ commonName: 'hostile-ca', altNames: ['127.0.0.1'] });
  const caFile = path.join(dir, `hostile-${mode}.crt`);
  fs.writeFileSync(caFile, pair.certPem);
  const requests: string[] = [];
  const server = https.createServer({ cert: pair.certPem, key: pair.keyPem }, (req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const base = `https://127.0.0.1:${(server.address() as { port: number }).port}`;
    if (requests.length === 1) {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ newNonce: `${base}/nonce`, newAccount: `${base}/account`, newOrder: `${base}/order` }));
      return;
    }
    if (mode === 'stall') return;
    if (mode === 'redirect') {
      res.writeHead(301, { location: 'https://ca.elsewhere.example/dir' }).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write(`{"newNonce":"${base}/nonce","x":"`);
    const chunk = Buffer.alloc(1024 * 1024, 'a');
    let sent = 0;
    const pump = (): void => {
      while (sent < 64) {
        sent++;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end('"}');
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    directoryUrl: `https://127.0.0.1:${(server.address() as { port: number }).port}/dir`,
    caFile,
    requests,
    close: () => {
      server.closeAllConnections();
      server.close();
    },
  };
}

const FAILED = 'acme: certificate order failed; the current certificate keeps serving';

function peer(port: number, servername: string): Promise<tls.PeerCertificate> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      const c = s.getPeerCertificate();
      s.end();
      resolve(c);
    });
    s.once('error', reject);
  });
}

describe('ACME bad input', { concurrency: false }, () => {
  let fx: Fixtures<'one'>;
  let work: string;
  let ca: FakeAcme;
  before(async () => {
    fx = await makeFixtures({ one: 1 });
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-acme-bad-'));
    ca = await startFakeAcme(work, {
      'blocked.example': { status: 400, type: 'urn:ietf:params:acme:error:rejectedIdentifier', detail: 'Cannot issue for "blocked.example": the name is blocked by policy' },
      'busy.example': { status: 429, type: 'urn:ietf:params:acme:error:rateLimited', detail: 'too many certificates already issued for "busy.example"', retryAfter: '7200' },
      localhost: { status: 400, type: 'urn:ietf:params:acme:error:rejectedIdentifier', detail: 'localhost refused' },
    });
  });
  after(async () => {
    await ca?.close();
    fx?.cleanup();
    fs.rmSync(work, { recursive: true, force: true });
  });

  function args(storage: string, ...domains: string[]): string[] {
    const a = serveArgs(fx, ...domains.flatMap((d) => ['--acme-domain', d]), '--acme-directory', ca.directoryUrl, '--acme-ca', ca.caFile, '--acme-storage', storage, '--admin', '127.0.0.1:0');
    a.splice(a.indexOf('--cert'), 4);
    return a;
  }

  test('a refused name and a 429 with Retry-After: each logged with the CA\'s reason, the retry not before Retry-After, both in /status; a stand-in keeps serving', async () => {
    const server = await startAludel(args(path.join(work, 's1'), 'blocked.example', 'busy.example'));
    try {
      const failures: LogLine[] = [];
      for (const d of ['blocked.example', 'busy.example']) failures.push(await server.waitForLog((l) => l.msg === FAILED && l.domain === d, 20_000));
      assert.match(String(failures[0]!.error), /blocked by policy/);
      assert.match(String(failures[1]!.error), /too many certificates/);
      assert.ok(Number(failures[1]!.retryInMs) >= 7_200_000, `Retry-After 7200 s honoured: ${String(failures[1]!.retryInMs)}`);
      assert.ok(Number(failures[0]!.retryInMs) < 7_200_000);
      const st = (await status(await adminAddress(server))) as unknown as { acme: Array<Record<string, unknown>> };
      assert.deepEqual(st.acme.map((c) => [c.name, c.state, c.failures]), [['blocked.example', 'stand-in', 1], ['busy.example', 'stand-in', 1]]);
      assert.match(String(st.acme[1]!.lastError), /too many certificates/);
      // The process is up and answers with its self-signed stand-in.
      const c = await peer(server.port, 'busy.example');
      assert.equal(c.subject.CN, 'busy.example');
      assert.equal(c.issuer.CN, 'busy.example');
    } finally {
      await server.stop();
    }
  });

  for (const [mode, error] of [
    ['stall', /^no complete answer from the CA within 30 s \(GET https:\/\/127\.0\.0\.1:\d+\/dir\)$/],
    ['huge', /^GET https:\/\/127\.0\.0\.1:\d+\/dir: ERR_BAD_RESPONSE: maxContentLength size of 1048576 exceeded$/],
    ['redirect', /^GET https:\/\/127\.0\.0\.1:\d+\/dir: the CA answered HTTP 301 to https:\/\/ca\.elsewhere\.example\/dir; RFC 8555 has no redirects/],
  ] as const) {
    const doing = { stall: 'accepts a request and never answers', huge: 'answers with 64 MiB', redirect: 'redirects to another host' }[mode];
    test(`a CA that ${doing}: the order fails within its bound, with the reason, and is retried later; the stand-in serves`, { timeout: 120_000 }, async () => {
      const hostile = await startHostileCa(work, mode);
      const a = args(path.join(work, `hostile-${mode}`), 'localhost');
      a.splice(a.indexOf('--acme-directory'), 4, '--acme-directory', hostile.directoryUrl, '--acme-ca', hostile.caFile);
      const server = await startAludel(a);
      try {
        // Bounded by the 30 s deadline per request (stall) or the 1 MiB answer limit (huge); 60 s is the test's own guard.
        const line = await server.waitForLog((l) => l.msg === FAILED && l.domain === 'localhost', 60_000);
        assert.match(String(line.error), error);
        assert.ok(Number(line.retryInMs) > 0, 'retried later');
        const st = (await status(await adminAddress(server))) as unknown as { acme: Array<Record<string, unknown>> };
        assert.match(String(st.acme[0]!.lastError), error);
        assert.equal((await peer(server.port, 'localhost')).issuer.CN, 'localhost', 'the stand-in serves');
      } finally {
        await server.stop();
        hostile.close();
      }
    });
  }

  test('a corrupt stored certificate: set aside (not deleted), logged, a stand-in served, in /status', async () => {
    const storage = path.join(work, 's2');
    const dir = path.join(storage, 'certificates', 'localhost');
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(dir, 'pair.pem'), '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n', { mode: 0o600 });
    const server = await startAludel(args(storage, 'localhost'));
    try {
      const line = server.logs.find((l) => l.msg === FAILED && /stored certificate unusable/.test(String(l.error)));
      assert.ok(line, 'the unusable file is logged before the listener starts');
      const aside = fs.readdirSync(dir).filter((f) => f.startsWith('pair.pem.corrupt-'));
      assert.equal(aside.length, 1);
      assert.match(fs.readFileSync(path.join(dir, aside[0]!), 'utf8'), /not base64 at all/);
      const c = await peer(server.port, 'localhost');
      assert.equal(c.issuer.CN, 'localhost');
      const st = (await status(await adminAddress(server))) as unknown as { acme: Array<Record<string, unknown>> };
      assert.match(String(st.acme[0]!.lastError), /stored certificate unusable/);
    } finally {
      await server.stop();
    }
  });
});

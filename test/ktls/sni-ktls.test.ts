/**
 * kTLS after an SNI context switch (issue 13). SSL_set_SSL_CTX swaps only the
 * certificates; SSL_OP_ENABLE_KTLS and the cipher lists come from the
 * listening context (native/tls.c, sniTableSet). This proves, with the
 * kernel's own counters, that a connection switched to another certificate
 * context by its server name still runs kernel TLS, as does one on the
 * default context, for TLS 1.2 (TX+RX) and 1.3 (TX).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fingerprint, makeLeaf, presented, startSniServer, type Pair, type SniServer } from '../support/sni-certs.js';
import { delta, hasKernelTls, readTlsStat } from '../support/tls-stat.js';

let dir: string;
let def: Pair;
let a: Pair;
let w: Pair;
let srv: SniServer;

before(async () => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them in ../shared/ktls-vm/run-in-vm');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-sni-ktls-'));
  [def, a, w] = await Promise.all([
    makeLeaf(dir, 'default', 'ec', 'default.test', null),
    makeLeaf(dir, 'a', 'ec', 'a.test', ['a.test']),
    makeLeaf(dir, 'w', 'ec', 'wildcard', ['*.w.test']),
  ]);
  srv = await startSniServer({ certificates: [def, a, w], offload: 'kernel' });
  assert.equal(srv.engine, 'system-openssl');
  assert.equal(srv.ktls, true, 'kTLS on for this listener');
});

after(async () => {
  await srv?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** The server's report of its next connection after `from` (it arrives by IPC). */
async function connAfter(from: number): Promise<Record<string, unknown>> {
  for (let i = 0; i < 400 && srv.conns.length <= from; i++) await new Promise((r) => setTimeout(r, 25));
  const c = srv.conns[from];
  assert.ok(c, 'the server reported the connection');
  return c.tls;
}

describe('kTLS on connections switched by SNI', { timeout: 300_000 }, () => {
  const cases = [
    { what: 'exact name', sni: 'a.test' as string | null, cert: (): Pair => a },
    { what: 'wildcard', sni: 'x.w.test' as string | null, cert: (): Pair => w },
    { what: 'unknown name (default)', sni: 'unknown.test' as string | null, cert: (): Pair => def },
    { what: 'no SNI (default)', sni: null as string | null, cert: (): Pair => def },
  ];
  for (const version of ['-tls1_2', '-tls1_3'] as const) {
    for (const c of cases) {
      test(`${version} ${c.what}`, async () => {
        const from = srv.conns.length;
        const before = readTlsStat();
        const p = await presented(srv.port, c.sni, [version]);
        assert.equal(p.leaf.fingerprint256, fingerprint(c.cert().certFile), `${p.leaf.subject} presented`);
        const info = await connAfter(from);
        const d = delta(before, readTlsStat());
        assert.equal(info.servername, c.sni, 'the connection saw that server name');
        assert.equal(info.ktlsTx, true, `kTLS TX on (${JSON.stringify(info)})`);
        assert.equal(info.ktlsRx, version === '-tls1_2', 'kTLS RX on for TLS 1.2 (OpenSSL 3.0: TX only for 1.3)');
        assert.equal(d.TlsTxSw, 1, `the kernel counted one more software TX socket (${JSON.stringify(d)})`);
        assert.equal(d.TlsRxSw, version === '-tls1_2' ? 1 : 0, `RX socket count (${JSON.stringify(d)})`);
        if (info.kernel) assert.equal((info.kernel as { txConf: string }).txConf, 'sw');
      });
    }
  }

  test('after reconfigure, a switched connection still gets kTLS', async () => {
    const a2 = await makeLeaf(dir, 'a2', 'ec', 'a.test renewed', ['a.test']);
    const err = await srv.reconfigure({ certificates: [def, a2, w] });
    assert.equal(err, undefined, err?.message);
    const from = srv.conns.length;
    const before = readTlsStat();
    const p = await presented(srv.port, 'a.test', ['-tls1_2']);
    assert.equal(p.leaf.fingerprint256, fingerprint(a2.certFile));
    const info = await connAfter(from);
    assert.equal(info.ktlsTx, true);
    assert.equal(info.ktlsRx, true);
    assert.equal(delta(before, readTlsStat()).TlsTxSw, 1);
  });
});

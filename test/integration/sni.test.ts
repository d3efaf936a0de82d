/**
 * Several certificates chosen by SNI (issue 13), on both engines: the system
 * OpenSSL (servername callback + table installed from TypeScript) and the
 * node:tls fallback (SNICallback). Real clients: openssl s_client for what
 * the server presents, node:tls for a long transfer across a reconfigure.
 *
 * Certificates, in this order (the first is the default):
 *   default  ECDSA, CN default.test, no subjectAltName
 *   a        ECDSA, DNS:a.test
 *   w        ECDSA, DNS:*.w.test
 *   aRsa     RSA,   DNS:a.test  (same name, other key type: same context as a)
 *   chain    ECDSA, DNS:chain.test, issued by an intermediate (file: leaf + intermediate)
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { lookupSni, planCertificates } from '../../src/tls/certificates.js';
import { probeCapabilities } from '../../src/offload/capabilities.js';
import { buildNativeTls, resolveTls } from '../../src/tls/tls-setup.js';
import { fingerprint, makeChain, makeLeaf, presented, sClient, startSniServer, type Pair, type SniServer } from '../support/sni-certs.js';
import { patternSha256 } from '../support/sni-pattern.js';

let dir: string;
let certs: { default: Pair; a: Pair; w: Pair; aRsa: Pair; chain: Pair & { root: string; reversed: string }; a2: Pair; ipOnly: Pair; garbage: string; missing: string; encrypted: { pkcs8: string; traditional: string } };
let list: Pair[];

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-sni-'));
  const [def, a, w, aRsa, chain, a2, ipOnly] = await Promise.all([
    makeLeaf(dir, 'default', 'ec', 'default.test', null),
    makeLeaf(dir, 'a', 'ec', 'a.test', ['a.test']),
    makeLeaf(dir, 'w', 'ec', 'wildcard', ['*.w.test']),
    makeLeaf(dir, 'a-rsa', 'rsa', 'a.test', ['a.test']),
    makeChain(dir, 'chain.test'),
    makeLeaf(dir, 'a2', 'ec', 'a.test renewed', ['a.test']),
    makeLeaf(dir, 'ip-only', 'ec', '127.0.0.1', null),
  ]);
  const garbage = path.join(dir, 'garbage.crt');
  fs.writeFileSync(garbage, '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
  const plainKey = crypto.createPrivateKey(fs.readFileSync(a.keyFile));
  const encrypted = { pkcs8: path.join(dir, 'a-pkcs8-encrypted.key'), traditional: path.join(dir, 'a-traditional-encrypted.key') };
  fs.writeFileSync(encrypted.pkcs8, plainKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret' }));
  fs.writeFileSync(encrypted.traditional, plainKey.export({ type: 'sec1', format: 'pem', cipher: 'aes-256-cbc', passphrase: 'secret' }));
  certs = { default: def, a, w, aRsa, chain, a2, ipOnly, garbage, missing: path.join(dir, 'missing.crt'), encrypted };
  list = [def, a, w, aRsa, { certFile: chain.certFile, keyFile: chain.keyFile }];
});

after(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('the plan (pure TypeScript)', () => {
  test('names from the certificates, contexts per name, lookup order', () => {
    const plan = planCertificates(list);
    assert.deepEqual(plan.certificates.map((c) => c.names), [['default.test'], ['a.test'], ['*.w.test'], ['a.test'], ['chain.test']]);
    assert.deepEqual(plan.contexts[0], [0], 'the default context holds the first pair');
    const aCtx = plan.table.get('a.test')!;
    assert.deepEqual(plan.contexts[aCtx], [1, 3], 'a.test: the ECDSA and the RSA pair in one context');
    assert.equal(lookupSni(plan.table, 'a.test'), aCtx);
    assert.equal(lookupSni(plan.table, 'A.Test.'), aCtx, 'case and a trailing dot do not matter');
    assert.equal(lookupSni(plan.table, 'x.w.test'), plan.table.get('*.w.test'));
    assert.equal(lookupSni(plan.table, 'w.test'), 0, 'a wildcard does not cover its parent');
    assert.equal(lookupSni(plan.table, 'y.x.w.test'), 0, 'a wildcard covers one label only');
    assert.equal(lookupSni(plan.table, 'unknown.test'), 0);
    assert.equal(lookupSni(plan.table, null), 0);
    assert.equal(plan.certificates[4]!.chainLength, 2);
  });

  test('the C table answers as lookupSni() does', (t) => {
    const caps = probeCapabilities();
    if (!caps.native) return t.skip(`no system OpenSSL here: ${caps.opensslProblem}`);
    const resolved = resolveTls({ certificates: list });
    const built = buildNativeTls(caps.native, resolved, false);
    for (const name of ['a.test', 'A.TEST', 'a.test.', 'x.w.test', 'X.W.Test', 'w.test', 'y.x.w.test', '*.w.test', 'chain.test', 'default.test', 'nope', '', '.', 'x.', null]) {
      assert.equal(caps.native.sniLookup(built.listen, name), lookupSni(resolved.plan.table, name), `lookup of ${JSON.stringify(name)}`);
    }
  });

  test('clear errors that name the file', () => {
    const cases: Array<[Pair[], RegExp]> = [
      [[{ certFile: certs.a.certFile, keyFile: certs.aRsa.keyFile }], new RegExp(`--key ${certs.aRsa.keyFile} does not match --cert ${certs.a.certFile} \\(RSA key, EC certificate\\)`)],
      [[{ certFile: certs.a.certFile, keyFile: certs.w.keyFile }], new RegExp(`--key ${certs.w.keyFile} does not match --cert ${certs.a.certFile} \\(both EC prime256v1, but not the same key pair\\)`)],
      [[{ certFile: certs.missing, keyFile: certs.a.keyFile }], new RegExp(`--cert ${certs.missing}: cannot read it \\(ENOENT`)],
      [[{ certFile: certs.garbage, keyFile: certs.a.keyFile }], new RegExp(`--cert ${certs.garbage}: the certificate cannot be parsed`)],
      [[{ certFile: certs.a.keyFile, keyFile: certs.a.keyFile }], new RegExp(`--cert ${certs.a.keyFile}: no PEM certificate in it`)],
      [[{ certFile: certs.a.certFile, keyFile: certs.a.certFile }], new RegExp(`--key ${certs.a.certFile}: no usable PEM private key`)],
      [[{ certFile: certs.chain.reversed, keyFile: certs.chain.keyFile }], new RegExp(`--cert ${certs.chain.reversed}: certificate 2 \\(CN=chain.test\\) did not issue certificate 1.*leaf first`)],
      [[certs.default, certs.a, certs.a2], new RegExp(`--cert ${certs.a2.certFile} would never be chosen: .*a.test.* already has an EC certificate earlier in the list \\(--cert ${certs.a.certFile}\\)`)],
      [[certs.a, certs.ipOnly], new RegExp(`--cert ${certs.ipOnly.certFile} names no host`)],
      // Encrypted keys, PKCS#8 and traditional PEM: node reports them as ERR_OSSL_CRYPTO_INTERRUPTED_OR_CANCELLED.
      [[{ certFile: certs.a.certFile, keyFile: certs.encrypted.pkcs8 }], new RegExp(`^--key ${certs.encrypted.pkcs8}: the key is encrypted; give an unencrypted key`)],
      [[{ certFile: certs.a.certFile, keyFile: certs.encrypted.traditional }], new RegExp(`^--key ${certs.encrypted.traditional}: the key is encrypted; give an unencrypted key`)],
      // A device (or a FIFO) is refused by its type, not read: /dev/zero would fill memory, a FIFO block the event loop.
      [[{ certFile: '/dev/null', keyFile: certs.a.keyFile }], /^--cert \/dev\/null: cannot read it \(not a regular file; a certificate or key file is PEM text of at most 1 MiB\)$/],
      [[{ certFile: certs.a.certFile, keyFile: '/dev/null' }], /^--key \/dev\/null: cannot read it \(not a regular file; /],
    ];
    for (const [pairs, re] of cases) assert.throws(() => planCertificates(pairs), (err: Error & { code?: string }) => re.test(err.message) && err.code === 'ERR_TLS_CERTIFICATE', `${re}`);
  });
});

const ENGINES = [
  { name: 'system OpenSSL', env: {}, engine: 'system-openssl' },
  { name: 'node:tls fallback', env: { ALUDEL_LIBSSL: '/nonexistent/libssl.so.3' }, engine: 'node-tls' },
] as const;

for (const e of ENGINES) {
  describe(`SNI on ${e.name}`, { timeout: 180_000 }, () => {
    let srv: SniServer;
    before(async () => {
      srv = await startSniServer({ certificates: list, offload: 'auto' }, e.env);
      assert.equal(srv.engine, e.engine);
    });
    after(() => srv?.stop());

    // node:tls copies one pair per SNI context into the connection (UseSNIContext in node's
    // crypto_tls.cc), so the RSA twin of a.test is served by the system OpenSSL engine only.
    const rsaTwin = e.engine === 'node-tls' ? 'node:tls serves one key type per SNI name (src/tls/node-tls-server.ts)' : false;
    const cases: Array<{ what: string; sni: string | null; args?: string[]; want: () => string; keyType: string; skip?: string | false }> = [
      { what: 'exact name', sni: 'a.test', want: () => certs.a.certFile, keyType: 'ec' },
      { what: 'exact name, other case', sni: 'A.TEST', want: () => certs.a.certFile, keyType: 'ec' },
      { what: 'wildcard', sni: 'x.w.test', want: () => certs.w.certFile, keyType: 'ec' },
      { what: 'two labels under a wildcard: default', sni: 'y.x.w.test', want: () => certs.default.certFile, keyType: 'ec' },
      { what: 'unknown name: default', sni: 'unknown.test', want: () => certs.default.certFile, keyType: 'ec' },
      { what: 'no SNI: default', sni: null, want: () => certs.default.certFile, keyType: 'ec' },
      { what: 'RSA-only client, TLS 1.3', sni: 'a.test', args: ['-tls1_3', '-sigalgs', 'rsa_pss_rsae_sha256:rsa_pkcs1_sha256'], want: () => certs.aRsa.certFile, keyType: 'rsa', skip: rsaTwin },
      { what: 'RSA-only client, TLS 1.2', sni: 'a.test', args: ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256'], want: () => certs.aRsa.certFile, keyType: 'rsa', skip: rsaTwin },
      { what: 'ECDSA-only client, TLS 1.2', sni: 'a.test', args: ['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'], want: () => certs.a.certFile, keyType: 'ec' },
    ];
    for (const c of cases) {
      test(`${c.what} (${c.sni ?? 'no SNI'} ${c.args?.join(' ') ?? ''})`, { skip: c.skip ?? false }, async () => {
        const p = await presented(srv.port, c.sni, c.args);
        assert.equal(p.leaf.fingerprint256, fingerprint(c.want()), `${p.leaf.subject} presented`);
        assert.equal(p.leaf.publicKey.asymmetricKeyType, c.keyType);
      });
    }

    test('ALPN is negotiated on a context switched to by SNI, and on the default', async () => {
      for (const sni of ['a.test', 'x.w.test', null]) {
        const p = await presented(srv.port, sni, ['-alpn', 'h2,http/1.1']);
        assert.match(p.stdout, /ALPN protocol: http\/1\.1/, `${sni}: ${p.stdout}`);
      }
    });

    test('a full chain is sent (leaf, intermediate) and verifies against the root', async () => {
      const p = await presented(srv.port, 'chain.test', ['-CAfile', certs.chain.root, '-verify_return_error', '-verify_hostname', 'chain.test']);
      assert.equal(p.count, 2, 'leaf and intermediate');
      assert.equal(p.leaf.fingerprint256, fingerprint(certs.chain.certFile));
      assert.match(p.stdout, /Verify return code: 0 \(ok\)/);
      assert.equal(p.code, 0);
    });

    for (const version of ['-tls1_2', '-tls1_3']) {
      test(`${version}: a session on a context switched to by SNI resumes`, async () => {
        const sess = path.join(dir, `sess-${e.engine}${version}.pem`);
        const first = await presented(srv.port, 'a.test', [version, '-ign_eof', '-sess_out', sess], 'hello\n');
        assert.match(first.stdout, /^New, TLSv1\.[23]/m);
        const second = await sClient(srv.port, 'a.test', [version, '-ign_eof', '-sess_in', sess], 'hello\n');
        assert.match(second.stdout, /^Reused, TLSv1\.[23]/m, 'openssl reports a resumed session');
      });
    }

    test('the connection reports the SNI name it was switched by', async () => {
      const from = srv.conns.length;
      await presented(srv.port, 'x.w.test');
      const deadline = Date.now() + 5000;
      while (srv.conns.length === from && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(srv.conns[from]?.tls.servername, 'x.w.test');
    });
  });

  describe(`reconfigure on ${e.name}`, { timeout: 180_000 }, () => {
    let srv: SniServer;
    before(async () => {
      srv = await startSniServer({ certificates: [certs.default, certs.a], offload: 'auto' }, e.env);
    });
    after(() => srv?.stop());

    test('new handshakes get the new certificate; a transfer opened before completes intact', async () => {
      const total = 48 * 1024 * 1024;
      const before1 = await presented(srv.port, 'a.test');
      assert.equal(before1.leaf.fingerprint256, fingerprint(certs.a.certFile));

      // The long transfer: started before the reconfigure, read slowly across it.
      const sock = tls.connect({ host: '127.0.0.1', port: srv.port, servername: 'a.test', rejectUnauthorized: false });
      await new Promise<void>((resolve, reject) => sock.once('secureConnect', resolve).once('error', reject));
      assert.equal(sock.getPeerX509Certificate()?.fingerprint256, fingerprint(certs.a.certFile));
      const hash = crypto.createHash('sha256');
      let received = 0;
      const done = new Promise<void>((resolve, reject) => {
        sock.on('data', (c: Buffer) => {
          hash.update(c);
          received += c.length;
        });
        sock.once('end', resolve);
        sock.once('error', reject);
      });
      sock.write(`big ${total}\n`);
      sock.pause();
      await new Promise((r) => setTimeout(r, 300));

      const err = await srv.reconfigure({ certificates: [certs.default, certs.a2] });
      assert.equal(err, undefined, err?.message);
      const after1 = await presented(srv.port, 'a.test');
      assert.equal(after1.leaf.fingerprint256, fingerprint(certs.a2.certFile), 'a new handshake presents the new certificate');
      const dflt = await presented(srv.port, null);
      assert.equal(dflt.leaf.fingerprint256, fingerprint(certs.default.certFile));

      sock.resume();
      await done;
      assert.equal(received, total);
      assert.equal(hash.digest('hex'), patternSha256(total), 'the bytes of the transfer opened before are intact');
    });

    test('a broken certificate throws, names the file, and the old certificate keeps serving', async () => {
      const err = await srv.reconfigure({ certificates: [certs.default, { certFile: certs.garbage, keyFile: certs.a.keyFile }] });
      assert.ok(err, 'reconfigure must fail');
      assert.match(err.message, new RegExp(`--cert ${certs.garbage}`));
      assert.equal(err.code, 'ERR_TLS_CERTIFICATE');
      const p = await presented(srv.port, 'a.test');
      assert.equal(p.leaf.fingerprint256, fingerprint(certs.a2.certFile), 'still the configuration before the failed reconfigure');
    });

    test('an oversized certificate file (a good chain, then megabytes) throws, names the file and the limit; nothing changed', async () => {
      // Read whole before, into every worker on every reload: a certificate file is a few kB.
      const huge = path.join(dir, `huge-${e.engine}.crt`);
      fs.writeFileSync(huge, fs.readFileSync(certs.a.certFile, 'latin1') + '#'.repeat(2 * 1024 * 1024));
      const err = await srv.reconfigure({ certificates: [certs.default, { certFile: huge, keyFile: certs.a.keyFile }] });
      assert.ok(err, 'reconfigure must fail');
      assert.match(err.message, new RegExp(`^--cert ${huge}: cannot read it \\(larger than 1048576 bytes \\(${2 * 1024 * 1024 + fs.statSync(certs.a.certFile).size}\\); a certificate or key file is PEM text of at most 1 MiB\\)$`));
      assert.equal(err.code, 'ERR_TLS_CERTIFICATE');
      const p = await presented(srv.port, 'a.test');
      assert.equal(p.leaf.fingerprint256, fingerprint(certs.a2.certFile), 'still the configuration before the failed reconfigure');
    });

    test('a mismatched key: the clear message, nothing changed', async () => {
      const err = await srv.reconfigure({ certificates: [{ certFile: certs.a.certFile, keyFile: certs.aRsa.keyFile }] });
      assert.equal(err?.message, `--key ${certs.aRsa.keyFile} does not match --cert ${certs.a.certFile} (RSA key, EC certificate)`);
      const p = await presented(srv.port, null);
      assert.equal(p.leaf.fingerprint256, fingerprint(certs.default.certFile));
    });

    test('an invalid cipher list throws and changes nothing', async () => {
      const err = await srv.reconfigure({ certificates: [certs.a], cipherList: 'NO-SUCH-CIPHER' });
      assert.ok(err, 'reconfigure must fail');
      const p = await presented(srv.port, null);
      assert.equal(p.leaf.fingerprint256, fingerprint(certs.default.certFile));
    });
  });

  test(`${e.name}: a mismatched key at start-up gives the clear message`, async () => {
    await assert.rejects(
      startSniServer({ certificates: [{ certFile: certs.a.certFile, keyFile: certs.aRsa.keyFile }] }, e.env),
      (err: Error) => err.message === `--key ${certs.aRsa.keyFile} does not match --cert ${certs.a.certFile} (RSA key, EC certificate)`,
    );
  });
}

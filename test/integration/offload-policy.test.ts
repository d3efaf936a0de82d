/**
 * How --offload and the TLS engine are resolved: kernel mode refusing to start
 * without kTLS (with advice), bad flags, the node:tls fallback when the system
 * libssl cannot be loaded, and what probeCapabilities() says about OpenSSL.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { probeCapabilities } from '../../src/offload/capabilities.js';
import { runCli, serveArgs, startAludel } from '../support/aludel-process.js';
import { curl, opensslCliLibraryVersion } from '../support/clients.js';
import { makeFixtures, sha256, type StandardFixtures } from '../support/fixtures.js';

let fx: StandardFixtures;

before(async () => {
  fx = await makeFixtures();
});

after(() => fx?.cleanup());

describe('--offload kernel', { timeout: 30_000 }, () => {
  const kernelHasKtls = fs.existsSync('/proc/net/tls_stat');

  test(kernelHasKtls ? 'kernel with kTLS: starts and reports ktls true' : 'kernel without kTLS: exits non-zero fast with advice', async () => {
    if (!kernelHasKtls) {
      const r = await runCli(serveArgs(fx, '--offload', 'kernel'), {}, 15_000);
      assert.equal(r.signal, null, 'exited by itself, was not killed by the timeout');
      assert.notEqual(r.code, 0);
      assert.ok(r.ms < 5000, `took ${r.ms} ms`);
      assert.match(r.stderr, /CONFIG_TLS|modprobe tls/, r.stderr);
      assert.match(r.stderr, /--offload kernel/);
      assert.match(r.stderr, /--offload auto/, 'says how to run anyway');
      assert.doesNotMatch(r.stderr, /^\s+at /m, 'an actionable message, not a stack trace');
      assert.doesNotMatch(r.stdout, /serving files over HTTPS/);
    } else {
      const srv = await startAludel(serveArgs(fx, '--offload', 'kernel'));
      try {
        const line = srv.logs.find((l) => l.msg.startsWith('crypto:'));
        assert.ok(line);
        assert.equal(line.ktls, true);
        assert.equal(line.engine, 'system-openssl');
      } finally {
        await srv.stop();
      }
    }
  });
});

describe('bad flags', { timeout: 30_000 }, () => {
  test('--offload bogus exits non-zero naming --offload', async () => {
    const r = await runCli(serveArgs(fx, '--offload', 'bogus'));
    assert.equal(r.signal, null);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--offload/);
    assert.match(r.stderr, /bogus/);
    assert.match(r.stderr, /auto|kernel|userspace/, 'lists the accepted values');
    assert.doesNotMatch(r.stdout, /serving files over HTTPS/);
  });

  test('--listen nonsense exits non-zero naming --listen', async () => {
    const r = await runCli(['serve', '--listen', 'nonsense', '--cert', fx.certFile, '--key', fx.keyFile, '--root', fx.root]);
    assert.equal(r.signal, null);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--listen/);
    assert.match(r.stderr, /nonsense/);
    assert.doesNotMatch(r.stdout, /serving files over HTTPS/);
  });
});

describe('ALUDEL_LIBSSL=/nonexistent: node:tls fallback', { timeout: 60_000 }, () => {
  test('engine node-tls, reason mentions libssl, downloads intact on the write path', async () => {
    const srv = await startAludel(serveArgs(fx), { env: { ALUDEL_LIBSSL: '/nonexistent/libssl.so.3' } });
    try {
      const line = srv.logs.find((l) => l.msg.startsWith('crypto:'));
      assert.ok(line, 'start-up line about the crypto');
      assert.equal(line.engine, 'node-tls');
      assert.equal(line.ktls, false);
      assert.equal(line.level, 40, 'auto had to fall back: a warning');
      assert.match(String(line.reason), /libssl/);
      assert.match(String(line.reason), /\/nonexistent\/libssl\.so\.3/);
      assert.equal(line.openssl, null);

      for (const [tlsFlags, version] of [[['--tlsv1.2', '--tls-max', '1.2'], 'TLSv1.2'], [['--tlsv1.3'], 'TLSv1.3']] as const) {
        const from = srv.mark();
        const names = Object.values(fx.files);
        const args = ['--cacert', fx.certFile, '--resolve', `localhost:${srv.port}:127.0.0.1`, ...tlsFlags, '-w', '%{http_code}\n'];
        const outs = names.map((f) => path.join(fx.outDir, `nodetls-${version}-${f.name}`));
        names.forEach((f, i) => args.push(`https://localhost:${srv.port}/${f.name}`, '-o', outs[i]!));
        const r = await curl(args);
        assert.equal(r.code, 0, r.stderr);
        assert.deepEqual(r.stdout.toString().trim().split('\n'), names.map(() => '200'));
        names.forEach((f, i) => assert.equal(sha256(fs.readFileSync(outs[i]!)), f.sha256, `${f.name} over ${version}`));

        const est = await srv.waitForLog((l) => l.msg === 'TLS established', 5000, from);
        assert.equal(est.engine, 'node-tls');
        assert.equal(est.tls, version);
        assert.equal(est.tx, 'user');
        assert.equal(est.rx, 'user');
        for (const f of names) {
          const q = await srv.waitForLog((l) => l.msg === 'request' && l.url === `/${f.name}`, 5000, from);
          assert.equal(q.status, 200);
          assert.equal(q.bytes, f.size);
          assert.equal(q.body, f.size === 0 ? 'none' : 'write');
          assert.equal(q.conn, est.conn);
        }
      }
    } finally {
      await srv.stop();
    }
  });
});

describe('probeCapabilities()', () => {
  test('finds the system OpenSSL 3, not the copy inside node', async () => {
    const caps = probeCapabilities();
    assert.equal(caps.opensslProblem, null, String(caps.opensslProblem));
    assert.ok(caps.native, 'native addon loaded');
    assert.ok(caps.openssl, 'system OpenSSL probed');
    const o = caps.openssl;
    assert.ok(o.version.startsWith('OpenSSL 3.'), o.version);
    assert.equal(o.version, await opensslCliLibraryVersion());
    assert.ok(o.versionNumber >= 0x30000000 && o.versionNumber < 0x40000000, o.versionNumber.toString(16));
    assert.ok(o.libssl, 'path of the library providing SSL_new');
    assert.ok(o.libssl.endsWith('libssl.so.3'), o.libssl);
    assert.ok(fs.existsSync(o.libssl), `${o.libssl} exists`);
    assert.notEqual(fs.realpathSync(o.libssl), fs.realpathSync(process.execPath), 'SSL_new does not come from the node binary');
    assert.equal(o.nodeCopy, false);
    assert.notEqual(o.version, process.versions.openssl);
    // The kernel side must be consistent with what /proc says.
    if (fs.existsSync('/proc/net/tls_stat')) assert.equal(caps.kernelProblem, null);
    else assert.match(String(caps.kernelProblem), /CONFIG_TLS|modprobe tls|TCP_ULP/);
  });
});

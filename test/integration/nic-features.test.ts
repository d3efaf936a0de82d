/**
 * NIC offload features on this machine, as the kernel gives them to Aludel
 * (SIOCETHTOOL), checked against `ethtool -k` and /sys/class/net; and
 * --offload-policy prefer-hw on loopback, which never offloads, so the
 * listener behaves as usual and says why.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { NIC_FEATURES, formatFeature, type NicReport } from '../../src/offload/nic-features.js';
import { runCli, serveArgs, startAludel } from '../support/aludel-process.js';
import { curl } from '../support/clients.js';
import { doctorSchemaProblems, netInterfaceNames } from '../support/doctor-schema.js';
import { ethtoolK } from '../support/ethtool.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';

let fx: Fixtures<'a.txt'>;
before(async () => {
  fx = await makeFixtures({ 'a.txt': 1000 });
});
after(() => fx?.cleanup());

describe('aludel doctor --json: NIC features', { timeout: 60_000 }, () => {
  test('every interface of this namespace, each of the five features as ethtool -k shows it', async () => {
    const r = await runCli(['doctor', '--json'], {}, 30_000);
    assert.equal(r.signal, null, r.stderr);
    const report = JSON.parse(r.stdout) as { nics: NicReport };
    assert.deepEqual(doctorSchemaProblems(report), []);
    const nics = report.nics;
    assert.equal(nics.status, 'read', String(nics.problem));
    assert.deepEqual(nics.interfaces.map((i) => i.name).sort(), netInterfaceNames(), 'the interfaces /sys/class/net lists');
    for (const i of nics.interfaces) {
      assert.equal(i.error, null, `${i.name}: ${JSON.stringify(i.error)}`);
      assert.equal(i.index, Number(fs.readFileSync(`/sys/class/net/${i.name}/ifindex`, 'utf8')), `${i.name} ifindex`);
      const ethtool = await ethtoolK(i.name);
      for (const f of NIC_FEATURES) assert.equal(formatFeature(i.features[f]), ethtool[f] ?? 'absent', `${i.name} ${f}`);
    }
    const lo = nics.interfaces.find((i) => i.name === 'lo');
    assert.ok(lo && NIC_FEATURES.every((f) => lo.features[f]?.active === false && lo.features[f]?.fixed === true), 'lo offloads nothing');
  });
});

describe('--offload-policy prefer-hw on loopback', { timeout: 60_000 }, () => {
  test('aludel serve: behaves as usual because lo has no TLS offload, and TLS 1.3 still works', async () => {
    const srv = await startAludel(serveArgs(fx, '--offload-policy', 'prefer-hw'));
    try {
      const line = srv.logs.find((l) => l.msg.startsWith('offload policy'));
      assert.ok(line, 'a start-up line about the policy');
      assert.equal(line.offloadPolicy, 'prefer-hw');
      assert.equal(line.preferHw, false);
      assert.deepEqual(line.interfaces, [{ name: 'lo', tlsTx: 'off [fixed]' }]);
      assert.match(line.msg, /^offload policy prefer-hw: behaving as usual \(TLSv1\.2-1\.3\): .*lo has no NIC TLS offload \(tls-hw-tx-offload off \[fixed\]\)/);
      if (!fs.existsSync('/proc/net/tls_stat')) assert.match(line.msg, /kernel TLS is off/, 'and, on this kernel, no kTLS either');
      const from = srv.mark();
      const r = await curl(['--cacert', fx.certFile, '--resolve', `localhost:${srv.port}:127.0.0.1`, '--tlsv1.3', '-o', '/dev/null', '-w', '%{http_code}', `https://localhost:${srv.port}/a.txt`]);
      assert.equal(r.stdout.toString(), '200', r.stderr);
      assert.equal((await srv.waitForLog((l) => l.msg === 'TLS established', 5000, from)).tls, 'TLSv1.3');
    } finally {
      await srv.stop();
    }
  });

  test('aludel tcp: the same line; default policy: no line', async () => {
    const tcp = await startAludel(['tcp', '--listen', '127.0.0.1:0', '--cert', fx.certFile, '--key', fx.keyFile, '--to', '127.0.0.1:9', '--offload-policy', 'prefer-hw']);
    try {
      assert.match(tcp.logs.find((l) => l.msg.startsWith('offload policy'))?.msg ?? '', /behaving as usual .*lo has no NIC TLS offload/);
    } finally {
      await tcp.stop();
    }
    const plain = await startAludel(serveArgs(fx));
    try {
      assert.ok(!plain.logs.some((l) => l.msg.startsWith('offload policy')), 'the default policy looks at no NIC and says nothing');
    } finally {
      await plain.stop();
    }
  });

  test('a bad value exits non-zero naming the flag', async () => {
    const r = await runCli(serveArgs(fx, '--offload-policy', 'nic'));
    assert.equal(r.signal, null);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--offload-policy: expected default or prefer-hw/);
    assert.doesNotMatch(r.stdout, /serving files over HTTPS/);
  });
});

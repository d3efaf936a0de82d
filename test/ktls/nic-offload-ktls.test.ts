/**
 * NIC offload features and --offload-policy prefer-hw under a kernel with TLS,
 * in a network namespace of our own. Debian's kernel is built without
 * netdevsim (CONFIG_NETDEVSIM unset), so bonding provides the states to read:
 * a balance-xor bond with layer3+4 hashing reports tls-hw-tx-offload "on
 * [fixed]" (bond_fix_features in drivers/net/bonding/bond_main.c), and a bond
 * lets esp-hw-offload be toggled (available, off until `ethtool -K`). What
 * Aludel reads is compared with `ethtool -k` for every interface.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Finding } from '../../src/offload/doctor.js';
import { NIC_FEATURES, formatFeature, type NicReport } from '../../src/offload/nic-features.js';
import { CLI, serveArgs, startAludel, type LogLine, type Running } from '../support/aludel-process.js';
import { doctorSchemaProblems } from '../support/doctor-schema.js';
import { ethtoolK } from '../support/ethtool.js';
import { makeFixtures, type Fixtures } from '../support/fixtures.js';
import { run } from '../support/run-process.js';
import { hasKernelTls } from '../support/tls-stat.js';

const NS = `aludel-nic-${process.pid}`;
const IN_NS = ['ip', 'netns', 'exec', NS] as const;
/** bx: TLS TX offload on [fixed] (balance-xor, layer3+4); ba: no TLS offload, esp-hw-offload available (active-backup). */
const BX = '192.0.2.1';
const BA = '198.51.100.1';

let fx: Fixtures<'a.txt'>;

async function sh(...argv: string[]): Promise<string> {
  const r = await run(argv[0]!, argv.slice(1), { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} failed (${r.signal ?? r.code}): ${r.stderr}`);
  return r.stdout.toString('utf8');
}

async function doctor(): Promise<{ nics: NicReport; findings: Finding[] }> {
  const out = await sh(...IN_NS, process.execPath, CLI, 'doctor', '--json');
  const report = JSON.parse(out) as { nics: NicReport; findings: Finding[] };
  assert.deepEqual(doctorSchemaProblems(report), []);
  return report;
}

function start(...extra: string[]): Promise<Running> {
  return startAludel(serveArgs(fx, '--handshake-timeout', '60s', ...extra), { startTimeoutMs: 120_000, prefix: IN_NS });
}

function policyLine(srv: Running): LogLine {
  const line = srv.logs.find((l) => l.msg.startsWith('offload policy'));
  assert.ok(line, 'a start-up line about the offload policy');
  return line;
}

/** curl inside the namespace, to `address` under the certificate's name. */
function get(srv: Running, address: string, ...flags: string[]) {
  const url = `https://localhost:${srv.port}/a.txt`;
  return run(IN_NS[0], [...IN_NS.slice(1), 'curl', '-sS', '--max-time', '240', '--cacert', fx.certFile, '--resolve', `localhost:${srv.port}:${address}`, '-o', '/dev/null', '-w', '%{http_code}', ...flags, url], { timeoutMs: 250_000 });
}

before(async () => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  fx = await makeFixtures({ 'a.txt': 1000 });
  // max_bonds=0: loading the module must not create a bond0 outside our namespace.
  await sh('modprobe', 'bonding', 'max_bonds=0');
  await sh('ip', 'netns', 'add', NS);
  const setup = [
    'link set lo up',
    'link add bx type bond mode balance-xor xmit_hash_policy layer3+4',
    'link add dx type dummy',
    'link set dx master bx',
    'link add ba type bond mode active-backup',
    'link add da type dummy',
    'link set da master ba',
    'link set dx up',
    'link set da up',
    'link set bx up',
    'link set ba up',
    `addr add ${BX}/24 dev bx`,
    `addr add ${BA}/24 dev ba`,
  ];
  for (const cmd of setup) await sh(...IN_NS, 'ip', ...cmd.split(' '));
});

after(async () => {
  await run('ip', ['netns', 'del', NS], { timeoutMs: 60_000 });
  fx?.cleanup();
});

describe('aludel doctor --json in a namespace with bonds', { timeout: 600_000 }, () => {
  test('every interface with the five features, as ethtool -k shows them; bx offloads TLS TX', async (t) => {
    const { nics, findings } = await doctor();
    assert.equal(nics.status, 'read', String(nics.problem));
    const listed = (await sh(...IN_NS, 'ls', '/sys/class/net')).split(/\s+/).filter((n) => n && n !== 'bonding_masters');
    assert.deepEqual(nics.interfaces.map((i) => i.name).sort(), listed.sort());
    assert.deepEqual(listed.sort(), ['ba', 'bx', 'da', 'dx', 'lo']);
    for (const i of nics.interfaces) {
      assert.equal(i.error, null, `${i.name}: ${JSON.stringify(i.error)}`);
      const ethtool = await ethtoolK(i.name, IN_NS);
      for (const f of NIC_FEATURES) {
        assert.notEqual(i.features[f], null, `${i.name} ${f}: Linux 6.1 names it`);
        assert.equal(formatFeature(i.features[f]), ethtool[f], `${i.name} ${f}`);
      }
    }
    const by = Object.fromEntries(nics.interfaces.map((i) => [i.name, i.features]));
    assert.ok(NIC_FEATURES.every((f) => by.lo![f]?.active === false), 'lo offloads nothing');
    assert.deepEqual(by.bx!['tls-hw-tx-offload'], { available: false, requested: false, active: true, fixed: true });
    assert.deepEqual(by.ba!['tls-hw-tx-offload']?.active, false);
    assert.deepEqual(by.ba!['esp-hw-offload'], { available: true, requested: false, active: false, fixed: false });

    const nic = findings.filter((f) => f.area === 'nic');
    t.diagnostic(JSON.stringify(nic));
    const bx = nic.find((f) => f.what.startsWith('bx:'));
    assert.ok(bx && bx.level === 'ok' && /tls-hw-tx-offload on \[fixed\]/.test(bx.what) && /--offload-policy prefer-hw/.test(bx.advice), JSON.stringify(bx));
    const ba = nic.find((f) => f.what.startsWith('ba:'));
    assert.ok(ba && /esp-hw-offload off/.test(ba.what) && /ethtool -K ba esp-hw-offload on/.test(ba.advice), JSON.stringify(ba));
    assert.ok(!nic.some((f) => f.what.startsWith('lo:')), 'no finding for lo');
    assert.deepEqual(nic.at(-1), { level: 'ok', area: 'nic', what: 'NIC TLS offload on: bx', advice: nic.at(-1)!.advice });
  });

  test('a feature turned on with ethtool -K reads as on', async () => {
    await sh(...IN_NS, 'ethtool', '-K', 'ba', 'esp-hw-offload', 'on');
    const { nics } = await doctor();
    const ba = nics.interfaces.find((i) => i.name === 'ba')!;
    assert.deepEqual(ba.features['esp-hw-offload'], { available: true, requested: true, active: true, fixed: false });
    assert.equal((await ethtoolK('ba', IN_NS))['esp-hw-offload'], 'on');
  });
});

describe('--offload-policy prefer-hw', { timeout: 600_000 }, () => {
  test('on the address of bx: TLS 1.2 AES-128-GCM only; the kernel still encrypts in software (local traffic goes over lo)', async () => {
    const srv = await start('--listen', `${BX}:0`, '--offload-policy', 'prefer-hw');
    try {
      const line = policyLine(srv);
      assert.deepEqual([line.preferHw, line.interfaces, line.tlsMin, line.tlsMax], [true, [{ name: 'bx', tlsTx: 'on [fixed]' }], 'TLSv1.2', 'TLSv1.2']);
      assert.equal(line.msg, 'offload policy prefer-hw: TLS 1.2 with AES-128-GCM only, so the NIC can encrypt (tls-hw-tx-offload on: bx)');
      const stat0 = await sh(...IN_NS, 'cat', '/proc/net/tls_stat');
      const from = srv.mark();
      const r = await get(srv, BX);
      assert.equal(r.stdout.toString(), '200', r.stderr);
      const est = await srv.waitForLog((l) => l.msg === 'TLS established', 30_000, from);
      assert.deepEqual([est.tls, est.cipher, est.tx], ['TLSv1.2', 'ECDHE-ECDSA-AES128-GCM-SHA256', 'kernel']);
      // The device offload is attempted on the route's device: lo for a local peer, which has none, so software kTLS.
      assert.equal(est.kernelTx, 'sw');
      const txSw = (text: string): number => Number(/TlsTxSw\s+(\d+)/.exec(text)?.[1]);
      const stat1 = await sh(...IN_NS, 'cat', '/proc/net/tls_stat');
      assert.ok(txSw(stat1) > txSw(stat0), `the namespace's TlsTxSw grew:\n${stat1}`);
      assert.match(stat1, /TlsTxDevice\s+0\n/);
      const tls13 = await get(srv, BX, '--tlsv1.3');
      assert.notEqual(tls13.code, 0, 'a TLS 1.3-only client is refused');
    } finally {
      await srv.stop();
    }
  });

  test('on loopback: as usual, because lo has no TLS offload; TLS 1.3 negotiated', async () => {
    const srv = await start('--offload-policy', 'prefer-hw');
    try {
      const line = policyLine(srv);
      assert.deepEqual([line.preferHw, line.reasons], [false, ['lo has no NIC TLS offload (tls-hw-tx-offload off [fixed])']]);
      assert.equal(line.msg, 'offload policy prefer-hw: behaving as usual (TLSv1.2-1.3): lo has no NIC TLS offload (tls-hw-tx-offload off [fixed])');
      const from = srv.mark();
      const r = await get(srv, '127.0.0.1');
      assert.equal(r.stdout.toString(), '200', r.stderr);
      assert.equal((await srv.waitForLog((l) => l.msg === 'TLS established', 30_000, from)).tls, 'TLSv1.3');
    } finally {
      await srv.stop();
    }
  });

  test('on 0.0.0.0: as usual, because ba has no TLS offload (lo does not count); aludel tcp on bx: narrowed', async () => {
    const any = await start('--listen', '0.0.0.0:0', '--offload-policy', 'prefer-hw');
    try {
      const line = policyLine(any);
      assert.equal(line.preferHw, false);
      assert.deepEqual((line.interfaces as Array<{ name: string }>).map((i) => i.name).sort(), ['ba', 'bx', 'lo']);
      assert.deepEqual(line.reasons, ['ba has no NIC TLS offload (tls-hw-tx-offload off [fixed])']);
    } finally {
      await any.stop();
    }
    const tcp = await startAludel(['tcp', '--listen', `${BX}:0`, '--cert', fx.certFile, '--key', fx.keyFile, '--to', '127.0.0.1:9', '--offload-policy', 'prefer-hw'], { startTimeoutMs: 120_000, prefix: IN_NS });
    try {
      assert.equal(policyLine(tcp).preferHw, true);
    } finally {
      await tcp.stop();
    }
  });
});

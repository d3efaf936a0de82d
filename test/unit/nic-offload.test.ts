/**
 * NIC offload features: the bit arithmetic on the kernel's feature words, the
 * doctor findings and the --offload-policy prefer-hw decision, on fake feature
 * tables (the real ones are compared with `ethtool -k` in
 * test/integration/nic-features.test.ts and test/ktls/nic-offload-ktls.test.ts).
 */
import assert from 'node:assert/strict';
import type os from 'node:os';
import { describe, test } from 'node:test';
import { nicFindings } from '../../src/offload/nic-findings.js';
import { NIC_FEATURES, featureStates, formatFeature, type NicFeature, type NicFeatureState, type NicInterface, type NicReport } from '../../src/offload/nic-features.js';
import { decideHwPolicy, describeHwPolicy, type HostView, type ListenerTls } from '../../src/tls/hw-offload-policy.js';
import { DEVICE_OFFLOAD_CIPHERS } from '../../src/tls/policy.js';

/** The kernel 6.1 feature names at their real bit positions; the others are placeholders. */
const NAMES = Array.from({ length: 64 }, (_, i) => `feature-${i}`);
Object.assign(NAMES, { 31: 'tx-esp-segmentation', 50: 'esp-hw-offload', 51: 'esp-tx-csum-hw-offload', 53: 'tls-hw-tx-offload', 54: 'tls-hw-rx-offload', 56: 'tls-hw-record' });

/** Feature words with the given bits set per block. */
function words(bits: { available?: number[]; requested?: number[]; active?: number[]; neverChanged?: number[] }, count = 2) {
  const block = (set: number[] = []): number[] => {
    const w = new Array<number>(count).fill(0);
    for (const b of set) w[b >>> 5] = (w[b >>> 5]! | (1 << (b & 31))) >>> 0;
    return w;
  };
  return { available: block(bits.available), requested: block(bits.requested), active: block(bits.active), neverChanged: block(bits.neverChanged) };
}

describe('featureStates: ETHTOOL_GFEATURES words to the five features', () => {
  test('bits in the second word, fixed from available and never_changed, requested', () => {
    // tls-hw-tx (53) on and changeable; esp-hw (50) changeable but off; tls-hw-rx (54) on but fixed;
    // tls-hw-record (56) available yet never_changed; esp-tx-csum (51) asked for, held off.
    const f = featureStates(NAMES, words({ available: [53, 50, 56, 51], requested: [53, 54, 51], active: [53, 54], neverChanged: [56] }));
    assert.deepEqual(f['tls-hw-tx-offload'], { available: true, requested: true, active: true, fixed: false });
    assert.deepEqual(f['esp-hw-offload'], { available: true, requested: false, active: false, fixed: false });
    assert.deepEqual(f['tls-hw-rx-offload'], { available: false, requested: true, active: true, fixed: true });
    assert.deepEqual(f['tls-hw-record'], { available: true, requested: false, active: false, fixed: true });
    assert.deepEqual(f['esp-tx-csum-hw-offload'], { available: true, requested: true, active: false, fixed: false });
    // Bit 31 (tx-esp-segmentation, not one of the five) must not leak into bit 63 or anything else.
    const high = featureStates(NAMES, words({ active: [31, 63] }));
    assert.ok(NIC_FEATURES.every((n) => high[n]?.active === false));
  });

  test('a feature the kernel does not name is absent (null), not an error', () => {
    const old = NAMES.slice(0, 50); // a kernel before ESP/TLS offload existed
    assert.deepEqual(featureStates(old, words({ active: [53] })), Object.fromEntries(NIC_FEATURES.map((n) => [n, null])));
    // Named, but beyond the words the kernel returned.
    assert.equal(featureStates(NAMES, words({}, 1))['tls-hw-tx-offload'], null);
  });

  test('formatFeature prints what ethtool -k prints', () => {
    const s = (available: boolean, requested: boolean, active: boolean, fixed: boolean): NicFeatureState => ({ available, requested, active, fixed });
    assert.equal(formatFeature(s(true, true, true, false)), 'on');
    assert.equal(formatFeature(s(false, false, false, true)), 'off [fixed]');
    assert.equal(formatFeature(s(false, true, true, true)), 'on [fixed]');
    assert.equal(formatFeature(s(true, true, false, false)), 'off [requested on]');
    assert.equal(formatFeature(s(true, false, true, false)), 'on [requested off]');
    assert.equal(formatFeature(null), 'absent');
  });
});

type Spec = 'on' | 'off' | 'on [fixed]' | 'off [fixed]';
const state = (v: Spec): NicFeatureState => {
  const active = v.startsWith('on');
  const fixed = v.endsWith('[fixed]');
  return { available: !fixed, requested: active, active, fixed };
};
/** An interface with every feature "off [fixed]" unless given. */
function nic(name: string, index: number, given: Partial<Record<NicFeature, Spec>> = {}): NicInterface {
  const features = Object.fromEntries(NIC_FEATURES.map((f) => [f, state(given[f] ?? 'off [fixed]')])) as NicInterface['features'];
  return { name, index, features, error: null };
}
const report = (...interfaces: NicInterface[]): NicReport => ({ status: 'read', problem: null, interfaces });

describe('doctor findings', () => {
  test('no offload anywhere: no per-interface finding, one summary saying where the crypto runs', () => {
    const f = nicFindings(report(nic('lo', 1), nic('eth0', 2)), true);
    assert.equal(f.length, 1);
    assert.equal(f[0]!.level, 'ok');
    assert.match(f[0]!.what, /^no NIC TLS offload on this host: crypto runs in the kernel's software kTLS/);
    assert.match(f[0]!.advice, /TLS 1\.2/);
    assert.match(nicFindings(report(nic('lo', 1)), false)[0]!.what, /userspace OpenSSL/);
  });

  test('TLS offload available but off: a warning with the ethtool -K line', () => {
    const f = nicFindings(report(nic('lo', 1), nic('eth0', 2, { 'tls-hw-tx-offload': 'off', 'tls-hw-rx-offload': 'off' })), true);
    const eth0 = f.find((x) => x.what.startsWith('eth0:'))!;
    assert.equal(eth0.level, 'warn');
    assert.equal(eth0.what, 'eth0: tls-hw-tx-offload off, tls-hw-rx-offload off');
    assert.match(eth0.advice, /ethtool -K eth0 tls-hw-tx-offload on tls-hw-rx-offload on/);
    assert.match(eth0.advice, /--offload-policy prefer-hw/);
    assert.equal(f.at(-1)!.level, 'warn');
    assert.match(f.at(-1)!.what, /available but off: eth0/);
    assert.ok(!f.some((x) => x.what.startsWith('lo:')), 'lo has nothing to report');
  });

  test('TLS TX offload on: ok, with prefer-hw; ESP only: ok, said to be for IPsec; TOE record offload explained', () => {
    const f = nicFindings(
      report(
        nic('eth0', 2, { 'tls-hw-tx-offload': 'on', 'tls-hw-rx-offload': 'on [fixed]' }),
        nic('eth1', 3, { 'esp-hw-offload': 'off', 'esp-tx-csum-hw-offload': 'on' }),
        nic('cxgb0', 4, { 'tls-hw-record': 'on' }),
      ),
      true,
    );
    const [eth0, eth1, toe, sum] = f;
    assert.deepEqual([eth0!.level, eth0!.what], ['ok', 'eth0: tls-hw-tx-offload on, tls-hw-rx-offload on [fixed]']);
    assert.match(eth0!.advice, /encrypt and decrypt kTLS records of connections routed through eth0/);
    assert.deepEqual([eth1!.level, eth1!.what], ['ok', 'eth1: esp-hw-offload off, esp-tx-csum-hw-offload on']);
    assert.match(eth1!.advice, /IPsec/);
    assert.match(eth1!.advice, /ethtool -K eth1 esp-hw-offload on$/);
    assert.match(toe!.advice, /bypass the kernel's TCP stack/);
    assert.deepEqual([sum!.level, sum!.what], ['ok', 'NIC TLS offload on: eth0']);
  });

  test('unreadable: one warning; a failed interface: its own warning; an old kernel: said so', () => {
    const un = nicFindings({ status: 'unavailable', problem: 'native addon not available (x)', interfaces: [] }, true);
    assert.deepEqual(un.map((x) => x.level), ['warn']);
    assert.match(un[0]!.what, /native addon not available/);
    const gone: NicInterface = { ...nic('veth9', 9), error: { code: 'ENODEV', errno: 19, syscall: 'ioctl(SIOCETHTOOL, ETHTOOL_GFEATURES)' } };
    const f = nicFindings(report(nic('lo', 1), gone), true);
    assert.match(f[0]!.what, /^veth9: features not read \(ioctl\(SIOCETHTOOL, ETHTOOL_GFEATURES\): ENODEV\)/);
    const old = report({ ...nic('lo', 1), features: Object.fromEntries(NIC_FEATURES.map((n) => [n, null])) as NicInterface['features'] });
    assert.match(nicFindings(old, true)[0]!.what, /names no tls-hw-\* features/);
  });
});

describe('--offload-policy prefer-hw decision', () => {
  const usual: ListenerTls = { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3' };
  const v4 = (address: string, internal = false): os.NetworkInterfaceInfo => ({ address, netmask: '255.255.255.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal, cidr: `${address}/24` });
  const v6 = (address: string, internal = false): os.NetworkInterfaceInfo => ({ address, netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '00:00:00:00:00:00', internal, cidr: `${address}/64`, scopeid: 0 });
  // lo, eth0 with TLS TX offload on, eth1 without, eth2 (IPv6 only) with it.
  const host: HostView = {
    ktls: { on: true, reason: null },
    addresses: { lo: [v4('127.0.0.1', true), v6('::1', true)], eth0: [v4('192.0.2.10'), v6('2001:db8::10')], eth1: [v4('198.51.100.7')], eth2: [v6('2001:db8:2::1')] },
    nics: report(nic('lo', 1), nic('eth0', 2, { 'tls-hw-tx-offload': 'on' }), nic('eth1', 3, { 'tls-hw-tx-offload': 'off' }), nic('eth2', 4, { 'tls-hw-tx-offload': 'on [fixed]' })),
  };

  test('default: settings untouched, nothing looked at', () => {
    const d = decideHwPolicy('default', '192.0.2.10', usual, host);
    assert.deepEqual(d, { policy: 'default', preferHw: false, interfaces: [], reasons: [], tls: usual });
  });

  test('the interface holding the address offloads: TLS 1.2, AES-128-GCM', () => {
    const d = decideHwPolicy('prefer-hw', '192.0.2.10', usual, host);
    assert.equal(d.preferHw, true);
    assert.deepEqual(d.tls, { minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', cipherList: DEVICE_OFFLOAD_CIPHERS });
    assert.deepEqual(d.interfaces.map((i) => [i.name, i.tlsTx]), [['eth0', 'on']]);
    assert.match(describeHwPolicy(d), /^offload policy prefer-hw: TLS 1\.2 with AES-128-GCM only, so the NIC can encrypt \(tls-hw-tx-offload on: eth0\)$/);
    assert.ok(DEVICE_OFFLOAD_CIPHERS.split(':').every((c) => /AES128-GCM/.test(c)));
    // An IPv6 address written differently is the same address; an explicit cipher list is kept.
    const six = decideHwPolicy('prefer-hw', '2001:0db8:0:0::10', { ...usual, cipherList: 'ECDHE-RSA-AES128-GCM-SHA256' }, host);
    assert.deepEqual([six.preferHw, six.tls.cipherList], [true, 'ECDHE-RSA-AES128-GCM-SHA256']);
    assert.match(describeHwPolicy(six), /the given cipher list/);
  });

  test('loopback, an interface without offload, an address nobody holds: as usual, saying why', () => {
    const lo = decideHwPolicy('prefer-hw', '127.0.0.1', usual, host);
    assert.deepEqual([lo.preferHw, lo.tls], [false, usual]);
    assert.deepEqual(lo.reasons, ['lo has no NIC TLS offload (tls-hw-tx-offload off [fixed])']);
    assert.equal(describeHwPolicy(lo), 'offload policy prefer-hw: behaving as usual (TLSv1.2-1.3): lo has no NIC TLS offload (tls-hw-tx-offload off [fixed])');
    assert.deepEqual(decideHwPolicy('prefer-hw', '127.0.0.53', usual, host).interfaces.map((i) => i.name), ['lo'], 'all of 127/8 is loopback');
    assert.deepEqual(decideHwPolicy('prefer-hw', '198.51.100.7', usual, host).reasons, ['eth1 has no NIC TLS offload (tls-hw-tx-offload off)']);
    assert.deepEqual(decideHwPolicy('prefer-hw', '203.0.113.1', usual, host).reasons, ['no interface that is up holds 203.0.113.1']);
  });

  test('wildcards: every non-loopback interface of the family must offload', () => {
    const any4 = decideHwPolicy('prefer-hw', '0.0.0.0', usual, host);
    assert.deepEqual(any4.interfaces.map((i) => i.name), ['lo', 'eth0', 'eth1'], 'eth2 has no IPv4 address');
    assert.deepEqual([any4.preferHw, any4.reasons], [false, ['eth1 has no NIC TLS offload (tls-hw-tx-offload off)']]);
    const noEth1: HostView = { ...host, addresses: { ...host.addresses, eth1: undefined } };
    assert.equal(decideHwPolicy('prefer-hw', '0.0.0.0', usual, noEth1).preferHw, true, 'lo does not count');
    assert.equal(decideHwPolicy('prefer-hw', '::', usual, noEth1).preferHw, true, 'eth0 and eth2 offload');
    assert.deepEqual(decideHwPolicy('prefer-hw', '::', usual, host).interfaces.map((i) => i.name), ['lo', 'eth0', 'eth1', 'eth2'], ':: is dual-stack');
    const loOnly: HostView = { ...host, addresses: { lo: host.addresses.lo } };
    assert.deepEqual(decideHwPolicy('prefer-hw', '0.0.0.0', usual, loOnly).reasons, ['only loopback serves 0.0.0.0']);
  });

  test('kTLS off, TLS 1.3 only, features unreadable: every reason is given', () => {
    const d = decideHwPolicy('prefer-hw', '192.0.2.10', { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' }, { ...host, ktls: { on: false, reason: 'the kernel TLS module is not loaded' } });
    assert.equal(d.preferHw, false);
    assert.deepEqual(d.reasons, ['kernel TLS is off (the kernel TLS module is not loaded), and a NIC only takes the crypto of kTLS sockets', 'the TLS range starts at 1.3, and NIC offload takes TLS 1.2 only']);
    assert.equal(describeHwPolicy(d).split(': behaving as usual (TLSv1.3): ').length, 2);
    const unread = decideHwPolicy('prefer-hw', '192.0.2.10', usual, { ...host, nics: { status: 'unavailable', problem: 'no addon', interfaces: [] } });
    assert.deepEqual(unread.reasons, ['NIC features not read: no addon']);
    assert.equal(unread.interfaces[0]!.tlsTx, 'not read');
  });
});

import assert from 'node:assert/strict';
import { Ajv2020 } from 'ajv/dist/2020.js';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { classifyDriver, cryptoDrivers, parseProcCrypto } from '../../src/offload/crypto-drivers.js';
import { formatDoctorTable, runDoctor, type DoctorReport } from '../../src/offload/doctor.js';
import { kernelFeatures, parseKernelRelease, parseTlsStat, tlsModuleStatus } from '../../src/offload/kernel-tls.js';
import { ktlsMatrix, opensslReport, splitVersionNumber } from '../../src/offload/openssl-matrix.js';
import { readRapl } from '../../src/offload/rapl.js';

const REL = '6.1.0-18-amd64';
const openssl30 = { version: 'OpenSSL 3.0.19 27 Jan 2026', versionNumber: 0x30000130, libssl: '/lib/x86_64-linux-gnu/libssl.so.3', nodeCopy: false };
const openssl32 = { version: 'OpenSSL 3.2.0 23 Nov 2023', versionNumber: 0x30200000, libssl: '/usr/lib/libssl.so.3', nodeCopy: false };
const caps30 = { openssl: openssl30, opensslProblem: null };

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aludel-doctor-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;

/** A fixture root: { 'proc/modules': 'text', 'sys/module/tls/': null (directory) }. */
function tree(files: Record<string, string | null>): string {
  const root = path.join(tmp, String(n++));
  fs.mkdirSync(root);
  for (const [rel, content] of Object.entries(files)) {
    const p = path.join(root, rel);
    if (content === null) fs.mkdirSync(p, { recursive: true });
    else {
      fs.mkdirSync(path.dirname(p), { recursive: true });
      fs.writeFileSync(p, content);
    }
  }
  return root;
}

const PROC_CRYPTO = `name         : gcm(aes)
driver       : generic-gcm-aesni
module       : aesni_intel
priority     : 400
type         : aead

name         : cbc(aes)
driver       : cbc-aes-aesni
module       : aesni_intel
priority     : 400
type         : skcipher

name         : gcm(aes)
driver       : gcm-aes-chcr
module       : chcr
priority     : 3000
type         : aead

name         : gcm(aes)
driver       : gcm_base(ctr(aes-generic),ghash-generic)
module       : kernel
priority     : 100
type         : aead

name         : rfc4106(gcm(aes))
driver       : rfc4106-gcm-aes-qat
module       : intel_qat
priority     : 4001
type         : aead

name         : rfc7539(chacha20,poly1305)
driver       : rfc7539(chacha20-simd,poly1305-simd)
module       : kernel
priority     : 300
type         : aead
`;

const TLS_STAT = `TlsCurrTxSw                     	0
TlsCurrRxSw                     	0
TlsTxSw                         	12
TlsRxSw                         	7
TlsTxDevice                     	0
TlsRxDevice                     	0
TlsDecryptError                 	0
`;

test('ULP status: loaded when /proc/modules has a "tls " line', () => {
  const root = tree({ 'proc/modules': 'nf_tables 1 0 - Live 0x0\ntls 155648 0 - Live 0x0000000000000000\n', 'sys/module/tls/initstate': 'live\n' });
  assert.deepEqual(tlsModuleStatus(root, REL), { status: 'loaded', evidence: ['/proc/modules'] });
});

test('ULP status: builtin when /sys/module/tls exists but /proc/modules has no tls line', () => {
  const root = tree({ 'proc/modules': 'tls_other 1 0 - Live 0x0\nnf_tables 1 0 - Live 0x0\n', 'sys/module/tls/': null });
  const s = tlsModuleStatus(root, REL);
  assert.equal(s.status, 'builtin');
  assert.deepEqual(s.evidence, ['/sys/module/tls']);
  // modules.builtin alone also counts (built-in tls without /sys/module/tls).
  assert.equal(tlsModuleStatus(tree({ [`lib/modules/${REL}/modules.builtin`]: 'kernel/net/ipv4/tcp_bbr.ko\nkernel/net/tls/tls.ko\n' }), REL).status, 'builtin');
});

test('ULP status: loadable with tls.ko.xz / tls.ko.zst / tls.ko under /lib/modules/<release>', () => {
  for (const f of ['tls.ko.xz', 'tls.ko.zst', 'tls.ko']) {
    const root = tree({ 'proc/modules': 'nf_tables 1 0 - Live 0x0\n', [`lib/modules/${REL}/kernel/net/tls/${f}`]: 'ELF' });
    assert.deepEqual(tlsModuleStatus(root, REL), { status: 'loadable', evidence: [`/lib/modules/${REL}/kernel/net/tls/${f}`] });
  }
  // A module for another release does not count.
  const other = tree({ 'lib/modules/5.10.0-1-amd64/kernel/net/tls/tls.ko.xz': 'ELF' });
  assert.equal(tlsModuleStatus(other, REL).status, 'absent');
});

test('ULP status: absent on an empty tree', () => {
  assert.deepEqual(tlsModuleStatus(tree({}), REL), { status: 'absent', evidence: [] });
});

test('kernel version and feature table', () => {
  assert.deepEqual(parseKernelRelease('6.18.44-fc-v595'), { release: '6.18.44-fc-v595', major: 6, minor: 18 });
  assert.deepEqual(parseKernelRelease('weird'), { release: 'weird', major: null, minor: null });
  const at = (rel: string): Record<string, boolean | null> => Object.fromEntries(kernelFeatures(parseKernelRelease(rel)).map((f) => [f.since + ' ' + f.feature, f.available]));
  const f510 = kernelFeatures(parseKernelRelease('5.10.0-30-amd64'));
  assert.deepEqual(
    f510.map((f) => [f.since, f.available]),
    [['4.13', true], ['4.17', true], ['5.1', true], ['5.1', true], ['5.11', false], ['6.0', false], ['6.14', false]],
  );
  assert.ok(Object.values(at('6.14.0')).every((v) => v === true));
  assert.ok(Object.values(at('4.9.0')).every((v) => v === false));
  assert.ok(Object.values(at('x')).every((v) => v === null));
  assert.equal(kernelFeatures(parseKernelRelease('4.16.1')).find((f) => f.since === '4.17')?.available, false);
});

test('tls_stat counters', () => {
  assert.deepEqual(parseTlsStat(TLS_STAT), { TlsCurrTxSw: 0, TlsCurrRxSw: 0, TlsTxSw: 12, TlsRxSw: 7, TlsTxDevice: 0, TlsRxDevice: 0, TlsDecryptError: 0 });
});

test('/proc/crypto: parse, filter to the kTLS AEADs, sort by priority, classify', () => {
  assert.equal(parseProcCrypto(PROC_CRYPTO).length, 6);
  const algs = cryptoDrivers(PROC_CRYPTO);
  assert.deepEqual(algs.map((a) => a.name), ['gcm(aes)', 'rfc4106(gcm(aes))', 'rfc7539(chacha20,poly1305)']);
  const gcm = algs[0]!.drivers;
  assert.deepEqual(gcm.map((d) => [d.driver, d.priority, d.kind]), [
    ['gcm-aes-chcr', 3000, 'accelerator'],
    ['generic-gcm-aesni', 400, 'cpu'],
    ['gcm_base(ctr(aes-generic),ghash-generic)', 100, 'cpu'],
  ]);
  assert.equal(gcm[0]!.label, 'accelerator (coprocessor mode)');
  assert.equal(gcm[1]!.label, 'CPU');
  assert.equal(gcm[0]!.module, 'chcr');
  assert.deepEqual(algs[1]!.drivers.map((d) => [d.driver, d.kind]), [['rfc4106-gcm-aes-qat', 'accelerator']]);
  assert.deepEqual(algs[2]!.drivers.map((d) => d.kind), ['cpu']);
  for (const d of ['gcm-aes-caam-qi2', 'safexcel-gcm-aes', 'gcm-aes-ccp', 'nx-aes-gcm', 'qat_aes_gcm']) assert.equal(classifyDriver(d), 'accelerator', d);
  for (const d of ['rfc4106-gcm-aesni', 'gcm-aes-vaes-avx10_512', 'gcm-aes-avx2', 'gcm(aes-generic)']) assert.equal(classifyDriver(d), 'cpu', d);
  assert.equal(classifyDriver('mystery-engine'), 'unknown');
});

test('OpenSSL matrix: 3.0.19 gives TLS 1.3 TX only; 3.2.0 gives both directions', () => {
  assert.deepEqual(splitVersionNumber(0x30000130), { major: 3, minor: 0, patch: 19 });
  assert.deepEqual(splitVersionNumber(0x30200000), { major: 3, minor: 2, patch: 0 });
  assert.deepEqual(ktlsMatrix(0x30000130), [{ tls: '1.2', tx: true, rx: true }, { tls: '1.3', tx: true, rx: false }]);
  assert.deepEqual(ktlsMatrix(0x30100040), [{ tls: '1.2', tx: true, rx: true }, { tls: '1.3', tx: true, rx: false }]);
  assert.deepEqual(ktlsMatrix(0x30200000), [{ tls: '1.2', tx: true, rx: true }, { tls: '1.3', tx: true, rx: true }]);
  const r = opensslReport({ openssl: openssl30, opensslProblem: null });
  assert.deepEqual([r.available, r.version, r.libssl, r.major, r.minor, r.patch], [true, openssl30.version, openssl30.libssl, 3, 0, 19]);
  const none = opensslReport({ openssl: null, opensslProblem: 'cannot load the system OpenSSL: x' });
  assert.deepEqual([none.available, none.problem, none.ktls], [false, 'cannot load the system OpenSSL: x', []]);
});

test('RAPL zones', () => {
  const root = tree({
    'sys/class/powercap/intel-rapl/enabled': '1\n',
    'sys/class/powercap/intel-rapl:0/name': 'package-0\n',
    'sys/class/powercap/intel-rapl:0/energy_uj': '123\n',
    'sys/class/powercap/intel-rapl:0:0/name': 'core\n',
    'sys/class/powercap/intel-rapl:0:0/energy_uj': '45\n',
  });
  const r = readRapl(root);
  assert.equal(r.present, true);
  assert.deepEqual(r.zones.map((z) => [z.id, z.name, z.energyCounter]), [['intel-rapl:0', 'package-0', true], ['intel-rapl:0:0', 'core', true]]);
  assert.deepEqual(readRapl(tree({})), { present: false, zones: [] });
});

// --- validation against schema/doctor-report.schema.json with ajv (JSON Schema 2020-12) ---
const schemaPath = fileURLToPath(new URL('../../../schema/doctor-report.schema.json', import.meta.url));
const schema = JSON.parse(fs.readFileSync(schemaPath, 'utf8')) as { $schema: string };
const validate = new Ajv2020({ allErrors: true, strict: true }).compile(schema);

/** Validation errors as "path: message" ("$" is the root), [] when valid. */
function schemaProblems(report: unknown): string[] {
  if (validate(JSON.parse(JSON.stringify(report)))) return [];
  return (validate.errors ?? []).map((e) => `$${e.instancePath}: ${e.message ?? e.keyword}`);
}

function fullTree(): string {
  return tree({
    'proc/modules': 'tls 155648 0 - Live 0x0\n',
    'proc/net/tls_stat': TLS_STAT,
    'proc/crypto': PROC_CRYPTO,
    'sys/module/tls/initstate': 'live\n',
    'sys/class/powercap/intel-rapl:0/name': 'package-0\n',
    'sys/class/powercap/intel-rapl:0/energy_uj': '1\n',
  });
}

test('runDoctor on fixture trees: findings per ULP status, schema shape, table names each finding', () => {
  assert.equal(schema.$schema, 'https://json-schema.org/draft/2020-12/schema');
  // The checker itself catches missing keys, wrong types and enum values.
  assert.ok(schemaProblems({}).some((p) => /must have required property 'findings'/.test(p)));
  const bad = runDoctor({ root: tree({}), release: REL, capabilities: caps30, probeUlp: null }) as unknown as Record<string, unknown>;
  const problems = schemaProblems({ ...bad, findings: [{ level: 'fatal', area: 'x', what: 1, advice: '' }] });
  assert.ok(problems.some((p) => p.startsWith('$/findings/0/level: must be equal to one of the allowed values')), problems.join('; '));
  assert.ok(problems.some((p) => p.startsWith('$/findings/0/what: must be string')), problems.join('; '));
  const loaded = runDoctor({ root: fullTree(), release: REL, capabilities: caps30, probeUlp: null });
  assert.deepEqual(schemaProblems(loaded), []);
  assert.equal(loaded.tlsModule.status, 'loaded');
  assert.equal(loaded.tlsStat.counters.TlsTxSw, 12);
  assert.deepEqual(loaded.nics, { status: 'unavailable', problem: 'not read with a fixture root', interfaces: [] });
  const kernelFinding = (r: DoctorReport) => r.findings.find((f) => f.area === 'kernel')!;
  assert.equal(kernelFinding(loaded).level, 'ok');
  assert.ok(loaded.findings.some((f) => f.level === 'warn' && /TLS 1\.3 records are decrypted in userspace/.test(f.what) && /3\.2/.test(f.advice)));
  assert.ok(loaded.findings.some((f) => /gcm-aes-chcr/.test(f.what) && /coprocessor/.test(f.what)));
  assert.ok(loaded.findings.some((f) => f.area === 'nic' && f.level === 'warn' && /NIC offload features not read: not read with a fixture root/.test(f.what)));
  assert.ok(loaded.findings.some((f) => f.area === 'kernel' && /6\.14/.test(f.what)), 'kernel 6.1 lacks rekey');

  const loadable = runDoctor({ root: tree({ [`lib/modules/${REL}/kernel/net/tls/tls.ko.xz`]: 'ELF' }), release: REL, capabilities: caps30, probeUlp: null });
  assert.deepEqual([kernelFinding(loadable).level, /modprobe tls/.test(kernelFinding(loadable).advice)], ['warn', true]);

  const absent = runDoctor({ root: tree({}), release: REL, capabilities: { openssl: null, opensslProblem: 'cannot load the system OpenSSL: no libssl' }, probeUlp: null });
  assert.deepEqual(schemaProblems(absent), []);
  assert.deepEqual([kernelFinding(absent).level, /CONFIG_TLS/.test(kernelFinding(absent).advice)], ['error', true]);
  assert.ok(absent.findings.some((f) => f.area === 'openssl' && f.level === 'error' && /libssl3/.test(f.advice)));
  assert.ok(absent.findings.some((f) => f.area === 'energy' && f.level === 'warn'));

  // The live probe wins over the files: no module files in the tree, yet the kernel accepts the ULP.
  const probed = runDoctor({ root: tree({}), release: '6.14.2', capabilities: { openssl: openssl32, opensslProblem: null }, probeUlp: () => ({ errno: 0, code: null, syscall: null }) });
  assert.deepEqual(schemaProblems(probed), []);
  assert.equal(kernelFinding(probed).level, 'ok');
  assert.equal(probed.tlsModule.probe?.ok, true);
  assert.ok(!probed.findings.some((f) => /decrypted in userspace/.test(f.what)), 'OpenSSL 3.2 has TLS 1.3 RX');
  const refused = runDoctor({ root: tree({}), release: REL, capabilities: caps30, probeUlp: () => ({ errno: 1, code: 'EPERM', syscall: 'setsockopt(TCP_ULP)' }) });
  assert.deepEqual([kernelFinding(refused).level, /EPERM/.test(kernelFinding(refused).what)], ['error', true]);
  // Loopback down (unshare -n, a container with no network): the probe's connect fails, which says nothing about
  // the kernel's TLS; it said "refused the TLS ULP -> check seccomp/LSM policy" (found by a tester).
  const noLoopback = runDoctor({ root: fullTree(), release: REL, capabilities: caps30, probeUlp: () => ({ errno: 101, code: 'ENETUNREACH', syscall: 'connect' }) });
  assert.ok(!noLoopback.findings.some((f) => /refused the TLS ULP|seccomp/.test(`${f.what} ${f.advice}`)), JSON.stringify(noLoopback.findings));
  assert.ok(noLoopback.findings.some((f) => f.level === 'warn' && /could not be tested: its loopback connection failed \(connect: ENETUNREACH\)/.test(f.what)));
  assert.ok(!noLoopback.findings.some((f) => /probe not run \(native addon/.test(f.what)), 'the probe did run');

  // NIC features as given: schema-valid, a finding per offloading interface, a row per interface in the table.
  const on = { available: true, requested: true, active: true, fixed: false };
  const off = { available: false, requested: false, active: false, fixed: true };
  const nics = {
    status: 'read' as const,
    problem: null,
    interfaces: [
      { name: 'lo', index: 1, features: { 'tls-hw-tx-offload': off, 'tls-hw-rx-offload': off, 'tls-hw-record': off, 'esp-hw-offload': off, 'esp-tx-csum-hw-offload': off }, error: null },
      { name: 'eth0', index: 2, features: { 'tls-hw-tx-offload': on, 'tls-hw-rx-offload': off, 'tls-hw-record': null, 'esp-hw-offload': off, 'esp-tx-csum-hw-offload': off }, error: null },
      { name: 'gone0', index: 3, features: { 'tls-hw-tx-offload': null, 'tls-hw-rx-offload': null, 'tls-hw-record': null, 'esp-hw-offload': null, 'esp-tx-csum-hw-offload': null }, error: { code: 'ENODEV', errno: 19, syscall: 'ioctl(SIOCETHTOOL, ETHTOOL_GFEATURES)' } },
    ],
  };
  const withNics = runDoctor({ root: fullTree(), release: REL, capabilities: caps30, probeUlp: null, nics });
  assert.deepEqual(schemaProblems(withNics), []);
  assert.deepEqual(withNics.findings.filter((f) => f.area === 'nic').map((f) => [f.level, f.what]), [
    ['ok', 'eth0: tls-hw-tx-offload on'],
    ['warn', 'gone0: features not read (ioctl(SIOCETHTOOL, ETHTOOL_GFEATURES): ENODEV)'],
    ['ok', 'NIC TLS offload on: eth0'],
  ]);
  const badNic = JSON.parse(JSON.stringify(withNics)) as { nics: { interfaces: Array<{ features: Record<string, unknown> }> } };
  badNic.nics.interfaces[0]!.features['tls-hw-tx-offload'] = { available: 'yes' };
  assert.ok(schemaProblems(badNic).some((p) => p.startsWith('$/nics/interfaces/0/features/tls-hw-tx-offload')), 'the schema checks each feature');
  const nicTable = formatDoctorTable(withNics);
  assert.match(nicTable, /^nics +3 interfaces; TLS offload on: eth0$/m);
  assert.match(nicTable, /^ {2}eth0 +on +off \[fixed\] +absent +off \[fixed\] +off \[fixed\]$/m);
  assert.match(nicTable, /^ {2}gone0 +error ENODEV/m);

  for (const r of [loaded, loadable, absent, probed, withNics]) {
    const text = formatDoctorTable(r);
    for (const f of r.findings) {
      assert.ok(text.includes(f.what), `table names finding: ${f.what}`);
      assert.ok(text.includes(f.advice), `table gives advice: ${f.advice}`);
    }
  }
  const text = formatDoctorTable(loaded);
  assert.match(text, /^ {2}gcm\(aes\) +gcm-aes-chcr +3000 +accelerator \(coprocessor mode\)$/m);
  assert.match(text, /^ {2}TLS 1\.3 +5\.1 +yes$/m);
  // A kernel version with the feature is no use without the module: not "yes" (it said yes).
  assert.match(formatDoctorTable(absent), /^ {2}TLS 1\.3 +5\.1 +no: tls module absent$/m);
});

test('runDoctor on this machine: kernel TLS status matches /proc/net/tls_stat', () => {
  const r = runDoctor();
  assert.deepEqual(schemaProblems(r), []);
  // Every interface of this namespace, lo included, with the five features read (compared with ethtool in test/integration/nic-features.test.ts).
  assert.equal(r.nics.status, 'read', String(r.nics.problem));
  const lo = r.nics.interfaces.find((i) => i.name === 'lo');
  assert.ok(lo, 'lo listed');
  assert.ok(Object.values(lo.features).every((f) => f !== null && !f.active), JSON.stringify(lo.features));
  assert.equal(r.kernel.release, os.release());
  const advice = r.findings.map((f) => f.advice).join('\n');
  if (fs.existsSync('/proc/net/tls_stat')) {
    assert.equal(r.tlsStat.present, true);
    assert.notEqual(r.tlsModule.status, 'absent');
    assert.ok(!r.findings.some((f) => f.area === 'kernel' && f.level === 'error' && /CONFIG_TLS/.test(f.advice)), 'no "kernel lacks TLS" error where tls_stat exists');
  } else {
    // This kernel was built without CONFIG_TLS (or the module is not loaded).
    assert.equal(r.tlsStat.present, false);
    assert.notEqual(r.tlsModule.status, 'loaded');
    if (r.tlsModule.probe) assert.equal(r.tlsModule.probe.ok, false);
    assert.match(advice, /modprobe tls|CONFIG_TLS/);
    assert.ok(r.findings.some((f) => f.area === 'kernel' && f.level !== 'ok' && /modprobe tls|CONFIG_TLS/.test(f.advice)));
  }
});

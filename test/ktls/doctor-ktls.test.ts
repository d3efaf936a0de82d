/** `aludel doctor` where the kernel has TLS: it must say so, from the kernel's own answer. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { NicReport } from '../../src/offload/nic-features.js';
import { CLI } from '../support/aludel-process.js';
import { doctorSchemaProblems, netInterfaceNames } from '../support/doctor-schema.js';
import { run } from '../support/run-process.js';
import { hasKernelTls } from '../support/tls-stat.js';

test('doctor reports kTLS available and the OpenSSL 3.0 direction matrix', { timeout: 120_000 }, async (t) => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
  const r = await run(process.execPath, [CLI, 'doctor', '--json'], { timeoutMs: 100_000 });
  const report = JSON.parse(r.stdout.toString()) as {
    tlsModule: { status: string; probe: { ok: boolean } | null };
    openssl: { major: number; minor: number; ktls: Array<{ tls: string; tx: boolean; rx: boolean }> };
    findings: Array<{ level: string; area: string; what: string }>;
    nics: NicReport;
  };
  assert.deepEqual(doctorSchemaProblems(report), []);
  // Every interface (the VM has lo only), lo with every feature named by this kernel and none on.
  assert.equal(report.nics.status, 'read', String(report.nics.problem));
  assert.deepEqual(report.nics.interfaces.map((i) => i.name).sort(), netInterfaceNames());
  const lo = report.nics.interfaces.find((i) => i.name === 'lo');
  assert.ok(lo && Object.values(lo.features).every((f) => f !== null && !f.active && f.fixed), JSON.stringify(report.nics));
  if (!report.nics.interfaces.some((i) => i.features['tls-hw-tx-offload']?.active || i.features['tls-hw-rx-offload']?.active)) {
    assert.ok(report.findings.some((f) => f.area === 'nic' && /^no NIC TLS offload on this host: crypto runs in the kernel's software kTLS/.test(f.what)), 'with kTLS up, the crypto is said to run there');
  }
  t.diagnostic(`tls module ${report.tlsModule.status}; probe ${JSON.stringify(report.tlsModule.probe)}; matrix ${JSON.stringify(report.openssl.ktls)}`);
  assert.ok(['loaded', 'builtin'].includes(report.tlsModule.status), report.tlsModule.status);
  assert.equal(report.tlsModule.probe?.ok, true, 'setsockopt(TCP_ULP, "tls") succeeds here');
  assert.ok(!report.findings.some((f) => f.level === 'error' && f.area === 'kernel'), JSON.stringify(report.findings));
  if (report.openssl.major === 3 && report.openssl.minor < 2) {
    assert.deepEqual(report.openssl.ktls, [{ tls: '1.2', tx: true, rx: true }, { tls: '1.3', tx: true, rx: false }]);
  }
  // The table form carries the same verdict.
  const table = await run(process.execPath, [CLI, 'doctor'], { timeoutMs: 100_000 });
  assert.match(table.stdout.toString(), /tls module\s+(loaded|builtin)/);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KtlsUnavailableError } from '../../src/errors.js';
import { kernelProblem, type Capabilities } from '../../src/offload/capabilities.js';
import { decideOffload } from '../../src/tls/offload.js';
import type { Native } from '../../src/native/binding.js';

const openssl = { version: 'OpenSSL 3.0.19 27 Jan 2026', versionNumber: 0x30000130, libssl: '/lib/libssl.so.3', nodeCopy: false };
const native = {} as Native;
const ready: Capabilities = { native, openssl, opensslProblem: null, kernelProblem: null };
const noKernel: Capabilities = { ...ready, kernelProblem: 'the kernel TLS module is not loaded; run: modprobe tls' };
const noLib: Capabilities = { native: null, openssl: null, opensslProblem: 'cannot load the system OpenSSL', kernelProblem: null };

test('auto: kernel TLS where the kernel and library allow it', () => {
  const d = decideOffload('auto', ready);
  assert.deepEqual([d.engine, d.ktls, d.reason], ['system-openssl', true, null]);
});

test('auto without the kernel module: same OpenSSL in userspace, with the reason', () => {
  const d = decideOffload('auto', noKernel);
  assert.deepEqual([d.engine, d.ktls], ['system-openssl', false]);
  assert.match(d.reason ?? '', /modprobe tls/);
});

test('auto without a loadable system OpenSSL: node:tls fallback', () => {
  const d = decideOffload('auto', noLib);
  assert.deepEqual([d.engine, d.ktls, d.openssl], ['node-tls', false, null]);
  assert.match(d.reason ?? '', /system OpenSSL/);
});

test('userspace: never kTLS, even where it would work', () => {
  const d = decideOffload('userspace', ready);
  assert.deepEqual([d.engine, d.ktls, d.reason], ['system-openssl', false, null]);
});

test('kernel: refuses with what is missing and what to do', () => {
  assert.throws(() => decideOffload('kernel', noKernel), (e: unknown) => e instanceof KtlsUnavailableError && /modprobe tls/.test(e.message) && /--offload auto/.test(e.message));
  assert.throws(() => decideOffload('kernel', noLib), KtlsUnavailableError);
  assert.equal(decideOffload('kernel', ready).ktls, true);
});

test('kernelProblem: a probe whose loopback connection failed says so, not that the kernel refused the ULP', () => {
  const fake = (r: { errno: number; code: string | null; syscall: string | null }) => ({ probeTcpUlp: () => r }) as unknown as Native;
  assert.match(kernelProblem(fake({ errno: 101, code: 'ENETUNREACH', syscall: 'connect' }))!, /^the TLS ULP could not be tested: its loopback connection failed \(connect: ENETUNREACH\); is the loopback interface up/);
  assert.match(kernelProblem(fake({ errno: 1, code: 'EPERM', syscall: 'setsockopt(TCP_ULP)' }))!, /^the kernel refused the TLS ULP: setsockopt\(TCP_ULP\) failed with EPERM/);
  assert.equal(kernelProblem(fake({ errno: 0, code: null, syscall: null })), null);
});

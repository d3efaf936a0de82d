/**
 * The connection's direct reads and the lane on them with the kernel
 * decrypting (kTLS RX): SSL_read is a recvmsg of the kernel's plaintext, the
 * same read loop (test/support/direct-read.ts).
 */
import assert from 'node:assert/strict';
import { before } from 'node:test';
import { directReadTests } from '../support/direct-read.js';
import { hasKernelTls } from '../support/tls-stat.js';

before(() => {
  assert.ok(hasKernelTls(), 'these tests need a kernel with TLS (/proc/net/tls_stat): run them through scripts/run-tests.sh');
});

directReadTests('kernel', 'TLSv1.2', true);
// TLS 1.3: kTLS TX only here (OpenSSL 3.0), reads through OpenSSL as without kTLS, writes by the kernel.
directReadTests('kernel', 'TLSv1.3', false);
